// The real search stack for integration tests and the http benchmark: a corpus built into a
// snapshot with the hashing embedder and a real faiss index, published to an object store,
// loaded by the real snapshot loader, served by the search app.
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { computeHashingStats, createHashingEmbedder, hashingIdentity } from "../../shared/adapters/hash-embedder.ts";
import { decodeFaissSnapshotIndex, faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import type { Embedder, ObjectStore, SnapshotManifest } from "../../shared/core/ports.ts";
import { publishSnapshot } from "../../shared/core/publish.ts";
import { createSnapshotLoader, type SnapshotLoader } from "../../shared/core/snapshot-loader.ts";
import type { Passage } from "../../shared/core/types.ts";

export const INDEX_PREFIX = "index/";
export const HASHING_DIMENSIONS = 1024;

/** Builds and publishes a snapshot of `passages` (hashing embedder, exact faiss index). */
export async function publishPassages(
  store: ObjectStore,
  passages: readonly Passage[],
  opts: { dimensions?: number; version?: string; indexType?: string } = {},
): Promise<SnapshotManifest> {
  const dimensions = opts.dimensions ?? HASHING_DIMENSIONS;
  const stats = computeHashingStats(
    passages.map((p) => p.text),
    dimensions,
  );
  const embedder = createHashingEmbedder({ dimensions });
  const built = await buildSnapshot({
    passages,
    embed: (texts) => embedder.embedDocuments(texts),
    embedder: hashingIdentity(dimensions),
    corpusStats: stats,
    indexType: opts.indexType ?? "flat",
    indexBuilder: faissIndexBuilder,
    ...(opts.version ? { version: opts.version } : {}),
  });
  await publishSnapshot(store, { indexPrefix: INDEX_PREFIX, manifest: built.manifest, files: built.files });
  return built.manifest;
}

export function loaderFor(store: ObjectStore, refreshS = 3600, indexPrefix = INDEX_PREFIX): SnapshotLoader {
  return createSnapshotLoader({
    store,
    indexPrefix,
    refreshS,
    coldRetryS: 0,
    decodeIndex: decodeFaissSnapshotIndex,
  });
}

/** The query embedder a hashing snapshot needs (its corpus statistics weight query terms). */
export async function hashingEmbedderFor(manifest: SnapshotManifest): Promise<Embedder> {
  return createHashingEmbedder({ dimensions: manifest.embedder.dimensions, stats: manifest.corpus_stats as never });
}

export { createFsStore };
