// `npm run cli -- query "<text>"`: one search, shown as a table with both stages' ranks and scores;
// against a running search API (--url) or in this process against the configured store.
import { parseArgs } from "node:util";
import { loadConfig } from "../../shared/core/config.ts";
import { DomainError, ValidationError } from "../../shared/core/errors.ts";
import type { SearchResponse } from "../../shared/core/search.ts";
import type { Command } from "../cli.ts";
import { fixtureNotice, resolveEmbeddedDefaults } from "../local/defaults.ts";
import { banner, infoLogger, intFlag, type OutputMode, printJson } from "../local/output.ts";
import { resultsTable } from "../local/results-table.ts";

const usage = `npm run cli -- query "<text>" [options]

Runs one two-stage search and prints the results as a table: final position, first-stage rank,
reranked rank, the movement between them, both stages' scores, the document and its text.

Against a running search API with --url (e.g. the one \`npm run demo\` or \`serve\` started), or
in this process against the configured store (STORE_KIND / STORE_DIR / BUCKET; build one with
\`npm run cli -- index <path>\`). In-process reranking uses RERANKER_MODEL_DIR, else
models/ms-marco-MiniLM-L-6-v2 when fetched, else the weight-free lexical reranker
(RERANKER=fixture: a generated random-weight cross-encoder, announced).

  --url <base>          search API base URL, e.g. http://127.0.0.1:3000
  -k, --k <n>           results (default SEARCH_DEFAULT_K)
  --candidates <n>      first-stage candidates sent to the reranker (default SEARCH_DEFAULT_CANDIDATES)
  --retrieval <mode>    hybrid | dense | sparse first stage (default SEARCH_DEFAULT_RETRIEVAL, hybrid)
  --fusion <mode>       rerank | linear | rrf (default rerank)
  --alpha <x>           rerank weight of linear fusion, 0..1
  --collapse            one passage per document
  --no-rerank           first stage only
  --store-dir <dir>     filesystem store root (in-process; implies STORE_KIND=fs)
  --api-key <key>       sent as x-api-key (--url; or SEARCH_API_KEY)
  --fast                in-process with RERANKER=fixture: the small tiny-cross fixture
  --json                print the API's response as one JSON object on the last stdout line
  --quiet               only the table`;

interface QueryFlags {
  k?: number;
  retrieval?: string;
  candidates?: number;
  fusion?: string;
  alpha?: number;
  collapse: boolean;
  rerank: boolean;
}

function requestBody(query: string, f: QueryFlags): Record<string, unknown> {
  return {
    query,
    ...(f.k !== undefined ? { k: f.k } : {}),
    ...(f.retrieval !== undefined ? { retrieval: f.retrieval } : {}),
    ...(f.candidates !== undefined ? { candidates: f.candidates } : {}),
    ...(f.fusion !== undefined ? { fusion: f.fusion } : {}),
    ...(f.alpha !== undefined ? { alpha: f.alpha } : {}),
    ...(f.collapse ? { collapse: true } : {}),
    rerank: f.rerank,
  };
}

/** An {error:{code,message}} answer as the DomainError it stands for. */
function answerError(status: number, body: unknown): DomainError {
  const e = (body as { error?: { code?: string; message?: string } } | null)?.error;
  return new DomainError((e?.code as never) ?? "internal", status, e?.message ?? `HTTP ${status}`);
}

interface Answer {
  response: SearchResponse;
  /** The reranker as /health describes it (model, fixture), when known. */
  reranker: { model?: string; fixture?: boolean; kind?: string } | null;
}

async function queryUrl(base: string, body: Record<string, unknown>, apiKey: string | undefined): Promise<Answer> {
  const root = base.replace(/\/+$/, "");
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
  if (apiKey) headers["x-api-key"] = apiKey;
  let res: Response;
  try {
    res = await fetch(`${root}/search`, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; errors?: Array<{ code?: string }> } }).cause;
    const why = cause?.code ?? cause?.errors?.[0]?.code ?? (e as Error).message;
    throw new ValidationError(
      `no search API answers at ${root} (${why}); start one with \`npm run demo\` or \`npm run cli -- serve\``,
    );
  }
  const json = await res.json().catch(() => null);
  if (!res.ok) throw answerError(res.status, json);
  const health = await fetch(`${root}/health`)
    .then((r) => r.json() as Promise<{ reranker?: Answer["reranker"] }>)
    .catch(() => null);
  return { response: json as SearchResponse, reranker: health?.reranker ?? null };
}

async function queryInProcess(
  body: Record<string, unknown>,
  opts: { storeDir?: string; fast: boolean; rerank: boolean; log: (l: string) => void },
): Promise<Answer> {
  const cfg = loadConfig({
    ...process.env,
    ...(opts.storeDir ? { STORE_KIND: "fs", STORE_DIR: opts.storeDir } : {}),
  });
  const defaults = await resolveEmbeddedDefaults(cfg, { fast: opts.fast, rerank: opts.rerank });
  if (defaults.reranker.kind !== "none") opts.log(`reranker: ${defaults.reranker.name} (${defaults.reranker.reason})`);
  // Imported here so LOG_LEVEL (set by run()) applies to the service's logger.
  const { createSearchService } = await import("../../functions/runtime/search-deps.ts");
  const service = createSearchService(defaults.cfg, { quiet: true });
  try {
    const res = await service.app.request("/search", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw answerError(res.status, json);
    const r = defaults.reranker;
    return {
      response: json as SearchResponse,
      reranker: { kind: r.kind, model: r.name, fixture: r.fixture },
    };
  } finally {
    service.close();
  }
}

export const command: Command = {
  name: "query",
  summary: "one search as a table of both stages' ranks and scores (running API or in-process)",
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: "string" },
        k: { type: "string", short: "k" },
        candidates: { type: "string" },
        retrieval: { type: "string" },
        fusion: { type: "string" },
        alpha: { type: "string" },
        collapse: { type: "boolean", default: false },
        "no-rerank": { type: "boolean", default: false },
        "store-dir": { type: "string" },
        "api-key": { type: "string" },
        fast: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
      },
    });
    const text = positionals.join(" ").trim();
    if (!text)
      throw new ValidationError('give the query text, e.g. npm run cli -- query "what does a cross-encoder do"');
    const mode: OutputMode = { json: values.json, quiet: values.quiet };
    const log = infoLogger(mode);
    let alpha: number | undefined;
    if (values.alpha !== undefined) {
      alpha = Number(values.alpha);
      if (!Number.isFinite(alpha)) throw new ValidationError(`--alpha expects a number, got "${values.alpha}"`);
    }
    const flags: QueryFlags = {
      k: intFlag(values.k, "--k"),
      retrieval: values.retrieval,
      candidates: intFlag(values.candidates, "--candidates"),
      fusion: values.fusion,
      alpha,
      collapse: values.collapse,
      rerank: !values["no-rerank"],
    };
    const body = requestBody(text, flags);
    process.env.LOG_LEVEL ||= "WARN";
    const answer = values.url
      ? await queryUrl(values.url, body, values["api-key"] ?? process.env.SEARCH_API_KEY)
      : await queryInProcess(body, {
          storeDir: values["store-dir"],
          fast: values.fast || process.env.DEMO_FAST === "1",
          rerank: flags.rerank,
          log,
        });
    const res = answer.response;

    if (mode.json) {
      printJson(res);
      return 0;
    }
    if (!mode.quiet && answer.reranker?.fixture && res.reranked)
      process.stderr.write(
        `${banner(fixtureNotice({ kind: "model", name: answer.reranker.model ?? "fixture", fixture: true, reason: "" }))}\n`,
      );
    for (const w of res.warnings) log(`warning: ${w}`);
    console.log(res.results.length ? resultsTable(res) : "no results");
    if (!mode.quiet) {
      const t = res.timings;
      const rr = res.reranked ? `reranked ${res.reranked_candidates} of ${res.candidates} candidates` : "not reranked";
      console.log(
        `\n${res.results.length} results, ${res.retrieval} first stage, ${rr}, fusion ${res.fusion}; embed ${t.embed_ms} ms, dense ${t.search_ms} ms, BM25 ${t.sparse_ms} ms, rerank ${t.rerank_ms} ms, total ${t.total_ms} ms; index ${res.index.version} (${res.index.count} passages)`,
      );
    }
    return 0;
  },
};
