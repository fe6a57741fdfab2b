// The two-stage search: embed the query, take the best first-stage candidates from the
// snapshot's vector index, its BM25 index, or both fused (hybrid, the default: each side's top
// `candidates`, deduplicated, ranked by RRF or a convex combination), with filters applied so k
// results still come back; rerank as many of them as the latency budget allows, fuse the two
// stages' scores, collapse, cut to k.
// Pure orchestration over ports; the only failure that reaches the caller is one the first
// stage cannot work around (no embedding in dense mode, a mismatched embedder). Hybrid without
// an embedding answers from BM25; a snapshot without a BM25 index answers dense; a failing
// second stage degrades to first-stage results. Each says so in `warnings`.
import {
  DEFAULT_PAIRS_PER_CALL,
  estimatePairTokens,
  estimateTokens,
  fanoutGroups,
  planRerank,
  type RerankCostTracker,
  type RerankPlan,
} from "./budget.ts";
import { assertEmbedderMatches } from "./embedding.ts";
import { LEXICAL_PROVIDER } from "./lexical-scorer.ts";
import { DomainError, EmbedderMismatchError, EmbedderUnavailableError } from "./errors.ts";
import { collapseByDocument, fuseFirstStage, fuseScores, type HybridFusionMode, rankScores } from "./fusion.ts";
import type {
  Clock,
  Embedder,
  FanoutVectorIndex,
  LoadedSnapshot,
  MissingShard,
  PassageInfo,
  PassageStore,
  RerankerPort,
  VectorSearchResult,
} from "./ports.ts";
import { isFanoutIndex, systemClock } from "./ports.ts";
import { readPassages } from "./snapshot.ts";
import { TimeLimitError, withTimeLimit } from "./time-limit.ts";
import type { SparseIndex } from "./sparse-index.ts";
import type { FusionMode, RerankResponse, SearchHit, StageScore } from "./types.ts";

export type MetadataValue = string | number | boolean | null;

export interface SearchFilter {
  /** Keep passages whose `source` starts with this string. */
  source_prefix?: string;
  /**
   * Keep passages whose metadata has every one of these key/value pairs (strict equality; when
   * the passage's value is an array, the array must contain the value).
   */
  metadata?: Record<string, MetadataValue>;
}

/** Which first stage finds the candidates. */
export type RetrievalMode = "dense" | "sparse" | "hybrid";

export interface HybridRequest {
  /** How the two rankings merge (default "rrf"). */
  fusion?: HybridFusionMode;
  /** Convex only: weight of the dense side, 0..1 (default DEFAULT_DENSE_WEIGHT). */
  dense_weight?: number;
  /** RRF only: the rank constant (default 60). */
  rrf_k?: number;
}

export interface SearchRequest {
  query: string;
  /** First stage: the vector index, the BM25 index, or both fused (default "hybrid"). */
  retrieval?: RetrievalMode;
  hybrid?: HybridRequest;
  k: number;
  candidates: number;
  rerank: boolean;
  /** How the stages merge; absent: defaultFusion of the reranker that answered. */
  fusion?: FusionMode;
  alpha?: number;
  filter?: SearchFilter;
  /** Keep only the best passage of each document. */
  collapse?: boolean;
  /** Latency budget of this search in ms; undefined = none. */
  budget_ms?: number;
}

export interface SearchTimings {
  embed_ms: number;
  /** Dense (vector index) search. */
  search_ms: number;
  /** Sparse (BM25) search; 0 in dense mode. */
  sparse_ms: number;
  /** Reading the candidates' texts (ranged reads of a lazily read passage store; ~0 in memory). */
  texts_ms: number;
  rerank_ms: number;
  total_ms: number;
}

export interface SearchResponse {
  results: SearchHit[];
  index: { version: string; count: number };
  /** Whether the second stage scored (some of) the candidates. */
  reranked: boolean;
  /** How many of the best first-stage candidates were reranked (0 when not reranked). */
  reranked_candidates: number;
  /** First-stage candidates after filtering (the pool fusion and the reranker worked on). */
  candidates: number;
  fusion: FusionMode;
  /** The first stage that answered (may differ from the request's: see warnings). */
  retrieval: RetrievalMode;
  warnings: string[];
  /**
   * Fan-out search only (SEARCH_SHARDS=lambda|http): how many index shards were asked and which
   * did not answer; their passages are missing from the dense side (see warnings).
   */
  shards?: { total: number; answered: number; missing: MissingShard[] };
  timings: SearchTimings;
}

export interface SearchLimits {
  /** Upper limit of candidates; also caps how far `collapse` may extend the pool to find k documents. */
  maxCandidates: number;
  /** Time limit of the query embedding (adapters retry within it). */
  embedTimeoutMs?: number;
  /** A cross-encoder's pair length limit, used for cost estimates (default 512). */
  maxPairTokens?: number;
  /**
   * Fewest candidates worth a rerank call when the budget only allows part of them (default 2:
   * the least that can change an order). Reranking the best m < k candidates still improves the
   * top of the list; the rest follow in first-stage order.
   */
  minRerankCandidates?: number;
  /**
   * RERANKER_FANOUT: most rerank calls one search makes at once (default 1). The candidates are
   * split into length-balanced groups of at least `rerankPairsPerCall` pairs, one call each.
   */
  rerankFanout?: number;
  /** RERANKER_FANOUT_PAIRS: fewest pairs worth a call of their own (default DEFAULT_PAIRS_PER_CALL). */
  rerankPairsPerCall?: number;
}

export interface SearchDeps {
  snapshot: LoadedSnapshot;
  embedder: Embedder;
  /** null (or a reranker whose kind is "none") = no second stage. */
  reranker: RerankerPort | null;
  estimate: RerankCostTracker;
  clock?: Clock;
  limits: SearchLimits;
  /** Hard time limit of one rerank call (RERANKER_TIMEOUT_MS). */
  rerankTimeoutMs: number;
}

interface Candidate {
  ordinal: number;
  passage: FirstStagePassage;
  /** First-stage score and rank (the fused ones in hybrid mode). */
  retrieval: StageScore;
  dense: StageScore | null;
  sparse: StageScore | null;
  rerank: StageScore | null;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** Whether a passage passes the request's filter. */
export function matchesFilter(p: PassageInfo, filter: SearchFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.source_prefix !== undefined && !(p.source ?? "").startsWith(filter.source_prefix)) return false;
  if (filter.metadata) {
    for (const [key, want] of Object.entries(filter.metadata)) {
      const have = p.metadata?.[key];
      if (Array.isArray(have) ? !have.includes(want) : have !== want) return false;
    }
  }
  return true;
}

const hasFilter = (f: SearchFilter | undefined) =>
  f !== undefined && (f.source_prefix !== undefined || Object.keys(f.metadata ?? {}).length > 0);

/**
 * The fusion of a request that names none: "rerank" (the second stage's order) for a model, but
 * "linear" (alpha·reranker + (1 − alpha)·first stage, min-max normalised) when every answer came from
 * the weight-free lexical scorer. That scorer is one more lexical signal, not a better judge than the
 * first stage: replacing a first stage that carries a trained embedder's meaning with it throws the
 * meaning away (docs/EVAL.md), while adding it keeps both.
 */
export function defaultFusion(providers: readonly string[]): FusionMode {
  return providers.length > 0 && providers.every((p) => p === LEXICAL_PROVIDER) ? "linear" : "rerank";
}

/** A first-stage hit of one side (dense or sparse), before fusion. */
interface SideHit {
  key: number;
  item: FirstStagePassage;
  score: number;
}

/**
 * Decoded passages of one search, so a passage both sides (or the filter) look at decodes once.
 * A lazily read store answers without the text here (id, document, source, metadata are what the
 * first stage needs); attachTexts() brings the texts of the candidates in afterwards.
 */
function passageCache(snapshot: LoadedSnapshot) {
  const cache = new Map<number, FirstStagePassage>();
  const { passages } = snapshot;
  return (ordinal: number): FirstStagePassage => {
    let p = cache.get(ordinal);
    if (!p) {
      p = passages.info ? passages.info(ordinal) : passages.get(ordinal);
      cache.set(ordinal, p);
    }
    return p;
  };
}

/** A passage as the first stage sees it: the text is there unless the store reads texts lazily. */
type FirstStagePassage = PassageInfo & { text?: string };

/** Gives every candidate its full passage (one ranged read per nearby group for a lazy store). */
async function attachTexts(
  passages: PassageStore,
  candidates: ReadonlyArray<{ ordinal: number; passage: FirstStagePassage }>,
): Promise<void> {
  const missing = candidates.filter((c) => c.passage.text === undefined);
  if (missing.length === 0) return;
  const full = await readPassages(
    passages,
    missing.map((c) => c.ordinal),
  );
  for (let i = 0; i < missing.length; i++) missing[i].passage = full[i];
}

/** The text of a candidate whose passage attachTexts() completed. */
function textOf(c: { passage: FirstStagePassage }): string {
  if (c.passage.text === undefined) throw new Error(`internal: passage ${c.passage.id} has no text loaded`);
  return c.passage.text;
}

type PoolRequest = Pick<SearchRequest, "k" | "candidates" | "filter" | "collapse">;

/**
 * How many hits a side must deliver: `candidates`, or with collapse more (up to the limit) until
 * they span k documents.
 */
function poolRule(req: PoolRequest, maxCandidates: number) {
  const cap = req.collapse ? Math.max(req.candidates, maxCandidates) : req.candidates;
  return {
    cap,
    enough: (n: number, docs: number) => n >= cap || (n >= req.candidates && (!req.collapse || docs >= req.k)),
  };
}

/** One fetch of the dense side as filtered hits, and whether it holds enough of them. */
function collectDense(
  found: VectorSearchResult,
  count: number,
  req: PoolRequest,
  enough: (n: number, docs: number) => boolean,
  passageOf: (ordinal: number) => FirstStagePassage,
): { out: SideHit[]; enough: boolean } {
  const out: SideHit[] = [];
  const docs = new Set<string>();
  for (let i = 0; i < found.ordinals.length && !enough(out.length, docs.size); i++) {
    const ordinal = found.ordinals[i];
    if (ordinal < 0 || ordinal >= count) continue;
    const passage = passageOf(ordinal);
    if (!matchesFilter(passage, req.filter)) continue;
    docs.add(passage.docId);
    out.push({ key: ordinal, item: passage, score: found.scores[i] });
  }
  return { out, enough: enough(out.length, docs.size) };
}

/** First fetch size of the dense side; with a filter or collapse it over-fetches (see denseHits). */
function firstFetch(req: PoolRequest, total: number): { fetchK: number; widen: boolean } {
  const widen = hasFilter(req.filter) || req.collapse === true;
  return { fetchK: Math.min(total, widen ? Math.max(req.candidates * 4, 64) : req.candidates), widen };
}

/**
 * Dense first-stage hits in index order, filtered. With a filter (or collapse) the index is
 * over-fetched and the fetch widened 4× at a time until enough passages match or the whole index
 * has been searched, so a selective filter still yields k results when they exist.
 */
function denseHits(
  snapshot: LoadedSnapshot,
  vector: Float32Array,
  req: PoolRequest,
  maxCandidates: number,
  passageOf: (ordinal: number) => FirstStagePassage,
): SideHit[] {
  const { index, passages } = snapshot;
  const total = index.count;
  const { enough } = poolRule(req, maxCandidates);
  let { fetchK, widen } = firstFetch(req, total);
  for (;;) {
    const got = collectDense(index.search(vector, fetchK), passages.count, req, enough, passageOf);
    if (!widen || fetchK >= total || got.enough) return got.out;
    fetchK = Math.min(total, fetchK * 4);
  }
}

/**
 * denseHits over an index whose shards are other processes (SEARCH_SHARDS=lambda|http): the same
 * fetch and widening, each fetch one parallel round over the shards. The shards missing from the
 * last round are reported (their passages are absent from the hits).
 */
async function denseHitsFanout(
  index: FanoutVectorIndex,
  snapshot: LoadedSnapshot,
  vector: Float32Array,
  req: PoolRequest,
  maxCandidates: number,
  passageOf: (ordinal: number) => FirstStagePassage,
): Promise<{ hits: SideHit[]; shards: number; missing: MissingShard[] }> {
  const total = index.count;
  const { enough } = poolRule(req, maxCandidates);
  let { fetchK, widen } = firstFetch(req, total);
  for (;;) {
    const found = await index.searchShards(vector, fetchK);
    const got = collectDense(found, snapshot.passages.count, req, enough, passageOf);
    // Every shard down: widening would only ask them again.
    const allMissing = found.missing.length === found.shards;
    if (!widen || fetchK >= total || got.enough || allMissing)
      return { hits: got.out, shards: found.shards, missing: found.missing };
    fetchK = Math.min(total, fetchK * 4);
  }
}

/** The warning of a fan-out search that lacks some shards (or all of them). */
function shardWarning(shards: number, missing: readonly MissingShard[], fallback: string): string {
  const named = missing
    .slice(0, 3)
    .map((m) => `shard ${m.shard}: ${m.message}`)
    .join("; ");
  const more = missing.length > 3 ? `; ${missing.length - 3} more` : "";
  if (missing.length === shards) return `index shards: none of ${shards} answered (${named}${more}); ${fallback}`;
  return `index shards: ${missing.length} of ${shards} did not answer (${named}${more}); dense results come from the other ${shards - missing.length} and lack those shards' passages`;
}

/**
 * Sparse (BM25) first-stage hits, filtered: the filter is applied inside the postings walk, so
 * a selective filter still yields k results when they exist. Only passages holding at least one
 * query term are returned.
 */
function sparseHits(
  sparse: SparseIndex,
  query: string,
  req: PoolRequest,
  maxCandidates: number,
  passageOf: (ordinal: number) => FirstStagePassage,
): SideHit[] {
  const { cap, enough } = poolRule(req, maxCandidates);
  const accept = hasFilter(req.filter) ? (ordinal: number) => matchesFilter(passageOf(ordinal), req.filter) : undefined;
  const found = sparse.search(query, cap, accept);
  const out: SideHit[] = [];
  const docs = new Set<string>();
  for (let i = 0; i < found.ordinals.length && !enough(out.length, docs.size); i++) {
    const passage = passageOf(found.ordinals[i]);
    docs.add(passage.docId);
    out.push({ key: found.ordinals[i], item: passage, score: found.scores[i] });
  }
  return out;
}

/** One side's hits as candidates: its own scores and ranks are the first-stage ones. */
function singleSide(hits: SideHit[], side: "dense" | "sparse"): Candidate[] {
  return hits.map((h, i) => {
    const stage = { score: h.score, rank: i + 1 };
    return {
      ordinal: h.key,
      passage: h.item,
      retrieval: stage,
      dense: side === "dense" ? stage : null,
      sparse: side === "sparse" ? stage : null,
      rerank: null,
    };
  });
}

function describeFailure(e: unknown, timeoutMs: number): string {
  if (e instanceof TimeLimitError) return e.message;
  if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError"))
    return `timed out after ${timeoutMs} ms`;
  if (e instanceof DomainError) return e.message;
  if (e instanceof Error) return `${e.name === "Error" ? "" : `${e.name}: `}${e.message}`;
  return String(e);
}

/** Scores per sent document from a rerank answer; throws when the answer does not cover them exactly once. */
export function scoresFromRerank(resp: RerankResponse, sent: number): number[] {
  if (!resp || !Array.isArray(resp.results)) throw new Error("malformed answer: no results array");
  const scores = new Array<number>(sent).fill(Number.NaN);
  for (const r of resp.results) {
    if (!Number.isInteger(r?.index) || r.index < 0 || r.index >= sent) {
      throw new Error(`malformed answer: result index ${String(r?.index)} is outside 0..${sent - 1}`);
    }
    if (typeof r.relevance_score !== "number" || !Number.isFinite(r.relevance_score)) {
      throw new Error(`malformed answer: relevance_score of document ${r.index} is not a finite number`);
    }
    if (!Number.isNaN(scores[r.index])) throw new Error(`malformed answer: document ${r.index} scored twice`);
    scores[r.index] = r.relevance_score;
  }
  const missing = scores.filter((s) => Number.isNaN(s)).length;
  if (missing > 0) throw new Error(`malformed answer: ${missing} of ${sent} documents have no score`);
  return scores;
}

function budgetWarning(plan: RerankPlan, total: number, budgetMs: number): string {
  const left = Math.max(0, Math.round(plan.remainingMs ?? 0));
  const all = Math.round(plan.predictedAllMs);
  if (plan.count === 0) {
    return `latency budget: reranking skipped (all ${total} candidates predicted to take ${all} ms, ${left} ms of the ${budgetMs} ms budget left)`;
  }
  return `latency budget: reranked the best ${plan.count} of ${total} candidates (all predicted to take ${all} ms, ${left} ms of the ${budgetMs} ms budget left)`;
}

export async function searchTwoStage(request: SearchRequest, deps: SearchDeps): Promise<SearchResponse> {
  const clock = deps.clock ?? systemClock;
  const t0 = clock.now();
  const { snapshot, embedder } = deps;
  const warnings: string[] = [];
  const passageOf = passageCache(snapshot);
  // Every mode checks the embedder's identity: a service whose query embedder does not match its
  // snapshot is misconfigured, and says so even when this one query would not need a vector.
  assertEmbedderMatches(snapshot.manifest.embedder, embedder.identity);

  // Unset = hybrid where the snapshot can; an explicit sparse/hybrid it cannot serve is warned about.
  let mode: RetrievalMode = request.retrieval ?? (snapshot.sparse ? "hybrid" : "dense");
  if (mode !== "dense" && !snapshot.sparse) {
    warnings.push(
      `retrieval: snapshot ${snapshot.version} has no sparse index (published before it was added); results are dense only until the next reindex`,
    );
    mode = "dense";
  }

  // ---- embed (dense and hybrid) ----
  let vector: Float32Array | null = null;
  const embeds = mode !== "sparse";
  if (embeds) {
    try {
      const embedMs = deps.limits.embedTimeoutMs;
      vector = embedMs
        ? await withTimeLimit(embedMs, (signal) => embedder.embedQuery(request.query, { signal }))
        : await embedder.embedQuery(request.query);
    } catch (e) {
      if (e instanceof DomainError && !(e instanceof EmbedderUnavailableError)) throw e;
      const why = `query embedding failed: ${describeFailure(e, deps.limits.embedTimeoutMs ?? 0)}`;
      // Hybrid still has a first stage without the embedder: answer from BM25 and say so.
      if (mode !== "hybrid") throw e instanceof EmbedderUnavailableError ? e : new EmbedderUnavailableError(why, e);
      warnings.push(`${why}; results are sparse (BM25) only`);
      mode = "sparse";
    }
    if (vector && vector.length !== snapshot.index.dimensions) {
      throw new EmbedderMismatchError(
        `the query embedder gave ${vector.length} dimensions, the index has ${snapshot.index.dimensions}`,
      );
    }
  }
  const t1 = clock.now();

  // ---- first stage ----
  let dense: SideHit[] = [];
  let shardReport: SearchResponse["shards"];
  if (vector && isFanoutIndex(snapshot.index)) {
    const fan = await denseHitsFanout(snapshot.index, snapshot, vector, request, deps.limits.maxCandidates, passageOf);
    dense = fan.hits;
    shardReport = { total: fan.shards, answered: fan.shards - fan.missing.length, missing: fan.missing };
    if (fan.missing.length === fan.shards && fan.shards > 0) {
      // No dense side at all. Hybrid still has BM25; dense alone answers empty with the warning
      // rather than a 5xx: the request was valid and the shards may be back for the next one.
      if (mode === "hybrid" && snapshot.sparse) {
        warnings.push(shardWarning(fan.shards, fan.missing, "results are sparse (BM25) only"));
        mode = "sparse";
      } else warnings.push(shardWarning(fan.shards, fan.missing, "no dense results"));
    } else if (fan.missing.length > 0) {
      warnings.push(shardWarning(fan.shards, fan.missing, ""));
    }
  } else if (vector) {
    dense = denseHits(snapshot, vector, request, deps.limits.maxCandidates, passageOf);
  }
  const t2 = clock.now();
  const searchesSparse = mode !== "dense" && snapshot.sparse !== null;
  const sparse =
    searchesSparse && snapshot.sparse
      ? sparseHits(snapshot.sparse, request.query, request, deps.limits.maxCandidates, passageOf)
      : [];
  const t2s = clock.now();
  let candidates: Candidate[];
  if (mode === "hybrid") {
    const h = request.hybrid;
    candidates = fuseFirstStage(dense, sparse, {
      mode: h?.fusion ?? "rrf",
      denseWeight: h?.dense_weight,
      rrfK: h?.rrf_k,
    }).map((f, i) => ({
      ordinal: f.key,
      passage: f.item,
      retrieval: { score: f.score, rank: i + 1 },
      dense: f.dense,
      sparse: f.sparse,
      rerank: null,
    }));
  } else {
    candidates = singleSide(mode === "dense" ? dense : sparse, mode);
  }
  if (hasFilter(request.filter) && candidates.length < request.k) {
    warnings.push(
      `filter: only ${candidates.length} passage${candidates.length === 1 ? "" : "s"} of the index match the filter`,
    );
  }

  // ---- second stage ----
  let rerankedCount = 0;
  /** meta.provider of every reranker answer (decides the default fusion). */
  const providers: string[] = [];
  const reranker = deps.reranker && deps.reranker.describe().kind !== "none" ? deps.reranker : null;
  // Texts: a reranked search needs every candidate's, otherwise only the returned hits' (below). A
  // lazily read store fetches them now, by range; a failure fails this request with a 503, the
  // snapshot keeps serving.
  let textsMs = 0;
  if (request.rerank && reranker && candidates.length > 0) {
    const tTexts = clock.now();
    await attachTexts(snapshot.passages, candidates);
    textsMs += clock.now() - tTexts;
  }
  const textsBeforeRerankMs = textsMs;
  if (request.rerank && !reranker) {
    warnings.push("reranking is not configured (RERANKER=none); results are first-stage only");
  } else if (request.rerank && reranker && candidates.length > 0) {
    const queryTokens = estimateTokens(request.query);
    const pairTokens = candidates.map((c) => estimatePairTokens(queryTokens, textOf(c), deps.limits.maxPairTokens));
    const plan = planRerank({
      budgetMs: request.budget_ms,
      elapsedMs: clock.now() - t0,
      candidateTokens: pairTokens,
      estimate: deps.estimate.current(),
      minCandidates: deps.limits.minRerankCandidates ?? 2,
      fanout: deps.limits.rerankFanout ?? 1,
      pairsPerCall: deps.limits.rerankPairsPerCall ?? DEFAULT_PAIRS_PER_CALL,
    });
    if (plan.reason === "partial" || plan.reason === "over_budget")
      warnings.push(budgetWarning(plan, candidates.length, request.budget_ms!));
    if (plan.count > 0) {
      const sent = candidates.slice(0, plan.count);
      const timeoutMs = Math.max(
        1,
        Math.floor(plan.remainingMs === null ? deps.rerankTimeoutMs : Math.min(deps.rerankTimeoutMs, plan.remainingMs)),
      );
      // Corpus statistics of the query terms let a lexical reranker score BM25 exactly as the
      // sparse index does; model rerankers ignore them.
      const termStatistics = snapshot.sparse?.termStatistics(request.query);
      const groups = fanoutGroups(
        pairTokens.slice(0, sent.length),
        deps.limits.rerankFanout ?? 1,
        deps.limits.rerankPairsPerCall ?? DEFAULT_PAIRS_PER_CALL,
      );
      // One call per group, all at once; each group's answer stands on its own, so one slow or
      // failing call leaves only its candidates with first-stage scores.
      const outcomes = await Promise.all(
        groups.map(async (group) => {
          const started = clock.now();
          try {
            const resp = await withTimeLimit(timeoutMs, (signal) =>
              reranker.rerank(
                {
                  query: request.query,
                  documents: group.map((i) => textOf(sent[i])),
                  ...(termStatistics ? { term_statistics: termStatistics } : {}),
                },
                { signal, timeoutMs },
              ),
            );
            const scores = scoresFromRerank(resp, group.length);
            // Answers partly from the reranker's score cache say nothing about the model's speed.
            if (!resp.meta?.cache?.hits)
              deps.estimate.observe({
                pairs: group.length,
                estimatedTokens: group.reduce((a, i) => a + pairTokens[i], 0),
                wallMs: clock.now() - started,
                tokens: resp.meta?.tokens,
                serverMs: resp.meta?.timings?.total_ms,
              });
            return { group, scores, error: null, provider: resp.meta?.provider };
          } catch (e) {
            return { group, scores: null, error: describeFailure(e, timeoutMs), provider: undefined };
          }
        }),
      );
      for (const o of outcomes) if (o.provider !== undefined) providers.push(o.provider);
      const scored: Array<{ index: number; score: number }> = [];
      for (const o of outcomes) {
        if (!o.scores) continue;
        for (const [j, i] of o.group.entries()) scored.push({ index: i, score: o.scores[j] });
      }
      const failed = outcomes.filter((o) => o.error !== null);
      if (failed.length === outcomes.length) {
        warnings.push(`reranker failed (${failed[0].error}); results are first-stage only`);
      } else if (failed.length > 0) {
        const lost = failed.reduce((a, o) => a + o.group.length, 0);
        warnings.push(
          `reranker failed for ${failed.length} of ${outcomes.length} parallel calls (${failed[0].error}); ${lost} of ${sent.length} candidates keep their first-stage scores`,
        );
      }
      if (scored.length > 0) {
        // Scores of one model are comparable across calls: rank them together.
        const ranks = rankScores(
          scored.map((x) => x.score),
          scored.map((x) => sent[x.index].retrieval.rank),
        );
        scored.forEach((x, j) => {
          sent[x.index].rerank = { score: x.score, rank: ranks[j] };
        });
        rerankedCount = scored.length;
      }
    }
  }
  const t3 = clock.now();

  // ---- fuse, collapse, cut ----
  const fusion = request.fusion ?? defaultFusion(providers);
  let ranked = fuseScores(candidates, { mode: fusion, alpha: request.alpha });
  if (request.collapse) ranked = collapseByDocument(ranked, (c) => c.passage.docId);
  const top = ranked.slice(0, request.k);
  const tTexts = clock.now();
  await attachTexts(snapshot.passages, top);
  textsMs += clock.now() - tTexts;
  const results: SearchHit[] = top.map((c) => ({
    id: c.passage.id,
    doc_id: c.passage.docId,
    text: textOf(c),
    source: c.passage.source,
    metadata: c.passage.metadata,
    score: c.score,
    retrieval: c.retrieval,
    dense: c.dense,
    sparse: c.sparse,
    rerank: c.rerank,
  }));
  const t4 = clock.now();
  return {
    results,
    index: { version: snapshot.version, count: snapshot.index.count },
    reranked: rerankedCount > 0,
    reranked_candidates: rerankedCount,
    candidates: candidates.length,
    fusion,
    retrieval: mode,
    warnings,
    ...(shardReport ? { shards: shardReport } : {}),
    timings: {
      // A stage that did not run reports 0, not the clock's jitter between two reads.
      embed_ms: embeds ? round(t1 - t0) : 0,
      search_ms: vector ? round(t2 - t1) : 0,
      sparse_ms: searchesSparse ? round(t2s - t2) : 0,
      texts_ms: round(textsMs),
      rerank_ms: round(t3 - t2s - textsBeforeRerankMs),
      total_ms: round(t4 - t0),
    },
  };
}
