// Dynamic int8 quantisation of an fp32 transformer graph, in TypeScript: the transformation
// onnxruntime's quantize_dynamic applies to MatMuls and embedding Gathers.
//
// Each MatMul whose second input is a constant fp32 matrix becomes
//     DynamicQuantizeLinear(x) → MatMulInteger(x_q, W_q, x_zero, W_zero) → Cast(float) → Mul(x_scale · W_scale)
// with W quantised to int8, symmetric, per tensor (scale = max|W| / 127). Activations are quantised
// at run time, so no calibration data is needed. ORT fuses the pattern into its int8 kernels
// (VNNI / AMX where the CPU has them).
//
// Each Gather from a large constant fp32 table (the word embeddings: 30K–250K rows, most of a
// small model's bytes) becomes
//     Gather(T_q, ids) → Cast(float) → Mul(Gather(row_scale, ids))
// with one symmetric int8 scale per row, so only the rows a batch looks up are dequantised. This
// is what makes the int8 file small (MiniLM-L6: 24 MB instead of 59 MB with the table left fp32)
// and its session quick to create, which a cold start pays for. ORT's quantize_dynamic also
// quantises these Gathers (one scale per tensor); a scale per row keeps rare tokens' rows precise.
//
// The fixture generator writes its int8 graphs by running this on its fp32 graph, so generated and
// converted int8 graphs are one implementation.
//
// Refused, with the reason: a graph that is already quantised, one with external data, one with no
// MatMul over a constant fp32 matrix (nothing to do), and weights stored in a type other than fp32.
import onnxProto from "onnx-proto";
import { DataType } from "./onnx-graph.ts";

const { onnx } = onnxProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type INodeProto = onnxProto.onnx.INodeProto;

export class QuantizeRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QuantizeRefusedError";
  }
}

/** W (fp32) → int8 values and the per-tensor scale (symmetric, zero point 0): one row of quantizeRows. */
export function quantizeWeights(w: Float32Array): { q: Int8Array; scale: number } {
  const { q, scales } = quantizeRows(w, 1, w.length);
  return { q, scale: scales[0] };
}

/** A [rows, cols] table → int8 rows with one symmetric scale per row (an all-zero row gets scale 1). */
export function quantizeRows(t: Float32Array, rows: number, cols: number): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let maxAbs = 0;
    for (let c = r * cols; c < (r + 1) * cols; c++) maxAbs = Math.max(maxAbs, Math.abs(t[c]));
    const scale = Math.fround(maxAbs / 127 || 1);
    scales[r] = scale;
    for (let c = r * cols; c < (r + 1) * cols; c++) q[c] = Math.max(-127, Math.min(127, Math.round(t[c] / scale)));
  }
  return { q, scales };
}

/**
 * Gathers from tables of at least this many values are quantised: vocabulary tables (MiniLM's is
 * 11.7M values) and long-context position tables, not BERT's 512-position or token-type tables,
 * which are small and which every token reads.
 */
export const GATHER_MIN_VALUES = 1 << 20;

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
  /** Embedding Gathers turned into int8 row lookups (tables of ≥ GATHER_MIN_VALUES values). */
  gathers: number;
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

  const out: INodeProto[] = [];
  const added: ITensorProto[] = [];
  const consumers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input ?? []) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  // Uses of each fp32 initializer that were rewritten; it goes when all of its uses were.
  const rewritten = new Map<string, number>();
  const rewrote = (name: string) => rewritten.set(name, (rewritten.get(name) ?? 0) + 1);
  let quantized = 0;
  let gathers = 0;
  let kept = 0;
  let k = 0;
  for (const n of nodes) {
    if (n.opType === "Gather") {
      const t = initializers.get(n.input?.[0] ?? "");
      // protobufjs may hand 64-bit fields over as Long objects; String() reads either form.
      const dims = (t?.dims ?? []).map((d) => Number(String(d)));
      const axis = Number(String(n.attribute?.find((a) => a.name === "axis")?.i ?? 0));
      const data = t && dims.length === 2 && axis === 0 ? floatsOf(t) : null;
      if (!t || !data || data.length < GATHER_MIN_VALUES) {
        out.push(n);
        continue;
      }
      const { q, scales } = quantizeRows(data, dims[0], dims[1]);
      const base = `${t.name}__int8_${k++}`;
      added.push(
        { name: `${base}_quantized`, dims: t.dims, dataType: DataType.INT8, rawData: new Uint8Array(q.buffer) },
        {
          name: `${base}_row_scale`,
          dims: [dims[0], 1],
          dataType: DataType.FLOAT,
          rawData: new Uint8Array(scales.buffer),
        },
      );
      const ids = n.input![1];
      const tag = `${n.name || base}_int8`;
      out.push(
        { opType: "Gather", name: `${tag}/Gather`, input: [`${base}_quantized`, ids], output: [`${tag}/rows_q`] },
        {
          opType: "Cast",
          name: `${tag}/Cast`,
          input: [`${tag}/rows_q`],
          output: [`${tag}/rows_f`],
          attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: DataType.FLOAT }],
        },
        { opType: "Gather", name: `${tag}/GatherScale`, input: [`${base}_row_scale`, ids], output: [`${tag}/scale`] },
        { opType: "Mul", name: `${tag}/Mul`, input: [`${tag}/rows_f`, `${tag}/scale`], output: n.output ?? [] },
      );
      gathers++;
      rewrote(t.name ?? "");
      continue;
    }
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
    rewrote(w.name ?? "");
  }
  const replaced = new Set([...rewritten].filter(([name, uses]) => uses === consumers.get(name)).map(([name]) => name));
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
  return {
    model: encoded,
    report: { quantized, gathers, kept, bytesBefore: bytes.byteLength, bytesAfter: encoded.byteLength },
  };
}
