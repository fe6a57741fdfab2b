// An index shard worker over HTTP (the local stack's shard processes, or any host):
// POST /shard/search, GET /health. `node --import tsx functions/shard/server.ts`; port SHARD_PORT.
import { pathToFileURL } from "node:url";
import { type ServerType, serve } from "@hono/node-server";
import { logger, metrics, redactConsole, requestLogging } from "../../shared/adapters/observability.ts";
import type { Config } from "../../shared/core/config.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { createShardApp } from "../../shared/http/shard-app.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";
import { createShardService } from "../runtime/shard-deps.ts";

redactConsole();

export interface ShardServer {
  server: ServerType;
  port: number;
  close(): Promise<void>;
}

export async function startShardServer(
  cfg: Config = loadFunctionConfig(),
  opts: { port?: number; hostname?: string; quiet?: boolean; store?: ObjectStore } = {},
): Promise<ShardServer> {
  const service = createShardService(cfg, { store: opts.store });
  const app = createShardApp(service, { middleware: opts.quiet ? [] : [requestLogging({ metrics })] });
  let server!: ServerType;
  const port = await new Promise<number>((resolve, reject) => {
    server = serve(
      { fetch: app.fetch, port: opts.port ?? cfg.shardPort, hostname: opts.hostname ?? cfg.shardHost },
      (info) => resolve(info.port),
    );
    server.once("error", reject);
  });
  return { server, port, close: () => new Promise((r) => server.close(() => r())) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { port } = await startShardServer();
  logger.info(`index shard worker listening on :${port}`);
  // A parent that started this worker (scripts/local/shard-workers.ts) learns the port whatever LOG_LEVEL says.
  process.send?.({ type: "listening", port });
  // ...and this worker does not outlive it, however the parent ended.
  process.once("disconnect", () => process.exit(0));
}
