// The two-stage search: embed the query, take the best first-stage candidates from the
// snapshot's vector index (with filters applied so k results still come back), rerank as many
// of them as the latency budget allows, fuse the two stages' scores, collapse, cut to k.
// Pure orchestration over ports; the only failure that reaches the caller is one the first
// stage cannot work around (no embedding, a mismatched embedder). A failing second stage
// degrades to first-stage results with a warning.
import { estimatePairTokens, estimateTokens, planRerank, type RerankCostTracker, type RerankPlan } from "./budget.ts";
import { assertEmbedderMatches } from "./embedding.ts";
import { DomainError, EmbedderMismatchError, EmbedderUnavailableError } from "./errors.ts";
import { collapseByDocument, fuseScores, rankScores } from "./fusion.ts";
import type { Clock, Embedder, LoadedSnapshot, RerankerPort } from "./ports.ts";
import { systemClock } from "./ports.ts";
import type { FusionMode, Passage, RerankResponse, SearchHit, StageScore } from "./types.ts";

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

export interface SearchRequest {
  query: string;
  k: number;
  candidates: number;
  rerank: boolean;
  fusion: FusionMode;
  alpha?: number;
  filter?: SearchFilter;
  /** Keep only the best passage of each document. */
  collapse?: boolean;
  /** Latency budget of this search in ms; undefined = none. */
  budget_ms?: number;
}

export interface SearchTimings {
  embed_ms: number;
  search_ms: number;
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
  warnings: string[];
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
  passage: Passage;
  retrieval: StageScore;
  rerank: StageScore | null;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** Whether a passage passes the request's filter. */
export function matchesFilter(p: Passage, filter: SearchFilter | undefined): boolean {
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
 * First-stage candidates in index order, filtered. With a filter (or collapse) the index is
 * over-fetched and the fetch widened 4× at a time until enough passages match or the whole index
 * has been searched, so a selective filter still yields k results when they exist.
 */
export function retrieveCandidates(
  snapshot: LoadedSnapshot,
  vector: Float32Array,
  req: Pick<SearchRequest, "k" | "candidates" | "filter" | "collapse">,
  maxCandidates: number,
): { candidates: Candidate[]; exhausted: boolean } {
  const { index, passages } = snapshot;
  const total = index.count;
  const filtered = hasFilter(req.filter);
  const widen = filtered || req.collapse === true;
  // With collapse the pool grows past `candidates` (up to the limit) until it spans k documents.
  const cap = req.collapse ? Math.max(req.candidates, maxCandidates) : req.candidates;
  const enough = (n: number, docs: number) => n >= cap || (n >= req.candidates && (!req.collapse || docs >= req.k));
  const cache = new Map<number, Passage>();
  let fetchK = Math.min(total, widen ? Math.max(req.candidates * 4, 64) : req.candidates);
  for (;;) {
    const found = index.search(vector, fetchK);
    const out: Candidate[] = [];
    const docs = new Set<string>();
    for (let i = 0; i < found.ordinals.length && !enough(out.length, docs.size); i++) {
      const ordinal = found.ordinals[i];
      if (ordinal < 0 || ordinal >= passages.count) continue;
      let passage = cache.get(ordinal);
      if (!passage) {
        passage = passages.get(ordinal);
        cache.set(ordinal, passage);
      }
      if (!matchesFilter(passage, req.filter)) continue;
      docs.add(passage.docId);
      out.push({ ordinal, passage, retrieval: { score: found.scores[i], rank: out.length + 1 }, rerank: null });
    }
    const exhausted = fetchK >= total;
    if (!widen || exhausted || enough(out.length, docs.size)) return { candidates: out, exhausted };
    fetchK = Math.min(total, fetchK * 4);
  }
}

class StageTimeout extends Error {
  constructor(readonly ms: number) {
    super(`timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/** Slack given to an adapter that honours timeoutMs itself, so its own (more specific) error wins. */
const TIMEOUT_GRACE_MS = 25;

/**
 * Runs a call with a hard time limit the core enforces itself (an adapter may ignore timeoutMs):
 * the adapter is asked to stop at `ms`, the core stops waiting shortly after. A plain timer that is
 * cleared on completion rather than AbortSignal.timeout(), whose timers stay registered until they
 * fire (seconds after the search answered) on a busy instance.
 */
async function withTimeout<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new StageTimeout(ms);
      ac.abort(e);
      reject(e);
    }, ms + TIMEOUT_GRACE_MS);
  });
  try {
    return await Promise.race([fn(ac.signal), expired]);
  } finally {
    clearTimeout(timer);
  }
}

function describeFailure(e: unknown, timeoutMs: number): string {
  if (e instanceof StageTimeout) return e.message;
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
  assertEmbedderMatches(snapshot.manifest.embedder, embedder.identity);

  // ---- embed ----
  let vector: Float32Array;
  try {
    const embedMs = deps.limits.embedTimeoutMs;
    vector = embedMs
      ? await withTimeout(embedMs, (signal) => embedder.embedQuery(request.query, { signal }))
      : await embedder.embedQuery(request.query);
  } catch (e) {
    if (e instanceof DomainError) throw e;
    throw new EmbedderUnavailableError(
      `query embedding failed: ${describeFailure(e, deps.limits.embedTimeoutMs ?? 0)}`,
      e,
    );
  }
  if (vector.length !== snapshot.index.dimensions) {
    throw new EmbedderMismatchError(
      `the query embedder gave ${vector.length} dimensions, the index has ${snapshot.index.dimensions}`,
    );
  }
  const t1 = clock.now();

  // ---- first stage ----
  const { candidates } = retrieveCandidates(snapshot, vector, request, deps.limits.maxCandidates);
  if (hasFilter(request.filter) && candidates.length < request.k) {
    warnings.push(
      `filter: only ${candidates.length} passage${candidates.length === 1 ? "" : "s"} of the index match the filter`,
    );
  }
  const t2 = clock.now();

  // ---- second stage ----
  let rerankedCount = 0;
  const reranker = deps.reranker && deps.reranker.describe().kind !== "none" ? deps.reranker : null;
  if (request.rerank && !reranker) {
    warnings.push("reranking is not configured (RERANKER=none); results are first-stage only");
  } else if (request.rerank && reranker && candidates.length > 0) {
    const queryTokens = estimateTokens(request.query);
    const pairTokens = candidates.map((c) =>
      estimatePairTokens(queryTokens, c.passage.text, deps.limits.maxPairTokens),
    );
    const plan = planRerank({
      budgetMs: request.budget_ms,
      elapsedMs: clock.now() - t0,
      candidateTokens: pairTokens,
      estimate: deps.estimate.current(),
      minCandidates: deps.limits.minRerankCandidates ?? 2,
    });
    if (plan.reason === "partial" || plan.reason === "over_budget")
      warnings.push(budgetWarning(plan, candidates.length, request.budget_ms!));
    if (plan.count > 0) {
      const sent = candidates.slice(0, plan.count);
      const timeoutMs = Math.max(
        1,
        Math.floor(plan.remainingMs === null ? deps.rerankTimeoutMs : Math.min(deps.rerankTimeoutMs, plan.remainingMs)),
      );
      const started = clock.now();
      try {
        const resp = await withTimeout(timeoutMs, (signal) =>
          reranker.rerank({ query: request.query, documents: sent.map((c) => c.passage.text) }, { signal, timeoutMs }),
        );
        const scores = scoresFromRerank(resp, sent.length);
        const wallMs = clock.now() - started;
        deps.estimate.observe({
          pairs: sent.length,
          estimatedTokens: pairTokens.slice(0, sent.length).reduce((a, b) => a + b, 0),
          wallMs,
          tokens: resp.meta?.tokens,
          serverMs: resp.meta?.timings?.total_ms,
        });
        const ranks = rankScores(
          scores,
          sent.map((c) => c.retrieval.rank),
        );
        sent.forEach((c, i) => {
          c.rerank = { score: scores[i], rank: ranks[i] };
        });
        rerankedCount = sent.length;
      } catch (e) {
        warnings.push(`reranker failed (${describeFailure(e, timeoutMs)}); results are first-stage only`);
      }
    }
  }
  const t3 = clock.now();

  // ---- fuse, collapse, cut ----
  let ranked = fuseScores(candidates, { mode: request.fusion, alpha: request.alpha });
  if (request.collapse) ranked = collapseByDocument(ranked, (c) => c.passage.docId);
  const results: SearchHit[] = ranked.slice(0, request.k).map((c) => ({
    id: c.passage.id,
    doc_id: c.passage.docId,
    text: c.passage.text,
    source: c.passage.source,
    metadata: c.passage.metadata,
    score: c.score,
    retrieval: c.retrieval,
    rerank: c.rerank,
  }));
  const t4 = clock.now();
  return {
    results,
    index: { version: snapshot.version, count: snapshot.index.count },
    reranked: rerankedCount > 0,
    reranked_candidates: rerankedCount,
    candidates: candidates.length,
    fusion: request.fusion,
    warnings,
    timings: {
      embed_ms: round(t1 - t0),
      search_ms: round(t2 - t1),
      rerank_ms: round(t3 - t2),
      total_ms: round(t4 - t0),
    },
  };
}
