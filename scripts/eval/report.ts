// Shapes and rendering of an evaluation report: the markdown table and the one-line JSON object.

export const CONFIGS = ["bm25", "first_stage", "rerank", "linear", "rrf"] as const;
export type ConfigName = (typeof CONFIGS)[number];

export interface EvalRow {
  config: ConfigName;
  /** First-stage candidates sent to the reranker (the N of recall_at_candidates). */
  candidates: number;
  ndcg_at_10: number;
  mrr_at_10: number;
  map_at_100: number;
  recall_at_100: number;
  recall_at_candidates: number;
  /** True when the row's order depends on a random-weight fixture reranker (plumbing only). */
  fixture: boolean;
}

export interface EvalReport {
  dataset: string;
  dataset_dir: string;
  /** e.g. "hashing:hashing-v1 (2048d)". */
  embedder: string;
  /** e.g. "fixture:minilm-l6-cross (random weights)" or "none". */
  reranker: string;
  reranker_fixture: boolean;
  bm25: string;
  fusion: { alpha: number; rrf_k: number };
  corpus: { documents: number; empty_documents: number; passages: number };
  queries: { total: number; evaluated: number; without_relevant: number; skipped_unjudged: number };
  rows: EvalRow[];
  timings_s: { index_bm25: number; index_first_stage: number; queries: number; rerank: number };
  rerank_pairs: number;
  per_query_file?: string;
  warnings: string[];
  machine: Record<string, string | number>;
}

const describeConfig: Record<ConfigName, string> = {
  bm25: "BM25 (harness baseline)",
  first_stage: "first stage only",
  rerank: "first stage + rerank",
  linear: "linear fusion",
  rrf: "RRF",
};

const f3 = (v: number) => v.toFixed(3);

/** Markdown table ready to paste; rows whose order comes from a fixture reranker are marked †. */
export function markdownTable(report: EvalReport): string {
  const lines = [
    `**${report.dataset}** — embedder ${report.embedder}; reranker ${report.reranker}`,
    "",
    "| configuration | candidates | nDCG@10 | MRR@10 | MAP@100 | Recall@candidates | Recall@100 |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of report.rows) {
    const name = `${describeConfig[r.config]}${r.fixture ? " †" : ""}`;
    lines.push(
      `| ${name} | ${r.candidates} | ${f3(r.ndcg_at_10)} | ${f3(r.mrr_at_10)} | ${f3(r.map_at_100)} | ${f3(r.recall_at_candidates)} | ${f3(r.recall_at_100)} |`,
    );
  }
  if (report.rows.some((r) => r.fixture))
    lines.push("", "† reranked by a random-weight fixture model: these rows measure plumbing only, not relevance.");
  return lines.join("\n");
}

/** The object `--json` prints as its last line. */
export function jsonSummary(report: EvalReport): Record<string, unknown> {
  return {
    dataset: report.dataset,
    embedder: report.embedder,
    reranker: report.reranker,
    reranker_fixture: report.reranker_fixture,
    bm25: report.bm25,
    corpus: report.corpus,
    queries: report.queries,
    rows: report.rows,
    timings_s: report.timings_s,
    per_query_file: report.per_query_file,
    warnings: report.warnings,
    machine: report.machine,
  };
}
