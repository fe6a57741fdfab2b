// Latency budget for the second stage: a running estimate of what a rerank call costs, and the
// decision of how many first-stage candidates to send so that a search still answers within its
// budget ("skip reranking when the budget is under ~200 ms; keep candidates at 10-20", made
// automatic). Pure: no timers, no I/O; the caller feeds observations and asks for plans.
//
// Cost model of one call:  overheadMs + msPerToken · tokens      (when token counts are known)
//                          overheadMs + msPerPair · pairs        (when they are not)
// - overheadMs: wall time the reranker itself does not report (network, invoke, serialisation);
//   learned from wall time minus meta.timings.total_ms when the reranker reports its own time.
// - tokens: we only have texts before the call, so tokens are estimated (estimateTokens) and a
//   learned ratio real/estimated (from meta.tokens) corrects the estimator's bias per model.
// Each quantity is an exponentially weighted moving average; the first observations are
// averaged with equal weight (1/n) so the prior fades quickly, and one observation may raise a
// quantity at most `maxGrowth`-fold, so a cold start (model loading inside the first call) does
// not make later plans skip reranking for good.

/** Values used before any observation; deliberately pessimistic (a CPU MiniLM-L6 is ~0.02 ms/token). */
export interface RerankCostPrior {
  msPerToken: number;
  msPerPair: number;
  overheadMs: number;
  /** Real tokens per estimated token. */
  tokenRatio: number;
}

export const DEFAULT_COST_PRIOR: RerankCostPrior = { msPerToken: 0.05, msPerPair: 12, overheadMs: 10, tokenRatio: 1 };

export interface RerankCostEstimate extends RerankCostPrior {
  /** Calls that reported token counts (the token model is trusted once this is > 0). */
  tokenObservations: number;
  /** Calls observed in all. */
  observations: number;
}

export interface RerankObservation {
  /** Pairs sent. */
  pairs: number;
  /** Sum of estimateTokens over the pairs sent. */
  estimatedTokens: number;
  /** Wall time of the call as the caller saw it. */
  wallMs: number;
  /** Tokens the reranker reports (meta.tokens); 0 or undefined when unknown. */
  tokens?: number;
  /** The reranker's own time (meta.timings.total_ms); undefined when unknown. */
  serverMs?: number;
}

export interface EstimateOptions {
  /** EWMA weight of a new observation once past the warm-up (default 0.2). */
  alpha?: number;
  /** Largest factor one observation may raise a quantity by (default 4). */
  maxGrowth?: number;
}

export function initialEstimate(prior: Partial<RerankCostPrior> = {}): RerankCostEstimate {
  return { ...DEFAULT_COST_PRIOR, ...prior, tokenObservations: 0, observations: 0 };
}

function blend(current: number, observed: number, weight: number, maxGrowth: number): number {
  if (!Number.isFinite(observed) || observed < 0) return current;
  const clipped = current > 0 ? Math.min(observed, current * maxGrowth) : observed;
  return current + weight * (clipped - current);
}

/** The estimate after one more successful call (a new object). */
export function updateEstimate(
  est: RerankCostEstimate,
  obs: RerankObservation,
  opts: EstimateOptions = {},
): RerankCostEstimate {
  const alpha = opts.alpha ?? 0.2;
  const maxGrowth = opts.maxGrowth ?? 4;
  if (!(obs.pairs > 0) || !(obs.wallMs >= 0)) return est;
  const observations = est.observations + 1;
  const w = Math.max(alpha, 1 / observations);
  const serverKnown = obs.serverMs !== undefined && Number.isFinite(obs.serverMs) && obs.serverMs >= 0;
  const modelMs = serverKnown ? Math.min(obs.serverMs!, obs.wallMs) : obs.wallMs;
  const next: RerankCostEstimate = { ...est, observations };
  next.msPerPair = blend(est.msPerPair, modelMs / obs.pairs, w, maxGrowth);
  if (serverKnown) next.overheadMs = blend(est.overheadMs, obs.wallMs - modelMs, w, maxGrowth);
  if (obs.tokens && obs.tokens > 0) {
    const tokenObservations = est.tokenObservations + 1;
    const wt = Math.max(alpha, 1 / tokenObservations);
    next.tokenObservations = tokenObservations;
    next.msPerToken = blend(est.msPerToken, modelMs / obs.tokens, wt, maxGrowth);
    if (obs.estimatedTokens > 0)
      next.tokenRatio = blend(est.tokenRatio, obs.tokens / obs.estimatedTokens, wt, maxGrowth);
  }
  return next;
}

/**
 * Predicted wall time of one call with these pairs (estimated tokens per pair). Before any
 * observation both models are evaluated and the larger taken; afterwards the token model is
 * used when the reranker reports tokens, the pair model otherwise.
 */
export function predictRerankMs(est: RerankCostEstimate, pairTokens: readonly number[]): number {
  let tokens = 0;
  for (const t of pairTokens) tokens += t;
  return predictFromTotals(est, pairTokens.length, tokens);
}

function predictFromTotals(est: RerankCostEstimate, pairs: number, tokens: number): number {
  if (pairs === 0) return 0;
  const byTokens = est.overheadMs + est.msPerToken * est.tokenRatio * tokens;
  const byPairs = est.overheadMs + est.msPerPair * pairs;
  if (est.tokenObservations > 0) return byTokens;
  if (est.observations > 0) return byPairs;
  return Math.max(byTokens, byPairs);
}

/**
 * A rough WordPiece-like token count without a tokenizer: words and punctuation marks count as
 * one token each, plus one per 6 characters beyond the first 6 of a long word (subword pieces).
 * The learned tokenRatio absorbs what this misses for a given model.
 */
export function estimateTokens(text: string): number {
  let tokens = 0;
  for (const m of text.matchAll(/[\p{L}\p{N}]+|[^\p{L}\p{N}\s]/gu)) {
    const len = m[0].length;
    tokens += len > 6 ? 1 + Math.ceil((len - 6) / 6) : 1;
  }
  return tokens;
}

/** Estimated tokens of a (query, passage) pair as a cross-encoder sees it: [CLS] q [SEP] p [SEP], capped. */
export function estimatePairTokens(queryTokens: number, passage: string, maxPairTokens = 512): number {
  return Math.min(maxPairTokens, queryTokens + estimateTokens(passage) + 3);
}

export type RerankPlanReason = "no_budget" | "within_budget" | "partial" | "over_budget";

export interface RerankPlan {
  /** How many of the best first-stage candidates to rerank (0 = skip reranking). */
  count: number;
  reason: RerankPlanReason;
  /** Predicted time of reranking every candidate. */
  predictedAllMs: number;
  /** Predicted time of reranking `count` candidates. */
  predictedMs: number;
  /** Budget left when the plan was made (null without a budget). */
  remainingMs: number | null;
}

export interface PlanRerankInput {
  /** Latency budget of the whole search; undefined = none. */
  budgetMs?: number;
  /** Time already spent on this search (embedding, first stage). */
  elapsedMs: number;
  /** Estimated pair tokens of each candidate, best first-stage candidate first. */
  candidateTokens: readonly number[];
  estimate: RerankCostEstimate;
  /** Reranking fewer candidates than this is not worth a call (at least 1). */
  minCandidates: number;
  /** Time kept for fusion and writing the response (default 1 ms). */
  reserveMs?: number;
  /** Parallel rerank calls allowed (RERANKER_FANOUT, default 1) and the fewest pairs per call. */
  fanout?: number;
  pairsPerCall?: number;
}

/** Fewest pairs worth a rerank call of their own when fanning out. */
export const DEFAULT_PAIRS_PER_CALL = 8;

/**
 * Splits candidates (their estimated pair tokens) into at most `fanout` groups of at least
 * `pairsPerCall` pairs, balanced by tokens: the longest candidate goes to the lightest group, so
 * parallel calls finish at about the same time. Groups keep candidate indices in ascending order.
 */
export function fanoutGroups(pairTokens: readonly number[], fanout: number, pairsPerCall: number): number[][] {
  const n = pairTokens.length;
  const count = Math.max(1, Math.min(Math.floor(fanout), Math.floor(n / Math.max(1, pairsPerCall)) || 1, n));
  if (count === 1) return [pairTokens.map((_, i) => i)];
  const groups = Array.from({ length: count }, () => ({ tokens: 0, items: [] as number[] }));
  const order = pairTokens.map((_, i) => i).sort((a, b) => pairTokens[b] - pairTokens[a] || a - b);
  for (const i of order) {
    let lightest = groups[0];
    for (const g of groups)
      if (g.tokens < lightest.tokens || (g.tokens === lightest.tokens && g.items.length < lightest.items.length))
        lightest = g;
    lightest.tokens += pairTokens[i];
    lightest.items.push(i);
  }
  return groups.map((g) => g.items.sort((a, b) => a - b));
}

/** Predicted wall time of reranking these pairs with fan-out: the slowest group's call. */
function predictFanoutMs(est: RerankCostEstimate, tokens: readonly number[], fanout: number, perCall: number): number {
  if (fanout <= 1) return predictRerankMs(est, tokens);
  let worst = 0;
  for (const g of fanoutGroups(tokens, fanout, perCall))
    worst = Math.max(
      worst,
      predictRerankMs(
        est,
        g.map((i) => tokens[i]),
      ),
    );
  return worst;
}

/** How many of the best first-stage candidates fit in what is left of the budget. */
export function planRerank(input: PlanRerankInput): RerankPlan {
  const total = input.candidateTokens.length;
  const fanout = input.fanout ?? 1;
  const perCall = input.pairsPerCall ?? DEFAULT_PAIRS_PER_CALL;
  const predictedAllMs = predictFanoutMs(input.estimate, input.candidateTokens, fanout, perCall);
  if (input.budgetMs === undefined) {
    return { count: total, reason: "no_budget", predictedAllMs, predictedMs: predictedAllMs, remainingMs: null };
  }
  const remainingMs = input.budgetMs - input.elapsedMs - (input.reserveMs ?? 1);
  if (predictedAllMs <= remainingMs) {
    return { count: total, reason: "within_budget", predictedAllMs, predictedMs: predictedAllMs, remainingMs };
  }
  // Cost grows with every candidate added, so the largest prefix that fits is found by a scan.
  let count = 0;
  let predictedMs = 0;
  let tokens = 0;
  for (let n = 1; n < total; n++) {
    tokens += input.candidateTokens[n - 1];
    const p =
      fanout > 1
        ? predictFanoutMs(input.estimate, input.candidateTokens.slice(0, n), fanout, perCall)
        : predictFromTotals(input.estimate, n, tokens);
    if (p > remainingMs) break;
    count = n;
    predictedMs = p;
  }
  const minCandidates = Math.max(1, Math.min(input.minCandidates, total));
  if (count < minCandidates) return { count: 0, reason: "over_budget", predictedAllMs, predictedMs: 0, remainingMs };
  return { count, reason: "partial", predictedAllMs, predictedMs, remainingMs };
}

/** Mutable holder of the running estimate, one per warm instance. */
export interface RerankCostTracker {
  current(): RerankCostEstimate;
  observe(obs: RerankObservation): void;
}

export function createRerankCostTracker(
  opts: EstimateOptions & { prior?: Partial<RerankCostPrior> } = {},
): RerankCostTracker {
  let est = initialEstimate(opts.prior);
  return {
    current: () => est,
    observe(obs) {
      est = updateEstimate(est, obs, opts);
    },
  };
}
