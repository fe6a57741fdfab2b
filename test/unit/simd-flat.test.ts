// The WebAssembly SIMD flat scan: exact against brute force for any dimension (SIMD blocks and
// scalar tail), byte-compatible with faiss's IndexFlatIP files, and loadable from streamed chunks.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { clusteredVectors, randomUnitVectors, row } from "../../scripts/bench/vectors.ts";
import {
  buildFaissIndex,
  createFaissIndexSinkFactory,
  faissIndexFromBuffer,
  hasTypedFaiss,
  nativeFlat,
} from "../../shared/adapters/faiss-index.ts";
import {
  FLAT_HEADER_BYTES,
  type NativeFlat,
  type NativeScan,
  parseFlatHeader,
  SimdFlatIndex,
  simdFlatAvailable,
} from "../../shared/adapters/simd-flat.ts";
import { topK } from "../../shared/core/top-k.ts";
import type { SnapshotManifest } from "../../shared/core/ports.ts";

function brute(base: Float32Array, d: number, q: Float32Array): number[] {
  const n = base.length / d;
  const s: number[] = [];
  for (let i = 0; i < n; i++) {
    let x = 0;
    for (let j = 0; j < d; j++) x += q[j] * base[i * d + j];
    s.push(x);
  }
  return s;
}

// Our source build of faiss-node (scripts/build-faiss-node.mjs) carries the native scan; the
// prebuilt binary (machines with internet) does not, and then only the WebAssembly kernel runs.
const nativeOps = nativeFlat();
const native = nativeOps?.scan ?? null;
const kernels: [string, NativeFlat | undefined][] = [["wasm", undefined]];
if (nativeOps) kernels.push(["native", nativeOps]);
else console.warn("[simd-flat.test] this faiss-node build has no scanInnerProduct: native scan tests skipped");

describe("SIMD flat index", () => {
  it("is available in this runtime", () => {
    expect(simdFlatAvailable()).toBe(true);
  });

  it("has the native scan wherever faiss-node is our source build", () => {
    // Both come from the same patch; one without the other means the build script broke.
    expect(native !== null).toBe(hasTypedFaiss());
  });

  it.each(kernels)("%s kernel: exact inner products for every dimension (SIMD blocks and tails)", (name, scan) => {
    for (const d of [1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 384]) {
      const n = 300;
      const base = randomUnitVectors(n, d, d);
      const flat = new SimdFlatIndex(d, 10, scan); // capacity below n: add() must grow memory
      expect(flat.kernel).toBe(name);
      flat.add(base.subarray(0, 100 * d));
      flat.add(base.subarray(100 * d));
      expect(flat.count).toBe(n);
      const q = randomUnitVectors(1, d, 1000 + d);
      const want = brute(base, d, q);
      const got = flat.search(q, n);
      expect(got.ordinals).toHaveLength(n);
      for (let r = 0; r < n; r++) expect(got.scores[r]).toBeCloseTo(want[got.ordinals[r]], 5);
      for (let r = 1; r < n; r++) expect(got.scores[r]).toBeLessThanOrEqual(got.scores[r - 1]);
      const best = want.indexOf(Math.max(...want));
      expect(got.ordinals[0]).toBe(best);
    }
  });

  it.each(kernels)("%s kernel: top-k matches a full sort for any k (property)", (_name, scan) => {
    const d = 8;
    const base = randomUnitVectors(200, d, 7);
    const flat = new SimdFlatIndex(d, 200, scan);
    flat.add(base);
    fc.assert(
      fc.property(fc.integer({ min: -2, max: 250 }), fc.integer({ min: 0, max: 10_000 }), (k, seed) => {
        const q = randomUnitVectors(1, d, seed);
        const r = flat.search(q, k);
        const all = brute(base, d, q)
          .map((s, i) => [s, i] as const)
          .sort((a, b) => b[0] - a[0]);
        expect(r.ordinals.length).toBe(Math.max(0, Math.min(k, 200)));
        for (let i = 0; i < r.scores.length; i++) expect(r.scores[i]).toBeCloseTo(all[i][0], 5);
      }),
      { numRuns: 40 },
    );
  });

  it("top-k equals a full sort by score, ties by lower ordinal (property, many ties)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 300 }),
        (values, kRaw) => {
          const scores = Float32Array.from(values, (v) => v / 2);
          const k = Math.min(kRaw, scores.length);
          const want = [...scores.keys()].sort((a, b) => scores[b] - scores[a] || a - b).slice(0, k);
          const got = topK(scores, k);
          expect(got.ordinals).toEqual(want);
          expect(got.scores).toEqual(want.map((i) => scores[i]));
        },
      ),
      { numRuns: 200 },
    );
  });

  it.skipIf(!native)("native and WebAssembly kernels rank a clustered index the same", async () => {
    const d = 384;
    const base = clusteredVectors({ n: 3000, d, seed: 5, clusters: 20 });
    const a = await buildFaissIndex({ dimensions: d, type: "flat", count: 3000 }, [base]);
    const b = await buildFaissIndex({ dimensions: d, type: "flat", count: 3000, flatKernel: "wasm" }, [base]);
    expect((a as unknown as { flat: SimdFlatIndex }).flat.kernel).toBe("native");
    expect((b as unknown as { flat: SimdFlatIndex }).flat.kernel).toBe("wasm");
    for (const i of [0, 17, 1234, 2999]) {
      const q = row(base, d, i);
      const x = a.search(q, 50);
      const y = b.search(q, 50);
      expect(x.ordinals[0]).toBe(i);
      for (let r = 0; r < 50; r++) expect(x.scores[r]).toBeCloseTo(y.scores[r], 5);
    }
  });

  it.skipIf(!native)("native scan refuses ranges outside its buffer, misaligned offsets and bad arguments", () => {
    const scan = native as NativeScan;
    const mem = new ArrayBuffer(1024);
    const f = new Float32Array(mem);
    f.fill(1);
    scan(mem, 0, 64, 4, 8, 512); // in bounds: 4 rows of 8 floats from byte 64
    expect(Array.from(f.subarray(128, 132))).toEqual([8, 8, 8, 8]);
    expect(() => scan(mem, 0, 64, 100, 8, 512)).toThrow(/outside the buffer/); // rows past the end
    expect(() => scan(mem, 1020, 64, 1, 8, 512)).toThrow(/outside the buffer/); // query past the end
    expect(() => scan(mem, 0, 64, 4, 8, 1016)).toThrow(/outside the buffer/); // scores past the end
    expect(() => scan(mem, 2, 64, 4, 8, 512)).toThrow(/aligned/);
    expect(() => scan(mem, -4, 64, 4, 8, 512)).toThrow(/aligned/);
    expect(() => scan(mem, 0, 64, 4, 0, 512)).toThrow(/out of range/);
    expect(() => scan(mem, 0, 64, 1.5, 8, 512)).toThrow(/out of range/);
    expect(() => (scan as unknown as (...a: unknown[]) => void)(f, 0, 64, 4, 8, 512)).toThrow(/ArrayBuffer/);
  });

  it.skipIf(!nativeOps?.adviseHugePages)("huge-page advice is a hint that leaves the data intact", () => {
    const advise = nativeOps?.adviseHugePages as (m: ArrayBuffer) => boolean;
    expect(advise(new ArrayBuffer(4096))).toBe(false); // no whole 2 MiB page inside
    const big = new ArrayBuffer(8 << 20);
    new Uint8Array(big).fill(3);
    const thp = existsSync("/sys/kernel/mm/transparent_hugepage/enabled");
    expect(advise(big)).toBe(thp);
    expect(new Uint8Array(big).every((b) => b === 3)).toBe(true);
    expect(() => (advise as unknown as (x: unknown) => boolean)(new Uint8Array(8))).toThrow(/ArrayBuffer/);
    // An index that grows after the advice (the loader's case) still scans exactly.
    const d = 384;
    const flat = new SimdFlatIndex(d, 10, nativeOps as NativeFlat);
    const base = randomUnitVectors(20_000, d, 4);
    flat.add(base);
    expect(flat.search(row(base, d, 19_999), 1).ordinals).toEqual([19_999]);
  });

  it("writes faiss's own IndexFlatIP bytes, and faiss reads them back", async () => {
    const d = 24;
    const base = clusteredVectors({ n: 500, d, seed: 3, clusters: 5 });
    const ours = await buildFaissIndex({ dimensions: d, type: "flat", count: 500 }, [base]);
    const theirs = await buildFaissIndex({ dimensions: d, type: "flat", count: 500, flatKernel: "faiss" }, [base]);
    expect(Buffer.from(ours.toBuffer()).equals(Buffer.from(theirs.toBuffer()))).toBe(true);
    expect(parseFlatHeader(ours.toBuffer())).toEqual({ dimensions: d, count: 500 });
    const readByFaiss = faissIndexFromBuffer(ours.toBuffer(), { flatKernel: "faiss" });
    const readByUs = faissIndexFromBuffer(theirs.toBuffer());
    const q = row(base, d, 42);
    expect(readByFaiss.search(q, 10).ordinals).toEqual(readByUs.search(q, 10).ordinals);
    expect(readByUs.search(q, 1).ordinals).toEqual([42]);
  });

  it("does not take other index types or truncated files for a flat index", async () => {
    const d = 16;
    const base = randomUnitVectors(300, d, 9);
    const hnsw = await buildFaissIndex({ dimensions: d, type: "hnsw", count: 300 }, [base]);
    expect(parseFlatHeader(hnsw.toBuffer())).toBeNull();
    expect(faissIndexFromBuffer(hnsw.toBuffer()).search(row(base, d, 5), 1).ordinals).toEqual([5]); // faiss path
    const flat = await buildFaissIndex({ dimensions: d, type: "flat", count: 300 }, [base]);
    expect(() => faissIndexFromBuffer(flat.toBuffer().subarray(0, 1000))).toThrow(/expected/);
  });

  it("streams a snapshot's index.faiss into memory from chunks split anywhere, header included", async () => {
    const d = 20;
    const n = 400;
    const base = randomUnitVectors(n, d, 11);
    const file = (await buildFaissIndex({ dimensions: d, type: "flat", count: n }, [base])).toBuffer();
    // With file sizes in the manifest the memory is allocated up front; without, from the header.
    const sized = { index_type: "flat", embedder: { dimensions: d }, files: { "index.faiss": { bytes: file.length } } };
    const unsized = { index_type: "flat", embedder: { dimensions: d }, files: {} };
    const manifest = sized as unknown as SnapshotManifest;
    const open = createFaissIndexSinkFactory();
    for (const [cuts, m] of [
      [[1, 44, 45, 46, 5000], sized],
      [[FLAT_HEADER_BYTES], sized],
      [[7, 13, 29, 31], unsized],
      [[], unsized],
      [[3, 50], unsized],
    ] as const) {
      const sink = await open(m as unknown as SnapshotManifest);
      let at = 0;
      for (const c of [...cuts, file.length]) {
        await sink.write(file.subarray(at, c));
        at = c;
      }
      const index = await sink.finish();
      expect(index.count).toBe(n);
      expect(index.search(row(base, d, 123), 1).ordinals).toEqual([123]);
    }
    // A truncated stream is refused at finish().
    const short = await open(manifest);
    await short.write(file.subarray(0, file.length - 4));
    await expect(short.finish()).rejects.toThrow(/shorter/);
    // A manifest saying "flat" over a non-flat file falls back to faiss through the temp file.
    const hnswFile = (await buildFaissIndex({ dimensions: d, type: "hnsw", count: n }, [base])).toBuffer();
    const sink = await open(manifest);
    await sink.write(hnswFile.subarray(0, 10));
    await sink.write(hnswFile.subarray(10));
    expect((await sink.finish()).search(row(base, d, 7), 1).ordinals).toEqual([7]);
  });
});

// The native scan over IEEE halves (fp16 snapshots kept as fp16): F16C conversion is exact, so its
// scores equal the float32 scan's over the decoded rows bit for bit, subnormals and signs included.
describe.skipIf(!nativeOps?.scanF16)("native fp16 scan", () => {
  const scanF16 = nativeOps?.scanF16 as NativeScan;
  const scan32 = nativeOps?.scan as NativeScan;

  /** n×d halves from a seeded generator: every exponent, subnormals and ±0, no infinities or NaN. */
  function halves(n: number, d: number, seed: number): Uint16Array {
    const out = new Uint16Array(n * d);
    let x = seed >>> 0;
    for (let i = 0; i < out.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      const h = x >>> 16;
      out[i] = (h & 0x7c00) === 0x7c00 ? h & 0x83ff : h; // exponent 31 (inf/NaN) → subnormal
    }
    return out;
  }
  /** float32 of a half, by the definition (independent of sq-decode's table). */
  const halfValue = (h: number) => {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    return e === 0 ? s * 2 ** -14 * (f / 1024) : s * 2 ** (e - 15) * (1 + f / 1024);
  };

  it.each([1, 5, 8, 37, 45, 384])("equals the float32 scan of the decoded rows (d=%i)", (d) => {
    const n = 50;
    const codes = halves(n, d, d);
    // Queries small enough that no product overflows float32.
    const q = Float32Array.from({ length: d }, (_, j) => ((j * 37) % 11) / 1e5 - 5e-5);
    const up = (x: number) => Math.ceil(x / 64) * 64;
    const qOff = 0;
    const rows32 = up(d * 4);
    const out32 = up(rows32 + n * d * 4);
    const rows16 = up(out32 + n * 4);
    const out16 = up(rows16 + n * d * 2);
    const mem = new ArrayBuffer(out16 + n * 4);
    new Float32Array(mem, qOff, d).set(q);
    const decoded = new Float32Array(mem, rows32, n * d);
    for (let i = 0; i < codes.length; i++) decoded[i] = halfValue(codes[i]);
    new Uint16Array(mem, rows16, n * d).set(codes);
    scan32(mem, qOff, rows32, n, d, out32);
    scanF16(mem, qOff, rows16, n, d, out16);
    expect(Array.from(new Float32Array(mem, out16, n))).toEqual(Array.from(new Float32Array(mem, out32, n)));
  });

  it("refuses misaligned rows and ranges outside its buffer (2 bytes per value)", () => {
    const mem = new ArrayBuffer(1024);
    new Uint16Array(mem, 64, 32).fill(0x3c00); // 1.0
    new Float32Array(mem, 0, 8).fill(1);
    scanF16(mem, 0, 66, 3, 8, 512); // rows at an odd multiple of 2 are fine
    expect(Array.from(new Float32Array(mem, 512, 3))).toEqual([8, 8, 8]);
    expect(() => scanF16(mem, 0, 65, 3, 8, 512)).toThrow(/aligned/);
    expect(() => scanF16(mem, 0, 1024 - 30, 2, 8, 512)).toThrow(/outside the buffer/);
    expect(() => scanF16(mem, 0, 64, 4, 8, 1022)).toThrow(/aligned/);
  });

  it("the portable kernel (CPUs without F16C) gives the same scores", () => {
    const d = 45;
    const n = 40;
    // The child rebuilds the same inputs from the same seed, with FLAT_SCAN_KERNEL=portable.
    const program = `
      const f = require("faiss-node");
      const d = ${d}, n = ${n};
      const mem = new ArrayBuffer(4096 * 4);
      const q = new Float32Array(mem, 0, d);
      for (let j = 0; j < d; j++) q[j] = ((j * 37) % 11) / 1e5 - 5e-5;
      const rows = new Uint16Array(mem, 256, n * d);
      let x = ${d} >>> 0;
      for (let i = 0; i < rows.length; i++) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        const h = x >>> 16;
        rows[i] = (h & 0x7c00) === 0x7c00 ? h & 0x83ff : h;
      }
      f.scanInnerProductF16(mem, 0, 256, n, d, 12288);
      console.log(JSON.stringify({ kernel: f.scanInnerProductF16Kernel, scores: Array.from(new Float32Array(mem, 12288, n)) }));`;
    const r = spawnSync(process.execPath, ["-e", program], {
      encoding: "utf8",
      env: { ...process.env, FLAT_SCAN_KERNEL: "portable" },
    });
    expect(r.status, r.stderr).toBe(0);
    const child = JSON.parse(r.stdout) as { kernel: string; scores: number[] };
    expect(child.kernel).toBe("portable");
    const codes = halves(n, d, d);
    for (let i = 0; i < n; i++) {
      let want = 0;
      for (let j = 0; j < d; j++) want += Math.fround(((j * 37) % 11) / 1e5 - 5e-5) * halfValue(codes[i * d + j]);
      expect(child.scores[i]).toBeCloseTo(want, Math.max(0, 5 - Math.ceil(Math.log10(Math.abs(want) + 1))));
    }
  });

  it("an fp16 index keeps its file: scans the halves in place and gives the same bytes back", async () => {
    const d = 48;
    const base = clusteredVectors({ n: 700, d, seed: 3, clusters: 6 });
    const file = (await buildFaissIndex({ dimensions: d, type: "fp16", count: 700 }, [base])).toBuffer();
    const index = faissIndexFromBuffer(file);
    expect(index.type).toBe("fp16");
    expect(index.params).toMatchObject({ scan: "fp16 rows, native SIMD flat" });
    expect(index.toBuffer()).toEqual(new Uint8Array(file));
    const decoded = faissIndexFromBuffer(file, { flatKernel: "wasm" }); // no fp16 scan there: faiss reads it
    for (const i of [0, 99, 699]) {
      const a = index.search(row(base, d, i), 10);
      const b = decoded.search(row(base, d, i), 10);
      expect(a.ordinals).toEqual(b.ordinals);
      for (let r = 0; r < 10; r++) expect(a.scores[r]).toBeCloseTo(b.scores[r], 4);
    }
    const flat = new SimdFlatIndex(d, 1, nativeOps as NativeFlat, "f16");
    expect(() => flat.add(base)).toThrow(/float32 rows/);
    expect(() => flat.toBuffer()).toThrow(/no file/);
    expect(() => new SimdFlatIndex(d, 1, { scan: scan32 }, "f16")).toThrow(/native fp16 scan/);
  });
});
