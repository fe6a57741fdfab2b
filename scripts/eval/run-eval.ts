// The relevance evaluation: index a BEIR-layout collection, run every judged query through five
// configurations and score each with trec_eval-convention metrics (shared/core/metrics.ts).
//
//   bm25         the harness's own BM25 (shared/core/bm25.ts), over title + text of each document
//   first_stage  embedder + FAISS over passages (the service's build path); document score = its best passage
//   rerank       the top-N first-stage passages reranked by the cross-encoder (fusion "rerank")
//   linear       the same N, α·minmax(rerank) + (1−α)·minmax(retrieval) (fusion "linear")
//   rrf          the same N, reciprocal-rank fusion, k = 60 (fusion "rrf")
//
// N ("candidates") counts passages, as in the service. The reranked configurations order the
// documents of those N passages (collapsed to their best passage) and then list the remaining
// first-stage documents in first-stage order, so every ranking reaches depth 100 and MAP@100 /
// Recall@100 are comparable across rows. Reranker scores do not depend on the candidate set, so a
// sweep reranks the largest N once per query and reuses the scores for the smaller ones.
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { Bm25Index, ANSERINI_BM25 } from "../../shared/core/bm25.ts";
import type { Config } from "../../shared/core/config.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import { collapseByDocument, DEFAULT_ALPHA, DEFAULT_RRF_K, fuseScores, rankScores } from "../../shared/core/fusion.ts";
import { evaluateRun, type MetricSpec, metricSpec, rankDocuments } from "../../shared/core/metrics.ts";
import type { RerankerPort } from "../../shared/core/ports.ts";
import type { FusionMode } from "../../shared/core/types.ts";
import { machine } from "../bench/harness.ts";
import { type BeirDataset, documentText, loadDataset } from "./dataset.ts";
import { buildFirstStage, type FirstStage, type FirstStagePassage } from "./first-stage.ts";
import { CONFIGS, type ConfigName, type EvalReport, type EvalRow } from "./report.ts";
import { type RerankModelChoice, resolveEvalReranker } from "./reranker.ts";

/** Ranking depth of every configuration: enough for MAP@100 and Recall@100. */
export const DEPTH = 100;
export const SWEEP = [10, 20, 50, 100] as const;

export interface ProgressSink {
  start(stage: string, total: number): void;
  update(done: number): void;
  stop(): void;
}

export interface EvalOptions {
  datasetDir: string;
  cfg: Config;
  /** First-stage candidates (passages) sent to the reranker; several values = a sweep. */
  candidates: number[];
  rerankModel?: RerankModelChoice;
  /** JSONL file of per-query metrics (one line per query and configuration). */
  perQueryOut?: string;
  progress?: ProgressSink;
  log?: (msg: string) => void;
}

const silentProgress: ProgressSink = { start() {}, update() {}, stop() {} };

function specsFor(n: number): MetricSpec[] {
  return [
    metricSpec("ndcg", 10),
    metricSpec("mrr", 10),
    metricSpec("map", 100),
    metricSpec("recall", 100),
    metricSpec("recall", n),
  ];
}

/** Documents in first-stage order (best passage per document), at most `depth` of them. */
export function documentsOfPassages(passages: readonly FirstStagePassage[], depth: number): string[] {
  return rankDocuments(passages.map((p) => ({ id: p.docId, score: p.score }))).slice(0, depth);
}

/**
 * A reranked document ranking: the first `n` passages fused by `mode`, collapsed to documents,
 * then the remaining first-stage documents in first-stage order.
 */
export function fusedDocuments(
  passages: readonly FirstStagePassage[],
  rerankScores: readonly number[],
  n: number,
  mode: FusionMode,
  firstStageDocs: readonly string[],
  depth: number,
): string[] {
  const head = passages.slice(0, n);
  const scores = rerankScores.slice(0, head.length);
  const retrievalRanks = head.map((_, i) => i + 1);
  const rerankRanks = rankScores(scores, retrievalRanks);
  const fused = fuseScores(
    head.map((p, i) => ({
      docId: p.docId,
      retrieval: { score: p.score, rank: i + 1 },
      rerank: { score: scores[i], rank: rerankRanks[i] },
    })),
    { mode, alpha: DEFAULT_ALPHA, rrfK: DEFAULT_RRF_K },
  );
  const docs = collapseByDocument(fused, (c) => c.docId).map((c) => c.docId);
  const seen = new Set(docs);
  for (const d of firstStageDocs) {
    if (docs.length >= depth) break;
    if (!seen.has(d)) {
      seen.add(d);
      docs.push(d);
    }
  }
  return docs.slice(0, depth);
}

async function rerankAll(
  reranker: RerankerPort,
  query: string,
  passages: readonly FirstStagePassage[],
): Promise<number[]> {
  if (passages.length === 0) return [];
  const res = await reranker.rerank({ query, documents: passages.map((p) => p.text) });
  const scores = new Array<number>(passages.length).fill(Number.NEGATIVE_INFINITY);
  for (const r of res.results) scores[r.index] = r.relevance_score;
  return scores;
}

function seconds(since: number): number {
  return Math.round((performance.now() - since) / 10) / 100;
}

export async function runEval(opts: EvalOptions): Promise<EvalReport> {
  const log = opts.log ?? (() => {});
  const progress = opts.progress ?? silentProgress;
  const candidateList = [...new Set(opts.candidates)].sort((a, b) => a - b);
  if (
    candidateList.length === 0 ||
    candidateList.some((n) => !Number.isInteger(n) || n < 1 || n > opts.cfg.maxCandidates)
  )
    throw new ValidationError(
      `candidates must be integers in [1, ${opts.cfg.maxCandidates}], got ${opts.candidates.join(",")}`,
    );
  const maxN = candidateList[candidateList.length - 1];

  const dataset: BeirDataset & { warnings: string[] } = await loadDataset(opts.datasetDir);
  const warnings = [...dataset.warnings];
  const judged = dataset.queries.filter((q) => dataset.qrels.has(q.id));
  const emptyDocs = dataset.corpus.filter((d) => documentText(d).trim() === "").length;
  log(
    `${dataset.name}: ${dataset.corpus.length} documents (${emptyDocs} empty), ${dataset.queries.length} queries, ${judged.length} judged`,
  );

  let t = performance.now();
  progress.start("bm25 index", dataset.corpus.length);
  const bm25 = new Bm25Index({ params: ANSERINI_BM25 });
  dataset.corpus.forEach((d, i) => {
    bm25.add({ id: d.id, text: documentText(d) });
    if (i % 200 === 0) progress.update(i + 1);
  });
  progress.update(dataset.corpus.length);
  progress.stop();
  const bm25Seconds = seconds(t);

  t = performance.now();
  const firstStage: FirstStage = await buildFirstStage(dataset.corpus, opts.cfg, progress);
  const firstStageSeconds = seconds(t);
  log(`first stage: ${firstStage.embedder}, ${firstStage.passages} passages in ${firstStageSeconds} s`);

  const reranker = await resolveEvalReranker(opts.cfg, opts.rerankModel ?? "auto");
  if (reranker?.fixture) log(`reranker ${reranker.label}: RANDOM WEIGHTS, its rows measure plumbing only`);
  const rerankModes: ConfigName[] = reranker ? ["rerank", "linear", "rrf"] : [];
  if (!reranker) warnings.push("no reranker: rerank, linear and rrf rows omitted");

  // runs[config][N] : query id → ranking
  const runs = new Map<string, Map<string, string[]>>();
  const runKey = (c: ConfigName, n: number) => `${c}@${n}`;
  const runOf = (c: ConfigName, n: number) => {
    let m = runs.get(runKey(c, n));
    if (!m) runs.set(runKey(c, n), (m = new Map()));
    return m;
  };

  let rerankMs = 0;
  let rerankPairs = 0;
  t = performance.now();
  progress.start("queries", judged.length);
  for (const [qi, q] of judged.entries()) {
    const bm25Docs = bm25.search(q.text, DEPTH).map((h) => h.id);
    const passages = await firstStage.search(q.text, DEPTH, maxN);
    const firstDocs = documentsOfPassages(passages, DEPTH);
    let scores: number[] = [];
    if (reranker) {
      const r0 = performance.now();
      scores = await rerankAll(reranker.port, q.text, passages.slice(0, maxN));
      rerankMs += performance.now() - r0;
      rerankPairs += Math.min(maxN, passages.length);
    }
    for (const n of candidateList) {
      runOf("bm25", n).set(q.id, bm25Docs);
      runOf("first_stage", n).set(q.id, firstDocs);
      for (const mode of rerankModes)
        runOf(mode, n).set(q.id, fusedDocuments(passages, scores, n, mode as FusionMode, firstDocs, DEPTH));
    }
    progress.update(qi + 1);
  }
  progress.stop();
  const querySeconds = seconds(t);

  let out: WriteStream | undefined;
  if (opts.perQueryOut) {
    await mkdir(path.dirname(path.resolve(opts.perQueryOut)), { recursive: true });
    out = createWriteStream(opts.perQueryOut);
  }
  const rows: EvalRow[] = [];
  let withoutRelevant = 0;
  let skipped = 0;
  for (const n of candidateList) {
    const specs = specsFor(n);
    for (const config of CONFIGS) {
      const run = runs.get(runKey(config, n));
      if (!run) continue;
      const ev = evaluateRun(run, dataset.qrels, specs);
      withoutRelevant = ev.withoutRelevant.length;
      skipped = dataset.queries.length - ev.evaluated;
      const m = ev.mean;
      rows.push({
        config,
        candidates: n,
        ndcg_at_10: m.ndcg_at_10,
        mrr_at_10: m.mrr_at_10,
        map_at_100: m.map_at_100,
        recall_at_100: m.recall_at_100,
        recall_at_candidates: m[`recall_at_${n}`],
        fixture: rerankModes.includes(config) && !!reranker?.fixture,
      });
      if (out) {
        for (const [qid, values] of ev.perQuery) {
          const line = {
            query_id: qid,
            config,
            candidates: n,
            ndcg_at_10: values.ndcg_at_10,
            mrr_at_10: values.mrr_at_10,
            map_at_100: values.map_at_100,
            recall_at_100: values.recall_at_100,
            recall_at_candidates: values[`recall_at_${n}`],
            top10: (run.get(qid) ?? []).slice(0, 10),
          };
          out.write(`${JSON.stringify(line)}\n`);
        }
      }
    }
  }
  if (out)
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  if (withoutRelevant)
    warnings.push(`${withoutRelevant} judged quer(ies) have no relevant document: they score 0 and count in the means`);

  return {
    dataset: dataset.name,
    dataset_dir: dataset.dir,
    embedder: firstStage.embedder,
    reranker: reranker ? reranker.label : "none",
    reranker_fixture: !!reranker?.fixture,
    bm25: `BM25 k1=${ANSERINI_BM25.k1} b=${ANSERINI_BM25.b}, Lucene English stop words + Porter stemmer`,
    fusion: { alpha: DEFAULT_ALPHA, rrf_k: DEFAULT_RRF_K },
    corpus: { documents: dataset.corpus.length, empty_documents: emptyDocs, passages: firstStage.passages },
    queries: {
      total: dataset.queries.length,
      evaluated: judged.length,
      without_relevant: withoutRelevant,
      skipped_unjudged: skipped,
    },
    rows,
    timings_s: {
      index_bm25: bm25Seconds,
      index_first_stage: firstStageSeconds,
      queries: querySeconds,
      rerank: Math.round(rerankMs / 10) / 100,
    },
    rerank_pairs: rerankPairs,
    per_query_file: opts.perQueryOut ? path.resolve(opts.perQueryOut) : undefined,
    warnings,
    machine: machine(),
  };
}
