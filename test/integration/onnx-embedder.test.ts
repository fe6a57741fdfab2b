// The local ONNX sentence embedder against @huggingface/transformers' feature-extraction pipeline
// (mean pooling, normalised) on the generated tiny bi-encoder fixture (random weights).
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { createOnnxEmbedder, type OnnxEmbedder } from "../../shared/adapters/onnx-embedder.ts";
import { dot } from "../../shared/core/embedding.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";

const TEXTS = [
  "how many people live in berlin?",
  "berlin has a population of 3,520,031 registered inhabitants.",
  "a",
  "the quick brown fox jumps over the lazy dog near the river bank in the late afternoon sun.",
  "museums",
];

let dir: string;
let embedder: OnnxEmbedder;

async function reference(texts: string[], pooling: "mean" | "cls"): Promise<Float32Array[]> {
  const { pipeline, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  env.localModelPath = `${path.dirname(dir)}/`;
  const extractor = await pipeline("feature-extraction", path.basename(dir), { dtype: "fp32", device: "cpu" });
  const out = await extractor(texts, { pooling, normalize: true });
  const [n, d] = out.dims as number[];
  const data = out.data as Float32Array;
  await extractor.dispose();
  return Array.from({ length: n }, (_, i) => data.slice(i * d, (i + 1) * d));
}

beforeAll(async () => {
  dir = await ensureFixtureModel("tiny-bi");
  embedder = await createOnnxEmbedder({ modelDir: dir, provider: "cpu", threads: 1 });
});

describe("createOnnxEmbedder on the tiny bi-encoder fixture", () => {
  it("reads its identity from the folder", () => {
    expect(embedder.identity).toEqual({
      kind: "onnx",
      model: path.basename(dir),
      dimensions: 32,
      normalized: true,
      pooling: "mean",
    });
    expect(embedder.provider).toBe("cpu");
    expect(embedder.maxLength).toBe(128); // sentence_bert_config max_seq_length
  });

  it("matches transformers.js feature-extraction (mean pooling, normalised) within 1e-4", async () => {
    const ours = await embedder.embedDocuments(TEXTS);
    const ref = await reference(TEXTS, "mean");
    for (let i = 0; i < TEXTS.length; i++) {
      expect(ours[i]).toHaveLength(32);
      expect(Math.abs(dot(ours[i], ours[i]) - 1)).toBeLessThan(1e-5);
      for (let j = 0; j < 32; j++) expect(Math.abs(ours[i][j] - ref[i][j])).toBeLessThan(1e-4);
    }
    // Different texts give different vectors (a degenerate fixture would make the comparison vacuous).
    expect(dot(ours[0], ours[3])).toBeLessThan(0.999);
  });

  it("matches transformers.js with CLS pooling", async () => {
    const cls = await createOnnxEmbedder({ modelDir: dir, provider: "cpu", threads: 1, pooling: "cls" });
    expect(cls.identity.pooling).toBe("cls");
    const ours = await cls.embedDocuments(TEXTS);
    const ref = await reference(TEXTS, "cls");
    for (let i = 0; i < TEXTS.length; i++)
      for (let j = 0; j < 32; j++) expect(Math.abs(ours[i][j] - ref[i][j])).toBeLessThan(1e-4);
  });

  it("gives the same vectors whatever the batching, in input order", async () => {
    const tiny = await createOnnxEmbedder({ modelDir: dir, provider: "cpu", threads: 1, batchTokens: 1 });
    const a = await tiny.embedDocuments(TEXTS);
    const b = await embedder.embedDocuments([...TEXTS].reverse());
    for (let i = 0; i < TEXTS.length; i++) {
      const other = b[TEXTS.length - 1 - i];
      for (let j = 0; j < 32; j++) expect(Math.abs(a[i][j] - other[j])).toBeLessThan(1e-5);
    }
    const q = await embedder.embedQuery(TEXTS[1]);
    for (let j = 0; j < 32; j++) expect(Math.abs(q[j] - a[1][j])).toBeLessThan(1e-5);
  });

  it("truncates long texts to maxLength, counts usage and reports progress", async () => {
    const e = await createOnnxEmbedder({ modelDir: dir, provider: "cpu", threads: 1, maxLength: 16, batchTokens: 16 });
    const long = "berlin ".repeat(100);
    const progress: Array<[number, number]> = [];
    const [v1, v2] = await e.embedDocuments([long, `${long} extra words at the end`], {
      onProgress: (d, t) => progress.push([d, t]),
    });
    // Both are cut to the same first 16 tokens, so the tail cannot change the vector.
    for (let j = 0; j < 32; j++) expect(v1[j]).toBeCloseTo(v2[j], 6);
    expect(e.truncatedTexts()).toBe(2);
    expect(e.usage()).toEqual({ calls: 0, texts: 2, tokens: 32 });
    // A 16-token budget holds one 16-token text per batch: two batches, progress after each.
    expect(progress).toEqual([
      [1, 2],
      [2, 2],
    ]);
  });

  it("stops when the signal is aborted", async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(embedder.embedDocuments(TEXTS, { signal: ac.signal })).rejects.toThrow(/abort/i);
  });
});
