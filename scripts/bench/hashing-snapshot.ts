// One way for benchmarks to stand up a searchable snapshot: hashing-embed the passages, build a flat
// index through the service's own build path, and publish it to the given store.
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { computeHashingStats, createHashingEmbedder, hashingIdentity } from "../../shared/adapters/hash-embedder.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { publishSnapshot } from "../../shared/core/publish.ts";
import type { Passage } from "../../shared/core/types.ts";

export async function publishHashingSnapshot(
  store: ObjectStore,
  passages: Passage[],
  opts: { dimensions: number; indexPrefix?: string; indexType?: string },
): Promise<{ version: string; bytes: number }> {
  const embedder = createHashingEmbedder({ dimensions: opts.dimensions });
  const built = await buildSnapshot({
    passages,
    embed: (texts) => embedder.embedDocuments(texts),
    embedder: hashingIdentity(opts.dimensions),
    corpusStats: computeHashingStats(
      passages.map((p) => p.text),
      opts.dimensions,
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
