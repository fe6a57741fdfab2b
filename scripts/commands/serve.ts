// `npm run cli -- serve`: the search API (with the playground) and the reranker service on
// loopback, against the configured store; no local S3 server (that is `npm run demo`).
import { parseArgs } from "node:util";
import { createStore } from "../../shared/adapters/stores.ts";
import { loadConfig } from "../../shared/core/config.ts";
import type { Command } from "../cli.ts";
import { fixtureNotice, lexicalNotice, resolveEmbeddedDefaults } from "../local/defaults.ts";
import { describeStore } from "../local/index-files.ts";
import { banner, intFlag } from "../local/output.ts";

const usage = `npm run cli -- serve [options]

Starts the search API (PORT, default 3000; the playground at /) and the reranker service
(RERANKER_PORT, default 3001) on 127.0.0.1, reading snapshots from the configured store
(STORE_KIND=fs with STORE_DIR, default .data/store; or STORE_KIND=s3 with BUCKET, S3_ENDPOINT).
Build a snapshot first with \`npm run cli -- index <path>\`. Ctrl-C stops both.

Embedder: the one the snapshot was built with (EMBEDDER=auto follows it).
Reranker (RERANKER=in-process, the default): RERANKER_MODEL_DIR, else models/ms-marco-MiniLM-L-6-v2
when fetched, else the weight-free lexical reranker (in the search process). RERANKER=fixture: a
generated random-weight cross-encoder (announced). RERANKER=http|lambda|none use the configured
remote reranker or none, and start no reranker service.

  --port <n>             search API port (default PORT or 3000; 0 = any free port)
  --reranker-port <n>    reranker service port (default RERANKER_PORT or 3001; 0 = any free port)
  --host <addr>          interface to listen on (default 127.0.0.1)
  --store-dir <dir>      filesystem store root (implies STORE_KIND=fs)
  --no-rerank-service    run the reranker inside the search process instead of as its own service
  --no-rerank            no second stage
  --fast                 RERANKER=fixture: the small tiny-cross fixture
  --request-logs         one JSON log line per request`;

export const command: Command = {
  name: "serve",
  summary: "search API (+ playground) and reranker service on loopback, against the configured store",
  usage,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string" },
        "reranker-port": { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        "store-dir": { type: "string" },
        "no-rerank-service": { type: "boolean", default: false },
        "no-rerank": { type: "boolean", default: false },
        fast: { type: "boolean", default: false },
        "request-logs": { type: "boolean", default: false },
      },
    });
    const cfg = loadConfig({
      ...process.env,
      ...(values["store-dir"] ? { STORE_KIND: "fs", STORE_DIR: values["store-dir"] } : {}),
    });
    // The services' JSON logs (Powertools) stay quiet unless asked for; set before they are imported.
    process.env.LOG_LEVEL ||= values["request-logs"] ? "INFO" : "WARN";
    if (!values["request-logs"]) process.env.POWERTOOLS_METRICS_DISABLED ||= "true";
    const { shutdownSignal, startLocalServices } = await import("../local/services.ts");
    const stopping = shutdownSignal();
    const defaults = await resolveEmbeddedDefaults(cfg, {
      fast: values.fast || process.env.DEMO_FAST === "1",
      rerank: !values["no-rerank"],
    });
    const store = createStore(defaults.cfg);
    const services = await startLocalServices({
      defaults,
      store,
      host: values.host,
      searchPort: intFlag(values.port, "--port", 0) ?? cfg.port,
      rerankPort: intFlag(values["reranker-port"], "--reranker-port", 0) ?? cfg.rerankerPort,
      rerankService: !values["no-rerank-service"],
      requestLogs: values["request-logs"],
    });
    const r = defaults.reranker;
    console.log(
      [
        `store        ${describeStore(store.describe())} (${cfg.indexPrefix})`,
        `embedder     follows the snapshot; for new snapshots: ${defaults.embedder.kind} (${defaults.embedder.reason})`,
        `reranker     ${r.kind === "none" ? "none" : `${r.name} (${r.reason})`}${services.rerankUrl ? ` at ${services.rerankUrl}` : r.kind === "model" ? " in-process" : ""}`,
        `search API   ${services.searchUrl}`,
        `playground   ${services.searchUrl}/`,
      ].join("\n"),
    );
    if (r.fixture) console.log(banner(fixtureNotice(r)));
    if (r.kind === "lexical") for (const line of lexicalNotice()) console.log(`             ${line}`);
    services.waitHealthy(15_000).then(
      () => console.log("ready (Ctrl-C stops)"),
      (e) =>
        console.log(`not serving yet: ${(e as Error).message}; index something with \`npm run cli -- index <path>\``),
    );
    const sig = await stopping;
    console.log(`\n${sig}: stopping`);
    await services.close();
    return 0;
  },
};
