// The first stage under evaluation, built the way the service builds a snapshot: documents →
// chunkDocuments (CHUNK_TOKENS / CHUNK_OVERLAP) → the configured embedder → buildSnapshot with
// the faiss index builder (INDEX_TYPE). Queries are embedded by the same embedder (with the
// corpus statistics the snapshot records) and searched in the index just built.
import { computeHashingStats, createHashingEmbedder } from "../../shared/adapters/hash-embedder.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { chunkDocuments } from "../../shared/core/chunking.ts";
import type { Config } from "../../shared/core/config.ts";
import { describeIdentity } from "../../shared/core/embedding.ts";
import type { Embedder } from "../../shared/core/ports.ts";
import type { Passage } from "../../shared/core/types.ts";
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

async function createEvalEmbedder(
  cfg: Config,
  passages: readonly Passage[],
): Promise<{ embedder: Embedder; corpusStats?: unknown }> {
  if (cfg.embedder === "hashing" || cfg.embedder === "auto") {
    const corpusStats = computeHashingStats(
      passages.map((p) => p.text),
      cfg.hashingDimensions,
    );
    return { embedder: createHashingEmbedder({ dimensions: cfg.hashingDimensions, stats: corpusStats }), corpusStats };
  }
  throw new Error(`embedder ${cfg.embedder} is not wired into the evaluation yet`);
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
  const { embedder, corpusStats } = await createEvalEmbedder(cfg, passages);
  progress?.start("embed + index", passages.length);
  const built = await buildSnapshot({
    passages,
    embed: (texts) => embedder.embedDocuments(texts),
    embedder: embedder.identity,
    corpusStats,
    indexType: cfg.indexType,
    indexBuilder: faissIndexBuilder,
    onProgress: (done) => progress?.update(done),
  });
  progress?.stop();
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
