// The index shard worker as HTTP (functions/shard/server.ts: local processes, any host) and as a
// Lambda direct-invoke handler (functions/shard/handler.ts). POST /shard/search takes
// {version, shard, vector, k} and answers {ordinals, scores, version} (global ordinals, best first);
// GET /health lists the shards loaded. Errors are {error: {code, message}} with the right status.
import { Hono, type MiddlewareHandler } from "hono";
import { DomainError, isDomainError, ValidationError } from "../core/errors.ts";
import { type IndexShardService, parseShardSearchRequest } from "../core/index-shard-service.ts";
import type { ShardSearchResponse } from "../core/ports.ts";
import { errorBody, jsonBodyLimit } from "./rerank-app.ts";

/** Room for a 4096-dimension vector written out in JSON. */
const MAX_BODY_BYTES = 256 * 1024;

function toShardError(e: unknown): DomainError {
  if (isDomainError(e)) return e;
  if (e instanceof SyntaxError) return new ValidationError("request body is not valid JSON");
  return new DomainError("internal", 500, "internal error while searching the index shard", { cause: e });
}

export function createShardApp(service: IndexShardService, opts: { middleware?: MiddlewareHandler[] } = {}): Hono {
  const app = new Hono();
  app.onError((e, c) => {
    const err = toShardError(e);
    if (err.retryAfterS) c.header("Retry-After", String(err.retryAfterS));
    return c.json(errorBody(err), err.status as 400);
  });
  app.notFound((c) =>
    c.json(errorBody(new DomainError("not_found", 404, `no route ${c.req.method} ${c.req.path}`)), 404),
  );
  for (const m of opts.middleware ?? []) app.use(m);
  app.get("/health", (c) => c.json({ status: "ok", ...service.status() }));
  app.post("/shard/search", jsonBodyLimit(MAX_BODY_BYTES), async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw new ValidationError("request body is not valid JSON");
    }
    return c.json(await service.search(parseShardSearchRequest(body)));
  });
  return app;
}

export type ShardInvokeResult = ShardSearchResponse | { error: { code: string; message: string; status: number } };

/** Lambda direct invocation: the event is the request; errors come back as values, not throws. */
export async function handleShardInvoke(
  service: IndexShardService | (() => IndexShardService),
  event: unknown,
  log?: (message: string, error: unknown) => void,
): Promise<ShardInvokeResult> {
  try {
    const s = typeof service === "function" ? service() : service;
    const body = typeof event === "string" ? JSON.parse(event) : event;
    return await s.search(parseShardSearchRequest(body));
  } catch (e) {
    const err = toShardError(e);
    if (err.status >= 500) log?.(`shard: ${err.code}: ${err.message}`, err.cause ?? err);
    return { error: { code: err.code, message: err.message, status: err.status } };
  }
}
