// Dynamic int8 quantisation of an fp32 transformer graph, in TypeScript: the transformation
// onnxruntime's quantize_dynamic applies to MatMuls. Each MatMul whose second input is a constant
// fp32 matrix becomes
//     DynamicQuantizeLinear(x) → MatMulInteger(x_q, W_q, x_zero, W_zero) → Cast(float) → Mul(x_scale · W_scale)
// with W quantised to int8, symmetric, per tensor (scale = max|W| / 127). Activations are quantised
// at run time, so no calibration data is needed. ORT fuses the pattern into its int8 kernels
// (VNNI / AMX where the CPU has them). The fixture generator writes the same pattern through
// `quantizedMatMul`, so generated and converted int8 graphs are one implementation.
//
// Refused, with the reason: a graph that is already quantised, one with external data, one with no
// MatMul over a constant fp32 matrix (nothing to do), and weights stored in a type other than fp32.
import onnxProto from "onnx-proto";
import { DataType, type GraphBuilder } from "./onnx-graph.ts";

const { onnx } = onnxProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type INodeProto = onnxProto.onnx.INodeProto;

export class QuantizeRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QuantizeRefusedError";
  }
}

/** W (fp32) → int8 values and the per-tensor scale (symmetric, zero point 0). */
export function quantizeWeights(w: Float32Array): { q: Int8Array; scale: number } {
  let maxAbs = 0;
  for (const v of w) maxAbs = Math.max(maxAbs, Math.abs(v));
  const scale = Math.fround(maxAbs / 127 || 1);
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.max(-127, Math.min(127, Math.round(w[i] / scale)));
  return { q, scale };
}

/** x · W with W int8 (symmetric, per tensor) and x quantised to uint8 at run time (graph-builder form). */
export function quantizedMatMul(
  g: GraphBuilder,
  x: string,
  name: string,
  dims: number[],
  w: Float32Array,
  scope: string,
): string {
  const { q, scale } = quantizeWeights(w);
  const wq = g.int8Tensor(`${name}_quantized`, dims, q, DataType.INT8);
  const wScale = g.floatTensor(`${name}_scale`, [], Float32Array.of(scale));
  const wZero = g.int8Tensor(`${name}_zero_point`, [], Int8Array.of(0), DataType.INT8);
  const [xq, xScale, xZero] = g.op("DynamicQuantizeLinear", [x], {}, { scope, outputs: 3 });
  const acc = g.op1("MatMulInteger", [xq, wq, xZero, wZero], {}, { scope });
  const accF = g.op1("Cast", [acc], { to: DataType.FLOAT }, { scope });
  const outScale = g.op1("Mul", [xScale, wScale], {}, { scope });
  return g.op1("Mul", [accF, outScale], {}, { scope });
}

function floatsOf(t: ITensorProto): Float32Array | null {
  if (t.dataType !== DataType.FLOAT) return null;
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData;
    // Copy: protobuf's buffer may not be 4-byte aligned.
    return new Float32Array(Uint8Array.from(raw).buffer);
  }
  if (t.floatData && t.floatData.length > 0) return Float32Array.from(t.floatData);
  return null;
}

export interface QuantizeReport {
  /** MatMuls turned into MatMulInteger. */
  quantized: number;
  /** MatMuls left in fp32 (their second input is computed, e.g. attention scores). */
  kept: number;
  bytesBefore: number;
  bytesAfter: number;
}

/** Quantises a serialised fp32 ModelProto; returns the int8 model's bytes and what changed. */
export function quantizeDynamicInt8(bytes: Uint8Array): { model: Uint8Array; report: QuantizeReport } {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) throw new QuantizeRefusedError("the file has no graph");
  const nodes = graph.node ?? [];
  if (
    nodes.some(
      (n) => n.opType === "MatMulInteger" || n.opType === "DynamicQuantizeLinear" || n.opType === "QLinearMatMul",
    )
  )
    throw new QuantizeRefusedError("the graph is already quantised (it has MatMulInteger / QLinearMatMul nodes)");
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  for (const t of initializers.values()) {
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
      throw new QuantizeRefusedError(`initializer ${t.name} is stored as external data; load it into the file first`);
  }
  const used = new Set<string>();
  for (const n of nodes) for (const i of n.input ?? []) used.add(i);

  const out: INodeProto[] = [];
  const added: ITensorProto[] = [];
  const consumers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input ?? []) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  const replaced = new Set<string>();
  let quantized = 0;
  let kept = 0;
  let k = 0;
  for (const n of nodes) {
    const w = n.opType === "MatMul" ? initializers.get(n.input?.[1] ?? "") : undefined;
    if (n.opType !== "MatMul") {
      out.push(n);
      continue;
    }
    if (!w || (w.dims ?? []).length !== 2) {
      kept++;
      out.push(n);
      continue;
    }
    const data = floatsOf(w);
    if (!data) throw new QuantizeRefusedError(`MatMul ${n.name}: weight ${w.name} is not stored as fp32`);
    const { q, scale } = quantizeWeights(data);
    const base = `${w.name}__int8_${k++}`;
    added.push(
      { name: `${base}_quantized`, dims: w.dims, dataType: DataType.INT8, rawData: new Uint8Array(q.buffer) },
      {
        name: `${base}_scale`,
        dims: [],
        dataType: DataType.FLOAT,
        rawData: new Uint8Array(Float32Array.of(scale).buffer),
      },
      { name: `${base}_zero_point`, dims: [], dataType: DataType.INT8, rawData: Uint8Array.of(0) },
    );
    const x = n.input![0];
    const tag = `${n.name || base}_int8`;
    const [xq, xs, xz] = [`${tag}/x_q`, `${tag}/x_scale`, `${tag}/x_zero`];
    out.push(
      { opType: "DynamicQuantizeLinear", name: `${tag}/DynamicQuantizeLinear`, input: [x], output: [xq, xs, xz] },
      {
        opType: "MatMulInteger",
        name: `${tag}/MatMulInteger`,
        input: [xq, `${base}_quantized`, xz, `${base}_zero_point`],
        output: [`${tag}/acc`],
      },
      {
        opType: "Cast",
        name: `${tag}/Cast`,
        input: [`${tag}/acc`],
        output: [`${tag}/acc_f`],
        attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: DataType.FLOAT }],
      },
      { opType: "Mul", name: `${tag}/Scale`, input: [xs, `${base}_scale`], output: [`${tag}/scale`] },
      { opType: "Mul", name: `${tag}/Mul`, input: [`${tag}/acc_f`, `${tag}/scale`], output: n.output ?? [] },
    );
    quantized++;
    // The fp32 weight goes when this MatMul was its only user.
    if ((consumers.get(w.name ?? "") ?? 0) === 1) replaced.add(w.name ?? "");
  }
  if (quantized === 0)
    throw new QuantizeRefusedError(
      "no MatMul with a constant fp32 weight matrix: this graph is not a transformer this quantiser understands",
    );
  graph.node = out;
  graph.initializer = [...(graph.initializer ?? []).filter((t) => !replaced.has(t.name ?? "")), ...added];
  const opset = (model.opsetImport ?? []).find((o) => !o.domain);
  // DynamicQuantizeLinear and MatMulInteger exist from opset 11 / 10.
  if (opset && Number(opset.version) < 11) opset.version = 11;
  const encoded = onnx.ModelProto.encode(model).finish();
  return { model: encoded, report: { quantized, kept, bytesBefore: bytes.byteLength, bytesAfter: encoded.byteLength } };
}
