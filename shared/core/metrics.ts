// Ranking-quality metrics with trec_eval's conventions (usnistgov/trec_eval 9.x: form_res_rels.c,
// m_ndcg_cut.c, m_map_cut.c, m_recip_rank.c, m_recall.c), so our figures can be compared with
// published ones. Pure functions over document ids; no I/O.
//
// Conventions (each one is trec_eval's unless marked "ours"):
// - Ordering: trec_eval ignores the rank column of a run and sorts by score descending, breaking
//   ties by document id DESCENDING in strcmp (byte) order (comp_sim_docno). `rankDocuments` does
//   the same; JS string comparison is UTF-16 code-unit order, identical to strcmp for ASCII ids.
// - Relevant: a judgment with grade >= 1 (trec_eval's default relevance_level). Grades <= 0 and
//   unjudged documents are non-relevant.
// - nDCG@k: gain = the grade itself (linear, not 2^grade - 1), discount log2(rank + 1) with ranks
//   from 1, ideal DCG from ALL judged documents of the query sorted by grade (not only the
//   retrieved ones), cut at k. A query whose ideal DCG is 0 scores 0.
// - AP@k (map_cut): sum of precision at each relevant document within the top k, divided by the
//   number of relevant documents of the query (not by min(R, k)).
// - RR@k: 1 / rank of the first relevant document within the top k, else 0 (trec_eval's
//   recip_rank has no cut-off; ours cuts at k as BEIR's MRR@k does).
// - Recall@k: relevant documents within the top k over all relevant documents of the query.
// - k larger than the ranking: the missing positions count as non-relevant.
// - Queries with judgments but no relevant document: every metric is 0 and the query counts in the
//   mean (trec_eval computes 0 for them). Queries absent from the judgments are skipped
//   (trec_eval only evaluates queries that have qrels). Queries that have judgments but no ranking
//   count as an empty ranking, i.e. 0 (trec_eval's -c flag; ours by default).
// - Duplicates: trec_eval refuses a run with a repeated document. `rankDocuments` merges repeats
//   keeping the best score (ours: this is how passage scores become document scores); the metric
//   functions reject a ranking with a repeated id, as trec_eval does.
import { ValidationError } from "./errors.ts";

/** Relevance judgments of one query: document id → graded relevance (the qrels score). */
export type Judgments = ReadonlyMap<string, number>;

export interface ScoredDocument {
  id: string;
  score: number;
}

/** Grades at or above this count as relevant for the binary metrics (trec_eval's -l default). */
export const RELEVANCE_LEVEL = 1;

/** trec_eval's run order: score descending, then document id descending. */
export function compareTrecEval(a: ScoredDocument, b: ScoredDocument): number {
  if (a.score !== b.score) return a.score > b.score ? -1 : 1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * Document ids in trec_eval order. Repeated ids are merged keeping their best score (the
 * document's best passage).
 */
export function rankDocuments(scored: Iterable<ScoredDocument>): string[] {
  const best = new Map<string, number>();
  for (const { id, score } of scored) {
    if (Number.isNaN(score)) throw new ValidationError(`score of document "${id}" is NaN`);
    const prev = best.get(id);
    if (prev === undefined || score > prev) best.set(id, score);
  }
  return [...best]
    .map(([id, score]) => ({ id, score }))
    .sort(compareTrecEval)
    .map((d) => d.id);
}

function checkCutoff(k: number): void {
  if (!Number.isInteger(k) || k < 1) throw new ValidationError(`metric cut-off must be a positive integer, got ${k}`);
}

function checkUnique(ranking: readonly string[]): void {
  const seen = new Set<string>();
  for (const id of ranking) {
    if (seen.has(id))
      throw new ValidationError(`ranking repeats document "${id}" (merge duplicates with rankDocuments)`);
    seen.add(id);
  }
}

/** Number of judged documents with grade >= RELEVANCE_LEVEL. */
export function relevantCount(judgments: Judgments): number {
  let n = 0;
  for (const grade of judgments.values()) if (grade >= RELEVANCE_LEVEL) n++;
  return n;
}

const isRelevant = (judgments: Judgments, id: string) => (judgments.get(id) ?? 0) >= RELEVANCE_LEVEL;

export function ndcgAt(ranking: readonly string[], judgments: Judgments, k: number): number {
  checkCutoff(k);
  checkUnique(ranking);
  let dcg = 0;
  const n = Math.min(k, ranking.length);
  for (let i = 0; i < n; i++) {
    const gain = judgments.get(ranking[i]) ?? 0;
    if (gain > 0) dcg += gain / Math.log2(i + 2);
  }
  const ideal = [...judgments.values()].filter((g) => g > 0).sort((a, b) => b - a);
  let idcg = 0;
  for (let i = 0; i < Math.min(k, ideal.length); i++) idcg += ideal[i] / Math.log2(i + 2);
  return idcg > 0 ? dcg / idcg : 0;
}

export function reciprocalRankAt(ranking: readonly string[], judgments: Judgments, k: number): number {
  checkCutoff(k);
  checkUnique(ranking);
  const n = Math.min(k, ranking.length);
  for (let i = 0; i < n; i++) if (isRelevant(judgments, ranking[i])) return 1 / (i + 1);
  return 0;
}

export function averagePrecisionAt(ranking: readonly string[], judgments: Judgments, k: number): number {
  checkCutoff(k);
  checkUnique(ranking);
  const relevant = relevantCount(judgments);
  if (relevant === 0) return 0;
  let found = 0;
  let sum = 0;
  const n = Math.min(k, ranking.length);
  for (let i = 0; i < n; i++) {
    if (isRelevant(judgments, ranking[i])) {
      found++;
      sum += found / (i + 1);
    }
  }
  return sum / relevant;
}

export function recallAt(ranking: readonly string[], judgments: Judgments, k: number): number {
  checkCutoff(k);
  checkUnique(ranking);
  const relevant = relevantCount(judgments);
  if (relevant === 0) return 0;
  let found = 0;
  const n = Math.min(k, ranking.length);
  for (let i = 0; i < n; i++) if (isRelevant(judgments, ranking[i])) found++;
  return found / relevant;
}

export type MeasureName = "ndcg" | "mrr" | "map" | "recall";

export interface MetricSpec {
  /** Key in the result objects, e.g. "ndcg_at_10". */
  key: string;
  measure: MeasureName;
  k: number;
}

const measures: Record<MeasureName, (r: readonly string[], j: Judgments, k: number) => number> = {
  ndcg: ndcgAt,
  mrr: reciprocalRankAt,
  map: averagePrecisionAt,
  recall: recallAt,
};

/** `{measure}_at_{k}` specs, e.g. metricSpec("ndcg", 10) → key "ndcg_at_10". */
export function metricSpec(measure: MeasureName, k: number): MetricSpec {
  checkCutoff(k);
  return { key: `${measure}_at_${k}`, measure, k };
}

export function evaluateRanking(
  ranking: readonly string[],
  judgments: Judgments,
  specs: readonly MetricSpec[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of specs) out[s.key] = measures[s.measure](ranking, judgments, s.k);
  return out;
}

export interface RunEvaluation {
  /** Mean of each metric over the evaluated queries. */
  mean: Record<string, number>;
  /** Per-query values, in the order of the judgments' query ids. */
  perQuery: Map<string, Record<string, number>>;
  /** Queries averaged (those with judgments). */
  evaluated: number;
  /** Evaluated queries whose judgments hold no relevant document (they score 0). */
  withoutRelevant: string[];
  /** Ranked queries absent from the judgments (skipped, as trec_eval does). */
  skippedUnjudged: string[];
  /** Judged queries that had no ranking (scored as an empty ranking). */
  missingRuns: string[];
}

/** Evaluates a whole run: query id → ranking (best first), against query id → judgments. */
export function evaluateRun(
  run: ReadonlyMap<string, readonly string[]>,
  qrels: ReadonlyMap<string, Judgments>,
  specs: readonly MetricSpec[],
): RunEvaluation {
  // Specs with the same key name the same measure (e.g. recall@N with N = 100): evaluate it once.
  specs = [...new Map(specs.map((s) => [s.key, s])).values()];
  const perQuery = new Map<string, Record<string, number>>();
  const sums: Record<string, number> = Object.fromEntries(specs.map((s) => [s.key, 0]));
  const withoutRelevant: string[] = [];
  const missingRuns: string[] = [];
  for (const [qid, judgments] of qrels) {
    const ranking = run.get(qid);
    if (!ranking) missingRuns.push(qid);
    if (relevantCount(judgments) === 0) withoutRelevant.push(qid);
    const values = evaluateRanking(ranking ?? [], judgments, specs);
    perQuery.set(qid, values);
    for (const s of specs) sums[s.key] += values[s.key];
  }
  const evaluated = perQuery.size;
  const mean = Object.fromEntries(specs.map((s) => [s.key, evaluated ? sums[s.key] / evaluated : 0]));
  const skippedUnjudged = [...run.keys()].filter((q) => !qrels.has(q));
  return { mean, perQuery, evaluated, withoutRelevant, skippedUnjudged, missingRuns };
}
