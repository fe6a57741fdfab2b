// The search API and the reranker service on loopback, wired as in AWS but in this process: the
// reranker as its own HTTP service (the search app calls it through the HTTP reranker port, as it
// would call the GPU service) or in-process, the playground mounted at GET /. Used by `npm run demo`
// (scripts/dev.ts) and `npm run cli -- serve`.
import { createHttpReranker } from "../../shared/adapters/reranker-clients.ts";
import type { Config } from "../../shared/core/config.ts";
import type { ObjectStore, RerankerDescription, RerankerPort } from "../../shared/core/ports.ts";
import { playgroundRoutes } from "../../shared/http/playground.ts";
import { type RerankServer, startRerankServer } from "../../functions/rerank/server.ts";
import { type SearchServer, startSearchServer } from "../../functions/search/server.ts";
import type { EmbeddedDefaults } from "./defaults.ts";
import { type ShardWorkers, startShardWorkers } from "./shard-workers.ts";

export interface LocalServicesOptions {
  defaults: EmbeddedDefaults;
  /** The store the search API reads snapshots from (default: the configuration's). */
  store?: ObjectStore;
  /** Interface to listen on (default 127.0.0.1: nothing is exposed beyond this machine). */
  host?: string;
  /** 0 = any free port. */
  searchPort: number;
  rerankPort: number;
  /** true: the reranker runs as its own HTTP service; false: inside the search process. */
  rerankService: boolean;
  /** Log one JSON line per request (off by default: the terminal is for humans here). */
  requestLogs?: boolean;
}

export interface LocalServices {
  searchUrl: string;
  /** null when no separate reranker service runs. */
  rerankUrl: string | null;
  search: SearchServer;
  rerank: RerankServer | null;
  /** SEARCH_SHARDS=http without SHARD_URLS: one worker process per index shard (INDEX_SHARDS). */
  shardWorkers: ShardWorkers | null;
  /** Polls GET /health until it answers 200 (a snapshot is loaded); returns its body. */
  waitHealthy(timeoutMs: number, signal?: AbortSignal): Promise<Record<string, unknown>>;
  /** Polls the reranker service until its model is loaded (no-op without the service). */
  waitRerankerWarm(timeoutMs: number): Promise<Record<string, unknown> | null>;
  close(): Promise<void>;
}

/**
 * The HTTP reranker port, describing the model it calls from the start (the port itself only learns
 * the model, and whether it is a fixture, from the first answer), so /health and the playground can
 * show the fixture notice before anyone searched.
 */
export function describedReranker(port: RerankerPort, known: Partial<RerankerDescription>): RerankerPort {
  return {
    describe: () => ({ ...known, ...port.describe() }),
    rerank: (req, opts) => port.rerank(req, opts),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startLocalServices(opts: LocalServicesOptions): Promise<LocalServices> {
  const host = opts.host ?? "127.0.0.1";
  const { cfg, reranker: choice } = opts.defaults;
  const loadsModel = choice.kind === "model" || choice.kind === "store";
  const separate = opts.rerankService && loadsModel;

  let rerank: RerankServer | null = null;
  let searchCfg: Config = cfg;
  let rerankerPort: RerankerPort | undefined;
  if (separate) {
    rerank = await startRerankServer({ ...cfg, reranker: "in-process" }, { port: opts.rerankPort, hostname: host });
  }
  const rerankUrl = rerank ? `http://${host}:${rerank.port}` : null;
  if (rerankUrl) {
    searchCfg = { ...cfg, reranker: "http", rerankerUrl: rerankUrl };
    rerankerPort = describedReranker(
      createHttpReranker({ url: rerankUrl, token: cfg.rerankerToken, timeoutMs: cfg.rerankerTimeoutMs }),
      { model: choice.name, fixture: choice.fixture },
    );
  } else if (loadsModel) {
    searchCfg = { ...cfg, reranker: "in-process" };
  }

  // Fan-out locally: the shard functions as processes, as many as the reindex cuts (INDEX_SHARDS).
  let shardWorkers: ShardWorkers | null = null;
  if (cfg.searchShards === "http" && !cfg.shardUrls) {
    try {
      shardWorkers = await startShardWorkers({ shards: cfg.indexShards, host, env: storeEnvironment(cfg) });
    } catch (e) {
      await rerank?.close();
      throw e;
    }
    searchCfg = { ...searchCfg, shardUrls: shardWorkers.urls.join(",") };
  }

  let search: SearchServer;
  try {
    search = await startSearchServer(searchCfg, {
      port: opts.searchPort,
      hostname: host,
      overrides: {
        ...(opts.store ? { store: opts.store } : {}),
        ...(rerankerPort ? { reranker: rerankerPort } : {}),
        quiet: !opts.requestLogs,
        app: { routes: (app) => app.route("/", playgroundRoutes()) },
      },
    });
  } catch (e) {
    await rerank?.close();
    await shardWorkers?.close();
    throw e;
  }
  const searchUrl = `http://${host}:${search.port}`;

  const poll = async (
    url: string,
    ok: (status: number, body: Record<string, unknown>) => boolean,
    timeoutMs: number,
    what: string,
    signal?: AbortSignal,
  ) => {
    const deadline = Date.now() + timeoutMs;
    let last = "no answer yet";
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      try {
        const res = await fetch(url, {
          signal: AbortSignal.timeout(Math.max(1000, Math.min(10_000, deadline - Date.now()))),
        });
        const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
        if (ok(res.status, body)) return body;
        const err = body.error as { message?: string } | undefined;
        last = `HTTP ${res.status}${err?.message ? `: ${err.message}` : ""}`;
      } catch (e) {
        last = (e as Error).message;
      }
      await sleep(250);
    }
    throw new Error(`${what} not ready after ${Math.round(timeoutMs / 1000)} s (${last})`);
  };

  return {
    searchUrl,
    rerankUrl,
    search,
    rerank,
    shardWorkers,
    waitHealthy: (timeoutMs, signal) => poll(`${searchUrl}/health`, (s) => s === 200, timeoutMs, "search API", signal),
    waitRerankerWarm: async (timeoutMs) =>
      rerankUrl
        ? poll(`${rerankUrl}/health`, (_s, b) => b.warm === true || typeof b.error === "string", timeoutMs, "reranker")
        : null,
    async close() {
      await Promise.allSettled([
        closeServer(search),
        rerank ? closeServer(rerank) : Promise.resolve(),
        shardWorkers ? shardWorkers.close() : Promise.resolve(),
      ]);
    },
  };
}

/** The environment a child process needs to read the same store and index prefix as `cfg`. */
export function storeEnvironment(cfg: Config): NodeJS.ProcessEnv {
  const searchParams = Object.entries(cfg.indexSearchParams ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return {
    ...process.env,
    STORE_KIND: cfg.storeKind,
    STORE_DIR: cfg.storeDir,
    ...(cfg.bucket ? { BUCKET: cfg.bucket } : {}),
    ...(cfg.s3Endpoint ? { S3_ENDPOINT: cfg.s3Endpoint } : {}),
    S3_FORCE_PATH_STYLE: String(cfg.s3ForcePathStyle),
    AWS_REGION: cfg.awsRegion,
    INDEX_PREFIX: cfg.indexPrefix,
    ...(searchParams ? { INDEX_SEARCH_PARAMS: searchParams } : {}),
  };
}

/** Closes a node server without waiting for idle keep-alive connections (browsers hold them open). */
async function closeServer(s: { server: unknown; close(): Promise<void> }): Promise<void> {
  const closing = s.close();
  (s.server as { closeAllConnections?: () => void }).closeAllConnections?.();
  await closing;
}

/**
 * Resolves with the signal's name on the first SIGINT or SIGTERM (the caller then closes what it
 * started); a second signal while closing exits at once with 130.
 */
export function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const handler = (sig: NodeJS.Signals) => {
      if (received) {
        process.stderr.write(`\n${sig} again: exiting without a clean shutdown\n`);
        process.exit(130);
      }
      received = true;
      resolve(sig);
    };
    process.on("SIGINT", handler);
    process.on("SIGTERM", handler);
  });
}
