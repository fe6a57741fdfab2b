// buildSnapshot (with the real faiss builder) and publishSnapshot/prune on the filesystem store.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { faissIndexBuilder, faissIndexFromBuffer } from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { listSnapshotVersions, publishSnapshot, pruneSnapshots, readPointer } from "../../shared/core/publish.ts";
import {
  INDEX_FILE,
  MANIFEST_FILE,
  openPassageStore,
  PASSAGES_FILE,
  SPARSE_FILE,
  parseManifest,
  pointerKey,
  sha256Hex,
  snapshotFileKey,
} from "../../shared/core/snapshot.ts";
import { buildCorpusSnapshot, makeCorpus } from "../helpers/snapshots.ts";

const d = 16;
let root: string;
let store: ObjectStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "publish-"));
  store = createFsStore(root);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("buildSnapshot", () => {
  it("produces index, passage store and a manifest describing both", async () => {
    const corpus = makeCorpus({ n: 90, d, seed: 1, label: "m" });
    const now = new Date("2026-11-25T19:00:00Z");
    const { manifest, files, index } = await buildSnapshot({
      passages: corpus.passages,
      vectors: corpus.vectors,
      embedder: corpus.identity,
      corpusStats: { df: [1, 2, 3] },
      indexType: "hnsw",
      indexBuilder: faissIndexBuilder,
      sources: [{ key: "corpus/a.jsonl", etag: '"e1"' }],
      report: { skipped: [{ key: "corpus/b.bin", reason: "unsupported file type" }] },
      now,
    });
    expect(parseManifest(JSON.stringify(manifest))).toEqual(manifest);
    expect(manifest).toMatchObject({
      format_version: 2,
      created_at: "2026-11-25T19:00:00.000Z",
      embedder: corpus.identity,
      metric: "inner_product",
      index_type: "hnsw",
      index_params: { factory: "HNSW32,Flat", efSearch: 128 },
      counts: { documents: 30, passages: 90 },
      corpus_stats: { df: [1, 2, 3] },
      sources: [{ key: "corpus/a.jsonl", etag: '"e1"' }],
      report: { skipped: [{ key: "corpus/b.bin", reason: "unsupported file type" }] },
    });
    expect(manifest.version.startsWith("20261125T190000Z-")).toBe(true);
    for (const name of [INDEX_FILE, PASSAGES_FILE]) {
      expect(manifest.files[name]).toEqual({
        key: name,
        bytes: files[name].byteLength,
        sha256: sha256Hex(files[name]),
      });
    }
    expect(openPassageStore(files[PASSAGES_FILE]).get(42)).toEqual(corpus.passages[42]);
    expect(faissIndexFromBuffer(files[INDEX_FILE]).search(corpus.vectors[7], 1).ordinals).toEqual([7]);
    expect(index.search(corpus.vectors[7], 1).ordinals).toEqual([7]);
  });

  it("embeds in batches through `embed` when no vectors are given", async () => {
    const corpus = makeCorpus({ n: 50, d, seed: 2, label: "e" });
    const calls: number[] = [];
    const byText = new Map(corpus.passages.map((p, i) => [p.text, corpus.vectors[i]]));
    const progress: number[] = [];
    const { index } = await buildSnapshot({
      passages: corpus.passages,
      embed: async (texts) => {
        calls.push(texts.length);
        return texts.map((t) => byText.get(t)!);
      },
      embedBatchSize: 16,
      embedder: corpus.identity,
      indexType: "flat",
      indexBuilder: faissIndexBuilder,
      onProgress: (done) => progress.push(done),
    });
    expect(calls).toEqual([16, 16, 16, 2]);
    expect(progress).toEqual([16, 32, 48, 50]);
    expect(index.search(corpus.vectors[33], 1).ordinals).toEqual([33]);
  });

  it("refuses inconsistent input with clear errors", async () => {
    const corpus = makeCorpus({ n: 10, d, seed: 3, label: "x" });
    const base = {
      passages: corpus.passages,
      embedder: corpus.identity,
      indexType: "flat",
      indexBuilder: faissIndexBuilder,
    };
    await expect(buildSnapshot({ ...base, vectors: corpus.vectors.slice(1) })).rejects.toThrow(
      /9 vectors for 10 passages/,
    );
    await expect(buildSnapshot({ ...base })).rejects.toThrow(/exactly one of `vectors` or `embed`/);
    const wrongDims = corpus.vectors.map((v, i) => (i === 4 ? new Float32Array(d + 1) : v));
    await expect(buildSnapshot({ ...base, vectors: wrongDims })).rejects.toThrow(/vector 4 has 17 dimensions/);
    const unnormalised = corpus.vectors.map((v, i) => (i === 2 ? v.map((x) => x * 2) : v));
    await expect(buildSnapshot({ ...base, vectors: unnormalised })).rejects.toThrow(/vector 2 has norm 2.0000/);
    const dup = corpus.passages.map((p, i) => (i === 5 ? { ...p, id: corpus.passages[0].id } : p));
    await expect(buildSnapshot({ ...base, passages: dup, vectors: corpus.vectors })).rejects.toThrow(
      /duplicate passage id/,
    );
    await expect(buildSnapshot({ ...base, vectors: corpus.vectors, indexType: "annoy" })).rejects.toThrow(
      ValidationError,
    );
  });
});

describe("publishSnapshot", () => {
  it("uploads files, then the manifest, then flips the pointer", async () => {
    const built = await buildCorpusSnapshot(makeCorpus({ n: 30, d, seed: 4, label: "p" }));
    const order: string[] = [];
    const recording: ObjectStore = {
      ...store,
      describe: () => store.describe(),
      get: (k, o) => store.get(k, o),
      list: (p) => store.list(p),
      put: async (k, b, o) => {
        order.push(`${k.split("/").pop()}${o?.ifNoneMatch ? " if-none-match" : ""}${o?.ifMatch ? " if-match" : ""}`);
        return store.put(k, b, o);
      },
    };
    const res = await publishSnapshot(recording, {
      indexPrefix: "index/",
      manifest: built.manifest,
      files: built.files,
    });
    expect(order.slice(0, 3).sort()).toEqual([INDEX_FILE, PASSAGES_FILE, SPARSE_FILE]);
    expect(order.slice(3)).toEqual([MANIFEST_FILE, "LATEST.json if-none-match"]);
    expect(res.previousVersion).toBeNull();
    const ptr = await readPointer(store, "index/");
    expect(ptr).toEqual({ pointer: res.pointer, etag: res.pointerEtag });
    expect(res.pointer.manifest_key).toBe(snapshotFileKey("index/", built.manifest.version, MANIFEST_FILE));
    const again = await buildCorpusSnapshot(makeCorpus({ n: 30, d, seed: 5, label: "q" }));
    const second = await publishSnapshot(recording, {
      indexPrefix: "index/",
      manifest: again.manifest,
      files: again.files,
    });
    expect(second.previousVersion).toBe(built.manifest.version);
    expect(order.at(-1)).toBe("LATEST.json if-match");
  });

  it("refuses files that do not match the manifest, before uploading anything", async () => {
    const built = await buildCorpusSnapshot(makeCorpus({ n: 30, d, seed: 6, label: "r" }));
    const tampered = { ...built.files, [INDEX_FILE]: built.files[INDEX_FILE].slice(1) };
    await expect(
      publishSnapshot(store, { indexPrefix: "index/", manifest: built.manifest, files: tampered }),
    ).rejects.toThrow(/bytes/);
    const missing = { [INDEX_FILE]: built.files[INDEX_FILE] };
    await expect(
      publishSnapshot(store, { indexPrefix: "index/", manifest: built.manifest, files: missing }),
    ).rejects.toThrow(/passages.bin but no bytes were given/);
    const extra = { ...built.files, "extra.bin": new Uint8Array(1) };
    await expect(
      publishSnapshot(store, { indexPrefix: "index/", manifest: built.manifest, files: extra }),
    ).rejects.toThrow(/not listed/);
    expect(await store.head(pointerKey("index/"))).toBeNull();
    const keys: string[] = [];
    for await (const o of store.list("index/")) keys.push(o.key);
    expect(keys).toEqual([]);
  });

  it("lists versions newest first and prunes old ones, never the live one", async () => {
    const versions: string[] = [];
    for (let i = 0; i < 4; i++) {
      const built = await buildCorpusSnapshot(makeCorpus({ n: 10, d, seed: 10 + i, label: `v${i}` }), {
        now: new Date(Date.UTC(2026, 10, 25, 19, 0, i)),
      });
      await publishSnapshot(store, { indexPrefix: "index/", manifest: built.manifest, files: built.files });
      versions.push(built.manifest.version);
    }
    expect(await listSnapshotVersions(store, "index/")).toEqual([...versions].reverse());
    // Roll the pointer back to the oldest: pruning keeps it although it is old.
    const oldest = await store.get(snapshotFileKey("index/", versions[0], MANIFEST_FILE));
    const m = parseManifest(oldest!.body);
    await store.put(
      pointerKey("index/"),
      JSON.stringify({
        version: m.version,
        manifest_key: snapshotFileKey("index/", m.version, MANIFEST_FILE),
        created_at: m.created_at,
      }),
    );
    const deleted = await pruneSnapshots(store, "index/", 2);
    expect(deleted).toEqual([versions[1]]);
    expect(await listSnapshotVersions(store, "index/")).toEqual([versions[3], versions[2], versions[0]]);
  });
});
