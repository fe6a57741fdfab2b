// Snapshot loader behaviour on the filesystem store with real faiss: refresh throttling, outages
// while warm, cold-start failures, and downloads that do not match their manifest.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  allocateSnapshotBytes,
  createFaissIndexSinkFactory,
  decodeFaissSnapshotIndex,
} from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { IndexNotReadyError, StoreUnavailableError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { createSnapshotLoader, type SnapshotLoaderOptions } from "../../shared/core/snapshot-loader.ts";
import { INDEX_FILE, pointerKey, snapshotFileKey } from "../../shared/core/snapshot.ts";
import { makeCorpus, publishCorpus } from "../helpers/snapshots.ts";

const d = 16;
let root: string;
let base: ObjectStore;
const loaders: Array<{ close(): void }> = [];

/** The fs store behind a switch that makes every call fail like an unreachable store, and a GET log. */
function switchable(inner: ObjectStore) {
  const state = {
    down: false,
    gets: [] as string[],
    mutate: null as null | ((key: string, body: Uint8Array) => Uint8Array),
  };
  const guard = () => {
    if (state.down) throw new StoreUnavailableError("store is down (test switch)");
  };
  const store: ObjectStore = {
    describe: () => inner.describe(),
    async get(k, o) {
      guard();
      state.gets.push(k);
      const got = await inner.get(k, o);
      return got && state.mutate ? { ...got, body: state.mutate(k, got.body) } : got;
    },
    async getStream(k, o) {
      guard();
      return inner.getStream(k, o);
    },
    async head(k) {
      guard();
      return inner.head(k);
    },
    async put(k, b, o) {
      guard();
      return inner.put(k, b, o);
    },
    async delete(k) {
      guard();
      return inner.delete(k);
    },
    list: (p) => inner.list(p),
  };
  return { store, state };
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "loader-"));
  base = createFsStore(root);
});
afterEach(async () => {
  // Stop background checks before the store folder goes away.
  for (const l of loaders.splice(0)) l.close();
  await new Promise((r) => setTimeout(r, 50));
  rmSync(root, { recursive: true, force: true });
});

function options(store: ObjectStore, extra: Partial<SnapshotLoaderOptions> = {}): SnapshotLoaderOptions {
  return { store, indexPrefix: "index/", refreshS: 30, decodeIndex: decodeFaissSnapshotIndex, ...extra };
}

function loaderOf(opts: SnapshotLoaderOptions) {
  const l = createSnapshotLoader(opts);
  loaders.push(l);
  return l;
}

const tick = () => new Promise((r) => setTimeout(r, 30));

describe("snapshot loader", () => {
  it("checks the pointer at most every refreshS seconds, in the background", async () => {
    const { published: p1 } = await publishCorpus(base, "index/", makeCorpus({ n: 100, d, seed: 1, label: "one" }));
    const { store, state } = switchable(base);
    let clock = 1_000_000;
    const loader = loaderOf(options(store, { refreshS: 30, now: () => clock }));
    expect((await loader.current()).version).toBe(p1.version);
    const pointerGets = () => state.gets.filter((k) => k === pointerKey("index/")).length;
    expect(pointerGets()).toBe(1);

    const { published: p2 } = await publishCorpus(base, "index/", makeCorpus({ n: 120, d, seed: 2, label: "two" }));
    clock += 29_000;
    for (let i = 0; i < 10; i++) expect((await loader.current()).version).toBe(p1.version);
    await tick();
    expect(pointerGets()).toBe(1); // not due yet

    clock += 1_000;
    // Due: this call still answers with v1 at once and starts the check in the background.
    expect((await loader.current()).version).toBe(p1.version);
    for (let i = 0; i < 50 && loader.status().version !== p2.version; i++) await tick();
    expect(pointerGets()).toBe(2);
    expect((await loader.current()).version).toBe(p2.version);
    expect(loader.status()).toMatchObject({ version: p2.version, count: 120, cold: false, ageS: 0 });
    clock += 5_000;
    expect(loader.status().ageS).toBe(5);
  });

  it("keeps serving while the store is unreachable, and reports the error in status()", async () => {
    const { published: p1 } = await publishCorpus(base, "index/", makeCorpus({ n: 100, d, seed: 1, label: "one" }));
    const { store, state } = switchable(base);
    const logs: string[] = [];
    const loader = createSnapshotLoader(
      options(store, { refreshS: 0, log: (level, msg) => logs.push(`${level} ${msg}`) }),
    );
    await loader.current();
    state.down = true;
    for (let i = 0; i < 5; i++) {
      expect((await loader.current()).version).toBe(p1.version);
      await tick();
    }
    expect(await loader.refresh()).toBe(false);
    expect(loader.status()).toMatchObject({ version: p1.version, cold: false });
    expect(loader.status().lastError).toMatch(/store is down/);
    expect(logs).toContain("warn snapshot refresh failed; keeping the loaded version");
    state.down = false;
    await loader.refresh();
    expect(loader.status().lastError).toBeUndefined();
  });

  it("cold: shares one load between concurrent callers, and caches a failure briefly", async () => {
    const { store, state } = switchable(base);
    let clock = 0;
    const loader = loaderOf(options(store, { now: () => clock, coldRetryS: 2 }));
    await expect(loader.current()).rejects.toBeInstanceOf(IndexNotReadyError);
    await expect(loader.current()).rejects.toBeInstanceOf(IndexNotReadyError);
    expect(state.gets.length).toBe(1); // the second call got the cached answer

    const { published } = await publishCorpus(base, "index/", makeCorpus({ n: 100, d, seed: 1, label: "one" }));
    clock += 2_000;
    const all = await Promise.all(Array.from({ length: 8 }, () => loader.current()));
    expect(new Set(all.map((s) => s.version))).toEqual(new Set([published.version]));
    expect(state.gets.filter((k) => k.endsWith(INDEX_FILE)).length).toBe(1);

    const down = switchable(base);
    down.state.down = true;
    const err = await loaderOf(options(down.store))
      .current()
      .catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
  });

  it("rejects an object longer than its manifest says, even when fetched in ranged parts", async () => {
    await publishCorpus(base, "index/", makeCorpus({ n: 300, d, seed: 1, label: "one" }));
    const { store, state } = switchable(base);
    state.mutate = (key, body) => {
      // Serve the index as if one byte had been appended to the object.
      if (!key.endsWith(INDEX_FILE)) return body;
      const out = new Uint8Array(body.length + 1);
      out.set(body);
      return out;
    };
    for (const partBytes of [1 << 30, 4096]) {
      const err = await loaderOf(options(store, { partBytes, coldRetryS: 0 }))
        .current()
        .catch((e) => e);
      expect(err.code).toBe("snapshot_invalid");
      expect(err.message).toMatch(/more bytes|has \d+ bytes/);
    }
  });

  it("refuses to stitch parts of an object replaced mid-download", async () => {
    const { published } = await publishCorpus(base, "index/", makeCorpus({ n: 300, d, seed: 1, label: "one" }));
    const indexKey = snapshotFileKey("index/", published.version, INDEX_FILE);
    const { store } = switchable(base);
    let parts = 0;
    const racing: ObjectStore = {
      ...store,
      async get(k, o) {
        const got = await store.get(k, o);
        if (got && k === indexKey && o?.range && ++parts === 2) {
          // Someone overwrote the object between two ranged reads (same bytes, new upload: new ETag on S3).
          return { ...got, etag: '"another-upload"' };
        }
        return got;
      },
    };
    const err = await loaderOf(options(racing, { partBytes: 4096, concurrency: 1 }))
      .current()
      .catch((e) => e);
    expect(err.message).toMatch(/changed while it was downloaded/);
  });

  it("rejects a manifest that does not belong to the pointer's version", async () => {
    const { published: p1 } = await publishCorpus(base, "index/", makeCorpus({ n: 50, d, seed: 1, label: "one" }));
    const { published: p2 } = await publishCorpus(base, "index/", makeCorpus({ n: 50, d, seed: 2, label: "two" }));
    await base.put(pointerKey("index/"), JSON.stringify({ ...p2.pointer, manifest_key: p1.manifestKey }));
    const err = await loaderOf(options(base))
      .current()
      .catch((e) => e);
    expect(err.code).toBe("snapshot_invalid");
    expect(err.message).toMatch(/manifest says/);
  });

  it("streams the index through the faiss temp-file sink and removes the file afterwards", async () => {
    const { built } = await publishCorpus(base, "index/", makeCorpus({ n: 400, d, seed: 3, label: "s" }));
    const tmp = mkdtempSync(join(tmpdir(), "sink-"));
    try {
      const loader = createSnapshotLoader(
        options(base, { openIndexSink: createFaissIndexSinkFactory({ tmpDir: tmp }), partBytes: 8192 }),
      );
      const snap = await loader.current();
      const q = built.index.search(new Float32Array(d).fill(0.25), 7);
      expect(snap.index.search(new Float32Array(d).fill(0.25), 7)).toEqual(q);
      const { readdirSync } = await import("node:fs");
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("puts files it keeps in memory where `allocate` says (huge-page memory in the search function)", async () => {
    const { built } = await publishCorpus(base, "index/", makeCorpus({ n: 300, d, seed: 4, label: "a" }));
    const sizes: number[] = [];
    const loader = loaderOf(
      options(base, {
        partBytes: 4096, // ranged parts land in the allocated memory too
        passageTexts: "eager", // the whole passage store before serving, in one allocation
        allocate: (bytes) => {
          sizes.push(bytes);
          return allocateSnapshotBytes(bytes);
        },
      }),
    );
    const snap = await loader.current();
    const passagesBytes = built.manifest.files["passages.bin"].bytes;
    const indexBytes = built.manifest.files["index.faiss"].bytes;
    const sparseBytes = built.manifest.files["sparse.bin"].bytes;
    // Without an index sink every file is held in memory: each gets one allocation (+1 probe byte).
    expect(sizes.sort((a, b) => a - b)).toEqual(
      [passagesBytes + 1, indexBytes + 1, sparseBytes + 1].sort((a, b) => a - b),
    );
    expect(snap.passages.count).toBe(300);
    const q = new Float32Array(d).fill(0.25);
    expect(snap.index.search(q, 5)).toEqual(built.index.search(q, 5));
    expect(allocateSnapshotBytes(5 << 20).every((b) => b === 0)).toBe(true);
  });

  it("calls onManifest with each version's manifest before any of its files is fetched; a throwing hook is ignored", async () => {
    const { published } = await publishCorpus(base, "index/", makeCorpus({ n: 50, d, seed: 4, label: "hook" }));
    const { store, state } = switchable(base);
    const seen: Array<{ version: string; getsSoFar: string[] }> = [];
    const loader = loaderOf(
      options(store, {
        onManifest: (m) => {
          seen.push({ version: m.version, getsSoFar: [...state.gets] });
          throw new Error("hook bug");
        },
      }),
    );
    expect((await loader.current()).version).toBe(published.version);
    expect(seen.map((s) => s.version)).toEqual([published.version]);
    // Only the pointer and the manifest were read when the hook ran; the index came after.
    expect(seen[0].getsSoFar.some((k) => k.endsWith("manifest.json"))).toBe(true);
    const indexKey = snapshotFileKey("index/", published.version, INDEX_FILE);
    expect(seen[0].getsSoFar).not.toContain(indexKey);
    expect(state.gets).toContain(indexKey);
  });

  it("close() drops the snapshot", async () => {
    await publishCorpus(base, "index/", makeCorpus({ n: 50, d, seed: 1, label: "one" }));
    const loader = loaderOf(options(base));
    await loader.current();
    loader.close();
    expect(loader.status().cold).toBe(true);
    await expect(loader.current()).rejects.toBeInstanceOf(IndexNotReadyError);
  });
});
