// Small synthetic corpora (passages + seeded clustered vectors) built into snapshots with the real
// faiss builder, for snapshot/loader tests.
import { clusteredVectors, row } from "../../scripts/bench/vectors.ts";
import { faissIndexBuilder, type FaissVectorIndex } from "../../shared/adapters/faiss-index.ts";
import { type BuiltSnapshot, buildSnapshot } from "../../shared/core/build.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { type PublishResult, publishSnapshot } from "../../shared/core/publish.ts";
import type { EmbedderIdentity, Passage } from "../../shared/core/types.ts";

export interface Corpus {
  passages: Passage[];
  vectors: Float32Array[];
  identity: EmbedderIdentity;
}

export function makeCorpus(opts: { n: number; d: number; seed: number; label: string }): Corpus {
  const flat = clusteredVectors({
    n: opts.n,
    d: opts.d,
    seed: opts.seed,
    clusters: Math.max(2, Math.round(opts.n / 50)),
  });
  const passages: Passage[] = [];
  const vectors: Float32Array[] = [];
  for (let i = 0; i < opts.n; i++) {
    const docId = `${opts.label}-doc${Math.floor(i / 3)}`;
    const text = `${opts.label} passage ${i}: ünïcödé ✓`;
    passages.push({
      id: `${docId}#${i % 3}`,
      docId,
      text,
      source: `corpus/${docId}.md`,
      metadata: { i, label: opts.label },
      start: 0,
      end: text.length,
    });
    vectors.push(row(flat, opts.d, i));
  }
  return {
    passages,
    vectors,
    identity: { kind: "hashing", model: "synthetic-test", dimensions: opts.d, normalized: true },
  };
}

export function queryVectors(n: number, d: number, seed: number): Float32Array[] {
  const flat = clusteredVectors({ n, d, seed, clusters: 8 });
  return Array.from({ length: n }, (_, i) => row(flat, d, i));
}

export async function buildCorpusSnapshot(
  corpus: Corpus,
  opts: { indexType?: string; version?: string; now?: Date; sparse?: boolean } = {},
): Promise<BuiltSnapshot<FaissVectorIndex>> {
  return buildSnapshot({
    sparse: opts.sparse,
    passages: corpus.passages,
    vectors: corpus.vectors,
    embedder: corpus.identity,
    indexType: opts.indexType ?? "flat",
    indexBuilder: faissIndexBuilder,
    version: opts.version,
    now: opts.now,
    sources: [{ key: "corpus/all.jsonl", etag: '"synthetic"' }],
    report: { skipped: [] },
  });
}

export async function publishCorpus(
  store: ObjectStore,
  indexPrefix: string,
  corpus: Corpus,
  opts: { indexType?: string; version?: string; now?: Date; sparse?: boolean } = {},
): Promise<{ built: BuiltSnapshot<FaissVectorIndex>; published: PublishResult }> {
  const built = await buildCorpusSnapshot(corpus, opts);
  const published = await publishSnapshot(store, { indexPrefix, manifest: built.manifest, files: built.files });
  return { built, published };
}
