// One way for benchmarks to stand up a searchable snapshot: embed the passages (hashing, or any
// embedder), build a flat index through the service's own build path, and publish it to the store.
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { computeCorpusStats } from "../../shared/adapters/embedders.ts";
import { createHashingEmbedder } from "../../shared/adapters/hash-embedder.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import type { Embedder, ObjectStore } from "../../shared/core/ports.ts";
import { publishSnapshot } from "../../shared/core/publish.ts";
import type { Passage } from "../../shared/core/types.ts";

export async function publishHashingSnapshot(
  store: ObjectStore,
  passages: Passage[],
  opts: { dimensions: number; indexPrefix?: string; indexType?: string },
): Promise<{ version: string; bytes: number }> {
  return publishEmbeddedSnapshot(store, passages, {
    ...opts,
    embedder: createHashingEmbedder({ dimensions: opts.dimensions }),
  });
}

/** The same with any embedder (its corpus statistics computed as the reindex function does). */
export async function publishEmbeddedSnapshot(
  store: ObjectStore,
  passages: Passage[],
  opts: { embedder: Embedder; indexPrefix?: string; indexType?: string },
): Promise<{ version: string; bytes: number }> {
  const { embedder } = opts;
  const built = await buildSnapshot({
    passages,
    embed: (texts) => embedder.embedDocuments(texts),
    embedder: embedder.identity,
    corpusStats: computeCorpusStats(
      embedder.identity,
      passages.map((p) => p.text),
    ),
    indexType: opts.indexType ?? "flat",
    indexBuilder: faissIndexBuilder,
  });
  await publishSnapshot(store, {
    indexPrefix: opts.indexPrefix ?? "index/",
    manifest: built.manifest,
    files: built.files,
  });
  return {
    version: built.manifest.version,
    bytes: Object.values(built.manifest.files).reduce((a, f) => a + f.bytes, 0),
  };
}
