// API-key authentication, per-key rate limiting and usage metering as Hono middleware, plus the
// key owner's usage endpoint. Mount after requestLogging() (so rejected calls are logged too) and before
// the routes that bill.
import { randomBytes } from "node:crypto";
import { Hono, type MiddlewareHandler } from "hono";
import { parseApiKey } from "../core/api-keys.ts";
import type { Config } from "../core/config.ts";
import { isDomainError } from "../core/errors.ts";
import { type Clock, type ObjectStore, systemClock } from "../core/ports.ts";
import { type RateLimiter, createRateLimiter } from "../core/rate-limit.ts";
import { type UsageMeter, type UsageReport, countsFor, createUsageMeter, readUsage, utcDay } from "../core/usage.ts";
import { type KeyStore, createKeyStore } from "../adapters/key-store.ts";
import { getObservation, requestLog } from "../adapters/observability.ts";

export type AuthMode = "off" | "required";

export interface ApiKeyAuthOptions {
  /** AUTH_MODE: "off" lets every request through untouched (the local stack runs open). */
  mode: AuthMode;
  keys: Pick<KeyStore, "verify">;
  limiter: RateLimiter;
  /** Per-key counters; omit to authenticate without metering. */
  usage?: UsageMeter;
  /** Header carrying the key; `Authorization: Bearer <key>` is accepted as well. */
  header?: string;
  /**
   * How a due usage flush runs after a response: "background" (servers: never delays a response) or
   * "inline" (Lambda: work after the response may be frozen with the instance, so the flush is awaited).
   */
  flush?: "background" | "inline";
}

const MISSING_MESSAGE = "Missing API key: send it in the x-api-key header or as Authorization: Bearer <key>.";
// One message for malformed, unknown, wrong-secret and revoked keys, so responses reveal nothing about which.
const INVALID_MESSAGE = "Invalid API key.";
const CHALLENGE = { "WWW-Authenticate": 'Bearer realm="api"' };

export function presentedKey(
  headers: { header(name: string): string | undefined },
  headerName: string,
): string | undefined {
  const direct = headers.header(headerName)?.trim();
  if (direct) return direct;
  const auth = headers.header("authorization")?.trim();
  const m = auth ? /^Bearer\s+(\S+)$/i.exec(auth) : null;
  return m ? m[1] : undefined;
}

export function apiKeyAuth(opts: ApiKeyAuthOptions): MiddlewareHandler {
  const headerName = (opts.header ?? "x-api-key").toLowerCase();
  const flushMode = opts.flush ?? "background";
  return async (c, next) => {
    // Open mode, or an outer apiKeyAuth already handled this request (mounted twice): nothing to do.
    if (opts.mode === "off" || c.get("keyId")) return next();

    const presented = presentedKey(c.req, headerName);
    if (!presented) return c.json({ error: { code: "unauthorized", message: MISSING_MESSAGE } }, 401, CHALLENGE);

    const check = await opts.keys.verify(presented);
    if (!check.ok) {
      // The reason and key id (not secret) go to the log only.
      requestLog(c).info("api key rejected", { reason: check.reason, key_id: parseApiKey(presented)?.keyId });
      return c.json({ error: { code: "unauthorized", message: INVALID_MESSAGE } }, 401, CHALLENGE);
    }
    const keyId = check.record.key_id;
    c.set("keyId", keyId);

    const decision = opts.limiter.take(keyId, check.record.rate);
    if (!decision.allowed) {
      c.header("Retry-After", String(decision.retryAfterS));
      return c.json(
        {
          error: {
            code: "rate_limited",
            message: `Rate limit exceeded for this API key; retry after ${decision.retryAfterS} s.`,
          },
        },
        429,
      );
    }

    await next();

    if (!opts.usage) return;
    opts.usage.record(keyId, countsFor(getObservation(c), c.res.status));
    const flushing = opts.usage.maybeFlush().then(
      (r) => {
        if (r && r.failed > 0) requestLog(c).warn("usage flush incomplete", { failed: r.failed, errors: r.errors });
      },
      (e) => requestLog(c).warn("usage flush failed", { error: e }),
    );
    if (flushMode === "inline") await flushing;
  };
}

/** Runs `mw` only for the given paths (e.g. API keys on /rerank but not on /health). */
export function forPaths(paths: string[], mw: MiddlewareHandler): MiddlewareHandler {
  const wanted = new Set(paths);
  return (c, next) => (wanted.has(c.req.path) ? mw(c, next) : next());
}

export interface UsageRoutesOptions {
  /** This instance's meter: flushed before reading so the caller sees its latest requests. */
  usage: UsageMeter;
  store: ObjectStore;
  /** USAGE_PREFIX */
  prefix: string;
  /** Applied to the route when given (skip when the parent app already authenticates /usage). */
  auth?: MiddlewareHandler;
  /** Wall clock for the default range. */
  now?: () => number;
}

/**
 * `GET /usage?from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC days, inclusive; default: the last 30 days): the
 * calling key's own counters. There is no way to name another key: the key id comes from the
 * authenticated request only.
 */
export function usageRoutes(opts: UsageRoutesOptions): Hono {
  const app = new Hono();
  const now = opts.now ?? Date.now;
  if (opts.auth) app.use("/usage", opts.auth);
  app.get("/usage", async (c) => {
    const keyId = c.get("keyId" as never) as string | undefined;
    if (!keyId) {
      return c.json(
        { error: { code: "unauthorized", message: "Usage is kept per API key; call this with your key." } },
        401,
      );
    }
    const to = c.req.query("to") ?? utcDay(now());
    const from = c.req.query("from") ?? utcDay((Date.parse(`${to}T00:00:00Z`) || now()) - 29 * 86_400_000);
    const flushed = await opts.usage.flush();
    if (flushed.failed > 0)
      requestLog(c).warn("usage flush incomplete", { failed: flushed.failed, errors: flushed.errors });
    let report: UsageReport;
    try {
      report = await readUsage(opts.store, opts.prefix, keyId, from, to);
    } catch (e) {
      if (isDomainError(e) && e.status < 500)
        return c.json({ error: { code: e.code, message: e.message } }, e.status as 400);
      throw e;
    }
    return c.json({ ...report, unflushed: opts.usage.unflushed(keyId) });
  });
  return app;
}

export type SecurityConfig = Pick<
  Config,
  "authMode" | "apiKeysPrefix" | "apiKeyCacheTtlS" | "rateLimitRps" | "rateLimitBurst" | "usagePrefix" | "usageFlushS"
>;

export interface ApiKeySecurity {
  keys: KeyStore;
  limiter: RateLimiter;
  usage: UsageMeter;
  /** apiKeyAuth for the billed routes (a no-op when AUTH_MODE=off). */
  auth: MiddlewareHandler;
  /** GET /usage, authenticated with `auth`; mount with `app.route("/", security.usageApp)`. */
  usageApp: Hono;
}

/**
 * Everything API keys need for one warm instance, from the configuration: key store (cached for
 * API_KEY_CACHE_TTL_S), rate limiter (RATE_LIMIT_RPS / RATE_LIMIT_BURST), usage meter (USAGE_PREFIX,
 * flushed every USAGE_FLUSH_S) with a random writer id, the middleware and the usage route.
 */
export function createApiKeySecurity(
  cfg: SecurityConfig,
  store: ObjectStore,
  opts: { flush?: "background" | "inline"; clock?: Clock; header?: string } = {},
): ApiKeySecurity {
  const clock = opts.clock ?? systemClock;
  const keys = createKeyStore({ store, prefix: cfg.apiKeysPrefix, cacheTtlMs: cfg.apiKeyCacheTtlS * 1000, clock });
  const limiter = createRateLimiter({ defaults: { rps: cfg.rateLimitRps, burst: cfg.rateLimitBurst }, clock });
  const usage = createUsageMeter({
    store,
    prefix: cfg.usagePrefix,
    writerId: randomBytes(8).toString("hex"),
    flushIntervalMs: cfg.usageFlushS * 1000,
  });
  const auth = apiKeyAuth({ mode: cfg.authMode, keys, limiter, usage, flush: opts.flush, header: opts.header });
  return { keys, limiter, usage, auth, usageApp: usageRoutes({ usage, store, prefix: cfg.usagePrefix, auth }) };
}
