// Loads the native addons for real, so a broken install fails CI.
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

const require = createRequire(import.meta.url);

describe("native dependencies", () => {
  it("faiss-node builds and searches an inner-product index", () => {
    const faiss = require("faiss-node");
    const index = new faiss.IndexFlatIP(3);
    index.add([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const r = index.search([0.1, 0.9, 0.2], 2);
    expect(r.labels).toEqual([1, 2]);
    expect(r.distances[0]).toBeCloseTo(0.9, 5);
  });

  it("onnxruntime-node runs a session on a tiny ONNX graph", async () => {
    const ort = await import("onnxruntime-node");
    // A hand-encoded ONNX model: y = Add(x, x), float[1,2] (ModelProto with ir_version 8, opset 13).
    const model = tinyAddModel();
    const session = await ort.InferenceSession.create(model);
    const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1.5, -2]), [1, 2]) });
    expect(Array.from(out.y.data as Float32Array)).toEqual([3, -4]);
  });
});

/** Minimal protobuf writer for the one-node model above (no dependency on the fixture generator). */
function tinyAddModel(): Uint8Array {
  const bytes: number[] = [];
  const varint = (out: number[], v: number) => {
    while (v > 127) {
      out.push((v & 127) | 128);
      v >>>= 7;
    }
    out.push(v);
  };
  const field = (out: number[], no: number, payload: number[] | string) => {
    const p = typeof payload === "string" ? [...Buffer.from(payload)] : payload;
    varint(out, (no << 3) | 2);
    varint(out, p.length);
    out.push(...p);
  };
  const intField = (out: number[], no: number, v: number) => {
    varint(out, no << 3);
    varint(out, v);
  };
  const valueInfo = (name: string) => {
    const dims: number[] = [];
    for (const d of [1, 2]) {
      const dim: number[] = [];
      intField(dim, 1, d);
      field(dims, 1, dim);
    }
    const tensorType: number[] = [];
    intField(tensorType, 1, 1); // FLOAT
    field(tensorType, 2, dims);
    const type: number[] = [];
    field(type, 1, tensorType);
    const vi: number[] = [];
    field(vi, 1, name);
    field(vi, 2, type);
    return vi;
  };
  const node: number[] = [];
  field(node, 1, "x");
  field(node, 1, "x");
  field(node, 2, "y");
  field(node, 4, "Add");
  const graph: number[] = [];
  field(graph, 1, node);
  field(graph, 2, "g");
  field(graph, 11, valueInfo("x"));
  field(graph, 12, valueInfo("y"));
  intField(bytes, 1, 8);
  field(bytes, 7, graph);
  const opset: number[] = [];
  intField(opset, 2, 13);
  field(bytes, 8, opset);
  return Uint8Array.from(bytes);
}
