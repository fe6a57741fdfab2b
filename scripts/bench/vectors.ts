// Seeded synthetic vectors for the faiss/snapshot benchmarks and tests: fast (a 200K×384 set in a
// couple of seconds), reproducible, and clustered like real embeddings so approximate indexes
// behave as they do on real data (uniform random points in 384-d have no neighbourhoods at all).

/** mulberry32: tiny, fast, good enough for benchmark data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Inverse normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
function invNorm(p: number): number {
  const a = [
    -39.6968302866538, 220.946098424521, -275.928510446969, 138.357751867269, -30.6647980661472, 2.50662827745924,
  ];
  const b = [-54.4760987982241, 161.585836858041, -155.698979859887, 66.8013118877197, -13.2806815528857];
  const c = [
    -0.00778489400243029, -0.322396458041136, -2.40075827716184, -2.54973253934373, 4.37466414146497, 2.93816398269878,
  ];
  const dd = [0.00778469570904146, 0.32246712907004, 2.445134137143, 3.75440866190742];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1)
    );
  }
  if (p > 1 - lo) return -invNorm(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  );
}

let normalTable: Float32Array | undefined;

/**
 * Standard normal samples by table lookup: one 32-bit draw gives two samples through a 65,536-entry
 * inverse-CDF table (tails cut at ~4.3σ, irrelevant for benchmark data), ~10× faster than Box–Muller.
 */
export function gaussianFill(out: Float32Array, rand: () => number): Float32Array {
  if (!normalTable) {
    normalTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) normalTable[i] = invNorm((i + 0.5) / 65536);
  }
  const t = normalTable;
  // An inlined mulberry32 seeded from `rand`: no call per sample.
  let a = (rand() * 4294967296) >>> 0;
  for (let i = 0; i < out.length; i += 2) {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    const u = (x ^ (x >>> 14)) >>> 0;
    out[i] = t[u & 0xffff];
    if (i + 1 < out.length) out[i + 1] = t[u >>> 16];
  }
  return out;
}

export function normalizeRows(x: Float32Array, d: number): Float32Array {
  for (let off = 0; off < x.length; off += d) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[off + j] * x[off + j];
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < d; j++) x[off + j] *= inv;
  }
  return x;
}

/** Unit vectors uniformly on the sphere (row-major n×d). */
export function randomUnitVectors(n: number, d: number, seed: number): Float32Array {
  return normalizeRows(gaussianFill(new Float32Array(n * d), mulberry32(seed)), d);
}

export interface ClusteredOptions {
  n: number;
  d: number;
  seed: number;
  /** Number of cluster centres (default n/200, at least 1). */
  clusters?: number;
  /** Noise around a centre relative to the centre's unit norm (default 0.5): larger = harder. */
  spread?: number;
  /** Centres come from this seed, so base vectors and queries share them. */
  centreSeed?: number;
}

/** Unit vectors drawn around shared random centres (row-major n×d). */
export function clusteredVectors(o: ClusteredOptions): Float32Array {
  const clusters = Math.max(1, o.clusters ?? Math.round(o.n / 200));
  const spread = o.spread ?? 0.5;
  const centres = randomUnitVectors(clusters, o.d, o.centreSeed ?? 1);
  const rand = mulberry32(o.seed);
  const out = gaussianFill(new Float32Array(o.n * o.d), rand);
  const noiseScale = spread / Math.sqrt(o.d);
  for (let i = 0; i < o.n; i++) {
    const c = Math.floor(rand() * clusters) * o.d;
    const off = i * o.d;
    for (let j = 0; j < o.d; j++) out[off + j] = centres[c + j] + noiseScale * out[off + j];
  }
  return normalizeRows(out, o.d);
}

/** Row i of a row-major matrix (a view, no copy). */
export function row(x: Float32Array, d: number, i: number): Float32Array {
  return x.subarray(i * d, (i + 1) * d);
}

/** Fraction of the exact top-k found in the approximate top-k, averaged over queries. */
export function recallAtK(approx: readonly number[][], exact: readonly number[][], k: number): number {
  let hit = 0;
  let total = 0;
  for (let q = 0; q < exact.length; q++) {
    const truth = new Set(exact[q].slice(0, k));
    total += truth.size;
    for (const id of approx[q].slice(0, k)) if (truth.has(id)) hit++;
  }
  return total === 0 ? 1 : hit / total;
}
