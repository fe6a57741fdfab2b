// The reranker as a standalone HTTP service (GPU container or any host): POST /rerank, GET /health,
// GET /usage (with API keys). `node --import tsx functions/rerank/server.ts`; port from RERANKER_PORT.
import { pathToFileURL } from "node:url";
import { type ServerType, serve } from "@hono/node-server";
import type { MiddlewareHandler } from "hono";
import { createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import { logger, metrics, redactConsole, requestLogging } from "../../shared/adapters/observability.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Config } from "../../shared/core/config.ts";
import { type ApiKeySecurity, createApiKeySecurity, forPaths } from "../../shared/http/auth.ts";
import { createRerankApp } from "../../shared/http/rerank-app.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";

// Library code that logs through console (SDKs, onnxruntime) must not print secrets either.
redactConsole();

export interface RerankServer {
  server: ServerType;
  port: number;
  /** Present when AUTH_MODE=required (keys live in the configured store). */
  security?: ApiKeySecurity;
  close(): Promise<void>;
}

/** Starts the service and begins loading the model; resolves once the port is listening. */
export async function startRerankServer(
  cfg: Config = loadFunctionConfig(),
  opts: { port?: number; hostname?: string; quiet?: boolean } = {},
): Promise<RerankServer> {
  const store = cfg.rerankerModelS3 || cfg.authMode === "required" ? createStore(cfg) : undefined;
  const reranker = createLocalReranker(cfg, {
    store: cfg.rerankerModelS3 ? store : undefined,
    log: (level, message) => logger[level](message),
  });
  // API keys only when required: the open local stack needs no store for them.
  const security = cfg.authMode === "required" && store ? createApiKeySecurity(cfg, store) : undefined;
  const middleware: MiddlewareHandler[] = opts.quiet ? [] : [requestLogging({ metrics })];
  if (security) middleware.push(forPaths(["/rerank"], security.auth));
  const app = createRerankApp({ reranker, limits: reranker.limits, token: cfg.rerankerToken, middleware });
  if (security) app.route("/", security.usageApp);
  reranker.warm().then(
    (m) =>
      logger.info(
        `reranker: ${m.model} on ${m.provider}${m.fixture ? " (fixture weights: scores carry no meaning)" : ""}`,
        {
          fallbacks: m.fallbacks,
        },
      ),
    (e) => logger.error(`reranker: model not loaded yet: ${(e as Error).message}`),
  );
  let server!: ServerType;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve({ fetch: app.fetch, port: opts.port ?? cfg.rerankerPort, hostname: opts.hostname }, (info) =>
      resolve(info.port),
    );
    // EADDRINUSE and friends: a rejected start, not an unhandled 'error' event that kills the process.
    server.once("error", reject);
  });
  return { server, port, security, close: () => new Promise((r) => server.close(() => r())) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { port } = await startRerankServer();
  logger.info(`reranker listening on :${port}`);
}
