// The relevance evaluation: index a BEIR-layout collection the way the service does, run every
// judged query through each configuration with the service's own search core, and score each
// with trec_eval-convention metrics (shared/core/metrics.ts).
//
//   bm25                   the harness's own BM25 (shared/core/bm25.ts) over title + text of each document
//   dense                  embedder + FAISS over passages; document score = its best passage
//   sparse                 the snapshot's BM25 index over passages (the service's sparse path)
//   hybrid                 both fused by RRF (k = 60): the service default
//   <first>+lexical        the first-stage candidates reranked by the weight-free lexical reranker
//   <first>+cross-encoder  the same with the cross-encoder (when configured, fetched or asked for)
//   hybrid+<r>:linear|rrf  the hybrid candidates, rerank scores fused with the first stage's
//
// N ("candidates") counts passages per side, as in the service (hybrid reranks the union of both
// sides' top N). Reranked configurations order the documents of those candidates (collapsed to
// their best passage), then list the remaining documents of the same first stage in its order, so
// every ranking reaches depth 100 and MAP@100 / Recall@100 are comparable across rows. Rerank
// scores do not depend on the candidate set, so each (query, passage) pair is scored once.
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { ANSERINI_BM25, Bm25Index } from "../../shared/core/bm25.ts";
import { createRerankCostTracker } from "../../shared/core/budget.ts";
import type { Config } from "../../shared/core/config.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import { collapseByDocument, DEFAULT_ALPHA, DEFAULT_RRF_K } from "../../shared/core/fusion.ts";
import { evaluateRun, type MetricSpec, metricSpec } from "../../shared/core/metrics.ts";
import type { Embedder } from "../../shared/core/ports.ts";
import { LEXICAL_PROVIDER } from "../../shared/core/lexical-scorer.ts";
import {
  defaultFusion,
  type RetrievalMode,
  type SearchDeps,
  type SearchRequest,
  searchTwoStage,
} from "../../shared/core/search.ts";
import type { FusionMode, SearchHit } from "../../shared/core/types.ts";
import { machine } from "../bench/harness.ts";
import { type BeirDataset, documentText, loadDataset } from "./dataset.ts";
import { buildFirstStage, type FirstStage } from "./first-stage.ts";
import type { EvalReport, EvalRow } from "./report.ts";
import { type EvalReranker, type RerankModelChoice, resolveEvalRerankers } from "./reranker.ts";

/** Ranking depth of every configuration: enough for MAP@100 and Recall@100. */
export const DEPTH = 100;
export const SWEEP = [10, 20, 50, 100] as const;
export const RETRIEVALS: readonly RetrievalMode[] = ["dense", "sparse", "hybrid"];

export interface ProgressSink {
  start(stage: string, total: number): void;
  update(done: number): void;
  stop(): void;
}

export interface EvalOptions {
  datasetDir: string;
  cfg: Config;
  /** First-stage candidates (passages per side) sent to the reranker; several values = a sweep. */
  candidates: number[];
  rerankModel?: RerankModelChoice;
  /** JSONL file of per-query metrics (one line per query and configuration). */
  perQueryOut?: string;
  progress?: ProgressSink;
  log?: (msg: string) => void;
}

/** One evaluated configuration: a first stage, optionally a second stage and how they fuse. */
export interface EvalConfig {
  name: string;
  retrieval: RetrievalMode | "bm25";
  reranker: EvalReranker | null;
  /** Absent: the service's default for this reranker (defaultFusion in the search core). */
  fusion?: FusionMode;
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

/** Every configuration the run evaluates, in report order. */
export function evalConfigs(rerankers: readonly EvalReranker[]): EvalConfig[] {
  const out: EvalConfig[] = [{ name: "bm25", retrieval: "bm25", reranker: null }];
  for (const retrieval of RETRIEVALS) {
    out.push({ name: retrieval, retrieval, reranker: null });
    for (const r of rerankers) out.push({ name: `${retrieval}+${r.name}`, retrieval, reranker: r });
  }
  // Hybrid with each of the other fusions, beside the service's default one.
  for (const r of rerankers)
    for (const fusion of ["rerank", "linear", "rrf"] as const)
      if (fusion !== defaultFusion([r.name === "lexical" ? LEXICAL_PROVIDER : r.name]))
        out.push({ name: `hybrid+${r.name}:${fusion}`, retrieval: "hybrid", reranker: r, fusion });
  return out;
}

/** The query embedding once per query, however many searches use it. */
function memoizedEmbedder(inner: Embedder): Embedder {
  let lastText: string | undefined;
  let last: Promise<Float32Array> | undefined;
  return {
    identity: inner.identity,
    embedDocuments: (texts, o) => inner.embedDocuments(texts, o),
    usage: () => inner.usage(),
    embedQuery(text, o) {
      if (text !== lastText || !last) {
        lastText = text;
        last = inner.embedQuery(text, o);
      }
      return last;
    },
  };
}

/** Documents of ranked passages, best passage first, then `rest` (unseen ones), cut to `depth`. */
export function documentRanking(hits: readonly Pick<SearchHit, "doc_id">[], rest: readonly string[], depth: number) {
  const docs = collapseByDocument(hits, (h) => h.doc_id).map((h) => h.doc_id);
  const seen = new Set(docs);
  for (const d of rest) {
    if (docs.length >= depth) break;
    if (!seen.has(d)) {
      seen.add(d);
      docs.push(d);
    }
  }
  return docs.slice(0, depth);
}

/**
 * Whether the service's sparse ranking is the BM25 baseline over the same passages: every
 * document's score is the best BM25 score of its passages, and the scores come in the baseline's
 * order (documents with equal scores may be listed in another order).
 */
export function sameScores(
  service: ReadonlyArray<{ doc: string; score: number }>,
  baseline: ReadonlyArray<{ id: string; score: number }>,
): boolean {
  const best = new Map<string, number>();
  for (const b of baseline) if (!best.has(b.id)) best.set(b.id, b.score);
  const expected = [...best.values()].slice(0, service.length);
  if (expected.length !== service.length) return false;
  return service.every(
    (s, i) => Math.abs((best.get(s.doc) ?? Number.NaN) - s.score) < 1e-9 && Math.abs(expected[i] - s.score) < 1e-9,
  );
}

function seconds(ms: number): number {
  return Math.round(ms / 10) / 100;
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
  const bm25Seconds = seconds(performance.now() - t);

  t = performance.now();
  const firstStage: FirstStage = await buildFirstStage(dataset.corpus, opts.cfg, progress);
  const firstStageSeconds = seconds(performance.now() - t);
  log(`first stage: ${firstStage.embedder}, ${firstStage.passages.length} passages in ${firstStageSeconds} s`);
  // The harness's BM25 over the snapshot's passages: what the service's sparse path must reproduce.
  const passageBm25 = new Bm25Index({ params: ANSERINI_BM25 });
  firstStage.passages.forEach((p, i) => {
    passageBm25.add({ id: String(i), text: p.text });
  });

  const rerankers = await resolveEvalRerankers(opts.cfg, opts.rerankModel ?? "auto");
  for (const r of rerankers) if (r.fixture) log(`reranker ${r.label}: RANDOM WEIGHTS, its rows measure plumbing only`);
  if (rerankers.length === 0) warnings.push("no reranker: reranked rows omitted");
  const configs = evalConfigs(rerankers);

  const deps = (reranker: EvalReranker | null): SearchDeps => ({
    snapshot: firstStage.snapshot,
    embedder,
    reranker: reranker?.port ?? null,
    estimate: createRerankCostTracker(),
    // The eval asks for depth 100 documents: let collapse widen the pool as far as that takes.
    limits: { maxCandidates: Math.max(firstStage.snapshot.index.count, DEPTH) },
    rerankTimeoutMs: 600_000,
  });
  const embedder = memoizedEmbedder(firstStage.queryEmbedder);
  const depsOf = new Map<EvalReranker | null, SearchDeps>();
  const depsFor = (r: EvalReranker | null) => {
    let d = depsOf.get(r);
    if (!d) depsOf.set(r, (d = deps(r)));
    return d;
  };

  // runs[config@N] : query id → ranking; ms[config@N] : wall time of its searches
  const runs = new Map<string, Map<string, string[]>>();
  /** The fusion the service used for each reranked configuration (its default where none is named). */
  const fusionUsed = new Map<string, FusionMode>();
  const ms = new Map<string, number>();
  const runKey = (c: string, n: number) => `${c}@${n}`;
  const record = (c: string, n: number, qid: string, docs: string[], took: number) => {
    let m = runs.get(runKey(c, n));
    if (!m) runs.set(runKey(c, n), (m = new Map()));
    m.set(qid, docs);
    ms.set(runKey(c, n), (ms.get(runKey(c, n)) ?? 0) + took);
  };
  let sparseMismatches = 0;

  t = performance.now();
  progress.start("queries", judged.length);
  for (const [qi, q] of judged.entries()) {
    let t0 = performance.now();
    const bm25Docs = bm25.search(q.text, DEPTH).map((h) => h.id);
    const bm25Ms = performance.now() - t0;
    const base: Omit<SearchRequest, "retrieval" | "candidates" | "k"> = {
      query: q.text,
      rerank: false,
    };
    const deep = new Map<RetrievalMode, { docs: string[]; ms: number }>();
    for (const retrieval of RETRIEVALS) {
      t0 = performance.now();
      const res = await searchTwoStage(
        { ...base, retrieval, k: DEPTH, candidates: DEPTH, collapse: true },
        depsFor(null),
      );
      deep.set(retrieval, { docs: res.results.map((h) => h.doc_id), ms: performance.now() - t0 });
      if (retrieval === "sparse") {
        const baseline = passageBm25
          .search(q.text, firstStage.passages.length)
          .map((h) => ({ id: firstStage.passages[Number(h.id)].docId, score: h.score }));
        if (
          !sameScores(
            res.results.map((h) => ({ doc: h.doc_id, score: h.score })),
            baseline,
          )
        )
          sparseMismatches++;
      }
    }
    for (const n of candidateList) {
      for (const c of configs) {
        if (c.retrieval === "bm25") {
          record(c.name, n, q.id, bm25Docs, bm25Ms);
          continue;
        }
        const first = deep.get(c.retrieval)!;
        // The service's answer with `candidates` n (k large enough for the whole pool), then the
        // rest of the same first stage: for a first stage alone that is its own ranking, except
        // that hybrid fuses only each side's top n.
        t0 = performance.now();
        const res = await searchTwoStage(
          {
            ...base,
            retrieval: c.retrieval,
            k: 2 * n,
            candidates: n,
            rerank: c.reranker !== null,
            ...(c.fusion ? { fusion: c.fusion } : {}),
          },
          depsFor(c.reranker),
        );
        if (c.reranker) fusionUsed.set(c.name, res.fusion);
        if (res.warnings.some((w) => w.startsWith("reranker failed")))
          throw new Error(`${c.name}: ${res.warnings.join("; ")}`);
        record(c.name, n, q.id, documentRanking(res.results, first.docs, DEPTH), performance.now() - t0);
      }
    }
    progress.update(qi + 1);
  }
  progress.stop();
  const querySeconds = seconds(performance.now() - t);
  if (sparseMismatches > 0)
    warnings.push(
      `the service's sparse ranking differs from BM25 over the same passages on ${sparseMismatches} of ${judged.length} queries`,
    );

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
    for (const c of configs) {
      const run = runs.get(runKey(c.name, n));
      if (!run) continue;
      const ev = evaluateRun(run, dataset.qrels, specs);
      withoutRelevant = ev.withoutRelevant.length;
      skipped = dataset.queries.length - ev.evaluated;
      const m = ev.mean;
      rows.push({
        config: c.name,
        retrieval: c.retrieval,
        reranker: c.reranker?.name ?? "none",
        fusion: c.reranker ? (fusionUsed.get(c.name) ?? c.fusion ?? null) : null,
        candidates: n,
        ndcg_at_10: m.ndcg_at_10,
        mrr_at_10: m.mrr_at_10,
        map_at_100: m.map_at_100,
        recall_at_100: m.recall_at_100,
        recall_at_candidates: m[`recall_at_${n}`],
        fixture: c.reranker?.fixture === true,
        seconds: seconds(ms.get(runKey(c.name, n)) ?? 0),
      });
      if (out) {
        for (const [qid, values] of ev.perQuery) {
          const line = {
            query_id: qid,
            config: c.name,
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
    rerankers: rerankers.map((r) => ({ name: r.name, label: r.label, fixture: r.fixture })),
    bm25: `BM25 k1=${ANSERINI_BM25.k1} b=${ANSERINI_BM25.b}, Lucene English stop words + Porter stemmer`,
    fusion: { alpha: DEFAULT_ALPHA, rrf_k: DEFAULT_RRF_K, hybrid: "rrf" },
    corpus: { documents: dataset.corpus.length, empty_documents: emptyDocs, passages: firstStage.passages.length },
    queries: {
      total: dataset.queries.length,
      evaluated: judged.length,
      without_relevant: withoutRelevant,
      skipped_unjudged: skipped,
    },
    checks: { sparse_equals_bm25_over_passages: sparseMismatches === 0 },
    rows,
    timings_s: { index_bm25: bm25Seconds, index_first_stage: firstStageSeconds, queries: querySeconds },
    per_query_file: opts.perQueryOut ? path.resolve(opts.perQueryOut) : undefined,
    warnings,
    machine: machine(),
  };
}
