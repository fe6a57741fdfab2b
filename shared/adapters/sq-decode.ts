// Decodes faiss IndexScalarQuantizer files (SQfp16, SQ8) into float rows as they stream in, so a
// snapshot can be stored and downloaded at 1/2 (fp16) or 1/4 (SQ8) of a flat index's bytes and
// still be searched by the exact SIMD flat scan. What that scan sees is the decoded vectors, so
// scores are those faiss's own SQ index computes (up to float rounding), at flat speed.
//
// File layout (faiss 1.7 write_index, little-endian): "IxSQ", d (i32), ntotal (i64), two unused
// i64, is_trained (u8), metric (i32), then the ScalarQuantizer: qtype (i32), rangestat (i32),
// rangestat_arg (f32), d (u64), code_size (u64), trained (u64 count + f32s), and the codes (u64
// count + bytes, code_size per vector).
import { ValidationError } from "../core/errors.ts";

const QT_8BIT = 0;
const QT_FP16 = 4;
/** Bytes before the trained values. */
const FIXED_HEAD = 73;

export interface SqHeader {
  dimensions: number;
  count: number;
  qtype: "sq8" | "fp16";
  /** SQ8: vmin[d] then vdiff[d]; fp16: empty. */
  trained: Float32Array;
  /** Bytes before the first code. */
  headerBytes: number;
  codeBytes: number;
}

/**
 * Parses the header once `bytes` holds it: a header, null when the bytes are not an SQfp16/SQ8
 * inner-product file, or the number of bytes needed when more must arrive first.
 */
export function parseSqHeader(bytes: Uint8Array): SqHeader | null | number {
  if (bytes.byteLength < FIXED_HEAD) return FIXED_HEAD;
  if (bytes[0] !== 0x49 || bytes[1] !== 0x78 || bytes[2] !== 0x53 || bytes[3] !== 0x51) return null; // "IxSQ"
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const d = v.getInt32(4, true);
  const n = Number(v.getBigInt64(8, true));
  const metric = v.getInt32(33, true);
  const qt = v.getInt32(37, true);
  const sqD = Number(v.getBigUint64(49, true));
  const codeSize = Number(v.getBigUint64(57, true));
  const trainedCount = Number(v.getBigUint64(65, true));
  const qtype = qt === QT_FP16 ? "fp16" : qt === QT_8BIT ? "sq8" : null;
  if (!qtype || metric !== 0 || d <= 0 || n < 0 || sqD !== d) return null;
  if (codeSize !== (qtype === "fp16" ? 2 * d : d)) return null;
  if (trainedCount !== (qtype === "sq8" ? 2 * d : 0)) return null;
  const headerBytes = FIXED_HEAD + 4 * trainedCount + 8;
  if (bytes.byteLength < headerBytes) return headerBytes;
  const trained = new Float32Array(trainedCount);
  for (let i = 0; i < trainedCount; i++) trained[i] = v.getFloat32(FIXED_HEAD + 4 * i, true);
  const codes = Number(v.getBigUint64(headerBytes - 8, true));
  if (codes !== n * codeSize) return null;
  return { dimensions: d, count: n, qtype, trained, headerBytes, codeBytes: codes };
}

let halfTable: Float32Array | undefined;
/** IEEE binary16 → float32 for all 65,536 bit patterns (faiss's fp16 codes are IEEE halves). */
function halves(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * 2 ** -14 * (frac / 1024);
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  halfTable = t;
  return t;
}

/** Streams codes (any chunking) into `out` (count × d floats). */
export function createSqDecoder(header: SqHeader, out: Float32Array) {
  const d = header.dimensions;
  if (out.length < header.count * d) throw new ValidationError("decoder output is smaller than the index");
  let pos = 0; // codes consumed
  let carry = -1; // fp16: low byte of a value split across chunks
  const table = header.qtype === "fp16" ? halves() : undefined;
  const vmin = header.trained.subarray(0, d);
  const vdiff = header.trained.subarray(d, 2 * d);
  return {
    push(chunk: Uint8Array): void {
      if (pos + chunk.byteLength > header.codeBytes)
        throw new ValidationError("index file is longer than its header says");
      let i = 0;
      if (table) {
        let value = pos >> 1;
        if (carry >= 0 && chunk.byteLength > 0) {
          out[value++] = table[carry | (chunk[0] << 8)];
          carry = -1;
          i = 1;
        }
        const pairs = (chunk.byteLength - i) >> 1;
        for (let k = 0; k < pairs; k++, i += 2) out[value++] = table[chunk[i] | (chunk[i + 1] << 8)];
        if (i < chunk.byteLength) carry = chunk[i];
      } else {
        let j = pos % d;
        for (; i < chunk.byteLength; i++) {
          out[pos + i] = vmin[j] + ((chunk[i] + 0.5) / 255) * vdiff[j];
          if (++j === d) j = 0;
        }
      }
      pos += chunk.byteLength;
    },
    done(): boolean {
      return pos === header.codeBytes && carry < 0;
    },
  };
}
