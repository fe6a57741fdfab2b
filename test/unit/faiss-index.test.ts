// The faiss-node adapter with the real native addon: every index type builds from streamed
// batches, searches, survives a serialise/load round trip, and honours the VectorIndex contract.
import { describe, expect, it } from "vitest";
import { clusteredVectors, randomUnitVectors, recallAtK, row } from "../../scripts/bench/vectors.ts";
import {
  buildFaissIndex,
  chooseIndexType,
  decodeFaissSnapshotIndex,
  faissIndexBuilder,
  faissIndexFromBuffer,
  hasTypedFaiss,
  INDEX_TYPES,
  parseIndexType,
} from "../../shared/adapters/faiss-index.ts";
import { FLAT_HEADER_BYTES } from "../../shared/adapters/simd-flat.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { SnapshotManifest } from "../../shared/core/ports.ts";

const d = 32;
const n = 4000;
const base = clusteredVectors({ n, d, seed: 11, clusters: 40, spread: 0.6 });
const queries = clusteredVectors({ n: 50, d, seed: 12, clusters: 40, spread: 0.6 });

function* batchesOf(x: Float32Array, rows: number): Generator<Float32Array> {
  for (let off = 0; off < x.length; off += rows * d) yield x.subarray(off, Math.min(x.length, off + rows * d));
}

/** Brute-force inner product top-k in JS: the reference for "exact". */
function bruteTopK(q: Float32Array, k: number): number[] {
  const scores: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += q[j] * base[i * d + j];
    scores.push([s, i]);
  }
  scores.sort((a, b) => b[0] - a[0]);
  return scores.slice(0, k).map((x) => x[1]);
}

describe("faiss index adapter", () => {
  it("uses the typed methods of our patched faiss-node build", () => {
    expect(hasTypedFaiss()).toBe(true);
  });

  it("flat is exact: same neighbours and inner-product scores as brute force", async () => {
    const index = await buildFaissIndex({ dimensions: d, type: "flat", count: n }, batchesOf(base, 700));
    expect(index.count).toBe(n);
    expect(index.type).toBe("flat");
    for (let qi = 0; qi < 5; qi++) {
      const q = row(queries, d, qi);
      const r = index.search(q, 10);
      expect(r.ordinals).toEqual(bruteTopK(q, 10));
      let s0 = 0;
      for (let j = 0; j < d; j++) s0 += q[j] * base[r.ordinals[0] * d + j];
      expect(r.scores[0]).toBeCloseTo(s0, 4);
      for (let i = 1; i < r.scores.length; i++) expect(r.scores[i]).toBeLessThanOrEqual(r.scores[i - 1]);
    }
  });

  it("accepts async batch streams", async () => {
    async function* gen() {
      for (const b of batchesOf(base, 999)) yield b;
    }
    const index = await buildFaissIndex({ dimensions: d, type: "flat", count: n }, gen());
    expect(index.count).toBe(n);
  });

  it.each(INDEX_TYPES)("%s builds, searches, and round-trips through its serialised form", async (type) => {
    const index = await buildFaissIndex({ dimensions: d, type, count: n }, batchesOf(base, 1000));
    expect(index.count).toBe(n);
    expect(index.dimensions).toBe(d);
    expect(index.type).toBe(type);
    expect(typeof index.params.factory).toBe("string");
    const k = 20;
    const approx = [];
    const exact = [];
    for (let qi = 0; qi < queries.length / d; qi++) {
      const q = row(queries, d, qi);
      const r = index.search(q, k);
      expect(r.ordinals.length).toBe(k);
      expect(new Set(r.ordinals).size).toBe(k);
      for (const o of r.ordinals) expect(o >= 0 && o < n).toBe(true);
      approx.push(r.ordinals);
      exact.push(bruteTopK(q, k));
    }
    const recall = recallAtK(approx, exact, k);
    console.log(`recall@${k} ${type} (${index.params.factory}) vs exact on ${n}×${d} clustered: ${recall.toFixed(3)}`);
    // Not a quality bar (the benchmark reports recall at scale), only "is this searching at all":
    // a broken index returns unrelated ids with recall near k/n = 0.005.
    expect(recall).toBeGreaterThan(0.3);

    const loaded = faissIndexFromBuffer(index.toBuffer(), { searchParams: index.params, type });
    expect(loaded.count).toBe(n);
    const q0 = row(queries, d, 0);
    expect(loaded.search(q0, k).ordinals).toEqual(index.search(q0, k).ordinals);
  });

  it("records and re-applies search parameters (efSearch, nprobe)", async () => {
    const hnsw = await buildFaissIndex({ dimensions: d, type: "hnsw", count: n, params: { efSearch: 77 } }, [base]);
    expect(hnsw.params.efSearch).toBe(77);
    const ivf = await buildFaissIndex({ dimensions: d, type: "ivf", count: n, params: { nlist: 16, nprobe: 3 } }, [
      base,
    ]);
    expect(ivf.params).toMatchObject({ factory: "IVF16,Flat", nlist: 16, nprobe: 3 });
    // nprobe = nlist makes IVF exhaustive, hence exact: proof that the parameter reaches faiss.
    const loaded = faissIndexFromBuffer(ivf.toBuffer(), { searchParams: { nprobe: 16 } });
    expect(loaded.params.nprobe).toBe(16);
    const q = row(queries, d, 1);
    expect(loaded.search(q, 10).ordinals).toEqual(bruteTopK(q, 10));
  });

  it("builds HNSW with efConstruction 80 (faiss's default is 40) where our faiss-node build can set it", async () => {
    // HNSW's file ends with entry point, max level, efConstruction, efSearch, upper_beam, then the
    // flat storage (45-byte header + vectors): read the two ef fields faiss itself wrote.
    const small = base.subarray(0, 500 * d);
    const efFields = (buf: Uint8Array) => {
      const at = buf.byteLength - (FLAT_HEADER_BYTES + 500 * d * 4) - 12;
      const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      return [v.getInt32(at, true), v.getInt32(at + 4, true)];
    };
    const dflt = await buildFaissIndex({ dimensions: d, type: "hnsw", count: 500 }, [small]);
    expect(dflt.params).toMatchObject({ efConstruction: 80, efSearch: 128 });
    expect(efFields(dflt.toBuffer())).toEqual([80, 128]);
    const wide = await buildFaissIndex(
      { dimensions: d, type: "hnsw", count: 500, params: { efConstruction: 200, efSearch: 50 } },
      [small],
    );
    expect(efFields(wide.toBuffer())).toEqual([200, 50]);
    // Upstream faiss-node (the prebuilt binary) cannot: the record says what the index really got.
    const upstream = await buildFaissIndex({ dimensions: d, type: "hnsw", count: 500, upstreamOnly: true }, [small]);
    expect(upstream.params.efConstruction).toBe(40);
    expect(efFields(upstream.toBuffer())[0]).toBe(40);
    await expect(
      buildFaissIndex({ dimensions: d, type: "hnsw", count: 500, params: { efConstruction: 0 } }, [small]),
    ).rejects.toThrow(ValidationError);
  });

  it("INDEX_SEARCH_PARAMS override the search parameters a snapshot recorded", async () => {
    const ivf = await buildFaissIndex({ dimensions: d, type: "ivf", count: n, params: { nlist: 16, nprobe: 1 } }, [
      base,
    ]);
    const manifest = { index_type: "ivf", index_params: ivf.params } as unknown as SnapshotManifest;
    expect(decodeFaissSnapshotIndex(ivf.toBuffer(), manifest).params.nprobe).toBe(1);
    // nprobe = nlist makes IVF exhaustive, hence exact: the override reached faiss.
    const wide = decodeFaissSnapshotIndex(ivf.toBuffer(), manifest, { nprobe: 16 });
    expect(wide.params.nprobe).toBe(16);
    const q = row(queries, d, 3);
    expect(wide.search(q, 10).ordinals).toEqual(bruteTopK(q, 10));
  });

  it("k larger than the index returns what there is, never throws; k ≤ 0 returns nothing", async () => {
    const small = randomUnitVectors(5, d, 3);
    for (const type of ["flat", "hnsw"] as const) {
      const index = await buildFaissIndex({ dimensions: d, type, count: 5 }, [small]);
      const r = index.search(row(small, d, 0), 50);
      expect(r.ordinals.length).toBe(5);
      expect(r.ordinals[0]).toBe(0);
      expect(index.search(row(small, d, 0), 0).ordinals).toEqual([]);
    }
    const empty = await buildFaissIndex({ dimensions: d, type: "flat", count: 0 }, []);
    expect(empty.count).toBe(0);
    expect(empty.search(row(small, d, 0), 5)).toEqual({ ordinals: [], scores: [] });
  });

  it("drops the -1 labels an approximate index pads with", async () => {
    // IVF with nprobe 1 over a 2-list index: one list holds fewer than k vectors.
    const x = clusteredVectors({ n: 200, d, seed: 5, clusters: 2, spread: 0.1 });
    const index = await buildFaissIndex({ dimensions: d, type: "ivf", count: 200, params: { nlist: 2, nprobe: 1 } }, [
      x,
    ]);
    const r = index.search(row(x, d, 0), 200);
    expect(r.ordinals.length).toBeGreaterThan(0);
    expect(r.ordinals.length).toBeLessThan(200);
    expect(r.ordinals.every((o) => o >= 0)).toBe(true);
    expect(r.scores.length).toBe(r.ordinals.length);
  });

  it("falls back to faiss-node's upstream number[] API (prebuilt binary) with the same results", async () => {
    const typed = await buildFaissIndex({ dimensions: d, type: "flat", count: n }, batchesOf(base, 500));
    const upstream = await buildFaissIndex(
      { dimensions: d, type: "flat", count: n, upstreamOnly: true },
      batchesOf(base, 500),
    );
    const q = row(queries, d, 2);
    expect(upstream.search(q, 15).ordinals).toEqual(typed.search(q, 15).ordinals);
    expect(upstream.search(q, 10_000).ordinals.length).toBe(n); // upstream throws for k > ntotal; we clamp
    expect(upstream.setSearchParameter("efSearch", 10)).toBe(false);
    const reloaded = faissIndexFromBuffer(typed.toBuffer(), { upstreamOnly: true });
    expect(reloaded.search(q, 15).ordinals).toEqual(typed.search(q, 15).ordinals);
  });

  it("rejects bad input with clear errors", async () => {
    const index = await buildFaissIndex({ dimensions: d, type: "flat", count: 10 }, [randomUnitVectors(10, d, 1)]);
    expect(() => index.search(new Float32Array(d + 1), 3)).toThrow(ValidationError);
    await expect(buildFaissIndex({ dimensions: d, type: "flat" }, [new Float32Array(d + 1)])).rejects.toThrow(
      /multiple of 32/,
    );
    await expect(buildFaissIndex({ dimensions: 0, type: "flat" }, [])).rejects.toThrow(ValidationError);
    await expect(
      buildFaissIndex({ dimensions: d, type: "ivfpq", count: 100 }, [randomUnitVectors(100, d, 1)]),
    ).rejects.toThrow(/at least 256 vectors/);
    expect(() => faissIndexFromBuffer(new Uint8Array([1, 2, 3, 4]))).toThrow(/not a readable FAISS index/);
    expect(() => parseIndexType("annoy")).toThrow(/unknown index type/);
  });

  it("chooses the default type by corpus size, INDEX_TYPE overrides", () => {
    expect(chooseIndexType(0)).toBe("flat");
    expect(chooseIndexType(10_922, "auto", 384)).toBe("flat");
    expect(chooseIndexType(10_923, "auto", 384)).toBe("fp16");
    expect(chooseIndexType(104_166, "auto", 384)).toBe("fp16");
    expect(chooseIndexType(104_167, "auto", 384)).toBe("ivf");
    expect(chooseIndexType(26_041, "auto", 1536)).toBe("fp16");
    expect(chooseIndexType(26_042, "auto", 1536)).toBe("ivf");
    expect(chooseIndexType(5_000_000)).toBe("ivf");
    expect(chooseIndexType(5_000_001)).toBe("ivfpq-refine");
    expect(chooseIndexType(10, "sq8")).toBe("sq8");
  });

  it("faissIndexBuilder resolves auto and decodeFaissSnapshotIndex applies the manifest's parameters", async () => {
    async function* one() {
      yield base;
    }
    const built = await faissIndexBuilder({ dimensions: d, type: "auto", count: n }, one());
    expect(built.type).toBe("flat");
    const manifest = {
      index_type: "hnsw",
      index_params: { factory: "HNSW32,Flat", efSearch: 33 },
    } as unknown as SnapshotManifest;
    const hnsw = await buildFaissIndex({ dimensions: d, type: "hnsw", count: n }, [base]);
    const loaded = decodeFaissSnapshotIndex(hnsw.toBuffer(), manifest);
    expect(loaded.type).toBe("hnsw");
    expect(loaded.params.efSearch).toBe(33);
  });
});
