// The search API as a Hono app: a pure fetch(Request) → Response that runs unchanged under API
// Gateway (hono/aws-lambda) and @hono/node-server. Routes validate with the zod schemas of
// ./schemas.ts (which also produce /openapi.json), call the two-stage core, and map errors to
// `{error: {code, message}}` in one place (onError).
import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { createRerankCostTracker, type RerankCostTracker } from "../core/budget.ts";
import type { Config } from "../core/config.ts";
import { DomainError, EmbedderUnavailableError, type ErrorCode, isDomainError } from "../core/errors.ts";
import type {
  Clock,
  Embedder,
  LoadedSnapshot,
  RerankerPort,
  SnapshotManifest,
  SnapshotSource,
  StoreDescription,
} from "../core/ports.ts";
import { type SearchResponse, searchTwoStage } from "../core/search.ts";
import { redactor } from "../adapters/observability.ts";
import {
  errorSchema,
  healthSchema,
  type ParsedSearch,
  searchBodySchema,
  searchQuerySchema,
  searchResponseSchema,
} from "./schemas.ts";

export type SearchAppConfig = Pick<
  Config,
  | "defaultK"
  | "defaultCandidates"
  | "maxCandidates"
  | "maxQueryChars"
  | "defaultRetrieval"
  | "hybridFusion"
  | "denseWeight"
  | "maxBodyBytes"
  | "budgetMs"
  | "corsOrigins"
  | "rerankerTimeoutMs"
  | "rerankerMaxLength"
  | "rerankerFanout"
  | "rerankerFanoutPairs"
  | "embedTimeoutMs"
  | "embedder"
>;

export interface AppLog {
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

export interface SearchAppHooks {
  /** After every successful search (metrics, usage metering). */
  onSearch?(c: Context, response: SearchResponse): void;
  /** After every error response, with the status it got. */
  onError?(c: Context, error: DomainError): void;
}

export interface SearchAppDeps {
  snapshots: SnapshotSource;
  /** The query embedder for a snapshot (its identity must match the manifest's); cached by the caller. */
  embedderFor: (manifest: SnapshotManifest) => Promise<Embedder>;
  /** null or a "none" reranker = first stage only. */
  reranker: RerankerPort | null;
  config: SearchAppConfig;
  /** What /health reports as the store. */
  store?: StoreDescription;
  /** Running rerank cost estimate; one per warm instance (created here when omitted). */
  estimate?: RerankCostTracker;
  clock?: Clock;
  log?: AppLog;
  hooks?: SearchAppHooks;
  /** Mounted on every route first, after CORS (request logging). */
  middleware?: MiddlewareHandler[];
  /** Mounted on the search routes only, before validation (API keys, rate limiting). */
  auth?: MiddlewareHandler;
  /** Extra routes (the web playground at GET /); registered before the default GET / answer. */
  routes?: (app: OpenAPIHono) => void;
}

const HTTP_CODES: Record<number, ErrorCode> = {
  400: "invalid_request",
  401: "unauthorized",
  404: "not_found",
  413: "payload_too_large",
  415: "invalid_request",
  429: "rate_limited",
};

/** Any thrown value as a DomainError; unknown errors become a 500 that reveals nothing internal. */
export function toDomainError(e: unknown): DomainError {
  if (isDomainError(e)) return e;
  if (e instanceof HTTPException) {
    const code = HTTP_CODES[e.status] ?? (e.status >= 500 ? "internal" : "invalid_request");
    const message =
      e.status === 415
        ? "content-type must be application/json"
        : /malformed json/i.test(e.message)
          ? "request body is not valid JSON"
          : e.message || `HTTP ${e.status}`;
    return new DomainError(code, e.status, message, { cause: e });
  }
  return new DomainError("internal", 500, "internal error", { cause: e });
}

// Messages can quote upstream errors (an embedding provider's reply, a URL): secrets are scrubbed first.
const errorBody = (e: DomainError) => ({ error: { code: e.code, message: redactor.redactText(e.message) } });

/** "k: must be ≤ candidates (20); fusion: must be one of …" — every issue, each naming its field. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.length ? i.path.map(String).join(".") : "body"}: ${i.message}`).join("; ");
}

function serverTiming(t: SearchResponse["timings"]): string {
  return `embed;dur=${t.embed_ms}, search;dur=${t.search_ms}, sparse;dur=${t.sparse_ms}, texts;dur=${t.texts_ms}, rerank;dur=${t.rerank_ms}, total;dur=${t.total_ms}`;
}

export function createSearchApp(deps: SearchAppDeps): OpenAPIHono {
  const cfg = deps.config;
  const estimate = deps.estimate ?? createRerankCostTracker();
  const rerankerConfigured = deps.reranker !== null && deps.reranker.describe().kind !== "none";
  const limits = {
    maxCandidates: cfg.maxCandidates,
    embedTimeoutMs: cfg.embedTimeoutMs,
    maxPairTokens: cfg.rerankerMaxLength ?? 512,
    rerankFanout: cfg.rerankerFanout,
    rerankPairsPerCall: cfg.rerankerFanoutPairs,
  };

  const app = new OpenAPIHono({
    // Validation failures become 400s whose message names every offending field.
    defaultHook: (result, c) => {
      if (!result.success) {
        const err = new DomainError("invalid_request", 400, describeIssues(result.error.issues));
        deps.hooks?.onError?.(c, err);
        return c.json(errorBody(err), 400);
      }
    },
  });

  app.onError((e, c) => {
    const err = toDomainError(e);
    if (err.status >= 500)
      deps.log?.error(`search api: ${err.code}: ${err.message}`, { cause: String(err.cause ?? "") });
    if (err.retryAfterS) c.header("Retry-After", String(err.retryAfterS));
    deps.hooks?.onError?.(c, err);
    return c.json(errorBody(err), err.status as 400);
  });
  app.notFound((c) =>
    c.json(errorBody(new DomainError("not_found", 404, `no route ${c.req.method} ${c.req.path}`)), 404),
  );

  const origins = cfg.corsOrigins
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean);
  app.use(
    "*",
    cors({
      origin: origins.includes("*") || origins.length === 0 ? "*" : origins,
      allowMethods: ["GET", "POST", "OPTIONS"],
      allowHeaders: ["content-type", "authorization", "x-api-key"],
      exposeHeaders: ["Server-Timing", "Retry-After", "x-request-id"],
      maxAge: 600,
    }),
  );
  for (const m of deps.middleware ?? []) app.use("*", m);
  if (deps.auth) app.use("/search", deps.auth);

  const limitBody = bodyLimit({
    maxSize: cfg.maxBodyBytes,
    onError: () => {
      throw new DomainError("payload_too_large", 413, `request body exceeds ${cfg.maxBodyBytes} bytes`);
    },
  });

  const embedderCache = new WeakMap<SnapshotManifest, Promise<Embedder>>();
  const embedderOf = (snapshot: LoadedSnapshot): Promise<Embedder> => {
    let p = embedderCache.get(snapshot.manifest);
    if (!p) {
      p = deps.embedderFor(snapshot.manifest).catch((e) => {
        embedderCache.delete(snapshot.manifest);
        if (isDomainError(e)) throw e;
        throw new EmbedderUnavailableError(`query embedder could not be created: ${(e as Error).message}`, e);
      });
      embedderCache.set(snapshot.manifest, p);
    }
    return p;
  };

  async function runSearch(c: Context, req: ParsedSearch): Promise<Response> {
    const snapshot = await deps.snapshots.current();
    const embedder = await embedderOf(snapshot);
    const response = await searchTwoStage(
      { ...req, budget_ms: req.budget_ms ?? cfg.budgetMs },
      {
        snapshot,
        embedder,
        reranker: deps.reranker,
        estimate,
        clock: deps.clock,
        limits,
        rerankTimeoutMs: cfg.rerankerTimeoutMs,
      },
    );
    // A deployment without a reranker (RERANKER=none) is not degraded; its warning stays in the response only.
    if (response.warnings.length > 0 && rerankerConfigured)
      deps.log?.warn("search degraded", { warnings: response.warnings });
    deps.hooks?.onSearch?.(c, response);
    c.header("Server-Timing", serverTiming(response.timings));
    return c.json(response, 200);
  }

  const errorResponses = {
    400: {
      description: "Invalid request; the message names the field.",
      content: { "application/json": { schema: errorSchema } },
    },
    413: { description: "Request body too large.", content: { "application/json": { schema: errorSchema } } },
    503: {
      description: "No index published yet, or the query embedder is unavailable (see Retry-After).",
      content: { "application/json": { schema: errorSchema } },
    },
  };
  const okResponse = {
    description: "Ranked passages with per-stage scores, warnings and timings (also in the Server-Timing header).",
    content: { "application/json": { schema: searchResponseSchema } },
  };

  const bodySchema = searchBodySchema(cfg);
  app.openapi(
    createRoute({
      method: "post",
      path: "/search",
      summary: "Two-stage search",
      middleware: [limitBody] as const,
      request: { body: { required: true, content: { "application/json": { schema: bodySchema } } } },
      responses: { 200: okResponse, ...errorResponses },
    }),
    (c) => runSearch(c, c.req.valid("json") as ParsedSearch) as never,
  );

  const querySchema = searchQuerySchema(cfg);
  app.openapi(
    createRoute({
      method: "get",
      path: "/search",
      summary: "Two-stage search (query string)",
      request: { query: querySchema },
      responses: { 200: okResponse, 400: errorResponses[400], 503: errorResponses[503] },
    }),
    (c) => runSearch(c, c.req.valid("query") as ParsedSearch) as never,
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/health",
      summary: "Service health: the snapshot served, embedder, reranker and store",
      responses: {
        200: { description: "Serving.", content: { "application/json": { schema: healthSchema } } },
        503: {
          description: "No snapshot yet (see Retry-After).",
          content: { "application/json": { schema: healthSchema } },
        },
      },
    }),
    (async (c: Context) => {
      // Loading here (rather than only reading status) makes a health check warm a cold instance.
      let snapshot: LoadedSnapshot | null = null;
      let failure: DomainError | null = null;
      try {
        snapshot = await deps.snapshots.current();
      } catch (e) {
        failure = toDomainError(e);
      }
      const s = deps.snapshots.status();
      const reranker = deps.reranker;
      const rerankerStatus = (reranker as { status?: () => object } | null)?.status?.();
      const body = {
        status: snapshot ? ("ok" as const) : ("unavailable" as const),
        index: snapshot
          ? {
              version: snapshot.version,
              count: snapshot.index.count,
              age_s: s.ageS,
              ...(s.loadMs !== undefined ? { load_ms: s.loadMs } : {}),
              // Lazily read passage texts: "lazy" | "filling" | "memory", cached bytes, block reads.
              passages: { texts: "memory", ...(snapshot.passages.describe?.() ?? {}) },
              type: snapshot.manifest.index_type,
              // What the loaded index applied (INDEX_SEARCH_PARAMS included), else what the build recorded.
              params: { ...(snapshot.index.params ?? snapshot.manifest.index_params ?? {}) },
            }
          : null,
        embedder: { setting: cfg.embedder, identity: snapshot ? { ...snapshot.manifest.embedder } : null },
        reranker: { ...(reranker?.describe() ?? { kind: "none" }), ...(rerankerStatus ?? {}) },
        store: deps.store
          ? {
              kind: deps.store.kind,
              ...(deps.store.bucket ? { bucket: deps.store.bucket } : {}),
              ...(deps.store.endpoint ? { endpoint: deps.store.endpoint } : {}),
            }
          : null,
        cold: s.cold,
        ...(failure ? errorBody(failure) : {}),
      };
      if (!snapshot) {
        c.header("Retry-After", String(failure?.retryAfterS ?? 5));
        return c.json(body, 503);
      }
      return c.json(body, 200);
    }) as never,
  );

  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Two-stage retrieval: search API",
      version: "1",
      description:
        "Finds first-stage candidates in a snapshot's FAISS index, its BM25 index, or both fused (hybrid), reranks the best of them with a cross-encoder, fuses the scores. Errors are {error: {code, message}}.",
    },
  });

  deps.routes?.(app);
  app.get("/", (c) =>
    c.json({
      service: "two-stage retrieval search",
      endpoints: ["POST /search", "GET /search?q=", "GET /health", "GET /openapi.json"],
    }),
  );
  return app;
}
