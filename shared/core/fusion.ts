// Merging first-stage (retrieval) and second-stage (cross-encoder) scores into one ranking.
// Pure functions; ranks are 1-based everywhere, as in the API response.
//
// Conventions:
// - A candidate without a rerank score (not sent to the reranker because of the latency budget,
//   or reranking skipped/failed) is never ranked above a reranked one: reranked candidates come
//   first, ordered by the fusion mode; the rest follow in first-stage order and keep their
//   retrieval score as `score` (their `rerank` is null, which is what tells them apart).
// - Ties are broken by first-stage rank (better rank first), so equal inputs give equal output.
import { ValidationError } from "./errors.ts";
import type { FusionMode, StageScore } from "./types.ts";

/** Weight of the cross-encoder in linear fusion when the request gives no alpha. */
export const DEFAULT_ALPHA = 0.7;
/** Reciprocal-rank-fusion constant (Cormack et al. 2009; Vespa, Elasticsearch, OpenSearch all use 60). */
export const DEFAULT_RRF_K = 60;

export interface FusionInput {
  retrieval: StageScore;
  rerank: StageScore | null;
}

export interface FusionOptions {
  mode: FusionMode;
  /** Linear fusion only: weight of the normalised rerank score, in [0, 1]. */
  alpha?: number;
  /** RRF only: the rank constant k (> 0). */
  rrfK?: number;
}

export type Fused<T> = T & { score: number };

/**
 * Rerank ranks (1-based) for a list of cross-encoder scores: best score first, ties broken by
 * the candidate's first-stage rank. `retrievalRanks[i]` belongs to `scores[i]`.
 */
export function rankScores(scores: readonly number[], retrievalRanks: readonly number[]): number[] {
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a] || retrievalRanks[a] - retrievalRanks[b]);
  const ranks = new Array<number>(scores.length);
  order.forEach((i, pos) => {
    ranks[i] = pos + 1;
  });
  return ranks;
}

/**
 * Min-max normalisation to [0, 1]. When every value is equal there is no spread to normalise, so
 * every value maps to 1 (each is "the best"): the stage then adds the same amount to every
 * candidate and the other stage alone decides the order.
 */
export function minMax(values: readonly number[]): number[] {
  if (values.length === 0) return [];
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const span = hi - lo;
  return values.map((v) => (span > 0 ? (v - lo) / span : 1));
}

/** Scores every candidate by the fusion mode and returns them best first (new objects, input untouched). */
export function fuseScores<T extends FusionInput>(candidates: readonly T[], opts: FusionOptions): Fused<T>[] {
  const alpha = opts.alpha ?? DEFAULT_ALPHA;
  const rrfK = opts.rrfK ?? DEFAULT_RRF_K;
  if (!(alpha >= 0 && alpha <= 1)) throw new ValidationError(`alpha: must be between 0 and 1, got ${alpha}`);
  if (!(rrfK > 0)) throw new ValidationError(`rrfK: must be > 0, got ${rrfK}`);

  const byRetrieval = (a: T, b: T) => a.retrieval.rank - b.retrieval.rank;
  const head = candidates.filter((c) => c.rerank !== null);
  const tail = candidates.filter((c) => c.rerank === null).sort(byRetrieval);

  let scores: number[];
  switch (opts.mode) {
    case "rerank":
      scores = head.map((c) => c.rerank!.score);
      break;
    case "linear": {
      const r = minMax(head.map((c) => c.rerank!.score));
      const q = minMax(head.map((c) => c.retrieval.score));
      scores = head.map((_, i) => alpha * r[i] + (1 - alpha) * q[i]);
      break;
    }
    case "rrf":
      scores = head.map((c) => 1 / (rrfK + c.retrieval.rank) + 1 / (rrfK + c.rerank!.rank));
      break;
    default:
      throw new ValidationError(`fusion: unknown mode "${String(opts.mode)}"`);
  }
  const fusedHead = head
    .map((c, i) => ({ ...c, score: scores[i] }))
    .sort((a, b) => b.score - a.score || a.retrieval.rank - b.retrieval.rank);
  const fusedTail = tail.map((c) => ({ ...c, score: c.retrieval.score }));
  return [...fusedHead, ...fusedTail];
}

/**
 * Keeps the first (best) item of each document, preserving order. Call on a list that is
 * already sorted best first (the output of fuseScores).
 */
export function collapseByDocument<T>(items: readonly T[], docId: (item: T) => string): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const item of items) {
    const id = docId(item);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(item);
  }
  return out;
}

// ---------- first stage: dense + sparse ----------

export type HybridFusionMode = "rrf" | "convex";

/** Weight of the dense side in convex hybrid fusion when the request gives none. */
export const DEFAULT_DENSE_WEIGHT = 0.5;

export interface HybridFusionOptions {
  mode: HybridFusionMode;
  /** Convex only: weight of the min-max normalised dense score, in [0, 1]; sparse gets 1 − w. */
  denseWeight?: number;
  /** RRF only: the rank constant (> 0). */
  rrfK?: number;
}

/** One side's list, best first; `key` identifies the passage across both lists. */
export interface RankedItem<T> {
  key: number;
  item: T;
  score: number;
}

export interface HybridFused<T> {
  key: number;
  item: T;
  /** The fused first-stage score (RRF sum or convex combination). */
  score: number;
  dense: StageScore | null;
  sparse: StageScore | null;
}

/**
 * Fuses a dense and a sparse ranking into one: the union of both lists, deduplicated by key,
 * best first. RRF sums 1/(k + rank) over the sides a passage appears on; convex combines the
 * min-max normalised scores (a side the passage is missing from contributes 0). Ties go to the
 * passage with the better best rank, then the lower key, so equal inputs give equal output.
 */
export function fuseFirstStage<T>(
  dense: readonly RankedItem<T>[],
  sparse: readonly RankedItem<T>[],
  opts: HybridFusionOptions,
): HybridFused<T>[] {
  const w = opts.denseWeight ?? DEFAULT_DENSE_WEIGHT;
  const rrfK = opts.rrfK ?? DEFAULT_RRF_K;
  if (!(w >= 0 && w <= 1)) throw new ValidationError(`dense_weight: must be between 0 and 1, got ${w}`);
  if (!(rrfK > 0)) throw new ValidationError(`rrf_k: must be > 0, got ${rrfK}`);
  if (opts.mode !== "rrf" && opts.mode !== "convex")
    throw new ValidationError(`hybrid fusion: unknown mode "${String(opts.mode)}"`);
  const byKey = new Map<number, HybridFused<T>>();
  const entry = (r: RankedItem<T>) => {
    let e = byKey.get(r.key);
    if (!e) {
      e = { key: r.key, item: r.item, score: 0, dense: null, sparse: null };
      byKey.set(r.key, e);
    }
    return e;
  };
  const dn = opts.mode === "convex" ? minMax(dense.map((r) => r.score)) : [];
  const sn = opts.mode === "convex" ? minMax(sparse.map((r) => r.score)) : [];
  dense.forEach((r, i) => {
    const e = entry(r);
    e.dense = { score: r.score, rank: i + 1 };
    e.score += opts.mode === "rrf" ? 1 / (rrfK + i + 1) : w * dn[i];
  });
  sparse.forEach((r, i) => {
    const e = entry(r);
    e.sparse = { score: r.score, rank: i + 1 };
    e.score += opts.mode === "rrf" ? 1 / (rrfK + i + 1) : (1 - w) * sn[i];
  });
  const best = (e: HybridFused<T>) => Math.min(e.dense?.rank ?? Infinity, e.sparse?.rank ?? Infinity);
  return [...byKey.values()].sort((a, b) => b.score - a.score || best(a) - best(b) || a.key - b.key);
}
