// Exact inner-product scan for the "flat" index type: WebAssembly SIMD, or the same loop compiled
// natively into our faiss-node build (scripts/faiss-node/flat-scan.cc) over the same memory.
//
// Why not faiss's own IndexFlatIP search: the faiss we link (Debian libfaiss 1.7.3, built for
// baseline x86-64) computes inner products with its scalar reference kernel
// (fvec_inner_product → fvec_inner_product_ref: one multiply-add per loop iteration on a single
// dependency chain), 4–5× slower than reading the vectors from memory. The 128-bit WebAssembly
// loop with four accumulators runs at 1.2–1.3× a plain read of the same bytes, the native AVX2/FMA
// one at 1.0–1.15× (`npm run bench -- faiss`).
//
// The vectors stay in faiss's on-disk layout: an IndexFlatIP file is a 45-byte header followed by
// the raw float32 rows, so a snapshot's index.faiss is read (or streamed) straight into WebAssembly
// memory, and toBuffer() writes a file faiss itself reads back. An SQfp16 file is laid out the same
// way (an 81-byte header, then the rows as IEEE halves); where the native scan reads halves
// (`scanF16`), an fp16 snapshot is kept as fp16: half the memory to fill at load, half to read per
// query, and the scores are those of the decoded vectors.
import { ValidationError } from "../core/errors.ts";
import { METRIC_INNER_PRODUCT } from "./faiss-file-check.ts";
import type { VectorSearchResult } from "../core/ports.ts";
import { topK } from "../core/top-k.ts";

// ---------- the kernel: scan(q, rows, n, rowBytes, out) writes out[i] = <q, row_i> ----------

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const name = (s: string) => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];

function kernelModule(): Uint8Array<ArrayBuffer> {
  const I32 = 0x7f;
  const F32 = 0x7d;
  const V128 = 0x7b;
  // params: 0 q, 1 rows, 2 n, 3 rowBytes, 4 out; locals: 5 i, 6 j, 7 row, 8-11 acc0..3 (v128), 12 tail (f32)
  const get = (i: number) => [0x20, ...uleb(i)];
  const set = (i: number) => [0x21, ...uleb(i)];
  const i32 = (v: number) => [0x41, ...uleb(v)]; // small non-negative constants only
  const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];
  const load = (offset: number) => simd(0x00, 4, ...uleb(offset)); // v128.load align=16 offset
  const zero = simd(0x0c, ...new Array(16).fill(0)); // v128.const 0
  const addr = (base: number, offset = 0) => [...get(base), ...get(6), 0x6a, ...(offset ? [...i32(offset), 0x6a] : [])];
  const I32_ADD = 0x6a;
  const I32_GT_U = 0x4b;
  const F32X4_ADD = 0xe4;
  const F32X4_MUL = 0xe6;
  const macc = (acc: number, offset: number) => [
    ...get(acc),
    ...get(0),
    ...get(6),
    I32_ADD,
    ...load(offset),
    ...get(7),
    ...get(6),
    I32_ADD,
    ...load(offset),
    ...simd(F32X4_MUL),
    ...simd(F32X4_ADD),
    ...set(acc),
  ];
  // while (j + step <= rowBytes) { body; j += step }
  const loopWhileFits = (step: number, body: number[]) => [
    0x02,
    0x40,
    0x03,
    0x40,
    ...get(6),
    ...i32(step),
    I32_ADD,
    ...get(3),
    I32_GT_U,
    0x0d,
    1, // br_if out of the block
    ...body,
    ...get(6),
    ...i32(step),
    I32_ADD,
    ...set(6),
    0x0c,
    0, // br to loop start
    0x0b,
    0x0b,
  ];
  const lane = (i: number) => [...get(8), ...simd(0x1f, i)]; // f32x4.extract_lane
  const code = [
    ...i32(0),
    ...set(5),
    ...get(1),
    ...set(7),
    0x02,
    0x40,
    0x03,
    0x40,
    ...get(5),
    ...get(2),
    0x4f, // i32.ge_u
    0x0d,
    1,
    ...zero,
    ...set(8),
    ...zero,
    ...set(9),
    ...zero,
    ...set(10),
    ...zero,
    ...set(11),
    0x43,
    0,
    0,
    0,
    0, // f32.const 0
    ...set(12),
    ...i32(0),
    ...set(6),
    // 64 bytes per step on four independent accumulators, then 16-byte steps, then single floats.
    ...loopWhileFits(64, [...macc(8, 0), ...macc(9, 16), ...macc(10, 32), ...macc(11, 48)]),
    ...loopWhileFits(16, macc(8, 0)),
    ...loopWhileFits(4, [
      ...get(12),
      ...addr(0),
      0x2a,
      2,
      0, // f32.load
      ...addr(7),
      0x2a,
      2,
      0,
      0x94, // f32.mul
      0x92, // f32.add
      ...set(12),
    ]),
    // out[i] = hsum(acc0 + acc1 + acc2 + acc3) + tail
    ...get(4),
    ...get(5),
    ...i32(2),
    0x74, // i32.shl
    I32_ADD,
    ...get(8),
    ...get(9),
    ...simd(F32X4_ADD),
    ...get(10),
    ...get(11),
    ...simd(F32X4_ADD),
    ...simd(F32X4_ADD),
    ...set(8),
    ...lane(0),
    ...lane(1),
    0x92,
    ...lane(2),
    ...lane(3),
    0x92,
    0x92,
    ...get(12),
    0x92,
    0x38,
    2,
    0, // f32.store
    ...get(7),
    ...get(3),
    I32_ADD,
    ...set(7),
    ...get(5),
    ...i32(1),
    I32_ADD,
    ...set(5),
    0x0c,
    0,
    0x0b,
    0x0b,
    0x0b,
  ];
  const locals = vec([
    [...uleb(3), I32],
    [...uleb(4), V128],
    [...uleb(1), F32],
  ]);
  const body = [...locals, ...code];
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), 0]])),
    ...section(2, vec([[...name("env"), ...name("mem"), 0x02, 0x00, ...uleb(1)]])),
    ...section(3, vec([[0]])),
    ...section(7, vec([[...name("scan"), 0x00, 0]])),
    ...section(10, vec([[...uleb(body.length), ...body]])),
  ]);
}

let compiled: WebAssembly.Module | null | undefined;
function kernel(): WebAssembly.Module | null {
  if (compiled === undefined) {
    const bytes = kernelModule();
    compiled = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  return compiled;
}

/** Whether this runtime runs WebAssembly SIMD (Node ≥ 16.4 does). */
export function simdFlatAvailable(): boolean {
  return kernel() !== null;
}

// ---------- faiss IndexFlatIP file layout ----------

/** "IxFI", d (i32), ntotal (i64), two dummies (i64), is_trained (u8), metric (i32), count (u64). */
export const FLAT_HEADER_BYTES = 45;

export interface FlatHeader {
  dimensions: number;
  count: number;
}

/** Reads the header of a faiss IndexFlatIP file; null when the bytes are some other index type. */
export function parseFlatHeader(bytes: Uint8Array): FlatHeader | null {
  if (bytes.byteLength < FLAT_HEADER_BYTES) return null;
  if (bytes[0] !== 0x49 || bytes[1] !== 0x78 || bytes[2] !== 0x46 || bytes[3] !== 0x49) return null; // "IxFI"
  const v = new DataView(bytes.buffer, bytes.byteOffset, FLAT_HEADER_BYTES);
  const d = v.getInt32(4, true);
  const n = Number(v.getBigInt64(8, true));
  const metric = v.getInt32(33, true);
  const floats = Number(v.getBigUint64(37, true));
  if (metric !== METRIC_INNER_PRODUCT || d <= 0 || n < 0 || floats !== n * d) return null;
  return { dimensions: d, count: n };
}

function writeFlatHeader(out: Uint8Array, h: FlatHeader): void {
  const v = new DataView(out.buffer, out.byteOffset, FLAT_HEADER_BYTES);
  out.set([0x49, 0x78, 0x46, 0x49], 0);
  v.setInt32(4, h.dimensions, true);
  v.setBigInt64(8, BigInt(h.count), true);
  v.setBigInt64(16, 1n << 20n, true); // faiss writes these two unused fields as 1 << 20
  v.setBigInt64(24, 1n << 20n, true);
  out[32] = 1; // is_trained
  v.setInt32(33, METRIC_INNER_PRODUCT, true);
  v.setBigUint64(37, BigInt(h.count * h.dimensions), true);
}

// ---------- the index ----------

const PAGE = 65536;
/** Rows start 16-byte aligned with room for the file header just before them (45 bytes for flat, 81 for SQfp16). */
const ROWS_OFFSET = 96;
const MAX_MEMORY = 65536 * PAGE; // wasm32: 4 GiB

const align64 = (n: number) => Math.ceil(n / 64) * 64;

/**
 * The same scan compiled natively (scripts/faiss-node/flat-scan.cc, in our faiss-node build):
 * offsets in bytes into `memory`, out[i] = <q, row_i> for i < n.
 */
export type NativeScan = (memory: ArrayBuffer, q: number, rows: number, n: number, d: number, out: number) => void;

/** How the rows are stored: float32, or IEEE binary16 (faiss SQfp16 codes; native scan only). */
export type RowFormat = "f32" | "f16";

/** What our faiss-node build adds for the flat index (scripts/faiss-node/flat-scan.cc). */
export interface NativeFlat {
  scan: NativeScan;
  /** The scan over rows stored as IEEE halves (builds from patch-v5 on). */
  scanF16?: NativeScan;
  /** madvise(MADV_HUGEPAGE) over the buffer: fewer first-touch faults while a snapshot streams in. */
  adviseHugePages?: (memory: ArrayBuffer) => boolean;
}

/**
 * An exact inner-product index whose rows live in WebAssembly memory laid out like a faiss
 * IndexFlatIP file. Fill it with add() (building) or through fileView() (loading), then search().
 * The scan is the WebAssembly kernel, or the native one over the same memory when given.
 */
export class SimdFlatIndex {
  readonly dimensions: number;
  /** Which kernel scans: "wasm" or "native". */
  readonly kernel: "wasm" | "native";
  readonly rowFormat: RowFormat;
  private n = 0;
  private memory: WebAssembly.Memory;
  /** Bytes per stored value: 4 (f32) or 2 (f16). */
  private readonly valueBytes: number;
  /** Where the file given to fileView()/halfFileView() starts in memory (-1: fp16 rows not loaded yet). */
  private fileStart: number;
  private scan: (q: number, rows: number, n: number, d: number, out: number) => void;
  private readonly adviseHugePages?: (memory: ArrayBuffer) => boolean;

  constructor(dimensions: number, capacity: number, native?: NativeFlat, rowFormat: RowFormat = "f32") {
    const module = kernel();
    if (!module) throw new Error("WebAssembly SIMD is not available");
    if (!Number.isInteger(dimensions) || dimensions <= 0)
      throw new ValidationError(`dimensions must be a positive integer, got ${dimensions}`);
    const native16 = native?.scanF16;
    if (rowFormat === "f16" && !native16)
      throw new Error("fp16 rows need the native fp16 scan of our faiss-node build");
    this.dimensions = dimensions;
    this.rowFormat = rowFormat;
    this.valueBytes = rowFormat === "f16" ? 2 : 4;
    this.fileStart = rowFormat === "f16" ? -1 : ROWS_OFFSET - FLAT_HEADER_BYTES;
    this.memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(this.bytesFor(capacity) / PAGE)) });
    if (native) {
      const scan = rowFormat === "f16" && native16 ? native16 : native.scan;
      this.kernel = "native";
      // memory.buffer is replaced when memory grows: read it at each call.
      this.scan = (q, rows, n, d, out) => scan(this.memory.buffer, q, rows, n, d, out);
      this.adviseHugePages = native.adviseHugePages;
      this.adviseHugePages?.(this.memory.buffer);
    } else {
      this.kernel = "wasm";
      const wasm = new WebAssembly.Instance(module, { env: { mem: this.memory } }).exports.scan as (
        q: number,
        rows: number,
        n: number,
        rowBytes: number,
        out: number,
      ) => void;
      this.scan = (q, rows, n, d, out) => wasm(q, rows, n, d * 4, out);
    }
  }

  get count(): number {
    return this.n;
  }

  /** Memory needed for `rows` rows plus the query and score scratch space. */
  private bytesFor(rows: number): number {
    const b =
      ROWS_OFFSET +
      align64(rows * this.dimensions * this.valueBytes) +
      align64(this.dimensions * 4) +
      align64(rows * 4);
    if (b > MAX_MEMORY)
      throw new ValidationError(`a flat index of ${rows}×${this.dimensions} values exceeds WebAssembly's 4 GiB memory`);
    return b;
  }

  private ensure(rows: number): void {
    const need = this.bytesFor(rows);
    const have = this.memory.buffer.byteLength;
    if (need > have) {
      // Grow geometrically so a stream longer than its count hint does not regrow per batch.
      const target = Math.min(MAX_MEMORY, Math.max(need, Math.floor(have * 1.5)));
      this.memory.grow(Math.ceil((target - have) / PAGE));
      this.adviseHugePages?.(this.memory.buffer);
    }
  }

  /** Appends row-major vectors (float32 rows only; an fp16 index is filled from its file). */
  add(rows: Float32Array): void {
    this.requireF32("add");
    const d = this.dimensions;
    if (rows.length % d !== 0)
      throw new ValidationError(`a batch of ${rows.length} floats is not a multiple of ${d} dimensions`);
    const m = rows.length / d;
    this.ensure(this.n + m);
    new Float32Array(this.memory.buffer, ROWS_OFFSET + this.n * d * 4, rows.length).set(rows);
    this.n += m;
  }

  /**
   * Prepares room for a faiss IndexFlatIP file of `header.count` rows and returns the byte view
   * the file must be copied into (header included), for loading without an intermediate copy.
   */
  fileView(header: FlatHeader): Uint8Array {
    this.requireF32("fileView");
    if (header.dimensions !== this.dimensions) throw new ValidationError("dimension mismatch");
    return this.fileViewAt(FLAT_HEADER_BYTES, header.count);
  }

  /**
   * For an fp16 index: room for an SQfp16 file of `count` rows whose codes start at byte
   * `headerBytes`, returned as the byte view the whole file must be copied into.
   */
  halfFileView(headerBytes: number, count: number): Uint8Array {
    if (this.rowFormat !== "f16") throw new Error("halfFileView needs an index with fp16 rows");
    if (!(headerBytes > 0 && headerBytes <= ROWS_OFFSET)) throw new ValidationError(`header of ${headerBytes} bytes`);
    return this.fileViewAt(headerBytes, count);
  }

  private fileViewAt(headerBytes: number, count: number): Uint8Array {
    this.ensure(count);
    this.n = count;
    this.fileStart = ROWS_OFFSET - headerBytes;
    return new Uint8Array(this.memory.buffer, this.fileStart, headerBytes + count * this.dimensions * this.valueBytes);
  }

  private requireF32(what: string): void {
    if (this.rowFormat !== "f32") throw new Error(`${what} needs an index with float32 rows`);
  }

  /**
   * Room for `count` rows, returned as the floats themselves, for loaders that decode another
   * storage format (fp16, SQ8) into this memory.
   */
  rowsView(count: number): Float32Array {
    this.requireF32("rowsView");
    this.ensure(count);
    this.n = count;
    return new Float32Array(this.memory.buffer, ROWS_OFFSET, count * this.dimensions);
  }

  /**
   * A view of memory where bytes [offset, offset + length) of the file given to fileView() go,
   * reaching past the file's end into scratch space (for a reader's "is there more?" probe byte).
   */
  fileRange(offset: number, length: number): Uint8Array | undefined {
    const start = this.fileStart + offset;
    const buf = this.memory.buffer;
    return this.fileStart >= 0 && offset >= 0 && start + length <= buf.byteLength
      ? new Uint8Array(buf, start, length)
      : undefined;
  }

  search(query: Float32Array, k: number): VectorSearchResult {
    const d = this.dimensions;
    if (query.length !== d)
      throw new ValidationError(`query vector has ${query.length} dimensions, the index has ${d}`);
    const kk = Math.min(Math.floor(k), this.n);
    if (!(kk > 0)) return { ordinals: [], scores: [] };
    const qOff = ROWS_OFFSET + align64(this.n * d * this.valueBytes);
    const outOff = qOff + align64(d * 4);
    this.ensure(this.n); // scratch space after a load that sized memory for rows only
    const buf = this.memory.buffer;
    new Float32Array(buf, qOff, d).set(query);
    this.scan(qOff, ROWS_OFFSET, this.n, d, outOff);
    return topK(new Float32Array(buf, outOff, this.n), kk);
  }

  /** The index as a faiss IndexFlatIP file, or for fp16 rows the SQfp16 file it was loaded from. */
  toBuffer(): Uint8Array {
    if (this.rowFormat === "f16") {
      if (this.fileStart < 0) throw new Error("an fp16 index holds no file until halfFileView() fills it");
      return new Uint8Array(
        this.memory.buffer,
        this.fileStart,
        ROWS_OFFSET - this.fileStart + this.n * this.dimensions * 2,
      ).slice();
    }
    const out = new Uint8Array(FLAT_HEADER_BYTES + this.n * this.dimensions * 4);
    writeFlatHeader(out, { dimensions: this.dimensions, count: this.n });
    out.set(new Uint8Array(this.memory.buffer, ROWS_OFFSET, this.n * this.dimensions * 4), FLAT_HEADER_BYTES);
    return out;
  }
}
