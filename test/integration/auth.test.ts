// API keys, rate limits and usage metering through real HTTP on loopback, keys and counters in the
// filesystem store.
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDomainError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { createRateLimiter } from "../../shared/core/rate-limit.ts";
import { createUsageMeter, readUsage } from "../../shared/core/usage.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createKeyStore } from "../../shared/adapters/key-store.ts";
import { type ObservedEnv, createLogger, observe, requestLogging } from "../../shared/adapters/observability.ts";
import { type AuthMode, apiKeyAuth, usageRoutes } from "../../shared/http/auth.ts";

const KEYS_PREFIX = "auth/keys/";
const USAGE_PREFIX = "auth/usage/";
const TTL_MS = 30_000;

interface Stack {
  url: string;
  clock: { t: number; now(): number };
  close(): Promise<void>;
}

/** The shape the search/rerank apps take: logging first, auth, then routes; errors mapped in onError. */
async function startStack(mode: AuthMode, store: ObjectStore): Promise<Stack> {
  const clock = {
    t: 0,
    now() {
      return this.t;
    },
  };
  const keys = createKeyStore({ store, prefix: KEYS_PREFIX, cacheTtlMs: TTL_MS, clock });
  const limiter = createRateLimiter({ defaults: { rps: 100, burst: 100 }, clock });
  const usage = createUsageMeter({ store, prefix: USAGE_PREFIX, writerId: "test", flushIntervalMs: 60_000 });
  const auth = apiKeyAuth({ mode, keys, limiter, usage });
  const logger = createLogger({ serviceName: "auth-test", logLevel: "SILENT", namespace: "Test", secrets: [] });

  const app = new Hono<ObservedEnv>();
  app.use("*", requestLogging({ logger }));
  app.use("/search", auth);
  app.post("/search", (c) => {
    observe(c, { queries: 1, rerankPairs: 20, embeddingTokens: 6, timings: { total_ms: 1 } });
    return c.json({ results: [], key_id: c.get("keyId") ?? null });
  });
  app.route("/", usageRoutes({ usage, store, prefix: USAGE_PREFIX, auth }));
  app.onError((err, c) => {
    if (isDomainError(err)) return c.json({ error: { code: err.code, message: err.message } }, err.status as 500);
    return c.json({ error: { code: "internal", message: "Internal error" } }, 500);
  });

  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    clock,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let root: string;
let store: ObjectStore;
let stack: Stack;
let admin: ReturnType<typeof createKeyStore>;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "auth-int-"));
  store = createFsStore(root);
  admin = createKeyStore({ store, prefix: KEYS_PREFIX, cacheTtlMs: 0 });
  stack = await startStack("required", store);
});

afterAll(async () => {
  await stack?.close();
  rmSync(root, { recursive: true, force: true });
});

const search = (headers: Record<string, string> = {}) =>
  fetch(`${stack.url}/search`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: "{}",
  });

describe("API key authentication over HTTP", () => {
  it("answers 401 with a challenge when no key is sent", async () => {
    const res = await search();
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/Bearer/);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("unauthorized");
    expect(body.error.message).toMatch(/x-api-key/);
  });

  it("answers the same 401 for malformed, unknown, wrong-secret and revoked keys", async () => {
    const good = await admin.create({ name: "victim" });
    const revoked = await admin.create({ name: "revoked" });
    await admin.revoke(revoked.record.key_id);
    const wrongSecret = good.key.replace(/.$/, (ch) => (ch === "0" ? "1" : "0"));
    const unknown = `tsr_${"0".repeat(16)}_${"1".repeat(64)}`;
    const bodies: string[] = [];
    for (const key of ["garbage", unknown, wrongSecret, revoked.key]) {
      const res = await search({ "x-api-key": key });
      expect(res.status).toBe(401);
      bodies.push(await res.text());
    }
    expect(new Set(bodies).size).toBe(1);
    expect(JSON.parse(bodies[0])).toEqual({ error: { code: "unauthorized", message: "Invalid API key." } });
  });

  it("accepts a good key in x-api-key or as a Bearer token and passes its id to the route", async () => {
    const made = await admin.create({ name: "good" });
    const variants: Array<Record<string, string>> = [
      { "x-api-key": made.key },
      { authorization: `Bearer ${made.key}` },
    ];
    for (const headers of variants) {
      const res = await search(headers);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ results: [], key_id: made.record.key_id });
      expect(res.headers.get("x-request-id")).toBeTruthy();
    }
  });

  it("keeps a revoked key working only until the cached record expires (API_KEY_CACHE_TTL_S)", async () => {
    const made = await admin.create({ name: "soon revoked" });
    expect((await search({ "x-api-key": made.key })).status).toBe(200);
    await admin.revoke(made.record.key_id);
    stack.clock.t += TTL_MS - 1;
    expect((await search({ "x-api-key": made.key })).status).toBe(200);
    stack.clock.t += 2;
    expect((await search({ "x-api-key": made.key })).status).toBe(401);
  });

  it("answers 429 with Retry-After past the key's rate, and recovers after waiting", async () => {
    const made = await admin.create({ name: "slow", rate: { rps: 0.5, burst: 2 } });
    const h = { "x-api-key": made.key };
    expect((await search(h)).status).toBe(200);
    expect((await search(h)).status).toBe(200);
    const limited = await search(h);
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("2");
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe("rate_limited");
    // Other keys are unaffected.
    const other = await admin.create({ name: "other" });
    expect((await search({ "x-api-key": other.key })).status).toBe(200);
    stack.clock.t += 2000;
    expect((await search(h)).status).toBe(200);
  });

  it("shows each key only its own usage, whatever the query string asks for", async () => {
    const a = await admin.create({ name: "tenant a" });
    const b = await admin.create({ name: "tenant b" });
    for (let i = 0; i < 3; i++) expect((await search({ "x-api-key": a.key })).status).toBe(200);
    expect((await search({ "x-api-key": b.key })).status).toBe(200);

    const usageOf = async (key: string, query = "") => {
      const res = await fetch(`${stack.url}/usage${query}`, { headers: { "x-api-key": key } });
      expect(res.status).toBe(200);
      return (await res.json()) as { key_id: string; totals: Record<string, number>; days: unknown[] };
    };
    const ua = await usageOf(a.key);
    expect(ua.key_id).toBe(a.record.key_id);
    expect(ua.totals).toMatchObject({ queries: 3, rerank_pairs: 60, embedding_tokens: 18 });
    const ub = await usageOf(b.key, `?key_id=${a.record.key_id}`);
    expect(ub.key_id).toBe(b.record.key_id);
    expect(ub.totals).toMatchObject({ queries: 1, rerank_pairs: 20 });

    // The counters were written to the store (the endpoint flushes this instance first).
    const today = new Date().toISOString().slice(0, 10);
    expect((await readUsage(store, USAGE_PREFIX, a.record.key_id, today, today)).totals.queries).toBe(3);

    const noKey = await fetch(`${stack.url}/usage`);
    expect(noKey.status).toBe(401);
    const bad = await fetch(`${stack.url}/usage?from=2025-13-01`, { headers: { "x-api-key": a.key } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_request");
  });

  it("lets everything through when AUTH_MODE is off", async () => {
    const open = await startStack("off", store);
    try {
      const res = await fetch(`${open.url}/search`, { method: "POST", body: "{}" });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ results: [], key_id: null });
      const junk = await fetch(`${open.url}/search`, { method: "POST", body: "{}", headers: { "x-api-key": "junk" } });
      expect(junk.status).toBe(200);
      // Usage is per key, so there is nothing to show without one.
      expect((await fetch(`${open.url}/usage`)).status).toBe(401);
    } finally {
      await open.close();
    }
  });
});
