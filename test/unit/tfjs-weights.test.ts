// TF.js weight shards → named tensors (shared/adapters/tfjs-to-onnx.ts readWeights): the same values
// whether the shards come as one buffer (viewed, not copied) or several (joined), and a clear error
// when the manifest and the bytes disagree.
import { describe, expect, it } from "vitest";
import { readWeights, type TfjsModelJson } from "../../shared/adapters/tfjs-to-onnx.ts";

const model: TfjsModelJson = {
  modelTopology: { node: [] },
  weightsManifest: [
    {
      paths: ["group1-shard1of2.bin", "group1-shard2of2.bin"],
      weights: [
        { name: "w", shape: [2, 3], dtype: "float32" },
        { name: "ids", shape: [3], dtype: "int32" },
      ],
    },
  ],
};
const w = Float32Array.of(0.5, -1, 2, 3.25, 4, -5);
const ids = Int32Array.of(7, -8, 9);
const bytes = new Uint8Array(36);
bytes.set(new Uint8Array(w.buffer), 0);
bytes.set(new Uint8Array(ids.buffer), 24);

describe("readWeights", () => {
  it("views one buffer without copying, and joins several shards to the same values", () => {
    const one = readWeights(model, [bytes]);
    expect(Array.from(one.get("w")!.data)).toEqual(Array.from(w));
    expect(Array.from(one.get("ids")!.data)).toEqual(Array.from(ids));
    expect(one.get("w")).toMatchObject({ dtype: "float32", shape: [2, 3] });
    expect(one.get("w")!.data.buffer).toBe(bytes.buffer);
    // A weight that straddles two shard files.
    const split = readWeights(model, [bytes.slice(0, 10), bytes.slice(10)]);
    expect(Array.from(split.get("w")!.data)).toEqual(Array.from(w));
    expect(Array.from(split.get("ids")!.data)).toEqual(Array.from(ids));
  });

  it("copies a weight whose offset is not 4-byte aligned instead of failing", () => {
    const shifted = new Uint8Array(37);
    shifted.set(bytes, 1);
    const got = readWeights(model, [shifted.subarray(1)]);
    expect(Array.from(got.get("w")!.data)).toEqual(Array.from(w));
    expect(Array.from(got.get("ids")!.data)).toEqual(Array.from(ids));
  });

  it("refuses shards shorter or longer than the manifest describes", () => {
    expect(() => readWeights(model, [bytes.slice(0, 30)])).toThrow(/more bytes than the shards hold \(30\)/);
    expect(() => readWeights(model, [new Uint8Array(40)])).toThrow(/describes 36 bytes, the shards hold 40/);
  });
});
