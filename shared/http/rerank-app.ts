// The reranker over HTTP (`POST /rerank`, `GET /health`) and as a Lambda direct-invoke handler.
// Request fields follow Cohere Rerank / Infinity (query, documents, top_n, return_documents,
// raw_scores, max_tokens_per_doc) and accept TEI's names (texts, return_text); responses are
// {results:[{index, relevance_score, logit, id?, document?}], meta}. Errors are
// {error:{code, message}} with the DomainError's status.
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { DomainError, isDomainError, ValidationError } from "../core/errors.ts";
import type { RerankerPort } from "../core/ports.ts";
import { DEFAULT_RERANK_LIMITS, type RerankLimits, validateRerankRequest } from "../core/rerank.ts";
import type { RerankRequest, RerankResponse } from "../core/types.ts";
import { logger, observe, requestLog, rerankObservation } from "../adapters/observability.ts";

/** What /health reports beyond describe() when the reranker knows it (the local reranker does). */
export interface RerankerHealth {
  warm: boolean;
  loading?: boolean;
  /** The provider asked for; /health is degraded when an explicit one is not the one in use. */
  requestedProvider?: string;
  model?: string;
  provider?: string;
  fallbacks?: ReadonlyArray<{ provider: string; reason: string }>;
  fixture?: boolean;
  maxLength?: number;
  modelFile?: string;
  precision?: string;
  error?: string;
}

export interface RerankAppOptions {
  reranker: RerankerPort & { status?(): RerankerHealth };
  limits?: Partial<RerankLimits> & {
    /** Largest accepted request body (default 6 MiB, Lambda's synchronous payload limit). */
    maxBodyBytes?: number;
  };
  /** When set, every /rerank call must carry `Authorization: Bearer <token>` (RERANKER_TOKEN). */
  token?: string;
  /** Extra middleware mounted before the routes (logging, API keys). */
  middleware?: MiddlewareHandler[];
}

export const DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024;

const documentSchema = z.union([
  z.string(),
  z.looseObject({
    id: z.string().optional(),
    text: z.string(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  }),
]);

/** Shape check at the edge; the core's validateRerankRequest then checks values and limits. */
const bodySchema = z.looseObject({
  query: z.string(),
  documents: z.array(documentSchema).optional(),
  texts: z.array(z.string()).optional(),
  model: z.string().optional(),
  top_n: z.number().int().nullish(),
  return_documents: z.boolean().nullish(),
  return_text: z.boolean().nullish(),
  raw_scores: z.boolean().nullish(),
  truncate: z.boolean().nullish(),
  max_tokens_per_doc: z.number().int().nullish(),
  long_document_strategy: z.enum(["truncate", "chunk"]).nullish(),
  term_statistics: z.unknown().optional(),
});

function fieldOf(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>(
    (acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
    "",
  );
}

/** Turns a Cohere/Infinity/TEI-style body into a RerankRequest (TEI's `texts`/`return_text` renamed). */
export function parseRerankBody(body: unknown, limits: RerankLimits = DEFAULT_RERANK_LIMITS): RerankRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ValidationError("request body must be a JSON object with `query` and `documents`");
  }
  const raw = body as Record<string, unknown>;
  if (raw.documents !== undefined && raw.texts !== undefined) {
    throw new ValidationError("give either `documents` or `texts` (TEI's name), not both", { field: "documents" });
  }
  // The core's checks come first: their messages name the exact field and limit.
  const req = validateRerankRequest(
    {
      query: raw.query,
      documents: raw.documents ?? raw.texts,
      top_n: raw.top_n,
      return_documents: raw.return_documents ?? raw.return_text,
      raw_scores: raw.raw_scores,
      max_tokens_per_doc: raw.max_tokens_per_doc,
      long_document_strategy: raw.long_document_strategy,
      term_statistics: raw.term_statistics,
    },
    limits,
  );
  // Then the rest of the wire format (aliases, fields we accept and ignore).
  const parsed = bodySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = fieldOf(issue.path);
    throw new ValidationError(`\`${field || "body"}\`: ${describeIssue(issue)}`, { field });
  }
  // Documents are passed on as sent (ids and metadata untouched).
  return req;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_union") return "must be a string or an object with a string `text`";
  if (issue.code === "invalid_type") return `expected ${issue.expected}`;
  return issue.message;
}

export function errorBody(e: DomainError): { error: { code: string; message: string } } {
  return { error: { code: e.code, message: e.message } };
}

/** Maps any thrown value to a DomainError (unknown errors become a 500 that reveals nothing internal). */
export function toDomainError(e: unknown): DomainError {
  if (isDomainError(e)) return e;
  if ((e as Error)?.name === "AbortError" || (e as Error)?.name === "TimeoutError") {
    return new DomainError("reranker_unavailable", 503, "rerank call was aborted or timed out", {
      cause: e,
      retryAfterS: 1,
    });
  }
  return new DomainError("internal", 500, "internal error while reranking", { cause: e });
}

/** Refuses a body over `maxBytes` with a 413 in the `{error}` shape. */
export function jsonBodyLimit(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: (c) =>
      c.json(errorBody(new DomainError("payload_too_large", 413, `request body exceeds ${maxBytes} bytes`)), 413),
  });
}

function respondError(c: Context, e: unknown): Response {
  const err = toDomainError(e);
  if (err.status >= 500) requestLog(c).error(`rerank: ${err.code}: ${err.message}`, { error: err.cause ?? err });
  if (err.retryAfterS) c.header("Retry-After", String(err.retryAfterS));
  return c.json(errorBody(err), err.status as 400);
}

export function createRerankApp(opts: RerankAppOptions): Hono {
  const limits: RerankLimits = {
    maxDocuments: opts.limits?.maxDocuments ?? DEFAULT_RERANK_LIMITS.maxDocuments,
    maxQueryChars: opts.limits?.maxQueryChars,
  };
  const maxBodyBytes = opts.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const app = new Hono();

  app.onError((e, c) => respondError(c, e));
  app.notFound((c) =>
    c.json(errorBody(new DomainError("not_found", 404, `no route ${c.req.method} ${c.req.path}`)), 404),
  );
  for (const m of opts.middleware ?? []) app.use(m);

  app.get("/health", (c) => {
    const d = opts.reranker.describe();
    const s = opts.reranker.status?.();
    // An explicitly requested provider that could not start (a GPU task without its GPU) makes the
    // service unhealthy rather than quietly slower; "auto" accepts whatever started.
    const degraded = !!(
      s?.warm &&
      s.requestedProvider &&
      s.requestedProvider !== "auto" &&
      s.provider !== s.requestedProvider
    );
    const body = {
      status: s?.error ? "error" : degraded ? "degraded" : s && !s.warm ? "cold" : "ok",
      kind: d.kind,
      warm: s?.warm ?? true,
      model: s?.model ?? d.model ?? null,
      provider: s?.provider ?? d.provider ?? null,
      ...(s?.requestedProvider ? { requested_provider: s.requestedProvider } : {}),
      fallbacks: s?.fallbacks ?? [],
      fixture: s?.fixture ?? d.fixture ?? false,
      ...(s?.maxLength ? { max_length: s.maxLength } : {}),
      ...(s?.modelFile ? { model_file: s.modelFile } : {}),
      ...(s?.precision ? { precision: s.precision } : {}),
      ...(s?.error ? { error: s.error } : {}),
      limits: { max_documents: limits.maxDocuments, max_body_bytes: maxBodyBytes },
    };
    // A model that failed to load makes the service unhealthy, so balancers route elsewhere.
    return c.json(body, s?.error || degraded ? 503 : 200);
  });

  app.post(
    "/rerank",
    async (c, next) => {
      if (!opts.token) return next();
      const auth = c.req.header("authorization") ?? "";
      if (auth !== `Bearer ${opts.token}`) {
        c.header("WWW-Authenticate", 'Bearer realm="reranker"');
        return c.json(errorBody(new DomainError("unauthorized", 401, "missing or wrong bearer token")), 401);
      }
      return next();
    },
    jsonBodyLimit(maxBodyBytes),
    async (c) => {
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        throw new ValidationError("request body is not valid JSON");
      }
      const req = parseRerankBody(body, limits);
      const res: RerankResponse = await opts.reranker.rerank(req, { signal: c.req.raw.signal });
      observe(c, rerankObservation(res));
      return c.json(res);
    },
  );

  return app;
}

export type RerankInvokeResult = RerankResponse | { error: { code: string; message: string; status: number } };

/**
 * Lambda direct invocation: the event is the request body; errors come back as values, not throws.
 * `reranker` may be a factory, so configuration errors are answered like any other error.
 */
export async function handleRerankInvoke(
  reranker: (RerankerPort & { limits?: RerankLimits }) | (() => RerankerPort & { limits?: RerankLimits }),
  event: unknown,
): Promise<RerankInvokeResult> {
  try {
    const port = typeof reranker === "function" ? reranker() : reranker;
    const body = typeof event === "string" ? JSON.parse(event) : event;
    return await port.rerank(parseRerankBody(body, port.limits), {});
  } catch (e) {
    const err = e instanceof SyntaxError ? new ValidationError("event is not valid JSON") : toDomainError(e);
    if (err.status >= 500) logger.error(`rerank: ${err.code}: ${err.message}`, { error: err.cause ?? err });
    return { error: { code: err.code, message: err.message, status: err.status } };
  }
}
