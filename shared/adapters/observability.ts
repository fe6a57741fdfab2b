// Logs and metrics through Powertools for AWS Lambda: one JSON object per log line, EMF metrics on
// stdout. The core measures (timings, pairs, tokens) and hands them over in a RequestObservation; this
// adapter emits them. Every log line and EMF blob passes the redactor, so no key, token or provider
// secret is written, whatever a caller puts in a message, an attribute or an error.
import { randomUUID } from "node:crypto";
import { Logger } from "@aws-lambda-powertools/logger";
import type { LogLevel } from "@aws-lambda-powertools/logger/types";
import { MetricUnit, Metrics } from "@aws-lambda-powertools/metrics";
import type { Context, MiddlewareHandler } from "hono";
import { settings } from "../core/config.ts";
import { type ErrorCode, isDomainError } from "../core/errors.ts";
import { type Redactor, SECRET_ENV_VARS, createRedactor } from "../core/redact.ts";
import type { SearchResponse } from "../core/search.ts";
import type { RerankResponse } from "../core/types.ts";
import type { RequestObservation } from "../core/usage.ts";

type Env = Record<string, string | undefined>;

export interface ObservabilityOptions {
  /** POWERTOOLS_SERVICE_NAME */
  serviceName: string;
  /** LOG_LEVEL */
  logLevel: "DEBUG" | "INFO" | "WARN" | "ERROR" | "SILENT";
  /** POWERTOOLS_METRICS_NAMESPACE */
  namespace: string;
  /** Secret values to scrub wherever they appear (defaults: OPENAI_API_KEY, RERANKER_TOKEN, AWS secrets). */
  secrets: string[];
}

/**
 * Reads only the observability settings, never failing: logging must come up even when another
 * setting is invalid (that error is what needs logging). An invalid value falls back to its default.
 */
export function observabilityOptionsFromEnv(env: Env = process.env): ObservabilityOptions {
  const read = <T>(spec: { env: string; fallback: T; parse: (raw: string, env: string) => T }): T => {
    const raw = env[spec.env];
    if (raw === undefined || raw === "") return spec.fallback;
    try {
      return spec.parse(raw, spec.env);
    } catch {
      return spec.fallback;
    }
  };
  return {
    serviceName: read(settings.serviceName),
    logLevel: read(settings.logLevel),
    namespace: read(settings.metricsNamespace),
    secrets: SECRET_ENV_VARS.map((v) => env[v]).filter((v): v is string => !!v),
  };
}

type ConsoleLike = Record<string, (...args: unknown[]) => void>;

/** Final pass over each printed line: catches anything that bypassed the structured replacer. */
function scrubConsole(owner: object, redactor: Redactor) {
  const target = owner as { console?: ConsoleLike };
  const original = target.console;
  if (!original) return;
  const wrapped: ConsoleLike = Object.create(original);
  for (const method of ["log", "info", "warn", "error", "debug", "trace"]) {
    const fn = original[method]?.bind(original);
    if (fn)
      wrapped[method] = (...args: unknown[]) =>
        fn(...args.map((a) => (typeof a === "string" ? redactor.redactLine(a) : a)));
  }
  target.console = wrapped;
}

/**
 * Scrubs what other code prints with console.* (SDK warnings, Hono's default error handler, stray
 * debug lines): strings are redacted, errors are replaced by redacted copies, objects deep-redacted.
 * Function handlers call it once at module scope: `redactConsole(console)`.
 */
export function redactConsole(target: Console = console, scrub: Redactor = redactor): void {
  const marker = Symbol.for("tsr.redacted-console");
  const t = target as unknown as Record<string | symbol, unknown>;
  if (t[marker]) return;
  t[marker] = true;
  const clean = (a: unknown): unknown => {
    if (typeof a === "string") return scrub.redactText(a);
    if (a instanceof Error) {
      const copy = new Error(scrub.redactText(a.message));
      copy.name = a.name;
      copy.stack = a.stack ? scrub.redactText(a.stack) : undefined;
      if (a.cause !== undefined) (copy as { cause?: unknown }).cause = clean(a.cause);
      return copy;
    }
    return a !== null && typeof a === "object" ? scrub.redactValue(a) : a;
  };
  for (const method of ["log", "info", "warn", "error", "debug", "trace"] as const) {
    const original = target[method].bind(target);
    target[method] = (...args: unknown[]) => original(...args.map(clean));
  }
}

export function createLogger(opts: ObservabilityOptions, redactor: Redactor = createRedactor(opts.secrets)): Logger {
  const logger = new Logger({
    serviceName: opts.serviceName,
    logLevel: opts.logLevel as LogLevel,
    // Runs on every key/value before serialisation, errors' message/stack and nested causes included.
    jsonReplacerFn: redactor.replacer,
  });
  scrubConsole(logger, redactor);
  return logger;
}

export function createMetrics(opts: ObservabilityOptions, redactor: Redactor = createRedactor(opts.secrets)): Metrics {
  const metrics = new Metrics({ namespace: opts.namespace, serviceName: opts.serviceName });
  scrubConsole(metrics, redactor);
  return metrics;
}

// Module scope: built once per warm instance, as Powertools intends.
export const observabilityOptions = observabilityOptionsFromEnv();
export const redactor = createRedactor(observabilityOptions.secrets);
export const logger = createLogger(observabilityOptions, redactor);
export const metrics = createMetrics(observabilityOptions, redactor);

/**
 * The JSON error a response may carry for any thrown value: domain errors keep their code, status and
 * (redacted) message; anything else becomes a generic 500 so internals and secrets never reach clients.
 */
export function errorResponseBody(
  err: unknown,
  scrub: Redactor = redactor,
): { status: number; body: { error: { code: ErrorCode; message: string } }; headers: Record<string, string> } {
  if (isDomainError(err)) {
    return {
      status: err.status,
      body: { error: { code: err.code, message: scrub.redactText(err.message) } },
      headers: err.retryAfterS !== undefined ? { "Retry-After": String(err.retryAfterS) } : {},
    };
  }
  return { status: 500, body: { error: { code: "internal", message: "Internal error" } }, headers: {} };
}

// ---------- per-request context (Hono variables) ----------

/** Request-scoped log functions: each line carries request_id and key_id (never the key). */
export interface RequestLog {
  debug(message: string, extra?: Record<string, unknown>): void;
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

/** Variables this module and the auth middleware put on the Hono context. */
export interface ObservabilityVariables {
  requestId: string;
  log: RequestLog;
  keyId?: string;
  observation?: RequestObservation;
}

/** Hono env for apps using requestLogging()/apiKeyAuth(): `new Hono<ObservedEnv>()` types c.get("keyId") etc. */
export type ObservedEnv = { Variables: ObservabilityVariables };

/** Adds to what the current request consumed (numbers add up; timings and flags are replaced). */
export function observe(c: Context, obs: RequestObservation): void {
  const prev = (c.get("observation") as RequestObservation | undefined) ?? {};
  const sum = (a?: number, b?: number) => (a === undefined && b === undefined ? undefined : (a ?? 0) + (b ?? 0));
  const next: RequestObservation = {
    queries: sum(prev.queries, obs.queries),
    rerankPairs: sum(prev.rerankPairs, obs.rerankPairs),
    embeddingTokens: sum(prev.embeddingTokens, obs.embeddingTokens),
    cacheHits: sum(prev.cacheHits, obs.cacheHits),
    rerankCacheHits: sum(prev.rerankCacheHits, obs.rerankCacheHits),
    rerankCacheMisses: sum(prev.rerankCacheMisses, obs.rerankCacheMisses),
    shardsMissing: sum(prev.shardsMissing, obs.shardsMissing),
    degraded: obs.degraded ?? prev.degraded,
    timings: prev.timings || obs.timings ? { ...prev.timings, ...obs.timings } : undefined,
  };
  c.set("observation", next);
}

/**
 * What a search consumed, from its response: one query, the reranked pairs, stage timings; degraded
 * when a configured reranker did not score (failure, timeout or budget). Embedding tokens are not in
 * the response, so pass them when the caller knows them.
 */
export function searchObservation(
  response: SearchResponse,
  opts: { rerankerConfigured: boolean; embeddingTokens?: number; cacheHits?: number },
): RequestObservation {
  return {
    queries: 1,
    rerankPairs: response.reranked ? response.reranked_candidates : 0,
    embeddingTokens: opts.embeddingTokens,
    cacheHits: opts.cacheHits,
    // Missing index shards degrade a search as a failed reranker does.
    degraded: (opts.rerankerConfigured && !response.reranked) || (response.shards?.missing.length ?? 0) > 0,
    ...(response.shards ? { shardsMissing: response.shards.missing.length } : {}),
    timings: { ...response.timings },
  };
}

/** What a /rerank call consumed (pairs the model scored; score-cache hits and misses when consulted). */
export function rerankObservation(response: RerankResponse): RequestObservation {
  const cache = response.meta.cache;
  return {
    rerankPairs: response.meta.pairs,
    ...(cache ? { rerankCacheHits: cache.hits, rerankCacheMisses: cache.misses } : {}),
    timings: { rerank_ms: response.meta.timings.total_ms },
  };
}

export function getObservation(c: Context): RequestObservation | undefined {
  return c.get("observation") as RequestObservation | undefined;
}

/** The request-scoped logger set by requestLogging(), or a plain one outside it. */
export function requestLog(c: Context, fallback: Logger = logger): RequestLog {
  return (c.get("log") as RequestLog | undefined) ?? bindLog(fallback, () => ({}));
}

function bindLog(base: Logger, attrs: () => Record<string, unknown>): RequestLog {
  return {
    debug: (m, extra) => base.debug(m, { ...attrs(), ...extra }),
    info: (m, extra) => base.info(m, { ...attrs(), ...extra }),
    warn: (m, extra) => base.warn(m, { ...attrs(), ...extra }),
    error: (m, extra) => base.error(m, { ...attrs(), ...extra }),
  };
}

const REQUEST_ID = /^[A-Za-z0-9._:=-]{1,128}$/;

/** API Gateway's request id when the Lambda adapter provides one, else a well-formed x-request-id, else a new one. */
export function resolveRequestId(c: Context): string {
  const env = c.env as
    | { requestContext?: { requestId?: string }; event?: { requestContext?: { requestId?: string } } }
    | undefined;
  const fromGateway = env?.requestContext?.requestId ?? env?.event?.requestContext?.requestId;
  if (typeof fromGateway === "string" && REQUEST_ID.test(fromGateway)) return fromGateway;
  const fromHeader = c.req.header("x-request-id");
  if (fromHeader && REQUEST_ID.test(fromHeader)) return fromHeader;
  return randomUUID();
}

export interface RequestLoggingOptions {
  logger?: Logger;
  /** Omit to log without metrics. */
  metrics?: Metrics;
}

let coldStart = true;

async function errorCodeOf(c: Context): Promise<string | undefined> {
  if (c.error && isDomainError(c.error)) return c.error.code;
  if (c.res.status < 400) return undefined;
  if (!c.res.headers.get("content-type")?.includes("json")) return `http_${c.res.status}`;
  try {
    const body = (await c.res.clone().json()) as { error?: { code?: unknown } };
    const code = body?.error?.code;
    return typeof code === "string" && /^[a-z_]{1,64}$/.test(code) ? code : `http_${c.res.status}`;
  } catch {
    return `http_${c.res.status}`;
  }
}

/**
 * One log line per request (method, path without query string, status, duration, request id, key id,
 * consumption) and one EMF blob of metrics. Mount it first so it sees auth failures too.
 */
export function requestLogging(opts: RequestLoggingOptions = {}): MiddlewareHandler {
  const log = opts.logger ?? logger;
  const m = opts.metrics;
  return async (c, next) => {
    const started = performance.now();
    const requestId = resolveRequestId(c);
    const isCold = coldStart;
    coldStart = false;
    c.set("requestId", requestId);
    c.set(
      "log",
      bindLog(log, () => ({ request_id: requestId, key_id: c.get("keyId") as string | undefined })),
    );
    c.header("x-request-id", requestId);
    let thrown: unknown;
    try {
      await next();
    } catch (e) {
      thrown = e;
    }
    const durationMs = Math.round((performance.now() - started) * 100) / 100;
    const status = thrown ? 500 : c.res.status;
    const obs = getObservation(c);
    const keyId = c.get("keyId") as string | undefined;
    const errorCode = thrown ? (isDomainError(thrown) ? thrown.code : "internal") : await errorCodeOf(c);
    const err = thrown ?? c.error;
    const line: Record<string, unknown> = {
      request_id: requestId,
      key_id: keyId,
      cold_start: isCold,
      method: c.req.method,
      path: c.req.path,
      status,
      duration_ms: durationMs,
      ...(errorCode ? { error_code: errorCode } : {}),
      ...(obs?.timings ? { timings: obs.timings } : {}),
      ...(obs?.rerankPairs ? { rerank_pairs: obs.rerankPairs } : {}),
      ...(obs?.embeddingTokens ? { embedding_tokens: obs.embeddingTokens } : {}),
      ...(obs?.cacheHits ? { cache_hits: obs.cacheHits } : {}),
      ...(obs?.rerankCacheHits !== undefined || obs?.rerankCacheMisses !== undefined
        ? { rerank_cache: { hits: obs.rerankCacheHits ?? 0, misses: obs.rerankCacheMisses ?? 0 } }
        : {}),
      ...(obs?.shardsMissing ? { shards_missing: obs.shardsMissing } : {}),
      ...(obs?.degraded ? { degraded: true } : {}),
    };
    if (status >= 500) log.error("request failed", { ...line, ...(err ? { error: err } : {}) });
    else log.info("request", line);

    if (m) {
      // Synchronous from first addMetric to publish, so concurrent requests on one instance never mix.
      m.addMetric("Requests", MetricUnit.Count, 1);
      m.addMetric("TotalLatency", MetricUnit.Milliseconds, obs?.timings?.total_ms ?? durationMs);
      if (obs?.timings?.embed_ms !== undefined)
        m.addMetric("EmbedLatency", MetricUnit.Milliseconds, obs.timings.embed_ms);
      if (obs?.timings?.search_ms !== undefined)
        m.addMetric("SearchLatency", MetricUnit.Milliseconds, obs.timings.search_ms);
      if (obs?.timings?.sparse_ms !== undefined)
        m.addMetric("SparseSearchLatency", MetricUnit.Milliseconds, obs.timings.sparse_ms);
      if (obs?.timings?.texts_ms !== undefined)
        m.addMetric("PassageTextLatency", MetricUnit.Milliseconds, obs.timings.texts_ms);
      if (obs?.timings?.rerank_ms !== undefined)
        m.addMetric("RerankLatency", MetricUnit.Milliseconds, obs.timings.rerank_ms);
      if (obs?.rerankPairs) m.addMetric("RerankPairs", MetricUnit.Count, obs.rerankPairs);
      if (obs?.embeddingTokens) m.addMetric("EmbeddingTokens", MetricUnit.Count, obs.embeddingTokens);
      if (obs?.cacheHits) m.addMetric("CacheHits", MetricUnit.Count, obs.cacheHits);
      // Both, zeros included, whenever the score cache was consulted: the hit rate is their ratio.
      if (obs?.rerankCacheHits !== undefined || obs?.rerankCacheMisses !== undefined) {
        m.addMetric("RerankCacheHits", MetricUnit.Count, obs.rerankCacheHits ?? 0);
        m.addMetric("RerankCacheMisses", MetricUnit.Count, obs.rerankCacheMisses ?? 0);
      }
      if (obs?.degraded) m.addMetric("DegradedResponses", MetricUnit.Count, 1);
      // Zeros included on every fan-out search, so the metric's average is the share of shards lost.
      if (obs?.shardsMissing !== undefined) m.addMetric("ShardsMissing", MetricUnit.Count, obs.shardsMissing);
      m.addMetadata("request_id", requestId);
      if (keyId) m.addMetadata("key_id", keyId);
      m.publishStoredMetrics();
      if (errorCode) {
        const single = m.singleMetric();
        scrubConsole(single, redactor);
        single.addDimension("error_code", errorCode);
        single.addMetric("Errors", MetricUnit.Count, 1);
      }
    }
    if (thrown) throw thrown;
  };
}
