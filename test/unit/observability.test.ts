import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { SearchResponse } from "../../shared/core/search.ts";
import {
  type ObservedEnv,
  getObservation,
  observabilityOptionsFromEnv,
  observe,
  rerankObservation,
  resolveRequestId,
  searchObservation,
} from "../../shared/adapters/observability.ts";
import { forPaths } from "../../shared/http/auth.ts";

const response = (reranked: boolean): SearchResponse => ({
  results: [],
  index: { version: "v1", count: 10 },
  reranked,
  reranked_candidates: reranked ? 12 : 0,
  candidates: 20,
  fusion: "rerank",
  warnings: reranked ? [] : ["reranker failed (timeout); results are first-stage only"],
  retrieval: "hybrid",
  timings: { embed_ms: 1, search_ms: 2, sparse_ms: 0.5, texts_ms: 0.25, rerank_ms: 3, total_ms: 7 },
});

describe("observations", () => {
  it("turns a search response into a billable query with pairs, timings and the degraded flag", () => {
    expect(searchObservation(response(true), { rerankerConfigured: true, embeddingTokens: 9 })).toEqual({
      queries: 1,
      rerankPairs: 12,
      embeddingTokens: 9,
      cacheHits: undefined,
      degraded: false,
      timings: { embed_ms: 1, search_ms: 2, sparse_ms: 0.5, texts_ms: 0.25, rerank_ms: 3, total_ms: 7 },
    });
    expect(searchObservation(response(false), { rerankerConfigured: true })).toMatchObject({
      rerankPairs: 0,
      degraded: true,
    });
    // RERANKER=none: first stage only is the configured behaviour, not a degradation.
    expect(searchObservation(response(false), { rerankerConfigured: false }).degraded).toBe(false);
  });

  it("turns a rerank response into pairs and rerank latency", () => {
    const meta = {
      model: "m",
      provider: "cpu",
      pairs: 5,
      tokens: 80,
      truncated: 0,
      timings: { tokenize_ms: 1, inference_ms: 2, total_ms: 4 },
    };
    expect(rerankObservation({ results: [], meta })).toEqual({ rerankPairs: 5, timings: { rerank_ms: 4 } });
    expect(rerankObservation({ results: [], meta: { ...meta, cache: { hits: 7, misses: 5 } } })).toEqual({
      rerankPairs: 5,
      rerankCacheHits: 7,
      rerankCacheMisses: 5,
      timings: { rerank_ms: 4 },
    });
  });

  it("adds up counts and merges timings across observe() calls in one request", async () => {
    const app = new Hono<ObservedEnv>();
    app.get("/", (c) => {
      observe(c, { queries: 1, rerankPairs: 3, timings: { embed_ms: 1 } });
      observe(c, { rerankPairs: 2, degraded: true, timings: { total_ms: 5 } });
      return c.json(getObservation(c) ?? null);
    });
    expect(await (await app.request("/")).json()).toEqual({
      queries: 1,
      rerankPairs: 5,
      degraded: true,
      timings: { embed_ms: 1, total_ms: 5 },
    });
  });
});

describe("request ids", () => {
  const idOf = async (headers: Record<string, string>, env?: unknown) => {
    const app = new Hono();
    app.get("/", (c) => c.text(resolveRequestId(c)));
    return (await app.request("/", { headers }, env)).text();
  };

  it("prefers API Gateway's request id, then a well-formed x-request-id, else generates one", async () => {
    expect(await idOf({ "x-request-id": "client-1" }, { requestContext: { requestId: "gw-abc=" } })).toBe("gw-abc=");
    expect(await idOf({ "x-request-id": "client-1" }, { event: { requestContext: { requestId: "gw-2" } } })).toBe(
      "gw-2",
    );
    expect(await idOf({ "x-request-id": "client-1" })).toBe("client-1");
    const generated = await idOf({ "x-request-id": "bad id; with <spaces>" });
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    expect(await idOf({ "x-request-id": "x".repeat(500) })).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("settings", () => {
  it("reads service name, level and namespace, falling back to defaults on invalid values", () => {
    expect(observabilityOptionsFromEnv({})).toMatchObject({
      serviceName: "two-stage-retrieval",
      logLevel: "INFO",
      namespace: "TwoStageRetrieval",
      secrets: [],
    });
    const o = observabilityOptionsFromEnv({
      POWERTOOLS_SERVICE_NAME: "svc",
      LOG_LEVEL: "LOUD",
      OPENAI_API_KEY: "sk-x",
      RERANKER_TOKEN: "t",
    });
    expect(o).toMatchObject({ serviceName: "svc", logLevel: "INFO", secrets: ["sk-x", "t"] });
  });
});

describe("forPaths", () => {
  it("runs a middleware only on the named paths", async () => {
    const app = new Hono();
    app.use(forPaths(["/rerank"], (c) => Promise.resolve(c.json({ blocked: true }, 401))));
    app.get("/health", (c) => c.text("ok"));
    app.post("/rerank", (c) => c.text("ranked"));
    expect((await app.request("/health")).status).toBe(200);
    expect((await app.request("/rerank", { method: "POST" })).status).toBe(401);
  });
});
