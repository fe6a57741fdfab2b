// The first stage under evaluation, built and loaded the way the service builds and loads a
// snapshot: documents → chunkDocuments (CHUNK_TOKENS / CHUNK_OVERLAP) → the configured embedder →
// buildSnapshot with the faiss index builder (INDEX_TYPE) and the BM25 sparse index → the
// snapshot's passage store and sparse index opened from the built files. Queries are embedded by
// an embedder created for the snapshot's manifest (identity + corpus statistics), as the search
// function creates it, so every eval row runs the service's own search core on it.
import { computeCorpusStats, createEmbedder } from "../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { chunkDocuments } from "../../shared/core/chunking.ts";
import type { Config } from "../../shared/core/config.ts";
import { describeIdentity } from "../../shared/core/embedding.ts";
import type { Embedder, LoadedSnapshot } from "../../shared/core/ports.ts";
import { openPassageStore, PASSAGES_FILE } from "../../shared/core/snapshot.ts";
import { analyzerFromDescription, openSparseIndex } from "../../shared/core/sparse-index.ts";
import type { Passage } from "../../shared/core/types.ts";
import { type BeirDocument, documentText } from "./dataset.ts";
import type { ProgressSink } from "./run-eval.ts";

export interface FirstStage {
  /** Embedder identity, e.g. "hashing/hashing-v1-uni+bi (2048d, normalised)". */
  embedder: string;
  indexType: string;
  passages: Passage[];
  snapshot: LoadedSnapshot;
  /** The query embedder, created for the snapshot's manifest. */
  queryEmbedder: Embedder;
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
  const queryEmbedder = await createEmbedder(cfg, {
    identity: built.manifest.embedder,
    corpusStats: built.manifest.corpus_stats,
  });
  const info = built.manifest.sparse!;
  const snapshot: LoadedSnapshot = {
    version: built.manifest.version,
    manifest: built.manifest,
    index: built.index,
    passages: openPassageStore(built.files[PASSAGES_FILE]),
    sparse: openSparseIndex(built.files[info.file], {
      params: info.params,
      analyzer: analyzerFromDescription(info.analyzer),
    }),
    loadedAt: Date.now(),
  };
  return {
    embedder: describeIdentity(queryEmbedder.identity),
    indexType: built.index.type,
    passages,
    snapshot,
    queryEmbedder,
  };
}
