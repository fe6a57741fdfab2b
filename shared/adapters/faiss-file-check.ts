// A bounds check of a FAISS index file before faiss reads it. faiss's reader trusts every length
// field: it resizes a std::vector to whatever count the file states and only then finds the bytes
// missing, so one flipped bit in a count makes it zero-fill gigabytes (seconds to minutes) or get
// the process killed for memory. The loader's sha256 check catches corruption of files we
// published; this check is for everything else (another tool's file, a truncated spool file), and
// turns such files into a clear ValidationError in O(header) time.
//
// It walks the on-disk layout of the index types our builder writes (flat, SQ8/fp16, HNSW-Flat,
// IVF-Flat, IVF-PQ, IVF-PQ refined by SQ8; faiss's write_index format, stable across 1.7–1.9) and checks that every count
// fits in the bytes that remain and agrees with the header. It does not scan vector data or graph
// links: content integrity is the manifest checksum's job.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ValidationError } from "../core/errors.ts";

/** Random access to the file: `read(offset, length)` returns exactly those bytes (they exist). */
export interface FileBytes {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

export function bytesSource(buf: Uint8Array): FileBytes {
  return { size: buf.byteLength, read: (offset, length) => buf.subarray(offset, offset + length) };
}

/** checkFaissFile on a file on disk, reading only the fields it checks (through a 64 KiB window). */
export function checkFaissFileAt(path: string): void {
  const fd = openSync(path, "r");
  let buf = new Uint8Array(1 << 16);
  let window = buf.subarray(0, 0);
  let windowAt = 0;
  try {
    checkFaissFile({
      size: fstatSync(fd).size,
      read(offset, length) {
        if (offset < windowAt || offset + length > windowAt + window.length) {
          if (length > buf.length) buf = new Uint8Array(length);
          windowAt = offset;
          let got = 0;
          while (got < length) {
            const n = readSync(fd, buf, got, buf.length - got, offset + got);
            if (n === 0) throw new ValidationError("not a readable FAISS index: the file ended early");
            got += n;
          }
          window = buf.subarray(0, got);
        }
        return window.subarray(offset - windowAt, offset - windowAt + length);
      },
    });
  } finally {
    closeSync(fd);
  }
}

// Counts beyond this are corrupt whatever the file size (faiss's own reader caps at 2^40).
const MAX_COUNT = 2 ** 40;
/** faiss's metric codes in index headers. */
export const METRIC_INNER_PRODUCT = 0;
const METRIC_L2 = 1;

/** Throws ValidationError unless `file` is a FAISS index of a supported type whose lengths all add up. */
export function checkFaissFile(file: FileBytes): void {
  const r = new Reader(file);
  const top = readIndex(r, 0);
  if (r.at !== file.size) r.fail(`${file.size - r.at} bytes after the end of the ${top.kind} index`);
}

interface IndexSummary {
  kind: string;
  d: number;
  ntotal: number;
}

function readIndex(r: Reader, depth: number): IndexSummary {
  if (depth > 2) r.fail("indexes nested too deeply");
  const fourcc = r.fourcc();
  switch (fourcc) {
    case "IxFI":
    case "IxF2":
    case "IxFl": {
      const h = readHeader(r, fourcc);
      r.vector(4, "flat vectors", h.ntotal * h.d);
      return { kind: "flat", ...h };
    }
    case "IxSQ": {
      const h = readHeader(r, fourcc);
      const codeSize = readScalarQuantizer(r, h.d);
      r.vector(1, "scalar-quantized codes", h.ntotal * codeSize);
      return { kind: "sq", ...h };
    }
    case "IHNf": {
      const h = readHeader(r, fourcc);
      readHnswGraph(r, h.ntotal);
      const storage = readIndex(r, depth + 1);
      if (storage.d !== h.d || storage.ntotal !== h.ntotal)
        r.fail(`HNSW storage holds ${storage.ntotal}×${storage.d}, header says ${h.ntotal}×${h.d}`);
      return { kind: "hnsw", ...h };
    }
    case "IwFl": {
      const h = readHeader(r, fourcc);
      const nlist = readIvfHeader(r, h);
      readInvertedLists(r, h, nlist, 4 * h.d);
      return { kind: "ivf", ...h };
    }
    case "IwPQ": {
      const h = readHeader(r, fourcc);
      const nlist = readIvfHeader(r, h);
      r.u8(); // by_residual
      const codeSize = r.count("PQ code size");
      const pqCodeSize = readProductQuantizer(r, h.d);
      if (codeSize !== pqCodeSize) r.fail(`IVF-PQ code size ${codeSize}, its quantizer's is ${pqCodeSize}`);
      readInvertedLists(r, h, nlist, codeSize);
      return { kind: "ivfpq", ...h };
    }
    case "IxRF": {
      // IndexRefine: header, the base index, the refine index (both whole indexes holding the same
      // vectors), then k_factor as a float32.
      if (depth > 0) r.fail("a refine index inside another index");
      const h = readHeader(r, fourcc);
      for (const role of ["base", "refine"]) {
        const sub = readIndex(r, depth + 1);
        if (sub.d !== h.d || sub.ntotal !== h.ntotal)
          r.fail(`refine ${role} index holds ${sub.ntotal}×${sub.d}, header says ${h.ntotal}×${h.d}`);
      }
      const kFactor = r.f32();
      if (!(kFactor >= 1 && kFactor <= 1e6)) r.fail(`refine k_factor ${kFactor} is out of range`);
      return { kind: "refine", ...h };
    }
    default:
      return r.fail(
        `unsupported index type "${fourcc}" (supported: flat, SQ8/fp16, HNSW-Flat, IVF-Flat, IVF-PQ, IVF-PQ + SQ8 refine)`,
      );
  }
}

/** d, ntotal, two unused int64s, is_trained, metric (+ its argument for the exotic metrics). */
function readHeader(r: Reader, fourcc: string): { d: number; ntotal: number } {
  const d = r.i32();
  const ntotal = r.i64();
  r.skip(16);
  r.u8();
  const metric = r.i32();
  if (metric !== METRIC_INNER_PRODUCT && metric !== METRIC_L2) r.skip(4);
  if (d <= 0 || d > 65_536) r.fail(`${fourcc}: dimension ${d} is out of range`);
  if (ntotal < 0 || ntotal * d * 4 > MAX_COUNT) r.fail(`${fourcc}: vector count ${ntotal} is out of range`);
  return { d, ntotal };
}

function readHnswGraph(r: Reader, ntotal: number): void {
  r.vector(8, "HNSW level probabilities");
  const cum = r.vector(4, "HNSW neighbours per level");
  r.vector(4, "HNSW levels", ntotal);
  r.vector(8, "HNSW offsets", ntotal + 1);
  r.vector(4, "HNSW neighbours");
  const entry = r.i32();
  const maxLevel = r.i32();
  r.skip(12); // efConstruction, efSearch, upper_beam
  if (ntotal > 0 && (entry < 0 || entry >= ntotal)) r.fail(`HNSW entry point ${entry} is not one of ${ntotal} nodes`);
  if (maxLevel < -1 || maxLevel >= cum) r.fail(`HNSW max level ${maxLevel} exceeds its ${cum} levels`);
}

/** Returns the list count. */
function readIvfHeader(r: Reader, h: { d: number; ntotal: number }): number {
  const nlist = r.count("IVF list count");
  r.count("IVF nprobe");
  const quantizer = readIndex(r, 1);
  if (quantizer.d !== h.d || quantizer.ntotal !== nlist)
    r.fail(`IVF quantizer holds ${quantizer.ntotal}×${quantizer.d}, expected ${nlist}×${h.d}`);
  // Direct map: type byte, the id array, and (hashtable type) a vector of id pairs.
  const mapType = r.u8();
  r.vector(8, "IVF direct map");
  if (mapType === 2) r.vector(16, "IVF direct map table");
  else if (mapType > 2) r.fail(`IVF direct map type ${mapType} is unknown`);
  return nlist;
}

function readInvertedLists(r: Reader, h: { ntotal: number }, ivfLists: number, codeSize: number): void {
  const fourcc = r.fourcc();
  if (fourcc === "il00") return;
  if (fourcc !== "ilar") r.fail(`inverted lists of type "${fourcc}" are not supported`);
  const nlist = r.count("inverted list count");
  if (nlist !== ivfLists) r.fail(`${nlist} inverted lists, the IVF header says ${ivfLists}`);
  const storedCodeSize = r.count("inverted list code size");
  if (storedCodeSize !== codeSize) r.fail(`inverted lists store ${storedCodeSize}-byte codes, expected ${codeSize}`);
  const layout = r.fourcc();
  const sizes = new Array<number>(nlist).fill(0);
  if (layout === "full") {
    const n = r.count("inverted list sizes");
    if (n !== nlist) r.fail(`${n} inverted list sizes for ${nlist} lists`);
    for (let i = 0; i < nlist; i++) sizes[i] = r.count("inverted list size");
  } else if (layout === "sprs") {
    const n = r.count("sparse inverted list sizes");
    if (n % 2 !== 0) r.fail("sparse inverted list sizes are not (list, size) pairs");
    for (let i = 0; i < n; i += 2) {
      const list = r.count("inverted list number");
      const size = r.count("inverted list size");
      if (list >= nlist) r.fail(`inverted list ${list} is not one of ${nlist}`);
      sizes[list] = size;
    }
  } else r.fail(`inverted list layout "${layout}" is unknown`);
  let total = 0;
  for (const n of sizes) {
    r.skip(n * codeSize, "inverted list codes");
    r.skip(n * 8, "inverted list ids");
    total += n;
  }
  if (total !== h.ntotal) r.fail(`inverted lists hold ${total} vectors, header says ${h.ntotal}`);
}

/** Returns the code size. */
function readScalarQuantizer(r: Reader, d: number): number {
  const qtype = r.i32();
  r.skip(8); // rangestat, rangestat_arg
  const sqD = r.count("scalar quantizer dimension");
  const codeSize = r.count("scalar quantizer code size");
  r.vector(4, "scalar quantizer training");
  if (sqD !== d) r.fail(`scalar quantizer dimension ${sqD}, index dimension ${d}`);
  if (qtype < 0 || qtype > 8 || codeSize > 4 * d || codeSize === 0)
    r.fail(`scalar quantizer ${qtype}/${codeSize} is invalid`);
  return codeSize;
}

/** Returns the code size. */
function readProductQuantizer(r: Reader, d: number): number {
  const pqD = r.count("PQ dimension");
  const m = r.count("PQ sub-quantizers");
  const nbits = r.count("PQ bits");
  if (pqD !== d || m === 0 || d % m !== 0 || nbits === 0 || nbits > 16)
    r.fail(`product quantizer d=${pqD} M=${m} nbits=${nbits} does not fit dimension ${d}`);
  r.vector(4, "PQ centroids", d * 2 ** nbits);
  return Math.ceil((m * nbits) / 8);
}

class Reader {
  at = 0;
  constructor(private readonly file: FileBytes) {}

  fail(why: string): never {
    throw new ValidationError(`not a readable FAISS index: ${why} (at byte ${this.at})`);
  }

  private take(n: number, what: string): DataView {
    if (n > this.file.size - this.at) this.fail(`${what} needs ${n} bytes, ${this.file.size - this.at} remain`);
    const bytes = this.file.read(this.at, n);
    this.at += n;
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  skip(n: number, what = "field"): void {
    if (n > this.file.size - this.at) this.fail(`${what} needs ${n} bytes, ${this.file.size - this.at} remain`);
    this.at += n;
  }

  u8(): number {
    return this.take(1, "byte").getUint8(0);
  }

  i32(): number {
    return this.take(4, "int32").getInt32(0, true);
  }

  f32(): number {
    return this.take(4, "float32").getFloat32(0, true);
  }

  i64(): number {
    const v = this.take(8, "int64").getBigInt64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))
      this.fail(`count ${v} is out of range`);
    return Number(v);
  }

  /** A size_t that must be a plausible count. */
  count(what: string): number {
    const v = this.take(8, what).getBigUint64(0, true);
    if (v > BigInt(MAX_COUNT)) this.fail(`${what} ${v} is out of range`);
    return Number(v);
  }

  fourcc(): string {
    const b = this.take(4, "type tag");
    return String.fromCharCode(b.getUint8(0), b.getUint8(1), b.getUint8(2), b.getUint8(3));
  }

  /** A faiss vector (size_t count, then count elements); returns the count, checked against `expected`. */
  vector(elementBytes: number, what: string, expected?: number): number {
    const n = this.count(`${what} length`);
    if (expected !== undefined && n !== expected) this.fail(`${what} has ${n} entries, expected ${expected}`);
    this.skip(n * elementBytes, what);
    return n;
  }
}
