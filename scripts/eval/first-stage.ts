// The first stage under evaluation, built the way the service builds a snapshot: documents →
// chunkDocuments (CHUNK_TOKENS / CHUNK_OVERLAP) → the configured embedder → buildSnapshot with
// the faiss index builder (INDEX_TYPE). Queries are embedded by an embedder created for the
// snapshot's manifest (identity + corpus statistics), as the search function creates it, and
// searched in the index just built.
import { computeCorpusStats, createEmbedder } from "../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { chunkDocuments } from "../../shared/core/chunking.ts";
import type { Config } from "../../shared/core/config.ts";
import { describeIdentity } from "../../shared/core/embedding.ts";
import { type BeirDocument, documentText } from "./dataset.ts";
import type { ProgressSink } from "./run-eval.ts";

export interface FirstStagePassage {
  passageId: string;
  docId: string;
  text: string;
  score: number;
}

export interface FirstStage {
  /** Embedder identity, e.g. "hashing/hashing-v1-uni+bi (2048d, normalised)". */
  embedder: string;
  indexType: string;
  passages: number;
  /**
   * Passages best first: at least `minPassages` of them (when the index holds that many) and
   * enough to cover `depthDocs` distinct documents (when the corpus has that many).
   */
  search(query: string, depthDocs: number, minPassages: number): Promise<FirstStagePassage[]>;
}

export async function buildFirstStage(
  docs: readonly BeirDocument[],
  cfg: Config,
  progress?: ProgressSink,
): Promise<FirstStage> {
  const passages = chunkDocuments(
    docs.map((d) => ({ id: d.id, text: documentText(d) })),
    { maxTokens: cfg.chunkTokens, overlap: cfg.chunkOverlap },
  );
  const docEmbedder = await createEmbedder(cfg);
  const corpusStats = computeCorpusStats(
    docEmbedder.identity,
    passages.map((p) => p.text),
  );
  progress?.start("embed + index", passages.length);
  const built = await buildSnapshot({
    passages,
    embed: (texts) => docEmbedder.embedDocuments(texts),
    embedder: docEmbedder.identity,
    corpusStats,
    indexType: cfg.indexType,
    indexBuilder: faissIndexBuilder,
    onProgress: (done) => progress?.update(done),
  });
  progress?.stop();
  // Queries are embedded as the search function does: an embedder built for the snapshot's manifest.
  const embedder = await createEmbedder(cfg, {
    identity: built.manifest.embedder,
    corpusStats: built.manifest.corpus_stats,
  });
  const index = built.index;
  const total = index.count;

  return {
    embedder: describeIdentity(embedder.identity),
    indexType: index.type,
    passages: total,
    async search(query, depthDocs, minPassages) {
      const vector = await embedder.embedQuery(query);
      // Widen the fetch until it spans depthDocs documents or holds the whole index.
      let k = Math.min(total, Math.max(minPassages, depthDocs * 2));
      for (;;) {
        const found = index.search(vector, k);
        const out: FirstStagePassage[] = [];
        const docsSeen = new Set<string>();
        for (let i = 0; i < found.ordinals.length; i++) {
          const ordinal = found.ordinals[i];
          if (ordinal < 0) continue;
          const p = passages[ordinal];
          docsSeen.add(p.docId);
          out.push({ passageId: p.id, docId: p.docId, text: p.text, score: found.scores[i] });
        }
        if (docsSeen.size >= depthDocs || k >= total) return out;
        k = Math.min(total, k * 4);
      }
    },
  };
}
