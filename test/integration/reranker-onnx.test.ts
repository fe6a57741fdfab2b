// The cross-encoder on real ONNX Runtime (native and WASM) against the reference implementation
// (@huggingface/transformers), on the generated tiny fixture models. Fixture scores mean nothing;
// these tests compare numbers, never judge relevance.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CrossEncoder, loadCrossEncoder, releaseCrossEncoders } from "../../shared/adapters/cross-encoder.ts";
import {
  CPU_BATCH_TOKENS,
  createOrtSession,
  defaultBatchTokens,
  GPU_BATCH_TOKENS,
} from "../../shared/adapters/ort-session.ts";
import { rerank } from "../../shared/core/rerank.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";

const QUERY = "how many people live in berlin?";
const DOCS = [
  "berlin has a population of 3,520,031 registered inhabitants.",
  "new york city is famous for the metropolitan museum of art.",
  "short",
  "the quick brown fox jumps over the lazy dog near the river bank in the late afternoon sun.",
  "",
  "population statistics: berlin, hamburg, munich and cologne are the largest cities.",
  "a",
];
const LONG_DOC = `${"filler words about nothing in particular keep going on and on ".repeat(30)}berlin population is large`;

let tinyCross: string;
let cpu: CrossEncoder;

/** Reference logits from @huggingface/transformers for already-tokenised rows (padding masked). */
async function referenceLogits(
  modelDir: string,
  rows: Array<{ ids: number[]; typeIds?: number[] }>,
  withTypeIds: boolean,
): Promise<number[]> {
  const { AutoModelForSequenceClassification, Tensor, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  env.localModelPath = `${path.dirname(modelDir)}/`;
  const model = await AutoModelForSequenceClassification.from_pretrained(path.basename(modelDir), {
    dtype: "fp32",
    device: "cpu",
  });
  const out: number[] = [];
  for (const r of rows) {
    const n = r.ids.length;
    const t = (v: number[]) => new Tensor("int64", BigInt64Array.from(v.map(BigInt)), [1, n]);
    const inputs: Record<string, unknown> = { input_ids: t(r.ids), attention_mask: t(r.ids.map(() => 1)) };
    if (withTypeIds) inputs.token_type_ids = t(r.typeIds ?? r.ids.map(() => 0));
    const res = (await model(inputs)) as { logits: { data: Float32Array } };
    out.push(res.logits.data[0]);
  }
  await model.dispose();
  return out;
}

beforeAll(async () => {
  tinyCross = await ensureFixtureModel("tiny-cross");
  cpu = await loadCrossEncoder({ modelDir: tinyCross, provider: "cpu", threads: 1 });
});
afterAll(() => releaseCrossEncoders());

describe("cross-encoder on the tiny BERT fixture", () => {
  it("describes itself as a fixture on the CPU provider", () => {
    expect(cpu.provider).toBe("cpu");
    expect(cpu.fixture).toBe(true);
    expect(cpu.maxLength).toBe(128);
    expect(cpu.inputNames).toEqual(expect.arrayContaining(["input_ids", "attention_mask", "token_type_ids"]));
    expect(cpu.describe()).toEqual({ model: expect.any(String), provider: "cpu", fixture: true, precision: "fp32" });
    expect(cpu.precision).toBe("fp32");
  });

  it("matches @huggingface/transformers end to end (its tokenizer, its model) within 1e-4", async () => {
    const { AutoTokenizer, AutoModelForSequenceClassification, env } = await import("@huggingface/transformers");
    env.allowRemoteModels = false;
    env.localModelPath = `${path.dirname(tinyCross)}/`;
    const name = path.basename(tinyCross);
    const tokenizer = await AutoTokenizer.from_pretrained(name);
    const model = await AutoModelForSequenceClassification.from_pretrained(name, { dtype: "fp32", device: "cpu" });
    // transformers.js treats an empty text_pair as no pair at all; "" is compared by ids below.
    const docs = DOCS.filter((d) => d !== "");
    const inputs = tokenizer(Array(docs.length).fill(QUERY), { text_pair: docs, padding: true, truncation: true });
    const ref = (await model(inputs)) as { logits: { data: Float32Array } };
    await model.dispose();
    const ours = await cpu.scorePairs(QUERY, docs);
    expect(ours.truncated).toBe(0);
    expect(ours.pairs).toBe(docs.length);
    // Same tokens as the reference tokenizer (unpadded lengths), same logits.
    const mask = inputs.attention_mask.data as BigInt64Array;
    const width = inputs.attention_mask.dims[1];
    const refTokens = Array.from(mask).reduce((s, v) => s + Number(v), 0);
    expect(ours.tokens).toBe(refTokens);
    expect(width).toBe(Math.max(...docs.map((d) => cpu.tokenizer.encodePair(QUERY, d, { maxLength: 128 }).ids.length)));
    for (let i = 0; i < docs.length; i++) expect(Math.abs(ours.logits[i] - ref.logits.data[i])).toBeLessThan(1e-4);
    // The fixture's logits differ between documents (a constant model would make this test vacuous).
    expect(new Set(Array.from(ours.logits, (v) => v.toFixed(3))).size).toBeGreaterThan(3);
  });

  it("matches the reference model on truncated and empty-document pairs fed the same ids", async () => {
    // transformers.js drops the final [SEP] when it truncates a pair, and encodes an empty second
    // text as no pair; Python transformers and we keep [CLS] q [SEP] d [SEP]. So these rows are
    // compared by feeding the reference model our ids.
    const docs = [LONG_DOC, DOCS[0], ""];
    const rows = docs.map((d) => cpu.tokenizer.encodePair(QUERY, d, { maxLength: cpu.maxLength, maxTokensPerDoc: 40 }));
    const ours = await cpu.scorePairs(QUERY, docs, { maxTokensPerDoc: 40 });
    const ref = await referenceLogits(tinyCross, rows, true);
    for (let i = 0; i < docs.length; i++) expect(Math.abs(ours.logits[i] - ref[i])).toBeLessThan(1e-4);
  });

  it("returns scores in input order whatever the batching", async () => {
    const single = await Promise.all(DOCS.map(async (d) => (await cpu.scorePairs(QUERY, [d])).logits[0]));
    const shuffled = [...DOCS.keys()].reverse();
    const together = await cpu.scorePairs(
      QUERY,
      shuffled.map((i) => DOCS[i]),
    );
    for (const [pos, docIndex] of shuffled.entries())
      expect(Math.abs(together.logits[pos] - single[docIndex])).toBeLessThan(1e-5);
  });

  it("gives the same scores with a tiny and a huge token budget", async () => {
    const docs = [...DOCS, LONG_DOC, ...DOCS.map((d) => `${d} ${d}`)];
    const small = await loadCrossEncoder({ modelDir: tinyCross, provider: "cpu", threads: 1, batchTokens: 1 });
    const huge = await loadCrossEncoder({ modelDir: tinyCross, provider: "cpu", threads: 1, batchTokens: 1_000_000 });
    expect(small.batchTokens).toBe(small.maxLength); // never below one full-length pair
    const a = await small.scorePairs(QUERY, docs);
    const b = await huge.scorePairs(QUERY, docs);
    for (let i = 0; i < docs.length; i++) expect(Math.abs(a.logits[i] - b.logits[i])).toBeLessThan(1e-5);
    expect(a.tokens).toBe(b.tokens);
  });

  it("batches by the provider's budget unless told: small on the CPU, large on a GPU", () => {
    expect(cpu.provider).toBe("cpu");
    expect(cpu.batchTokens).toBe(Math.max(CPU_BATCH_TOKENS, cpu.maxLength));
    expect(defaultBatchTokens("cpu")).toBe(CPU_BATCH_TOKENS);
    expect(defaultBatchTokens("wasm")).toBe(CPU_BATCH_TOKENS);
    expect(defaultBatchTokens("cuda")).toBe(GPU_BATCH_TOKENS);
    expect(defaultBatchTokens("webgpu")).toBe(GPU_BATCH_TOKENS);
    expect(CPU_BATCH_TOKENS).toBeLessThan(GPU_BATCH_TOKENS);
  });

  it("truncates over-long documents to the model limit and counts them", async () => {
    const res = await cpu.scorePairs(QUERY, [LONG_DOC, DOCS[0]]);
    expect(res.truncated).toBe(1);
    const longPair = cpu.tokenizer.encodePair(QUERY, LONG_DOC, { maxLength: cpu.maxLength });
    expect(longPair.ids.length).toBe(cpu.maxLength);
    expect(longPair.truncated).toBe(true);
    // max_tokens_per_doc cuts further; both documents now count.
    const capped = await cpu.scorePairs(QUERY, [LONG_DOC, DOCS[0]], { maxTokensPerDoc: 5 });
    expect(capped.truncated).toBe(2);
    expect(capped.tokens).toBe(2 * cpu.tokenizer.encodePair(QUERY, "", { maxLength: 128 }).ids.length + 10);
  });

  it("counts truncation in the rerank response", async () => {
    const res = await rerank({ query: QUERY, documents: [LONG_DOC, "short", LONG_DOC] }, cpu);
    expect(res.meta).toMatchObject({ pairs: 3, truncated: 2, provider: "cpu", fixture: true });
    expect(res.results).toHaveLength(3);
    expect(res.results[0].relevance_score).toBeGreaterThanOrEqual(res.results[2].relevance_score);
  });

  it("chunk strategy scores a long document by its best window and covers all of it", async () => {
    const windows = cpu.tokenizer.chunkDoc(QUERY, LONG_DOC, { maxLength: cpu.maxLength });
    expect(windows.length).toBeGreaterThan(1);
    expect(windows[0].start).toBe(0);
    expect(windows[windows.length - 1].end).toBe(LONG_DOC.length);
    const perWindow = await cpu.scorePairs(
      QUERY,
      windows.map((w) => w.text),
    );
    expect(perWindow.truncated).toBe(0); // every window fits beside the query

    const chunked = await cpu.scorePairs(QUERY, [DOCS[0], LONG_DOC], { strategy: "chunk" });
    expect(chunked.pairs).toBe(1 + windows.length);
    expect(chunked.truncated).toBe(0);
    expect(Math.abs(chunked.logits[1] - Math.max(...perWindow.logits))).toBeLessThan(1e-5);
    // A document that fits is scored exactly as with truncation.
    expect(Math.abs(chunked.logits[0] - (await cpu.scorePairs(QUERY, [DOCS[0]])).logits[0])).toBeLessThan(1e-5);
    // The last window reaches the end of the text, which truncation never sees.
    expect(windows[windows.length - 1].text.endsWith("berlin population is large")).toBe(true);
  });

  it("chunk strategy with max_tokens_per_doc covers only the capped document and counts it", async () => {
    const capped = await cpu.scorePairs(QUERY, [LONG_DOC], { strategy: "chunk", maxTokensPerDoc: 200 });
    expect(capped.truncated).toBe(1);
    const windows = cpu.tokenizer.chunkDoc(QUERY, LONG_DOC, { maxLength: cpu.maxLength, maxTokensPerDoc: 200 });
    expect(capped.pairs).toBe(windows.length);
    expect(windows.reduce((n, w) => Math.max(n, w.end), 0)).toBeLessThan(LONG_DOC.length);
  });
});

describe("execution providers", () => {
  it("falls back from CUDA to CPU and records why", async () => {
    const logs: string[] = [];
    const s = await createOrtSession(path.join(tinyCross, "onnx/model.onnx"), {
      provider: "cuda",
      threads: 1,
      log: (_l, m) => logs.push(m),
    });
    try {
      // This machine has no CUDA EP files; where it has them and a GPU, the session really is on CUDA.
      if (s.provider === "cuda") return;
      expect(s.provider).toBe("cpu");
      expect(s.fallbacks[0]).toMatchObject({ provider: "cuda", reason: expect.stringMatching(/CUDA|cuda|GPU/) });
      expect(logs.some((m) => m.includes("cuda not used"))).toBe(true);
    } finally {
      await s.release();
    }
  });

  it("falls back from WebGPU to CPU when no adapter can be created, with the runtime's reason", async () => {
    const s = await createOrtSession(path.join(tinyCross, "onnx/model.onnx"), {
      provider: "webgpu",
      threads: 1,
      log: () => {},
    });
    try {
      if (s.provider === "webgpu") return; // a machine with a WebGPU adapter
      expect(s.provider).toBe("cpu");
      expect(s.fallbacks).toHaveLength(1);
      expect(s.fallbacks[0].provider).toBe("webgpu");
      expect(s.fallbacks[0].reason.length).toBeGreaterThan(10);
    } finally {
      await s.release();
    }
  });

  it("auto picks a working provider and explains every skipped one", async () => {
    const s = await createOrtSession(path.join(tinyCross, "onnx/model.onnx"), {
      provider: "auto",
      threads: 1,
      log: () => {},
    });
    try {
      expect(["cuda", "webgpu", "cpu"]).toContain(s.provider);
      const order = ["cuda", "webgpu", "cpu"];
      expect(s.fallbacks.map((f) => f.provider)).toEqual(order.slice(0, order.indexOf(s.provider)));
    } finally {
      await s.release();
    }
  });

  it("uses the WASM backend when onnxruntime-node cannot be loaded", async () => {
    const s = await createOrtSession(path.join(tinyCross, "onnx/model.onnx"), {
      provider: "cpu",
      threads: 1,
      log: () => {},
      importNative: () => Promise.reject(new Error("simulated: native addon missing")),
    });
    try {
      expect(s.provider).toBe("wasm");
      expect(s.fallbacks).toEqual([
        { provider: "cpu", reason: "onnxruntime-node could not be loaded: simulated: native addon missing" },
      ]);
    } finally {
      await s.release();
    }
  });

  it("WASM backend scores match the native backend within 1e-4", async () => {
    const wasm = await loadCrossEncoder({ modelDir: tinyCross, provider: "wasm", threads: 1 });
    expect(wasm.provider).toBe("wasm");
    const docs = [...DOCS, LONG_DOC];
    const a = await wasm.scorePairs(QUERY, docs);
    const b = await cpu.scorePairs(QUERY, docs);
    for (let i = 0; i < docs.length; i++) expect(Math.abs(a.logits[i] - b.logits[i])).toBeLessThan(1e-4);
  });

  it("refuses an unknown provider name", async () => {
    await expect(
      createOrtSession(path.join(tinyCross, "onnx/model.onnx"), { provider: "tpu" as never }),
    ).rejects.toThrow(/unknown execution provider "tpu"/);
  });
});

describe("XLM-RoBERTa family (no token_type_ids)", () => {
  it("feeds only the inputs the graph declares and matches the reference", async () => {
    const dir = await ensureFixtureModel("tiny-xlmr-cross");
    const xlmr = await loadCrossEncoder({ modelDir: dir, provider: "cpu", threads: 1 });
    expect(xlmr.inputNames).not.toContain("token_type_ids");
    expect(xlmr.family).toBe("xlm-roberta");
    const docs = [...DOCS.filter((d) => d !== ""), LONG_DOC];
    const ours = await xlmr.scorePairs(QUERY, docs);
    expect(ours.truncated).toBe(1);
    const rows = docs.map((d) => xlmr.tokenizer.encodePair(QUERY, d, { maxLength: xlmr.maxLength }));
    // Untruncated pairs tokenise exactly as the reference tokenizer does (<s> q </s></s> d </s>).
    const { AutoTokenizer, env } = await import("@huggingface/transformers");
    env.allowRemoteModels = false;
    env.localModelPath = `${path.dirname(dir)}/`;
    const refTok = await AutoTokenizer.from_pretrained(path.basename(dir));
    for (const [i, d] of docs.entries()) {
      if (rows[i].truncated) continue;
      const enc = refTok(QUERY, { text_pair: d });
      expect(rows[i].ids).toEqual(Array.from(enc.input_ids.data as BigInt64Array, Number));
    }
    const ref = await referenceLogits(dir, rows, false);
    for (let i = 0; i < docs.length; i++) expect(Math.abs(ours.logits[i] - ref[i])).toBeLessThan(1e-4);
    // Padding with XLM-R's pad id (1) keeps positions right: batched equals one at a time.
    const single = await Promise.all(docs.map(async (d) => (await xlmr.scorePairs(QUERY, [d])).logits[0]));
    for (let i = 0; i < docs.length; i++) expect(Math.abs(ours.logits[i] - single[i])).toBeLessThan(1e-5);
  });
});

describe("model folder errors", () => {
  it("names the missing graph", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ce-empty-"));
    try {
      await expect(loadCrossEncoder({ modelDir: dir })).rejects.toThrow(
        /no ONNX graph in .* \(looked for onnx\/model.onnx, model.onnx\)/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("a failed load is retried, not cached", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ce-retry-"));
    try {
      cpSync(tinyCross, dir, { recursive: true });
      rmSync(path.join(dir, "tokenizer.json"));
      await expect(loadCrossEncoder({ modelDir: dir, provider: "cpu", threads: 1 })).rejects.toThrow(/tokenizer/i);
      cpSync(path.join(tinyCross, "tokenizer.json"), path.join(dir, "tokenizer.json"));
      const ok = await loadCrossEncoder({ modelDir: dir, provider: "cpu", threads: 1 });
      expect((await ok.scorePairs(QUERY, ["a"])).logits).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
