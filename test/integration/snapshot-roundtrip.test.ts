// Build → publish → load → search through a real S3 server (s3rver on loopback) and the
// filesystem store, with real faiss-node; hot swap under query load; corrupt and missing files.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  createFaissIndexSinkFactory,
  decodeFaissSnapshotIndex,
  nativeFlat,
} from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { IndexNotReadyError, PreconditionFailedError, StoreUnavailableError } from "../../shared/core/errors.ts";
import type { ObjectStore, VectorSearchResult } from "../../shared/core/ports.ts";
import { publishSnapshot, readPointer } from "../../shared/core/publish.ts";
import { createSnapshotLoader, type LogFn, type PassageTextsMode } from "../../shared/core/snapshot-loader.ts";
import { INDEX_FILE, PASSAGES_FILE, readPassages, SPARSE_FILE, snapshotFileKey } from "../../shared/core/snapshot.ts";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";
import { buildCorpusSnapshot, makeCorpus, publishCorpus, queryVectors } from "../helpers/snapshots.ts";

const d = 48;
const queries = queryVectors(20, d, 99);
let s3: LocalS3;
let s3Store: ObjectStore;
let fsRoot: string;

beforeAll(async () => {
  s3 = await startLocalS3();
  s3Store = createS3Store({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: s3.credentials,
  });
  fsRoot = mkdtempSync(join(tmpdir(), "snap-fs-"));
});
afterAll(async () => {
  await s3?.close();
  rmSync(fsRoot, { recursive: true, force: true });
});

function capture(): { log: LogFn; entries: Array<{ level: string; msg: string; data?: Record<string, unknown> }> } {
  const entries: Array<{ level: string; msg: string; data?: Record<string, unknown> }> = [];
  return { entries, log: (level, msg, data) => entries.push({ level, msg, data }) };
}

function loaderFor(
  store: ObjectStore,
  indexPrefix: string,
  extra: {
    streaming?: boolean;
    log?: LogFn;
    refreshS?: number;
    passageTexts?: PassageTextsMode;
    passageCacheBytes?: number;
  } = {},
) {
  return createSnapshotLoader({
    store,
    indexPrefix,
    refreshS: extra.refreshS ?? 0,
    decodeIndex: decodeFaissSnapshotIndex,
    openIndexSink: extra.streaming === false ? undefined : createFaissIndexSinkFactory(),
    // Small parts so a ~600 KB index really comes as parallel ranged GETs.
    partBytes: 64 * 1024,
    concurrency: 4,
    log: extra.log,
    passageTexts: extra.passageTexts,
    passageCacheBytes: extra.passageCacheBytes,
  });
}

function searchAll(index: { search(q: Float32Array, k: number): VectorSearchResult }): VectorSearchResult[] {
  return queries.map((q) => index.search(q, 10));
}

/** Counts GETs per key so tests can tell whether a version is being downloaded again. */
function countingStore(inner: ObjectStore): ObjectStore & { gets: Map<string, number> } {
  const gets = new Map<string, number>();
  return {
    ...inner,
    gets,
    describe: () => inner.describe(),
    head: (k) => inner.head(k),
    put: (k, b, o) => inner.put(k, b, o),
    delete: (k) => inner.delete(k),
    list: (p) => inner.list(p),
    getStream: (k, o) => inner.getStream(k, o),
    get: (k, o) => {
      gets.set(k, (gets.get(k) ?? 0) + 1);
      return inner.get(k, o);
    },
  };
}

describe.each([
  { name: "S3 (s3rver), streamed into faiss", store: () => s3Store, streaming: true },
  { name: "S3 (s3rver), bytes decoded", store: () => s3Store, streaming: false },
  { name: "filesystem store", store: () => createFsStore(fsRoot), streaming: true },
])("round trip through $name", ({ name, store, streaming }) => {
  it.each(["flat", "hnsw", "ivf"])(
    "%s: loaded snapshot searches exactly like the in-memory build",
    async (indexType) => {
      const prefix = `rt-${streaming ? "s" : "b"}-${name.length}-${indexType}/`;
      const corpus = makeCorpus({ n: 3000, d, seed: 1, label: "alpha" });
      const { built, published } = await publishCorpus(store(), prefix, corpus, { indexType });
      expect(built.manifest.files[INDEX_FILE].bytes).toBeGreaterThan(64 * 1024 * 4);

      const loader = loaderFor(store(), prefix, { streaming });
      const snap = await loader.current();
      expect(snap.version).toBe(published.version);
      expect(snap.manifest).toEqual(built.manifest);
      expect(snap.index.count).toBe(3000);
      expect(searchAll(snap.index)).toEqual(searchAll(built.index));
      const top = snap.index.search(queries[0], 3).ordinals;
      expect(await readPassages(snap.passages, top)).toEqual(top.map((o) => corpus.passages[o]));
      expect(loader.status()).toMatchObject({ version: published.version, count: 3000, cold: false });
      loader.close();
    },
  );

  it.each(["fp16", "sq8"])(
    "%s: a scalar-quantized snapshot loads into the flat scan and ranks as faiss's index does",
    async (indexType) => {
      const prefix = `rt-sq-${streaming ? "s" : "b"}-${name.length}-${indexType}/`;
      const corpus = makeCorpus({ n: 3000, d, seed: 2, label: "beta" });
      const { built } = await publishCorpus(store(), prefix, corpus, { indexType });
      const flatBytes = 3000 * d * 4;
      expect(built.manifest.index_type).toBe(indexType);
      expect(built.manifest.files[INDEX_FILE].bytes).toBeLessThan(flatBytes / (indexType === "fp16" ? 1.9 : 3.8));
      const loader = loaderFor(store(), prefix, { streaming });
      const snap = await loader.current();
      const ours = searchAll(snap.index);
      const theirs = searchAll(built.index);
      for (let i = 0; i < ours.length; i++) {
        expect(ours[i].ordinals).toEqual(theirs[i].ordinals);
        for (let j = 0; j < ours[i].scores.length; j++) expect(ours[i].scores[j]).toBeCloseTo(theirs[i].scores[j], 4);
      }
      // fp16 stays fp16 where our faiss-node build scans halves (streamed or from bytes). Otherwise
      // streamed: decoded into the SIMD flat scan; from bytes: faiss's own index.
      const halves = indexType === "fp16" && typeof nativeFlat()?.scanF16 === "function";
      expect((snap.index as { params?: Record<string, unknown> }).params?.scan).toBe(
        halves ? "fp16 rows, native SIMD flat" : streaming ? "decoded to float32, SIMD flat" : undefined,
      );
      loader.close();
    },
  );
});

describe("snapshot loader against s3rver", () => {
  it("cold start: no pointer → IndexNotReadyError; unreachable store → StoreUnavailableError", async () => {
    const loader = loaderFor(s3Store, "empty-prefix/");
    await expect(loader.current()).rejects.toBeInstanceOf(IndexNotReadyError);
    expect(loader.status()).toMatchObject({ version: null, cold: true });

    const dead = createS3Store({
      bucket: s3.bucket,
      endpoint: "http://127.0.0.1:9",
      forcePathStyle: true,
      credentials: s3.credentials,
      maxAttempts: 1,
    });
    const err = await loaderFor(dead, "x/")
      .current()
      .catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.status).toBe(503);
    expect(err.retryAfterS).toBeGreaterThan(0);
  });

  it("publishing refuses to flip a pointer that moved (compare-and-swap on the pointer)", async () => {
    const prefix = "cas/";
    const a = await buildCorpusSnapshot(makeCorpus({ n: 50, d, seed: 2, label: "a" }));
    const b = await buildCorpusSnapshot(makeCorpus({ n: 50, d, seed: 3, label: "b" }));
    const first = await publishSnapshot(s3Store, {
      indexPrefix: prefix,
      manifest: a.manifest,
      files: a.files,
      expectedPointerEtag: null,
    });
    // s3rver ignores If-None-Match, so this check relies on the S3 store's headers; on the fs store
    // (below) the same call loses for real.
    const fsStore = createFsStore(fsRoot);
    await publishSnapshot(fsStore, {
      indexPrefix: prefix,
      manifest: a.manifest,
      files: a.files,
      expectedPointerEtag: null,
    });
    await expect(
      publishSnapshot(fsStore, {
        indexPrefix: prefix,
        manifest: b.manifest,
        files: b.files,
        expectedPointerEtag: null,
      }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    const fsPointer = await readPointer(fsStore, prefix);
    await expect(
      publishSnapshot(fsStore, {
        indexPrefix: prefix,
        manifest: b.manifest,
        files: b.files,
        expectedPointerEtag: '"stale"',
      }),
    ).rejects.toBeInstanceOf(PreconditionFailedError);
    const ok = await publishSnapshot(fsStore, {
      indexPrefix: prefix,
      manifest: b.manifest,
      files: b.files,
      expectedPointerEtag: fsPointer!.etag,
    });
    expect((await readPointer(fsStore, prefix))!.pointer.version).toBe(ok.version);
    expect((await readPointer(s3Store, prefix))!.pointer.version).toBe(first.version);
  });

  it("hot swap: a second version published while queries run goes live with no failed query", async () => {
    const prefix = "hot/";
    const v1Corpus = makeCorpus({ n: 3000, d, seed: 10, label: "v1" });
    const v2Corpus = makeCorpus({ n: 2500, d, seed: 20, label: "v2" });
    const { published: p1 } = await publishCorpus(s3Store, prefix, v1Corpus);
    const { log, entries } = capture();
    const loader = loaderFor(s3Store, prefix, { log, refreshS: 0 });
    expect((await loader.current()).version).toBe(p1.version);

    const seen: string[] = [];
    let failures = 0;
    let stop = false;
    let q = 0;
    const loop = (async () => {
      while (!stop) {
        try {
          const snap = await loader.current();
          const r = snap.index.search(queries[q++ % queries.length], 5);
          // Results and passages always come from the same snapshot.
          expect(
            (await readPassages(snap.passages, [r.ordinals[0]]))[0].docId.startsWith(
              `${snap.version === p1.version ? "v1" : "v2"}-`,
            ),
          ).toBe(true);
          seen.push(snap.version);
        } catch {
          failures++;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();

    await new Promise((r) => setTimeout(r, 50));
    const { built: b2, published: p2 } = await publishCorpus(s3Store, prefix, v2Corpus);
    const publishedAt = seen.length;
    const deadline = Date.now() + 30_000;
    while (loader.status().version !== p2.version && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    stop = true;
    await loop;

    expect(failures).toBe(0);
    expect(loader.status().version).toBe(p2.version);
    // Queries kept being answered by v1 while v2 downloaded: nobody waited for the refresh.
    expect(seen.slice(publishedAt).filter((v) => v === p1.version).length).toBeGreaterThan(0);
    // Once v2 answered, v1 never did again.
    const firstV2 = seen.indexOf(p2.version);
    expect(firstV2).toBeGreaterThan(0);
    expect(seen.slice(firstV2).every((v) => v === p2.version)).toBe(true);
    expect(searchAll((await loader.current()).index)).toEqual(searchAll(b2.index));
    expect(
      entries.some(
        (e) => e.msg === "snapshot swapped" && e.data?.version === p2.version && e.data?.previous === p1.version,
      ),
    ).toBe(true);
    loader.close();
  });

  it("rejects a new version with a flipped byte in index.faiss, logs it, keeps serving, and does not retry it in a loop", async () => {
    const prefix = "corrupt/";
    const { built: b1, published: p1 } = await publishCorpus(
      s3Store,
      prefix,
      makeCorpus({ n: 2000, d, seed: 30, label: "good" }),
    );
    const store = countingStore(s3Store);
    const { log, entries } = capture();
    const loader = loaderFor(store, prefix, { log, refreshS: 0 });
    await loader.current();

    // Publish v2, then corrupt one byte of its index in the bucket (after publish, so the manifest's sha256 is of the good bytes).
    const { published: p2 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 2000, d, seed: 31, label: "bad" }));
    const indexKey = snapshotFileKey(prefix, p2.version, INDEX_FILE);
    const original = (await s3Store.get(indexKey))!.body;
    const flipped = Uint8Array.from(original);
    flipped[Math.floor(flipped.length / 2)] ^= 0x01;
    await s3Store.put(indexKey, flipped);

    expect(await loader.refresh()).toBe(false);
    const snap = await loader.current();
    expect(snap.version).toBe(p1.version);
    expect(searchAll(snap.index)).toEqual(searchAll(b1.index));
    const rejected = entries.filter((e) => e.msg === "snapshot rejected");
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ level: "error", data: { version: p2.version, keeping: p1.version } });
    expect(String(rejected[0].data?.error)).toMatch(/index\.faiss sha256 .* does not match/);
    expect(loader.status()).toMatchObject({ version: p1.version, cold: false });
    expect(loader.status().lastError).toMatch(/sha256/);

    // Later checks see the same bad pointer and do not download it again.
    const before = [...store.gets.entries()]
      .filter(([k]) => k.startsWith(snapshotFileKey(prefix, p2.version, "")))
      .reduce((a, [, n]) => a + n, 0);
    for (let i = 0; i < 5; i++) {
      expect(await loader.refresh()).toBe(false);
      await loader.current();
    }
    const after = [...store.gets.entries()]
      .filter(([k]) => k.startsWith(snapshotFileKey(prefix, p2.version, "")))
      .reduce((a, [, n]) => a + n, 0);
    expect(after).toBe(before);
    expect(entries.filter((e) => e.msg === "snapshot rejected")).toHaveLength(1);

    // A good version published afterwards is picked up.
    const { published: p3 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 100, d, seed: 32, label: "fixed" }));
    expect(await loader.refresh()).toBe(true);
    expect((await loader.current()).version).toBe(p3.version);
    loader.close();
  });

  it("rejects a new version with a missing passage store and keeps serving the previous one", async () => {
    const prefix = "missing/";
    const { published: p1 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 500, d, seed: 40, label: "ok" }));
    const { log, entries } = capture();
    const loader = loaderFor(s3Store, prefix, { log });
    await loader.current();
    const { published: p2 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 500, d, seed: 41, label: "gone" }));
    await s3Store.delete(snapshotFileKey(prefix, p2.version, PASSAGES_FILE));

    expect(await loader.refresh()).toBe(false);
    expect((await loader.current()).version).toBe(p1.version);
    const rejected = entries.find((e) => e.msg === "snapshot rejected");
    expect(rejected?.data).toMatchObject({ version: p2.version, keeping: p1.version });
    expect(String(rejected?.data?.error)).toMatch(/passages\.bin( \(head\))? is missing/);
    loader.close();
  });

  it("a cold start on a corrupt version fails with snapshot_invalid rather than serving it", async () => {
    const prefix = "cold-corrupt/";
    const { built, published } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 300, d, seed: 50, label: "c" }));
    const key = snapshotFileKey(prefix, published.version, PASSAGES_FILE);
    const original = Uint8Array.from((await s3Store.get(key))!.body);
    // A flipped byte in the head (offset tables, passage info): nothing can be served.
    const head = Uint8Array.from(original);
    head[built.manifest.passages!.head_bytes - 2] ^= 0xff;
    await s3Store.put(key, head);
    const headErr = await loaderFor(s3Store, prefix)
      .current()
      .catch((e) => e);
    expect(headErr.code).toBe("snapshot_invalid");
    expect(headErr.message).toMatch(/passages\.bin \(head\) sha256 .* does not match the manifest/);
    // In the texts: read whole before serving (PASSAGE_TEXTS=eager), the whole-file digest catches it.
    const tail = Uint8Array.from(original);
    tail[tail.length - 2] ^= 0xff;
    await s3Store.put(key, tail);
    const eagerErr = await loaderFor(s3Store, prefix, { passageTexts: "eager" })
      .current()
      .catch((e) => e);
    expect(eagerErr.code).toBe("snapshot_invalid");
    expect(eagerErr.message).toMatch(/passages\.bin sha256/);
  });

  it("lazily read texts: a corrupt or unreadable block fails only the requests that need it", async () => {
    const prefix = "lazy-texts/";
    const corpus = makeCorpus({ n: 12_000, d, seed: 52, label: "z" });
    const { built, published } = await publishCorpus(s3Store, prefix, corpus);
    const layout = built.manifest.passages!;
    expect(layout.blocks.length).toBeGreaterThan(2);
    const key = snapshotFileKey(prefix, published.version, PASSAGES_FILE);
    const body = Uint8Array.from((await s3Store.get(key))!.body);
    body[body.length - 2] ^= 0xff; // inside the last text block
    await s3Store.put(key, body);
    const loader = loaderFor(s3Store, prefix, { passageTexts: "lazy" });
    const snap = await loader.current();
    expect(snap.passages.describe?.()).toMatchObject({ texts: "lazy" });
    // The first passages sit in the first block: fine.
    expect(await readPassages(snap.passages, [0, 1, 2])).toEqual(corpus.passages.slice(0, 3));
    // The last one is in the corrupt block: that request fails with a retryable 503, clearly.
    const err = await readPassages(snap.passages, [0, corpus.passages.length - 1]).catch((e) => e);
    expect(err.code).toBe("store_unavailable");
    expect(err.status).toBe(503);
    expect(err.message).toMatch(/block \d+ does not match its digest in the manifest/);
    // ...and the snapshot keeps serving everything else.
    expect(await readPassages(snap.passages, [5])).toEqual([corpus.passages[5]]);
    expect(loader.status()).toMatchObject({ version: published.version, cold: false });
    loader.close();
  });

  it("lazily read texts match the eager store, from cache on repeats; background fill ends in memory", async () => {
    const prefix = "lazy-fill/";
    const corpus = makeCorpus({ n: 12_000, d, seed: 53, label: "f" });
    await publishCorpus(s3Store, prefix, corpus);
    const lazy = loaderFor(s3Store, prefix, { passageTexts: "lazy" });
    const snap = await lazy.current();
    const pick = [11_999, 3, 6000, 3, 47];
    expect(await readPassages(snap.passages, pick)).toEqual(pick.map((o) => corpus.passages[o]));
    const before = snap.passages.describe?.() as { block_reads: number; block_hits: number };
    expect(await readPassages(snap.passages, pick)).toEqual(pick.map((o) => corpus.passages[o]));
    const after = snap.passages.describe?.() as { block_reads: number; block_hits: number };
    expect(after.block_reads).toBe(before.block_reads);
    expect(after.block_hits).toBeGreaterThan(before.block_hits);
    lazy.close();

    const bg = loaderFor(s3Store, prefix, { passageTexts: "background" });
    const s = await bg.current();
    await vi.waitFor(() => expect(s.passages.describe?.()).toMatchObject({ texts: "memory" }), { timeout: 10_000 });
    const all = Array.from({ length: corpus.passages.length }, (_, i) => i);
    expect(await readPassages(s.passages, all)).toEqual(corpus.passages);
    bg.close();
  });

  it("sparse index: round trip through s3rver, searched like the built one, hot-swapped with its version", async () => {
    const prefix = "sparse/";
    const { built: b1, published: p1 } = await publishCorpus(
      s3Store,
      prefix,
      makeCorpus({ n: 400, d, seed: 60, label: "one" }),
    );
    expect(b1.manifest.sparse).toMatchObject({ format: "bm25-v1", file: SPARSE_FILE, passages: 400 });
    expect(b1.manifest.files[SPARSE_FILE].sha256).toMatch(/^[0-9a-f]{64}$/);
    const loader = loaderFor(s3Store, prefix);
    const s1 = await loader.current();
    expect(s1.sparse?.count).toBe(400);
    const hit = s1.sparse!.search("one passage 123", 3);
    expect((await readPassages(s1.passages, [hit.ordinals[0]]))[0].text).toMatch(/^one passage 123:/);

    const { published: p2 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 250, d, seed: 61, label: "two" }));
    expect(await loader.refresh()).toBe(true);
    const s2 = await loader.current();
    expect(s2.version).toBe(p2.version);
    // The sparse index swapped with the rest of the snapshot: it knows only the new passages.
    expect(s2.sparse?.count).toBe(250);
    expect(s2.sparse!.search("one", 5).ordinals).toEqual([]);
    expect((await readPassages(s2.passages, [s2.sparse!.search("two passage 7", 1).ordinals[0]]))[0].text).toMatch(
      /^two passage 7:/,
    );
    expect(p1.version).not.toBe(p2.version);
    loader.close();
  });

  it("rejects a new version whose sparse index is corrupt (even with a matching sha256) and keeps serving", async () => {
    const prefix = "sparse-corrupt/";
    const { published: p1 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 300, d, seed: 70, label: "good" }));
    const { log, entries } = capture();
    const loader = loaderFor(s3Store, prefix, { log });
    await loader.current();

    // A flipped byte in the bucket: the sha256 check catches it.
    const { published: p2 } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 300, d, seed: 71, label: "bad" }));
    const key = snapshotFileKey(prefix, p2.version, SPARSE_FILE);
    const body = Uint8Array.from((await s3Store.get(key))!.body);
    body[body.length - 3] ^= 0x40;
    await s3Store.put(key, body);
    expect(await loader.refresh()).toBe(false);
    expect((await loader.current()).version).toBe(p1.version);
    expect(String(entries.find((e) => e.msg === "snapshot rejected")?.data?.error)).toMatch(/sparse\.bin sha256/);

    // A sparse file that was broken when it was built (its sha256 matches): opening it catches it.
    const built = await buildCorpusSnapshot(makeCorpus({ n: 300, d, seed: 72, label: "worse" }));
    const broken = Uint8Array.from(built.files[SPARSE_FILE]);
    broken[0] = 0x58; // not the TSBM magic
    const { sha256Hex } = await import("../../shared/core/snapshot.ts");
    built.files[SPARSE_FILE] = broken;
    built.manifest.files[SPARSE_FILE] = { ...built.manifest.files[SPARSE_FILE], sha256: sha256Hex(broken) };
    const p3 = await publishSnapshot(s3Store, { indexPrefix: prefix, manifest: built.manifest, files: built.files });
    expect(await loader.refresh()).toBe(false);
    expect((await loader.current()).version).toBe(p1.version);
    const rejected = entries.filter((e) => e.msg === "snapshot rejected").at(-1);
    expect(rejected?.data).toMatchObject({ version: p3.pointer.version, keeping: p1.version });
    expect(String(rejected?.data?.error)).toMatch(/sparse\.bin does not open: .*magic/);
    loader.close();
  });

  it("an older snapshot published without a sparse index still loads and serves (sparse: null)", async () => {
    const prefix = "no-sparse/";
    const { built } = await publishCorpus(s3Store, prefix, makeCorpus({ n: 200, d, seed: 80, label: "old" }), {
      sparse: false,
    });
    expect(built.manifest.sparse).toBeUndefined();
    expect(built.files[SPARSE_FILE]).toBeUndefined();
    const loader = loaderFor(s3Store, prefix);
    const snap = await loader.current();
    expect(snap.sparse).toBeNull();
    expect(searchAll(snap.index)).toEqual(searchAll(built.index));
    loader.close();
  });
});
