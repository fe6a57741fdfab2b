// The search API as a local HTTP server (@hono/node-server): `node --import tsx functions/search/server.ts`,
// port from PORT. Same app and composition root as the Lambda function.
import { pathToFileURL } from "node:url";
import { type ServerType, serve } from "@hono/node-server";
import type { Config } from "../../shared/core/config.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";
import { createSearchService, type SearchService, type SearchServiceOverrides } from "../runtime/search-deps.ts";

export interface SearchServer {
  server: ServerType;
  port: number;
  service: SearchService;
  close(): Promise<void>;
}

/** Starts the search API; resolves once the port is listening (the snapshot loads in the background). */
export async function startSearchServer(
  cfg: Config = loadFunctionConfig(),
  opts: { port?: number; hostname?: string; overrides?: SearchServiceOverrides } = {},
): Promise<SearchServer> {
  const service = createSearchService(cfg, opts.overrides);
  let server!: ServerType;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server = serve({ fetch: service.app.fetch, port: opts.port ?? cfg.port, hostname: opts.hostname }, (info) =>
        resolve(info.port),
      );
      // EADDRINUSE and friends: a rejected start, not an unhandled 'error' event that kills the process.
      server.once("error", reject);
    });
  } catch (e) {
    service.close();
    throw e;
  }
  return {
    server,
    port,
    service,
    close: () =>
      new Promise((r) => {
        service.close();
        server.close(() => r());
      }),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { port } = await startSearchServer();
  console.log(`search API listening on http://localhost:${port} (POST /search, GET /health, GET /openapi.json)`);
}
