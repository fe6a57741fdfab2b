// The reranker as a standalone HTTP service (GPU container or any host): POST /rerank, GET /health.
// `node --import tsx functions/rerank/server.ts`; port from RERANKER_PORT.
import { pathToFileURL } from "node:url";
import { type ServerType, serve } from "@hono/node-server";
import { createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import { logger, metrics, requestLogging } from "../../shared/adapters/observability.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Config } from "../../shared/core/config.ts";
import { createRerankApp } from "../../shared/http/rerank-app.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";

export interface RerankServer {
  server: ServerType;
  port: number;
  close(): Promise<void>;
}

/** Starts the service and begins loading the model; resolves once the port is listening. */
export async function startRerankServer(
  cfg: Config = loadFunctionConfig(),
  opts: { port?: number; hostname?: string } = {},
): Promise<RerankServer> {
  const reranker = createLocalReranker(cfg, {
    store: cfg.rerankerModelS3 ? createStore(cfg) : undefined,
    log: (level, message) => logger[level](message),
  });
  const app = createRerankApp({
    reranker,
    limits: reranker.limits,
    token: cfg.rerankerToken,
    middleware: [requestLogging({ metrics })],
  });
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
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch: app.fetch, port: opts.port ?? cfg.rerankerPort, hostname: opts.hostname }, (info) =>
      resolve(info.port),
    );
  });
  return { server, port, close: () => new Promise((r) => server.close(() => r())) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { port } = await startRerankServer();
  logger.info(`reranker listening on :${port}`);
}
