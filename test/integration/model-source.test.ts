// Model folders from the object store: fetched from a real S3 server (s3rver on loopback) into a
// local cache, verified against checksums.json, reused while intact, re-fetched when corrupted.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCrossEncoder, releaseCrossEncoders } from "../../shared/adapters/cross-encoder.ts";
import { createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import { cacheFolderFor, ModelSourceError, resolveModelDir } from "../../shared/adapters/model-source.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { loadConfig } from "../../shared/core/config.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";

let s3: LocalS3;
let store: ObjectStore;
let modelDir: string;
let cacheDir: string;
const PREFIX = "models/tiny-cross/";

function filesUnder(dir: string, rel = ""): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? filesUnder(dir, r) : [r];
  });
}

async function upload(prefix: string, files: string[], tamper?: (rel: string, body: Buffer) => Buffer) {
  for (const rel of files) {
    const body = readFileSync(path.join(modelDir, rel));
    await store.put(prefix + rel, tamper ? tamper(rel, body) : body);
  }
}

/** Counts object downloads (getStream calls) made through the store. */
function counting(inner: ObjectStore): ObjectStore & { downloads: string[] } {
  const downloads: string[] = [];
  return {
    ...inner,
    downloads,
    getStream: (key, o) => {
      downloads.push(key);
      return inner.getStream(key, o);
    },
  };
}

beforeAll(async () => {
  s3 = await startLocalS3();
  store = createS3Store({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: s3.credentials,
  });
  modelDir = await ensureFixtureModel("tiny-cross");
  await upload(PREFIX, filesUnder(modelDir));
  cacheDir = mkdtempSync(path.join(tmpdir(), "model-cache-"));
});
afterAll(async () => {
  await releaseCrossEncoders();
  rmSync(cacheDir, { recursive: true, force: true });
  await s3?.close();
});

describe("resolveModelDir from the store", () => {
  it("copies the folder into the cache, verified, and the cross-encoder loads from there", async () => {
    const counted = counting(store);
    const dir = await resolveModelDir({
      store: counted,
      prefix: PREFIX,
      cacheDir,
      required: ["config.json", "tokenizer.json"],
    });
    expect(dir).toBe(cacheFolderFor(store, PREFIX, cacheDir));
    for (const rel of filesUnder(modelDir))
      expect(readFileSync(path.join(dir, rel))).toEqual(readFileSync(path.join(modelDir, rel)));
    expect(counted.downloads.sort()).toEqual(
      filesUnder(modelDir)
        .filter((f) => f !== "checksums.json")
        .map((f) => PREFIX + f)
        .sort(),
    );
    const fromCache = await loadCrossEncoder({ modelDir: dir, provider: "cpu", threads: 1 });
    const fromFolder = await loadCrossEncoder({ modelDir, provider: "cpu", threads: 1 });
    const docs = ["berlin", "a longer document about museums"];
    expect(Array.from((await fromCache.scorePairs("q", docs)).logits)).toEqual(
      Array.from((await fromFolder.scorePairs("q", docs)).logits),
    );
  });

  it("reuses intact cached files and re-fetches a corrupted one", async () => {
    const counted = counting(store);
    const dir = await resolveModelDir({ store: counted, prefix: PREFIX, cacheDir });
    expect(counted.downloads).toEqual([]);
    const graph = path.join(dir, "onnx/model.onnx");
    const good = readFileSync(graph);
    const bad = Buffer.from(good);
    bad[bad.length - 1] ^= 0xff; // same size, different bytes: only the hash can tell
    writeFileSync(graph, bad);
    await resolveModelDir({ store: counted, prefix: PREFIX, cacheDir });
    expect(counted.downloads).toEqual([`${PREFIX}onnx/model.onnx`]);
    expect(readFileSync(graph)).toEqual(good);
  });

  it("refuses source bytes that do not match checksums.json, leaving no partial file", async () => {
    const prefix = "models/tampered/";
    await upload(prefix, filesUnder(modelDir), (rel, body) =>
      rel === "tokenizer.json" ? Buffer.concat([body, Buffer.from(" ")]) : body,
    );
    const err = await resolveModelDir({ store, prefix, cacheDir }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelSourceError);
    expect(err.message).toMatch(
      /models\/tampered\/tokenizer\.json does not match checksums\.json: sha256 [0-9a-f]{64}/,
    );
    const dir = cacheFolderFor(store, prefix, cacheDir);
    expect(existsSync(path.join(dir, "tokenizer.json"))).toBe(false);
    expect(filesUnder(dir).some((f) => f.endsWith(".part"))).toBe(false);
  });

  it("without checksums.json, reuses files by ETag and size", async () => {
    const prefix = "models/no-checksums/";
    await upload(
      prefix,
      filesUnder(modelDir).filter((f) => f !== "checksums.json"),
    );
    const first = counting(store);
    const dir = await resolveModelDir({ store: first, prefix, cacheDir });
    expect(first.downloads.length).toBe(filesUnder(modelDir).length - 1);
    const second = counting(store);
    await resolveModelDir({ store: second, prefix, cacheDir });
    expect(second.downloads).toEqual([]);
    // A changed object (new ETag) is fetched again.
    await store.put(`${prefix}README.md`, "changed");
    const third = counting(store);
    await resolveModelDir({ store: third, prefix, cacheDir });
    expect(third.downloads).toEqual([`${prefix}README.md`]);
    expect(readFileSync(path.join(dir, "README.md"), "utf8")).toBe("changed");
  });

  it("fetches only the files `include` accepts", async () => {
    const prefix = "models/with-quantized/";
    await upload(
      prefix,
      filesUnder(modelDir).filter((f) => f !== "checksums.json"),
    );
    await store.put(`${prefix}onnx/model_quantized.onnx`, readFileSync(path.join(modelDir, "onnx/model.onnx")));
    const counted = counting(store);
    const dir = await resolveModelDir({
      store: counted,
      prefix,
      cacheDir,
      include: (rel) => !rel.includes("quantized"),
    });
    expect(counted.downloads).not.toContain(`${prefix}onnx/model_quantized.onnx`);
    expect(existsSync(path.join(dir, "onnx/model_quantized.onnx"))).toBe(false);
  });

  it("names an empty prefix and missing required files", async () => {
    await expect(resolveModelDir({ store, prefix: "models/nothing-here/", cacheDir })).rejects.toThrow(
      /models\/nothing-here\/" holds no files/,
    );
    await expect(
      resolveModelDir({ store, prefix: PREFIX, cacheDir, required: ["vocab.txt", "missing.bin"] }),
    ).rejects.toThrow(/lacks missing\.bin/);
  });

  it("serves a local folder as it is, and names a missing one", async () => {
    expect(await resolveModelDir({ localDir: modelDir })).toBe(modelDir);
    await expect(resolveModelDir({ localDir: path.join(cacheDir, "nope") })).rejects.toThrow(/does not exist/);
  });
});

describe("the local reranker with RERANKER_MODEL_S3_PREFIX", () => {
  it("loads the model from the bucket on first use and reranks with it", async () => {
    const cfg = loadConfig(
      {},
      { rerankerModelS3: PREFIX, modelCacheDir: cacheDir, rerankerProvider: "cpu", rerankerThreads: 1 },
    );
    const reranker = createLocalReranker(cfg, { store, log: () => {} });
    expect(reranker.status()).toMatchObject({ warm: false, source: `store:${PREFIX}` });
    const res = await reranker.rerank({ query: "berlin", documents: ["berlin is big", "cats"] });
    expect(res.meta).toMatchObject({ model: "tiny-cross", provider: "cpu", fixture: true, pairs: 2 });
    expect(reranker.status()).toMatchObject({ warm: true, model: "tiny-cross" });
    expect(statSync(path.join(cacheFolderFor(store, PREFIX, cacheDir), "onnx/model.onnx")).size).toBeGreaterThan(0);
  });

  it("a prefix without a store is a configuration error", () => {
    const cfg = loadConfig({}, { rerankerModelS3: PREFIX });
    expect(() => createLocalReranker(cfg)).toThrow(/RERANKER_MODEL_S3_PREFIX/);
  });
});
