// fp16 / SQ8 snapshots decoded into the SIMD flat scan (shared/adapters/sq-decode.ts and the
// faiss-index sink): the decoded index answers as faiss's own SQ index does, from a stream split
// anywhere; a file that is not what the manifest says goes to faiss.
import { describe, expect, it } from "vitest";
import { clusteredVectors, row } from "../../scripts/bench/vectors.ts";
import {
  buildFaissIndex,
  createFaissIndexSinkFactory,
  type FaissVectorIndex,
  type FlatKernel,
  faissIndexFromBuffer,
  nativeFlat,
} from "../../shared/adapters/faiss-index.ts";
import { createSqDecoder, parseSqHeader, type SqHeader } from "../../shared/adapters/sq-decode.ts";
import type { SnapshotManifest } from "../../shared/core/ports.ts";

const d = 24;
const n = 600;
const base = clusteredVectors({ n, d, seed: 5, clusters: 8 });
const manifestFor = (type: string, bytes: number, count = n) =>
  ({
    index_type: type,
    embedder: { dimensions: d },
    counts: { passages: count, documents: count },
    files: { "index.faiss": { bytes } },
  }) as unknown as SnapshotManifest;

async function streamed(file: Uint8Array, manifest: SnapshotManifest, cuts: number[], kernel?: FlatKernel) {
  const sink = await createFaissIndexSinkFactory({ flatKernel: kernel })(manifest);
  let at = 0;
  for (const c of [...cuts, file.length]) {
    await sink.write(file.subarray(at, c));
    at = c;
  }
  return (await sink.finish()) as FaissVectorIndex;
}

/** fp16 stays fp16 where our faiss-node build scans halves; otherwise (and SQ8) it is decoded to float32. */
const keepsHalves = typeof nativeFlat()?.scanF16 === "function";

describe.each([
  ["fp16", undefined],
  ["fp16", "wasm"],
  ["sq8", undefined],
] as const)("%s snapshot into the flat scan (kernel %s)", (type, kernel) => {
  it("scores every vector as faiss's own index does, from chunks split anywhere", async () => {
    const built = await buildFaissIndex({ dimensions: d, type, count: n }, [base]);
    const file = built.toBuffer();
    const reference = faissIndexFromBuffer(file, { flatKernel: "faiss" });
    const scan =
      type === "fp16" && kernel !== "wasm" && keepsHalves
        ? "fp16 rows, native SIMD flat"
        : "decoded to float32, SIMD flat";
    for (const cuts of [[], [1, 72, 73, 80, 81, 82, 83, 300], [Math.floor(file.length / 2) | 1]]) {
      const index = await streamed(file, manifestFor(type, file.length), cuts, kernel);
      expect(index.type).toBe(type);
      expect(index.params).toMatchObject({ scan });
      expect(index.count).toBe(n);
      for (const q of [0, 17, 333]) {
        const ours = index.search(row(base, d, q), 10);
        const theirs = reference.search(row(base, d, q), 10);
        expect(ours.ordinals).toEqual(theirs.ordinals);
        for (let i = 0; i < 10; i++) expect(ours.scores[i]).toBeCloseTo(theirs.scores[i], 4);
      }
    }
  });

  it("refuses a truncated stream, and hands a file the manifest misdescribes to faiss", async () => {
    const file = (await buildFaissIndex({ dimensions: d, type, count: n }, [base])).toBuffer();
    const sink = await createFaissIndexSinkFactory({ flatKernel: kernel })(manifestFor(type, file.length));
    await sink.write(file.subarray(0, file.length - 3));
    await expect(sink.finish()).rejects.toThrow(/shorter than its header says/);
    const flatFile = (await buildFaissIndex({ dimensions: d, type: "flat", count: n }, [base])).toBuffer();
    const viaFaiss = await streamed(flatFile, manifestFor(type, flatFile.length), [10], kernel);
    expect(viaFaiss.search(row(base, d, 9), 1).ordinals).toEqual([9]);
  });
});

describe("SQ header and fp16 codes", () => {
  it("parses only inner-product SQfp16/SQ8 headers and asks for more bytes when short", async () => {
    const file = (await buildFaissIndex({ dimensions: d, type: "sq8", count: n }, [base])).toBuffer();
    expect(parseSqHeader(file.subarray(0, 10))).toBe(73);
    expect(parseSqHeader(file.subarray(0, 80))).toBe(73 + 4 * 2 * d + 8);
    const h = parseSqHeader(file) as SqHeader;
    expect(h).toMatchObject({ dimensions: d, count: n, qtype: "sq8", codeBytes: n * d });
    const other = Uint8Array.from(file);
    other[2] = 0x46; // "IxFQ"
    expect(parseSqHeader(other)).toBeNull();
  });

  it("decodes IEEE halves, subnormals and signs included", () => {
    const halves = [0x3c00, 0xc000, 0x0001, 0x7bff, 0x3555, 0x0000, 0x8000];
    const want = [1, -2, 2 ** -24, 65504, 0.333251953125, 0, -0];
    const header: SqHeader = {
      dimensions: halves.length,
      count: 1,
      qtype: "fp16",
      trained: new Float32Array(0),
      headerBytes: 0,
      codeBytes: 2 * halves.length,
    };
    const bytes = new Uint8Array(halves.flatMap((h) => [h & 0xff, h >> 8]));
    const out = new Float32Array(halves.length);
    const dec = createSqDecoder(header, out);
    dec.push(bytes.subarray(0, 3)); // a value split across chunks
    dec.push(bytes.subarray(3));
    expect(dec.done()).toBe(true);
    expect(Array.from(out)).toEqual(want.map((x) => Math.fround(x)));
  });
});
