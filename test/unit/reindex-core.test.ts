// The reindex core on the filesystem store (real compare-and-swap of the pointer), the hashing
// embedder behind a counting wrapper, and the real faiss builder: incremental embedding through the
// cache, idempotence, bad input reporting, failures and deadlines that leave the pointer alone,
// and two reindexers racing for the pointer.
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { computeHashingStats, createHashingEmbedder, hashingIdentity } from "../../shared/adapters/hash-embedder.ts";
import { attachReindexToS3rver, type LocalInvocationContext } from "../../shared/adapters/s3rver-events.ts";
import { chunkDocument } from "../../shared/core/chunking.ts";
import {
  cacheBundleKey,
  createEmbeddingCache,
  decodeVectorBundle,
  embedThroughCache,
  encodeVectorBundle,
  textSha256,
} from "../../shared/core/embedding-cache.ts";
import {
  EmbedderUnavailableError,
  PreconditionFailedError,
  StoreUnavailableError,
  ValidationError,
} from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { listSnapshotVersions, readPointer } from "../../shared/core/publish.ts";
import {
  corpusChanges,
  createCorpusReadCache,
  decodeS3EventKey,
  type ReindexOptions,
  ReindexTimeoutError,
  reindexCorpus,
  type S3EventLike,
  sameSources,
} from "../../shared/core/reindex.ts";
import { pointerKey } from "../../shared/core/snapshot.ts";
import { captureLog, countingEmbedder, DIMS, doc, jsonl, liveSnapshot, reindexOptions } from "../helpers/reindex.ts";

let root: string;
let store: ObjectStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "reindex-"));
  store = createFsStore(root);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const CHUNK = { maxTokens: 48, overlap: 8 };
const passagesOf = (d: { id: string; text: string }) => chunkDocument(d, CHUNK);

async function seedCorpus(s: ObjectStore = store) {
  const a = [doc("a1", "weather", 6), doc("a2", "geology"), doc("a3", "astronomy", 5)];
  const b = [doc("b1", "harbor"), doc("b2", "volcano", 8)];
  await s.put("corpus/a.jsonl", jsonl(a));
  await s.put("corpus/b.jsonl", jsonl(b));
  await s.put("corpus/guide.md", "# Field guide\n\nGlaciers carve fjords. Lagoons form behind reefs.\n");
  return { a, b };
}

async function keysUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

describe("embedding cache bundles", () => {
  const identity = hashingIdentity(16);
  const v = (seed: number) => Float32Array.from({ length: 16 }, (_, i) => Math.sin(seed + i));

  it("round-trips hash → vector entries and refuses other identities and damaged bytes", () => {
    const entries: Array<[string, Float32Array]> = [
      [textSha256("one"), v(1)],
      [textSha256("two"), v(2)],
    ];
    const bytes = encodeVectorBundle(identity, entries);
    const back = decodeVectorBundle(bytes, identity);
    expect([...back.keys()]).toEqual(entries.map((e) => e[0]));
    expect([...back.get(textSha256("two"))!]).toEqual([...v(2)]);
    // Unaligned copies (as a download buffer may be) read the same.
    const shifted = new Uint8Array(bytes.length + 1).subarray(1);
    shifted.set(bytes);
    expect([...decodeVectorBundle(shifted, identity).get(textSha256("one"))!]).toEqual([...v(1)]);
    expect(() => decodeVectorBundle(bytes, hashingIdentity(32))).toThrow(ValidationError);
    expect(() => decodeVectorBundle(bytes, { ...identity, model: "other" })).toThrow(/another embedder/);
    expect(() => decodeVectorBundle(bytes.subarray(0, bytes.length - 4), identity)).toThrow(/size/);
    expect(() => decodeVectorBundle(new TextEncoder().encode("{}"), identity)).toThrow(/magic/);
  });

  it("embeds only missing texts, drops stale entries, and reads a corrupt bundle as a miss", async () => {
    const embedder = countingEmbedder(16);
    const { log, lines } = captureLog();
    const cache = createEmbeddingCache({ store, prefix: "cache/", identity: embedder.identity, log });
    const first = await embedThroughCache({
      cache,
      corpusKey: "corpus/x.jsonl",
      texts: ["a b", "c d", "a b"],
      embedder,
    });
    expect(first).toMatchObject({ embedded: 2, cached: 0, saved: true });
    const again = await embedThroughCache({ cache, corpusKey: "corpus/x.jsonl", texts: ["a b", "c d"], embedder });
    expect(again).toMatchObject({ embedded: 0, cached: 2, saved: false });
    const changed = await embedThroughCache({ cache, corpusKey: "corpus/x.jsonl", texts: ["a b", "e f"], embedder });
    expect(changed).toMatchObject({ embedded: 1, cached: 1, saved: true });
    expect(embedder.embeddedTexts).toEqual(["a b", "c d", "e f"]);
    const stored = await cache.load("corpus/x.jsonl");
    expect([...stored.keys()].sort()).toEqual([textSha256("a b"), textSha256("e f")].sort());

    const key = cacheBundleKey("cache/", embedder.identity, "corpus/x.jsonl");
    await store.put(key, new Uint8Array([1, 2, 3]));
    expect((await cache.load("corpus/x.jsonl")).size).toBe(0);
    expect(lines.some((l) => l.level === "warn" && l.msg.includes("bundle ignored"))).toBe(true);
  });

  it("saves what was embedded before a failure", async () => {
    const embedder = countingEmbedder(16);
    embedder.failAfter = 2;
    const cache = createEmbeddingCache({ store, prefix: "cache/", identity: embedder.identity });
    const texts = ["one", "two", "three", "four"];
    await expect(
      embedThroughCache({ cache, corpusKey: "k.jsonl", texts, embedder, batchSize: 1 }),
    ).rejects.toBeInstanceOf(EmbedderUnavailableError);
    expect((await cache.load("k.jsonl")).size).toBe(2);
    embedder.failAfter = null;
    const r = await embedThroughCache({ cache, corpusKey: "k.jsonl", texts, embedder, batchSize: 1 });
    expect(r).toMatchObject({ embedded: 2, cached: 2 });
  });
});

describe("reindexCorpus", () => {
  it("publishes every document with sources, corpus statistics and build info", async () => {
    const { a, b } = await seedCorpus();
    const embedder = countingEmbedder();
    const r = await reindexCorpus(reindexOptions(store, embedder));
    expect(r.status).toBe("published");
    const live = (await liveSnapshot(store))!;
    expect(live.version).toBe(r.version);
    expect(live.docIds).toEqual(
      [...a, ...b]
        .map((d) => d.id)
        .concat("guide.md")
        .sort(),
    );
    const expectedPassages = [...a, ...b].reduce((n, d) => n + passagesOf(d).length, 0) + 1;
    expect(live.passageIds.length).toBe(expectedPassages);
    expect(r.counts).toEqual({ objects: 3, documents: 6, passages: expectedPassages, skipped: 0 });
    const listing: Array<{ key: string; etag: string }> = [];
    for await (const o of store.list("corpus/")) listing.push({ key: o.key, etag: o.etag });
    expect(live.manifest.sources).toEqual(listing);
    // Document frequencies over exactly the published passages (what the query side weights terms by).
    expect(live.manifest.corpus_stats).toEqual(computeHashingStats(live.passageTexts, DIMS));
    expect(live.manifest.corpus_stats).toMatchObject({ n: expectedPassages });
    expect(live.manifest.build).toMatchObject({
      builder: "reindex",
      chunking: { max_tokens: 48, overlap: 8 },
      objects: 3,
      embedding: { embedded: expectedPassages, cached: 0, texts: expectedPassages },
    });
    expect(live.manifest.build!.embedding.calls).toBe(embedder.usage().calls);
    expect(embedder.embeddedTexts.length).toBe(expectedPassages);
  });

  it("is a no-op when the corpus, embedder and chunking are unchanged; rebuilds when chunking changes", async () => {
    await seedCorpus();
    const embedder = countingEmbedder();
    const first = await reindexCorpus(reindexOptions(store, embedder));
    const calls = embedder.usage().calls;
    const again = await reindexCorpus(reindexOptions(store, embedder));
    expect(again).toMatchObject({ status: "unchanged", version: first.version });
    expect(embedder.usage().calls).toBe(calls);
    expect(await listSnapshotVersions(store, "index/")).toEqual([first.version]);

    const rechunked = await reindexCorpus(reindexOptions(store, embedder, { chunking: { maxTokens: 64, overlap: 8 } }));
    expect(rechunked.status).toBe("published");
    expect(rechunked.version).not.toBe(first.version);
  });

  it("publishes the BM25 index with the snapshot, and a reindex adds it to a snapshot that lacks it", async () => {
    await seedCorpus();
    const embedder = countingEmbedder();
    const old = await reindexCorpus(reindexOptions(store, embedder, { sparseIndex: false }));
    expect(old.status).toBe("published");
    const before = (await liveSnapshot(store))!;
    expect(before.manifest.sparse).toBeUndefined();
    expect(before.manifest.files["sparse.bin"]).toBeUndefined();
    const calls = embedder.usage().calls;

    // Same corpus, embedder and chunking: not a no-op, because the live snapshot has no sparse index.
    const upgraded = await reindexCorpus(reindexOptions(store, embedder));
    expect(upgraded.status).toBe("published");
    const after = (await liveSnapshot(store))!;
    expect(after.manifest.sparse).toMatchObject({
      format: "bm25-v1",
      file: "sparse.bin",
      passages: after.passageIds.length,
      analyzer: { name: "lucene-english", stemmer: "porter" },
      params: { k1: 0.9, b: 0.4 },
    });
    expect(after.manifest.files["sparse.bin"].bytes).toBe(after.manifest.sparse!.bytes);
    // The vectors came from the embedding cache: adding the sparse index cost no embedding calls.
    expect(embedder.usage().calls).toBe(calls);
    expect((await reindexCorpus(reindexOptions(store, embedder))).status).toBe("unchanged");
  });

  it("INDEX_SHARDS: publishes index-<i>.faiss, is unchanged on a rerun, and rebuilds (from the cache) when it changes", async () => {
    await seedCorpus();
    const embedder = countingEmbedder();
    const sharded = await reindexCorpus(reindexOptions(store, embedder, { indexShards: 3 }));
    expect(sharded.status).toBe("published");
    const live = (await liveSnapshot(store))!;
    expect(live.manifest.format_version).toBe(3);
    expect(live.manifest.index_shards?.map((s) => s.file)).toEqual(["index-0.faiss", "index-1.faiss", "index-2.faiss"]);
    expect(live.manifest.index_shards?.reduce((a, s) => a + s.count, 0)).toBe(live.passageIds.length);
    const calls = embedder.usage().calls;
    expect((await reindexCorpus(reindexOptions(store, embedder, { indexShards: 3 }))).status).toBe("unchanged");
    const single = await reindexCorpus(reindexOptions(store, embedder, { indexShards: 1 }));
    expect(single.status).toBe("published");
    const after = (await liveSnapshot(store))!;
    expect(after.manifest.index_shards).toBeUndefined();
    expect(after.manifest.format_version).toBe(2);
    expect(after.manifest.files["index.faiss"]).toBeDefined();
    expect(embedder.usage().calls).toBe(calls);
  });

  it("builds with INDEX_PARAMS, records them, and rebuilds (from the cache) when they change", async () => {
    await seedCorpus();
    const embedder = countingEmbedder();
    const params = { hnswM: 8, efConstruction: 24, efSearch: 40 };
    const opts = (indexParams?: Record<string, number>) =>
      reindexOptions(store, embedder, { indexType: "hnsw", indexParams });
    expect((await reindexCorpus(opts(params))).status).toBe("published");
    const live = (await liveSnapshot(store))!;
    expect(live.manifest.index_params).toMatchObject({ factory: "HNSW8,Flat", efConstruction: 24, efSearch: 40 });
    expect(live.manifest.build!.index_params).toEqual(params);
    const calls = embedder.usage().calls;
    // The same parameters in another order: nothing to do.
    const same = await reindexCorpus(opts({ efSearch: 40, efConstruction: 24, hnswM: 8 }));
    expect(same).toMatchObject({ status: "unchanged", version: live.version });
    // Changed or removed parameters rebuild the index; the vectors come from the cache.
    const changed = await reindexCorpus(opts({ ...params, efSearch: 64 }));
    expect(changed.status).toBe("published");
    expect((await liveSnapshot(store))!.manifest.index_params).toMatchObject({ efSearch: 64 });
    const unset = await reindexCorpus(opts(undefined));
    expect(unset.status).toBe("published");
    expect((await liveSnapshot(store))!.manifest.build!.index_params).toBeUndefined();
    expect((await liveSnapshot(store))!.manifest.index_params).toMatchObject({ factory: "HNSW32,Flat", efSearch: 128 });
    expect(embedder.usage().calls).toBe(calls);
  });

  it("a warm instance's read cache skips unchanged objects, and is emptied when chunking changes", async () => {
    const { b } = await seedCorpus();
    const reads: string[] = [];
    const bundleReads: string[] = [];
    const counting: ObjectStore = {
      ...store,
      getStream: (key, o) => {
        reads.push(key);
        return store.getStream(key, o);
      },
      get: (key, o) => {
        if (key.startsWith("cache/")) bundleReads.push(key);
        return store.get(key, o);
      },
    };
    const readCache = createCorpusReadCache();
    const embedder = countingEmbedder();
    const run = (over: Partial<ReindexOptions> = {}) =>
      reindexCorpus(reindexOptions(counting, embedder, { readCache, ...over }));
    await run();
    expect(reads.sort()).toEqual(["corpus/a.jsonl", "corpus/b.jsonl", "corpus/guide.md"]);
    expect(readCache.stats().objects).toBe(3);

    // One object changes: only it (and its embedding bundle) is read again; the others' vectors
    // are still in memory. The snapshot equals a build from scratch.
    reads.length = 0;
    bundleReads.length = 0;
    await store.put("corpus/b.jsonl", jsonl([...b, doc("b3", "tundra", 4)]));
    expect((await run()).status).toBe("published");
    expect(reads).toEqual(["corpus/b.jsonl"]);
    expect(bundleReads).toHaveLength(1);
    const fresh = mkdtempSync(join(tmpdir(), "reindex-fresh-"));
    try {
      const other = createFsStore(fresh);
      for await (const o of store.list("corpus/")) await other.put(o.key, (await store.get(o.key))!.body);
      await reindexCorpus(reindexOptions(other, countingEmbedder()));
      const [warm, scratch] = [(await liveSnapshot(store))!, (await liveSnapshot(other))!];
      expect(warm.passageIds).toEqual(scratch.passageIds);
      expect(warm.passageTexts).toEqual(scratch.passageTexts);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }

    // A deleted object leaves the cache; a chunking change empties it.
    reads.length = 0;
    await store.delete("corpus/guide.md");
    expect((await run()).status).toBe("published");
    expect(reads).toEqual([]);
    expect(readCache.stats().objects).toBe(2);
    expect((await run({ chunking: { maxTokens: 64, overlap: 8 } })).status).toBe("published");
    expect(reads.sort()).toEqual(["corpus/a.jsonl", "corpus/b.jsonl"]);
    // Another embedder: the vectors held no longer apply, so everything is read again.
    reads.length = 0;
    const other = countingEmbedder(DIMS * 2);
    expect(
      (await reindexCorpus(reindexOptions(counting, other, { readCache, chunking: { maxTokens: 64, overlap: 8 } })))
        .status,
    ).toBe("published");
    expect(reads.sort()).toEqual(["corpus/a.jsonl", "corpus/b.jsonl"]);
  });

  it("the read cache holds at most its byte budget, dropping the least recently used", async () => {
    await seedCorpus();
    const readCache = createCorpusReadCache(1); // smaller than any object: nothing is kept
    await reindexCorpus(reindexOptions(store, countingEmbedder(), { readCache }));
    expect(readCache.stats()).toEqual({ objects: 0, bytes: 0 });
    const roomy = createCorpusReadCache();
    await reindexCorpus(reindexOptions(store, countingEmbedder(), { readCache: roomy, indexType: "hnsw" }));
    const { bytes } = roomy.stats();
    const tight = createCorpusReadCache(bytes - 1); // one object must go
    await reindexCorpus(reindexOptions(store, countingEmbedder(), { readCache: tight, indexType: "flat" }));
    expect(tight.stats().objects).toBe(2);
    expect(tight.stats().bytes).toBeLessThanOrEqual(bytes - 1);
  });

  it("re-embeds only the passages of the changed document, and drops a removed object's passages", async () => {
    const { a, b } = await seedCorpus();
    const embedder = countingEmbedder();
    await reindexCorpus(reindexOptions(store, embedder));
    embedder.embeddedTexts.length = 0;

    const changed = { id: "b2", text: "Completely new text about comets and auroras seen from the lagoon." };
    await store.put("corpus/b.jsonl", jsonl([b[0], changed]));
    const r = await reindexCorpus(reindexOptions(store, embedder));
    const newPassages = passagesOf(changed).map((p) => p.text);
    expect(embedder.embeddedTexts).toEqual(newPassages);
    expect(r.embedding.embedded).toBe(newPassages.length);
    expect(r.embedding.cached).toBe(r.counts.passages - newPassages.length);
    expect((await liveSnapshot(store))!.manifest.build!.embedding.embedded).toBe(newPassages.length);

    await store.delete("corpus/a.jsonl");
    embedder.embeddedTexts.length = 0;
    const removed = await reindexCorpus(reindexOptions(store, embedder));
    expect(removed.status).toBe("published");
    expect(embedder.embeddedTexts).toEqual([]);
    const live = (await liveSnapshot(store))!;
    expect(live.docIds).toEqual(["b1", "b2", "guide.md"]);
    expect(live.passageIds.some((id) => a.some((d) => id.startsWith(`${d.id}#`)))).toBe(false);
    // The removed object's cache bundle is pruned; the others stay.
    const bundles = await keysUnder("cache/embeddings/");
    expect(bundles).not.toContain(cacheBundleKey("cache/embeddings/", embedder.identity, "corpus/a.jsonl"));
    expect(bundles).toContain(cacheBundleKey("cache/embeddings/", embedder.identity, "corpus/b.jsonl"));
  });

  it("skips and reports malformed lines, empty texts, unsupported and empty files, duplicate ids; indexes the rest", async () => {
    await store.put(
      "corpus/rows.jsonl",
      [
        JSON.stringify(doc("r1", "weather")),
        '{"id": "r2", "text": "unterminated',
        JSON.stringify({ id: "r3", text: "   " }),
        "[1, 2]",
        JSON.stringify(doc("r4", "geology")),
      ].join("\n"),
    );
    await store.put("corpus/more.jsonl", jsonl([doc("r1", "duplicate"), doc("m1", "harbor")]));
    await store.put("corpus/image.png", new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    await store.put("corpus/empty.md", "  \n");
    await store.put("corpus/latin1.txt", new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b]));
    const { log, lines } = captureLog();
    const r = await reindexCorpus(reindexOptions(store, countingEmbedder(), { log }));
    expect(r.status).toBe("published");
    const live = (await liveSnapshot(store))!;
    expect(live.docIds).toEqual(["m1", "r1", "r4"]);
    const report = live.manifest.report!.skipped;
    expect(report).toEqual(r.skipped);
    const find = (key: string, line?: number) => report.filter((s) => s.key === key && s.line === line);
    expect(find("corpus/rows.jsonl", 2)[0].reason).toMatch(/malformed JSON/);
    expect(find("corpus/rows.jsonl", 3)[0].reason).toMatch(/empty "text"/);
    expect(find("corpus/rows.jsonl", 4)[0].reason).toMatch(/expected a JSON object/);
    expect(find("corpus/image.png")[0].reason).toMatch(/unsupported file type \.png/);
    expect(find("corpus/empty.md")[0].reason).toMatch(/empty file/);
    expect(find("corpus/latin1.txt")[0].reason).toMatch(/not valid UTF-8/);
    // Objects are read in key order: the first definition of an id wins.
    expect(find("corpus/rows.jsonl")[0].reason).toMatch(/duplicate id "r1": already defined in corpus\/more\.jsonl/);
    expect(report).toHaveLength(7);
    // Skipped inputs are logged too, with their key and line.
    expect(lines.filter((l) => l.msg === "input skipped").map((l) => l.data)).toEqual(report);
    // Every listed object is a source (bad files included: re-uploading them changes the listing).
    expect(live.manifest.sources!.map((s) => s.key)).toHaveLength(5);
  });

  it("skips an unreadable object (not recorded as a source, so the next run retries it); refuses to publish when most are unreadable", async () => {
    await seedCorpus();
    const flaky = Object.create(store) as ObjectStore;
    let failing = new Set(["corpus/b.jsonl"]);
    flaky.getStream = async (key, o) => {
      if (failing.has(key)) throw new StoreUnavailableError(`GET ${key} failed: socket hang up`);
      return store.getStream(key, o);
    };
    const r = await reindexCorpus(reindexOptions(flaky, countingEmbedder(), { sleep: async () => {} }));
    expect(r.status).toBe("published");
    expect(r.skipped).toEqual([
      { key: "corpus/b.jsonl", reason: expect.stringMatching(/^unreadable: .*socket hang up/) },
    ]);
    const live = (await liveSnapshot(store))!;
    expect(live.docIds).toEqual(["a1", "a2", "a3", "guide.md"]);
    expect(live.manifest.sources!.map((s) => s.key)).toEqual(["corpus/a.jsonl", "corpus/guide.md"]);
    // Once readable, the next run (same listing) is not mistaken for a no-op.
    failing = new Set();
    const next = await reindexCorpus(reindexOptions(flaky, countingEmbedder()));
    expect(next.status).toBe("published");
    expect((await liveSnapshot(store))!.docIds).toContain("b2");

    await store.put("corpus/c.jsonl", jsonl([doc("c1", "reef")]));
    failing = new Set(["corpus/a.jsonl", "corpus/b.jsonl", "corpus/c.jsonl"]);
    const before = await readPointer(store, "index/");
    await expect(
      reindexCorpus(reindexOptions(flaky, countingEmbedder(), { sleep: async () => {} })),
    ).rejects.toBeInstanceOf(StoreUnavailableError);
    expect((await readPointer(store, "index/"))!.etag).toBe(before!.etag);
  });

  it("leaves the pointer alone when the embedder fails mid-build, and resumes from the cache", async () => {
    await seedCorpus();
    const embedder = countingEmbedder();
    const first = await reindexCorpus(reindexOptions(store, embedder));
    await store.put("corpus/c.jsonl", jsonl([doc("c1", "reef", 8), doc("c2", "tundra", 8), doc("c3", "meteor", 8)]));
    embedder.embeddedTexts.length = 0;
    embedder.failAfter = 5;
    const { log, lines } = captureLog();
    await expect(reindexCorpus(reindexOptions(store, embedder, { log, embedBatchSize: 2 }))).rejects.toBeInstanceOf(
      EmbedderUnavailableError,
    );
    expect((await readPointer(store, "index/"))!.pointer.version).toBe(first.version);
    const failure = lines.find((l) => l.level === "error" && l.msg.includes("previous snapshot stays live"));
    expect(failure?.data).toMatchObject({ stage: "reading and embedding the corpus" });
    expect(JSON.stringify(failure?.data?.cause)).toContain("ECONNREFUSED");
    const embeddedBefore = [...embedder.embeddedTexts];
    expect(embeddedBefore).toHaveLength(4);

    embedder.failAfter = null;
    embedder.embeddedTexts.length = 0;
    const r = await reindexCorpus(reindexOptions(store, embedder));
    expect(r.status).toBe("published");
    const cPassages = [doc("c1", "reef", 8), doc("c2", "tundra", 8), doc("c3", "meteor", 8)].flatMap((d) =>
      passagesOf(d).map((p) => p.text),
    );
    // Nothing is embedded twice: the failed run's work came from the cache.
    expect([...embeddedBefore, ...embedder.embeddedTexts].sort()).toEqual([...cPassages].sort());
    expect((await liveSnapshot(store))!.docIds).toContain("c3");
  });

  it("stops cleanly before the deadline (pointer unchanged), and the next run completes", async () => {
    await seedCorpus();
    const embedder = countingEmbedder();
    const { log, lines } = captureLog();
    const err = await reindexCorpus(
      reindexOptions(store, embedder, {
        log,
        embedBatchSize: 3,
        reserveMs: 5000,
        // Time "runs out" once 6 passages are embedded.
        remainingTimeMs: () => (embedder.embeddedTexts.length >= 6 ? 4000 : 60_000),
      }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(ReindexTimeoutError);
    expect(err.message).toMatch(/4000 ms left/);
    expect(await readPointer(store, "index/")).toBeNull();
    expect(lines.some((l) => l.level === "error" && l.data?.stage === "reading and embedding the corpus")).toBe(true);
    const done = embedder.embeddedTexts.length;
    expect(done).toBe(6);

    const r = await reindexCorpus(reindexOptions(store, embedder, { remainingTimeMs: () => 60_000 }));
    expect(r.status).toBe("published");
    expect(r.embedding.embedded).toBe(r.counts.passages - done);
    expect(r.embedding.cached).toBe(done);
    expect(new Set(embedder.embeddedTexts).size).toBe(embedder.embeddedTexts.length);
  });

  it("builds the same index when vectors do not fit the memory budget (re-read from the cache)", async () => {
    await seedCorpus();
    const other = createFsStore(join(root, "other"));
    await seedCorpus(other);
    const e1 = countingEmbedder();
    const e2 = countingEmbedder();
    await reindexCorpus(reindexOptions(store, e1));
    const r = await reindexCorpus(reindexOptions(other, e2, { vectorMemoryBytes: 0 }));
    expect(e2.embeddedTexts.length).toBe(r.counts.passages);
    const [m1, m2] = [(await liveSnapshot(store))!.manifest, (await liveSnapshot(other))!.manifest];
    expect(m2.files["index.faiss"].sha256).toBe(m1.files["index.faiss"].sha256);
    expect(m2.files["passages.bin"].sha256).toBe(m1.files["passages.bin"].sha256);
  });

  it("publishes an empty snapshot when the corpus is emptied, but nothing for an empty corpus with no snapshot", async () => {
    const embedder = countingEmbedder();
    expect(await reindexCorpus(reindexOptions(store, embedder))).toMatchObject({ status: "unchanged", version: null });
    expect(await readPointer(store, "index/")).toBeNull();
    await store.put("corpus/only.md", "# One\n\nA single note about glaciers.");
    await reindexCorpus(reindexOptions(store, embedder));
    await store.delete("corpus/only.md");
    const r = await reindexCorpus(reindexOptions(store, embedder));
    expect(r).toMatchObject({ status: "published", counts: { passages: 0, documents: 0 } });
    expect((await liveSnapshot(store))!.docIds).toEqual([]);
  });
});

describe("two reindexers racing for the pointer (fs store compare-and-swap)", () => {
  /** A view of the store whose first snapshot upload (the start of publishing) waits until released. */
  function gated(inner: ObjectStore) {
    let reached!: () => void;
    let release!: () => void;
    const atPublish = new Promise<void>((r) => (reached = r));
    const released = new Promise<void>((r) => (release = r));
    let armed = true;
    const s = Object.create(inner) as ObjectStore;
    s.put = async (key, body, o) => {
      if (armed && key.startsWith("index/v/")) {
        armed = false;
        reached();
        await released;
      }
      return inner.put(key, body, o);
    };
    return { store: s, atPublish, release };
  }

  it("the loser finds the winner built from the current listing and stops", async () => {
    await seedCorpus();
    await reindexCorpus(reindexOptions(store, countingEmbedder()));
    await store.put("corpus/c.jsonl", jsonl([doc("c1", "reef")]));
    const g = gated(store);
    const { log, lines } = captureLog();
    const slow = reindexCorpus(reindexOptions(g.store, countingEmbedder(), { log }));
    await g.atPublish;
    // While A waits to publish, another object arrives and B indexes the newer state.
    await store.put("corpus/d.md", "# Delta\n\nRiver deltas spread into fans of sediment.");
    const fast = await reindexCorpus(reindexOptions(store, countingEmbedder()));
    expect(fast.status).toBe("published");
    g.release();
    const a = await slow;
    expect(a).toMatchObject({ status: "superseded", attempts: 2, version: fast.version });
    expect(lines.some((l) => l.level === "warn" && l.msg.includes("pointer changed"))).toBe(true);
    const live = (await liveSnapshot(store))!;
    expect(live.version).toBe(fast.version);
    expect(live.docIds).toEqual(["a1", "a2", "a3", "b1", "b2", "c1", "d.md", "guide.md"]);
  });

  it("the loser rebuilds when the winner missed a newer object, and the final snapshot is complete", async () => {
    await seedCorpus();
    await reindexCorpus(reindexOptions(store, countingEmbedder()));
    await store.put("corpus/c.jsonl", jsonl([doc("c1", "reef")]));
    const g = gated(store);
    const embedder = countingEmbedder();
    const slow = reindexCorpus(reindexOptions(g.store, embedder));
    await g.atPublish;
    // B indexes the same state as A and wins the flip; then e lands, after B listed.
    const fast = await reindexCorpus(reindexOptions(store, countingEmbedder()));
    await store.put("corpus/e.md", "# Eclipse\n\nA solar eclipse darkens the plateau at noon.");
    embedder.embeddedTexts.length = 0;
    g.release();
    const a = await slow;
    expect(a).toMatchObject({ status: "published", attempts: 2, previousVersion: fast.version });
    // The retry re-read only what changed: e.md is the one new passage embedded.
    expect(embedder.embeddedTexts).toEqual(["# Eclipse\n\nA solar eclipse darkens the plateau at noon."]);
    const live = (await liveSnapshot(store))!;
    expect(live.version).toBe(a.version);
    expect(live.docIds).toEqual(["a1", "a2", "a3", "b1", "b2", "c1", "e.md", "guide.md"]);
  });

  it("several runs started between uploads, racing freely, end with every document live", async () => {
    await seedCorpus();
    const runs: Array<ReturnType<typeof reindexCorpus>> = [];
    for (let i = 0; i < 4; i++) {
      await store.put(`corpus/x${i}.jsonl`, jsonl([doc(`x${i}`, "reef")]));
      runs.push(reindexCorpus(reindexOptions(store, countingEmbedder())));
    }
    const results = await Promise.all(runs);
    const live = (await liveSnapshot(store))!;
    expect(live.docIds).toEqual(["a1", "a2", "a3", "b1", "b2", "guide.md", "x0", "x1", "x2", "x3"]);
    expect(results.map((r) => r.version)).toContain(live.version);
    const listing: Array<{ key: string; etag: string }> = [];
    for await (const o of store.list("corpus/")) listing.push({ key: o.key, etag: o.etag });
    expect(live.manifest.sources).toEqual(listing);
  });

  it("gives up after maxAttempts lost flips without touching the winner's pointer", async () => {
    await seedCorpus();
    await reindexCorpus(reindexOptions(store, countingEmbedder()));
    await store.put("corpus/c.jsonl", jsonl([doc("c1", "reef")]));
    // A store where somebody always flips the pointer just before us.
    const hostile = Object.create(store) as ObjectStore;
    let n = 0;
    hostile.put = async (key, body, o) => {
      if (key === pointerKey("index/") && o?.ifMatch) {
        const cur = (await store.get(key))!;
        // Same pointer, different bytes (ETags are content hashes): the ETag we expected is gone.
        await store.put(key, `${new TextDecoder().decode(cur.body)} `);
        n++;
      }
      return store.put(key, body, o);
    };
    const livePointer = async () => (await readPointer(store, "index/"))!.pointer.version;
    const before = await livePointer();
    await expect(reindexCorpus(reindexOptions(hostile, countingEmbedder(), { maxAttempts: 2 }))).rejects.toBeInstanceOf(
      PreconditionFailedError,
    );
    expect(n).toBe(2);
    expect(await livePointer()).toBe(before);
  });
});

describe("S3 events", () => {
  const rec = (eventName: string, key: string) => ({ eventName, s3: { object: { key } } });

  it("keeps created/removed corpus objects, decodes keys, ignores the reindex's own writes", () => {
    const event: S3EventLike = {
      Records: [
        rec("ObjectCreated:Put", "corpus/my+notes%21.md"),
        rec("ObjectRemoved:Delete", "corpus/old.jsonl"),
        rec("ObjectCreated:Put", "index/LATEST.json"),
        rec("ObjectCreated:Put", "cache/embeddings/v1/x.vec"),
        rec("ObjectRestore:Completed", "corpus/a.jsonl"),
        rec("ObjectCreated:Put", "corpus/folder/"),
      ],
    };
    expect(corpusChanges(event, { corpusPrefix: "corpus/" })).toEqual([
      { key: "corpus/my notes!.md", kind: "created", eventName: "ObjectCreated:Put" },
      { key: "corpus/old.jsonl", kind: "removed", eventName: "ObjectRemoved:Delete" },
    ]);
    expect(
      corpusChanges(
        { Records: [rec("ObjectCreated:Put", "index/v/x")] },
        { corpusPrefix: "", ignorePrefixes: ["index/"] },
      ),
    ).toEqual([]);
    expect(corpusChanges({}, { corpusPrefix: "corpus/" })).toEqual([]);
    expect(decodeS3EventKey("bad%zz")).toBe("bad%zz");
    expect(sameSources([{ key: "a", etag: '"x"' }], [{ key: "a", etag: "x" }])).toBe(true);
    expect(sameSources([{ key: "a", etag: '"x"' }], [{ key: "a", etag: '"y"' }])).toBe(false);
  });

  it("runs one invocation at a time and coalesces events that arrive during a run", async () => {
    const emitter = new EventEmitter();
    const seen: S3EventLike[] = [];
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    const binding = attachReindexToS3rver(emitter as never, {
      corpusPrefix: "corpus/",
      run: async (e) => {
        seen.push(e);
        await gate;
      },
    });
    emitter.emit("event", { Records: [rec("ObjectCreated:Put", "corpus/a.md")] });
    emitter.emit("event", { Records: [rec("ObjectCreated:Put", "corpus/b.md")] });
    emitter.emit("event", { Records: [rec("ObjectCreated:Put", "index/LATEST.json")] });
    emitter.emit("event", { Records: [rec("ObjectRemoved:Delete", "corpus/c.md")] });
    const first = gate;
    gate = Promise.resolve();
    release();
    await first;
    await binding.idle();
    expect(seen.map((e) => e.Records!.map((r) => r.s3!.object!.key))).toEqual([
      ["corpus/a.md"],
      ["corpus/b.md", "corpus/c.md"],
    ]);
    expect(binding.runs).toBe(2);
    binding.detach();
    emitter.emit("event", { Records: [rec("ObjectCreated:Put", "corpus/z.md")] });
    await binding.idle();
    expect(seen).toHaveLength(2);
  });

  it("retries a failed invocation like Lambda's async retries, with a fresh time limit each time", async () => {
    const emitter = new EventEmitter();
    const remaining: number[] = [];
    let calls = 0;
    const binding = attachReindexToS3rver(emitter as never, {
      retries: 2,
      retryDelayMs: 0,
      timeoutMs: 60_000,
      handler: async (_e: S3EventLike, ctx: LocalInvocationContext) => {
        remaining.push(ctx.getRemainingTimeInMillis());
        if (++calls < 3) throw new Error("transient");
        return "ok";
      },
    });
    emitter.emit("event", { Records: [rec("ObjectCreated:Put", "corpus/a.md")] });
    await binding.idle();
    expect(calls).toBe(3);
    expect(binding).toMatchObject({ runs: 1, failures: 0, lastResult: "ok" });
    expect(remaining.every((ms) => ms > 50_000 && ms <= 60_000)).toBe(true);
  });
});

// Keep the plain hashing embedder import meaningful: the counting wrapper must not change vectors.
it("the counting embedder returns the hashing embedder's vectors", async () => {
  const plain = createHashingEmbedder({ dimensions: DIMS });
  const counted = countingEmbedder();
  const [x] = await plain.embedDocuments(["glacier lagoon"]);
  const [y] = await counted.embedDocuments(["glacier lagoon"]);
  expect([...y]).toEqual([...x]);
});
