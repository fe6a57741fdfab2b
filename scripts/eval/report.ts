// Shapes and rendering of an evaluation report: the markdown table and the one-line JSON object.
import type { RetrievalMode } from "../../shared/core/search.ts";
import type { FusionMode } from "../../shared/core/types.ts";

export interface EvalRow {
  /** e.g. "bm25", "hybrid", "hybrid+lexical", "hybrid+lexical:rrf". */
  config: string;
  retrieval: RetrievalMode | "bm25";
  /** "none", "lexical" or "cross-encoder". */
  reranker: string;
  /** How rerank scores merge with the first stage's (null without a reranker). */
  fusion: FusionMode | null;
  /** First-stage candidates per side sent to the reranker (the N of recall_at_candidates). */
  candidates: number;
  ndcg_at_10: number;
  mrr_at_10: number;
  map_at_100: number;
  recall_at_100: number;
  recall_at_candidates: number;
  /** True when the row's order depends on a random-weight fixture reranker (plumbing only). */
  fixture: boolean;
  /** Wall time of this configuration's searches over every judged query. */
  seconds: number;
}

export interface EvalReport {
  dataset: string;
  dataset_dir: string;
  /** e.g. "hashing:hashing-v1 (2048d)". */
  embedder: string;
  rerankers: Array<{ name: string; label: string; fixture: boolean }>;
  bm25: string;
  fusion: { alpha: number; rrf_k: number; hybrid: string };
  corpus: { documents: number; empty_documents: number; passages: number };
  queries: { total: number; evaluated: number; without_relevant: number; skipped_unjudged: number };
  /** The service's sparse path ranks as the harness's BM25 over the same passages. */
  checks: { sparse_equals_bm25_over_passages: boolean };
  rows: EvalRow[];
  timings_s: { index_bm25: number; index_first_stage: number; queries: number };
  per_query_file?: string;
  warnings: string[];
  machine: Record<string, string | number>;
}

const FIRST_STAGES: Record<string, string> = {
  bm25: "BM25 (harness baseline, documents)",
  dense: "dense",
  sparse: "sparse (BM25 index, passages)",
  hybrid: "hybrid (dense + sparse, RRF)",
};

function describe(r: EvalRow): string {
  const first = FIRST_STAGES[r.retrieval] ?? r.retrieval;
  if (r.reranker === "none") return first;
  // "rerank" (the second stage's own order) goes unnamed unless a sweep row asked for it by name.
  const named = r.fusion && (r.fusion !== "rerank" || r.config.includes(":"));
  const fusion = named ? ` (${r.fusion} fusion)` : "";
  return `${first} + ${r.reranker}${fusion}`;
}

const f3 = (v: number) => v.toFixed(3);

/** Markdown table ready to paste; rows whose order comes from a fixture reranker are marked †. */
export function markdownTable(report: EvalReport): string {
  const rerankers = report.rerankers.map((r) => `${r.name}: ${r.label}`).join("; ") || "none";
  const lines = [
    `**${report.dataset}** — embedder ${report.embedder}; rerankers ${rerankers}`,
    "",
    "| configuration | candidates | nDCG@10 | MRR@10 | MAP@100 | Recall@candidates | Recall@100 | time (s) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of report.rows) {
    lines.push(
      `| ${describe(r)}${r.fixture ? " †" : ""} | ${r.candidates} | ${f3(r.ndcg_at_10)} | ${f3(r.mrr_at_10)} | ${f3(r.map_at_100)} | ${f3(r.recall_at_candidates)} | ${f3(r.recall_at_100)} | ${r.seconds} |`,
    );
  }
  if (report.rows.some((r) => r.fixture))
    lines.push("", "† reranked by a random-weight fixture model: these rows measure plumbing only, not relevance.");
  return lines.join("\n");
}

/** The object `--json` prints as its last line; `ndcg_at_10` maps "config@candidates" to the figure. */
export function jsonSummary(report: EvalReport): Record<string, unknown> {
  return {
    dataset: report.dataset,
    embedder: report.embedder,
    rerankers: report.rerankers,
    bm25: report.bm25,
    corpus: report.corpus,
    queries: report.queries,
    checks: report.checks,
    ndcg_at_10: Object.fromEntries(report.rows.map((r) => [`${r.config}@${r.candidates}`, r.ndcg_at_10])),
    rows: report.rows,
    timings_s: report.timings_s,
    per_query_file: report.per_query_file,
    warnings: report.warnings,
    machine: report.machine,
  };
}
