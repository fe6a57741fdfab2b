import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { loadConfig } from "../../shared/core/config.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { Command } from "../cli.ts";
import { jsonSummary, markdownTable } from "../eval/report.ts";
import { RERANK_MODEL_CHOICES, type RerankModelChoice } from "../eval/reranker.ts";
import { type ProgressSink, runEval, SWEEP } from "../eval/run-eval.ts";

const usage = `npm run eval -- --dataset <dir> [options]

Evaluates the BM25 baseline and every service configuration (dense, sparse and hybrid first
stages, each alone and reranked; hybrid also with linear / RRF fusion) on a BEIR-layout collection
(corpus.jsonl, queries.jsonl, qrels.tsv), through the service's search core, and prints nDCG@10,
MRR@10, MAP@100, Recall@candidates, Recall@100 and each configuration's wall time.

  --dataset <dir>         collection folder, e.g. ../shared/data/cranfield (required)
  --candidates <n>        first-stage passages per side sent to the reranker (default SEARCH_DEFAULT_CANDIDATES, 20)
  --sweep                 candidates ${SWEEP.join("/")} (each pair is reranked once)
  --embedder <kind>       auto | use-lite+hashing | use-lite | hashing | onnx | openai (default EMBEDDER;
                          offline auto: use-lite+hashing)
  --rerank-model <m>      auto | lexical | minilm | tiny | none (default auto: the weight-free lexical
                          reranker, plus RERANKER_MODEL_DIR or a fetched ms-marco-MiniLM-L-6-v2;
                          minilm / tiny add a fixture cross-encoder = random weights, plumbing only)
  --fast                  same as --rerank-model tiny
  --out <file>            per-query metrics as JSONL (one line per query and configuration)
  --json                  print one JSON object as the last line (no progress bar); its
                          ndcg_at_10 maps "<config>@<candidates>" to nDCG@10
  --quiet                 no progress bar or log lines`;

/** cli-progress bar on stderr with rate and ETA; one bar per stage. */
function progressBar(): ProgressSink {
  let bar: cliProgress.SingleBar | null = null;
  let started = 0;
  return {
    start(stage, total) {
      bar?.stop();
      started = performance.now();
      bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: `${stage.padEnd(16)} [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted}`,
          barsize: 30,
          etaBuffer: 50,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { rate: "0" });
    },
    update(done) {
      const s = (performance.now() - started) / 1000;
      bar?.update(done, { rate: s > 0 ? (done / s).toFixed(1) : "0" });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

function positiveInt(raw: string, flag: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new ValidationError(`${flag} expects a positive integer, got "${raw}"`);
  return n;
}

export const command: Command = {
  name: "eval",
  summary: "relevance evaluation on a BEIR-layout collection (BM25, first stage, rerank, fusion)",
  usage,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        dataset: { type: "string" },
        candidates: { type: "string" },
        sweep: { type: "boolean", default: false },
        embedder: { type: "string" },
        "rerank-model": { type: "string" },
        fast: { type: "boolean", default: false },
        out: { type: "string" },
        json: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
      },
      strict: true,
    });
    if (!values.dataset) throw new ValidationError(`--dataset is required\n\n${usage}`);
    const env = { ...process.env };
    if (values.embedder) env.EMBEDDER = values.embedder;
    const cfg = loadConfig(env);
    const rerankModel = (values.fast ? "tiny" : (values["rerank-model"] ?? "auto")) as RerankModelChoice;
    if (!RERANK_MODEL_CHOICES.includes(rerankModel))
      throw new ValidationError(
        `--rerank-model must be one of ${RERANK_MODEL_CHOICES.join(", ")}, got "${rerankModel}"`,
      );
    const candidates = values.sweep
      ? [...SWEEP]
      : [values.candidates ? positiveInt(values.candidates, "--candidates") : cfg.defaultCandidates];
    const chatty = !values.json && !values.quiet;
    const report = await runEval({
      datasetDir: values.dataset,
      cfg,
      candidates,
      rerankModel,
      perQueryOut: values.out,
      progress: chatty && process.stderr.isTTY ? progressBar() : undefined,
      log: chatty ? (m) => console.error(m) : undefined,
    });
    if (values.json) {
      console.log(JSON.stringify(jsonSummary(report)));
      return 0;
    }
    console.log(markdownTable(report));
    if (!values.quiet) {
      const t = report.timings_s;
      console.log(
        `\n${report.queries.evaluated} judged queries of ${report.queries.total}; ${report.corpus.documents} documents, ${report.corpus.passages} passages.` +
          ` Times: BM25 index ${t.index_bm25} s, first-stage index ${t.index_first_stage} s, queries ${t.queries} s` +
          " (per configuration in the time column).",
      );
      for (const w of report.warnings) console.log(`warning: ${w}`);
      if (report.per_query_file) console.log(`per-query metrics: ${report.per_query_file}`);
    }
    return 0;
  },
};
