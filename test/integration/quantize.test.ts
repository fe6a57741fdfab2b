// `models quantize`: the TypeScript dynamic-int8 transformation on real onnxruntime-node. Score
// agreement with fp32 is part of the contract; with random fixture weights these figures show the
// quantisation error of the arithmetic, not what a trained model's ranking would do.
import { existsSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCrossEncoder, modelFileIn, releaseCrossEncoders, wantsInt8 } from "../../shared/adapters/cross-encoder.ts";
import { DataType, GraphBuilder } from "../../shared/adapters/onnx-graph.ts";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import {
  GATHER_MIN_VALUES,
  QuantizeRefusedError,
  quantizeDynamicInt8,
  quantizeRows,
} from "../../shared/adapters/onnx-quantize.ts";
import { quantizeFolder } from "../../scripts/models/quantize.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "quantize-"));
});
afterAll(async () => {
  await releaseCrossEncoders();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const QUERY = "how are index snapshots published";
const DOCS = Array.from(
  { length: 24 },
  (_, i) => `passage ${i}: snapshots are written as files ${"and the pointer flips ".repeat(i % 5)}at the end ${i * 7}`,
);

async function logits(dir: string, quantized: boolean): Promise<Float32Array> {
  const m = await loadCrossEncoder({ modelDir: dir, provider: "cpu", quantized, threads: 1 });
  return (await m.scorePairs(QUERY, DOCS, { strategy: "truncate" })).logits;
}

function agreement(a: Float32Array, b: Float32Array, k: number) {
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  const spread = Math.max(...a) - Math.min(...a);
  const top = (x: Float32Array) => new Set([...x.keys()].sort((i, j) => x[j] - x[i]).slice(0, k));
  const ta = top(a);
  const overlap = [...top(b)].filter((i) => ta.has(i)).length / k;
  return { relative: maxDiff / spread, overlap };
}

describe("models quantize", () => {
  it("writes an int8 graph that the CPU reranker picks by default, close to fp32, and records it in checksums", async () => {
    const src = await ensureFixtureModel("tiny-cross");
    const dir = path.join(tmp, "tiny");
    await cp(src, dir, { recursive: true });
    await unlink(path.join(dir, "onnx", "model_quantized.onnx"));
    expect(modelFileIn(dir, true)).toBe(path.join(dir, "onnx", "model.onnx"));
    const r = await quantizeFolder(dir);
    expect(r.quantized).toBeGreaterThan(0);
    expect(r.bytesAfter).toBeLessThan(r.bytesBefore);
    expect(modelFileIn(dir, wantsInt8(true, "cpu"))).toBe(path.join(dir, "onnx", "model_quantized.onnx"));
    expect(modelFileIn(dir, wantsInt8(false, "cpu"))).toBe(path.join(dir, "onnx", "model.onnx"));
    const checks = JSON.parse(await readFile(path.join(dir, "checksums.json"), "utf8"));
    expect(checks.files["onnx/model_quantized.onnx"].bytes).toBe(r.bytesAfter);

    const m = await loadCrossEncoder({ modelDir: dir, provider: "cpu", quantized: true, threads: 1 });
    expect(m.precision).toBe("int8");
    expect(m.describe().precision).toBe("int8");
    const fp32 = await logits(dir, false);
    const int8 = await logits(dir, true);
    const a = agreement(fp32, int8, 4);
    expect(a.relative).toBeLessThan(0.1);
    // The generator's own int8 graph uses the same transformation: identical scores.
    const generated = await logits(src, true);
    for (let i = 0; i < int8.length; i++) expect(int8[i]).toBeCloseTo(generated[i], 5);
    await expect(quantizeFolder(dir)).rejects.toThrow(/exists/);
  }, 120_000);

  it("quantizes the PyTorch export in ../shared/data (a graph it did not write) with bounded error", async () => {
    const src = path.resolve(import.meta.dirname, "../../../shared/data/models/minilm-l6-cross-encoder-random-weights");
    if (!existsSync(path.join(src, "onnx", "model.onnx"))) {
      console.warn(`SKIP PyTorch export quantization: ${src} not found`);
      return;
    }
    const dir = path.join(tmp, "export");
    await cp(src, dir, { recursive: true });
    const r = await quantizeFolder(dir);
    expect(r.quantized).toBeGreaterThanOrEqual(36); // 6 layers × (Q, K, V, O, FFN in, FFN out)
    // The 30522×384 word table becomes int8 rows (the 512-position and type tables stay fp32), so
    // the file is about a quarter of the fp32 one rather than two thirds.
    expect(r.gathers).toBe(1);
    expect(r.bytesAfter).toBeLessThan(0.3 * r.bytesBefore);
    const fp32 = await logits(dir, false);
    const int8 = await logits(dir, true);
    // This export's random weights give nearly the same logit for every pair (spread ~1e-6), so a
    // spread-relative error means nothing here; the absolute error is what it can show.
    let maxDiff = 0;
    for (let i = 0; i < fp32.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fp32[i] - int8[i]));
    const scale = Math.max(...Array.from(fp32, Math.abs));
    console.log(
      `int8 vs fp32 (PyTorch export): max |Δlogit| ${maxDiff.toExponential(2)}, |logit| ≤ ${scale.toFixed(4)}`,
    );
    expect(maxDiff).toBeLessThan(0.05 * Math.max(scale, 0.01));
  }, 300_000);

  it("stores large embedding tables as int8 rows with a scale each, dequantising only the rows looked up", async () => {
    const rows = 4096;
    const cols = GATHER_MIN_VALUES / rows;
    const table = new Float32Array(rows * cols);
    // Rows of very different magnitudes: one scale per tensor would flatten the small ones to 0.
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) table[r * cols + c] = Math.sin(r * 7.1 + c) * 10 ** ((r % 5) - 3);
    table.fill(0, 5 * cols, 6 * cols); // an all-zero row (a padding row)
    const small = new Float32Array(64 * cols).map((_, i) => Math.cos(i));
    const build = (shareTable: boolean) => {
      const g = new GraphBuilder();
      const emb = g.op1("Gather", [g.floatTensor("table", [rows, cols], table), "ids"], {}, { name: "emb" });
      const pos = g.op1("Gather", [g.floatTensor("small", [64, cols], small), "pos"], {}, { name: "pos_emb" });
      const w = new Float32Array(cols * 4).map((_, i) => ((i * 37) % 11) / 11 - 0.5);
      g.op1("MatMul", [g.op1("Add", [emb, pos]), g.floatTensor("w", [cols, 4], w)], {}, { name: "y" });
      // A second use of the table (as tied output weights would be) keeps its fp32 copy.
      if (shareTable) g.op1("ReduceSum", ["table"], { keepdims: 0 }, { name: "table_sum" });
      return g.encode({
        name: "gather",
        opset: 13,
        inputs: [
          { name: "ids", elemType: DataType.INT64, dims: [2, 3] },
          { name: "pos", elemType: DataType.INT64, dims: [2, 3] },
        ],
        outputs: [
          { name: "emb", elemType: DataType.FLOAT, dims: [2, 3, cols] },
          { name: "y", elemType: DataType.FLOAT, dims: [2, 3, 4] },
          ...(shareTable ? [{ name: "table_sum", elemType: DataType.FLOAT, dims: [cols] }] : []),
        ],
      });
    };
    const fp32 = build(false);
    const { model, report } = quantizeDynamicInt8(fp32);
    expect(report).toMatchObject({ quantized: 1, gathers: 1 });
    expect(model.byteLength).toBeLessThan(0.3 * fp32.byteLength);
    const names = (m: Uint8Array) =>
      new Set((onnxProto.onnx.ModelProto.decode(m).graph?.initializer ?? []).map((t) => t.name));
    expect(names(model).has("table")).toBe(false);
    expect(names(model).has("small")).toBe(true); // below GATHER_MIN_VALUES: left fp32

    const idList = [0, 5, 4095, 1, 2, 3];
    const feeds = {
      ids: new ort.Tensor("int64", BigInt64Array.from(idList.map(BigInt)), [2, 3]),
      pos: new ort.Tensor("int64", BigInt64Array.from([0, 1, 2, 0, 1, 2].map(BigInt)), [2, 3]),
    };
    const run = async (bytes: Uint8Array) => (await ort.InferenceSession.create(bytes)).run(feeds);
    const [a, b] = [await run(fp32), await run(model)];
    const { scales } = quantizeRows(table, rows, cols);
    const got = b.emb.data as Float32Array;
    idList.forEach((id, i) => {
      for (let c = 0; c < cols; c++) {
        const want = table[id * cols + c];
        // Rounding to the row's own grid: at most half a step off, and zero rows stay exactly zero.
        expect(Math.abs(got[i * cols + c] - want)).toBeLessThanOrEqual(scales[id] / 2 + 1e-12);
        expect((a.emb.data as Float32Array)[i * cols + c]).toBe(want);
      }
    });
    expect(Array.from(got.subarray(cols, 2 * cols)).every((v) => v === 0)).toBe(true);

    const shared = quantizeDynamicInt8(build(true));
    expect(shared.report.gathers).toBe(1);
    expect(names(shared.model).has("table")).toBe(true);
  });

  it("refuses graphs it does not understand, saying why", async () => {
    const g = new GraphBuilder();
    g.op1("Add", ["x", g.floatTensor("b", [4], new Float32Array(4))], {}, { name: "y" });
    const plain = g.encode({
      name: "no-matmul",
      opset: 13,
      inputs: [{ name: "x", elemType: DataType.FLOAT, dims: [4] }],
      outputs: [{ name: "y", elemType: DataType.FLOAT, dims: [4] }],
    });
    expect(() => quantizeDynamicInt8(plain)).toThrow(QuantizeRefusedError);
    expect(() => quantizeDynamicInt8(plain)).toThrow(/no MatMul with a constant fp32 weight/);
    const already = await readFile(path.join(await ensureFixtureModel("tiny-cross"), "onnx", "model_quantized.onnx"));
    expect(() => quantizeDynamicInt8(new Uint8Array(already))).toThrow(/already quantised/);
    const empty = path.join(tmp, "empty");
    await writeFile(path.join(tmp, "placeholder"), "");
    await expect(quantizeFolder(empty)).rejects.toThrow(/no fp32 graph/);
  });

  it("fp32 scores do not depend on the batch a pair is scored in (int8 ones can: one activation scale per batch)", async () => {
    const dir = await ensureFixtureModel("tiny-cross");
    const spreadOf = async (quantized: boolean) => {
      const m = await loadCrossEncoder({ modelDir: dir, provider: "cpu", quantized, threads: 1 });
      const alone = (await m.scorePairs(QUERY, [DOCS[0]], { strategy: "truncate" })).logits[0];
      const inBatch = (await m.scorePairs(QUERY, DOCS, { strategy: "truncate" })).logits[0];
      return Math.abs(alone - inBatch);
    };
    expect(await spreadOf(false)).toBeLessThan(1e-4);
    const int8 = await spreadOf(true);
    // Recorded, not asserted: how far int8 moves with its batch is a property of the weights.
    console.log(`int8: one pair alone vs in a batch of ${DOCS.length}: |Δlogit| ${int8.toExponential(2)}`);
  });

  it("GPU providers stay fp32 even when int8 is asked for", () => {
    expect(wantsInt8(true, "cuda")).toBe(false);
    expect(wantsInt8(true, "webgpu")).toBe(false);
    expect(wantsInt8(true, "cpu")).toBe(true);
    expect(wantsInt8(true, "wasm")).toBe(true);
  });
});
