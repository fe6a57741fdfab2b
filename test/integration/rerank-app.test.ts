// The reranker service end to end on the tiny fixture model: the Hono app through app.request and
// through real HTTP (@hono/node-server on an ephemeral loopback port), and the Lambda handler.
import type { AddressInfo } from "node:net";
import path from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalReranker, type LocalReranker } from "../../shared/adapters/local-reranker.ts";
import { type Config, loadConfig } from "../../shared/core/config.ts";
import { ConfigError } from "../../shared/core/errors.ts";
import type { RerankResponse } from "../../shared/core/types.ts";
import { createRerankApp, handleRerankInvoke } from "../../shared/http/rerank-app.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";

let modelDir: string;
let cfg: Config;
let reranker: LocalReranker;
let app: ReturnType<typeof createRerankApp>;
let server: ServerType;
let baseUrl: string;

const MAX_BODY = 4096;
const LIMITS = { maxDocuments: 5, maxBodyBytes: MAX_BODY };

beforeAll(async () => {
  modelDir = await ensureFixtureModel("tiny-cross");
  cfg = loadConfig(
    {},
    { rerankerModelDir: modelDir, rerankerProvider: "cpu", rerankerThreads: 1, rerankerMaxDocuments: 5 },
  );
  reranker = createLocalReranker(cfg, { log: () => {} });
  app = createRerankApp({ reranker, limits: LIMITS });
  await new Promise<void>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve());
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

const post = (body: unknown, headers: Record<string, string> = {}) =>
  app.request("/rerank", {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
  });

const DOCS = ["berlin has 3.5 million inhabitants", "the museum opens at nine", "berlin population", "cats"];

/** Every bad input the issue lists, with the field the message must name. */
const BAD: Array<[string, unknown, RegExp]> = [
  ["empty query", { query: "", documents: DOCS }, /`query` must not be empty/],
  ["missing query", { documents: DOCS }, /`query` must be a string/],
  ["non-string query", { query: 42, documents: DOCS }, /`query` must be a string/],
  ["no documents", { query: "q", documents: [] }, /`documents` must not be empty/],
  ["missing documents", { query: "q" }, /`documents` must be an array/],
  ["non-string document", { query: "q", documents: ["a", 5] }, /`documents\[1\]` must be a string or an object/],
  ["object without text", { query: "q", documents: [{ id: "a" }] }, /`documents\[0\]\.text` must be a string/],
  ["too many documents", { query: "q", documents: ["a", "b", "c", "d", "e", "f"] }, /6 entries; the limit is 5/],
  ["top_n zero", { query: "q", documents: DOCS, top_n: 0 }, /`top_n` must be an integer between 1 and 5/],
  ["top_n above the limit", { query: "q", documents: DOCS, top_n: 6 }, /`top_n` must be an integer between 1 and 5/],
  ["top_n not an integer", { query: "q", documents: DOCS, top_n: 2.5 }, /`top_n`/],
  ["bad max_tokens_per_doc", { query: "q", documents: DOCS, max_tokens_per_doc: -3 }, /`max_tokens_per_doc`/],
  ["bad strategy", { query: "q", documents: DOCS, long_document_strategy: "split" }, /`long_document_strategy`/],
  ["documents and texts both", { query: "q", documents: DOCS, texts: DOCS }, /either `documents` or `texts`/],
  ["non-boolean truncate (TEI field)", { query: "q", texts: DOCS, truncate: "yes" }, /`truncate`/],
  ["body not an object", [1, 2], /JSON object/],
];

describe("POST /rerank (app.request)", () => {
  it("ranks documents, passes ids and metadata through, and flags the fixture", async () => {
    const meta = { source: "a.md", tags: ["x"] };
    const documents = [{ id: "d0", text: DOCS[0], metadata: meta }, DOCS[1], { id: "d2", text: DOCS[2] }, DOCS[3]];
    const res = await post({ query: "how many people live in berlin", documents, return_documents: true, top_n: 3 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as RerankResponse;
    expect(body.results).toHaveLength(3);
    for (let i = 1; i < body.results.length; i++)
      expect(body.results[i - 1].logit).toBeGreaterThanOrEqual(body.results[i].logit);
    for (const r of body.results) {
      expect(r.relevance_score).toBeCloseTo(1 / (1 + Math.exp(-r.logit)), 6);
      expect(r.document).toEqual(documents[r.index]);
      if (typeof documents[r.index] === "object") expect(r.id).toBe((documents[r.index] as { id: string }).id);
    }
    expect(body.meta).toMatchObject({
      model: path.basename(modelDir),
      provider: "cpu",
      pairs: 4,
      truncated: 0,
      fixture: true,
    });
    expect(body.meta.tokens).toBeGreaterThan(4);
    expect(body.meta.timings.total_ms).toBeGreaterThanOrEqual(body.meta.timings.inference_ms);
  });

  it("gives the same scores as the core would, whatever the transport", async () => {
    const a = (await (await post({ query: "berlin", documents: DOCS })).json()) as RerankResponse;
    const b = (await reranker.rerank({ query: "berlin", documents: DOCS })) as RerankResponse;
    expect(a.results.map((r) => [r.index, r.logit])).toEqual(b.results.map((r) => [r.index, r.logit]));
  });

  it("answers a repeated query from the score cache with the same scores, and shows hits and misses in meta", async () => {
    const query = "score cache: where is the museum";
    const first = (await (await post({ query, documents: DOCS.slice(0, 2) })).json()) as RerankResponse;
    expect(first.meta.cache).toEqual({ hits: 0, misses: 2 });
    // The next page shares two documents with the first and brings two new ones.
    const res = await post({ query, documents: DOCS });
    const second = (await res.json()) as RerankResponse;
    expect(second.meta.cache).toEqual({ hits: 2, misses: 2 });
    expect(second.meta.pairs).toBe(2);
    const repeat = (await (await post({ query, documents: DOCS })).json()) as RerankResponse;
    expect(repeat.meta.cache).toEqual({ hits: 4, misses: 0 });
    expect(repeat.meta.pairs).toBe(0);
    expect(repeat.results).toEqual(second.results);
    // The same scores as a reranker without the cache.
    const uncached = createLocalReranker({ ...cfg, rerankerCacheMb: 0 }, { log: () => {} });
    const plain = await uncached.rerank({ query, documents: DOCS });
    expect(plain.meta.cache).toBeUndefined();
    expect(plain.meta.precision).toBe("int8");
    // Equal to a cache-less reranker's scores when they do not depend on the batch (fp32). Dynamic
    // int8 (the CPU default) quantises activations with one scale per batch, so there a cached score
    // is the one its first batch gave (test/integration/quantize.test.ts shows the spread).
    const fp32 = createLocalReranker({ ...cfg, rerankerCacheMb: 64, rerankerQuantized: false }, { log: () => {} });
    const fp32Plain = createLocalReranker({ ...cfg, rerankerCacheMb: 0, rerankerQuantized: false }, { log: () => {} });
    await fp32.rerank({ query, documents: DOCS.slice(0, 2) });
    const cachedFp32 = await fp32.rerank({ query, documents: DOCS });
    expect(cachedFp32.meta.cache).toEqual({ hits: 2, misses: 2 });
    const plainFp32 = await fp32Plain.rerank({ query, documents: DOCS });
    for (const r of plainFp32.results) {
      expect(cachedFp32.results.find((x) => x.index === r.index)!.logit).toBeCloseTo(r.logit, 5);
    }
  });

  it("accepts TEI's field names (texts, return_text) and raw_scores", async () => {
    const res = await post({ query: "berlin", texts: DOCS, return_text: true, raw_scores: true, truncate: true });
    expect(res.status).toBe(200);
    const body = (await res.json()) as RerankResponse;
    expect(body.results).toHaveLength(DOCS.length);
    for (const r of body.results) {
      expect(r.relevance_score).toBe(r.logit);
      expect(r.document).toBe(DOCS[r.index]);
    }
  });

  it("truncates over-long documents instead of rejecting them", async () => {
    const long = "berlin ".repeat(400);
    const res = await post({ query: "berlin", documents: [long, "short"] });
    expect(res.status).toBe(200);
    expect(((await res.json()) as RerankResponse).meta.truncated).toBe(1);
    const chunked = (await (
      await post({ query: "berlin", documents: [long, "short"], long_document_strategy: "chunk" })
    ).json()) as RerankResponse;
    expect(chunked.meta.truncated).toBe(0);
    expect(chunked.meta.pairs).toBeGreaterThan(2);
  });

  it.each(BAD)("answers 400 for %s, naming the field", async (_name, body, message) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe("invalid_request");
    expect(json.error.message).toMatch(message);
  });

  it("answers 400 for a body that is not JSON", async () => {
    const res = await post("{not json");
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: "invalid_request", message: "request body is not valid JSON" } });
  });

  it("answers 413 for a body over the limit", async () => {
    const res = await post({ query: "q", documents: ["x".repeat(MAX_BODY)] });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
  });

  it("answers 404 in the error shape for unknown routes", async () => {
    const res = await app.request("/nope");
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
  });

  it("requires the bearer token when one is configured", async () => {
    const secured = createRerankApp({ reranker, limits: LIMITS, token: "s3cret" });
    const req = (auth?: string) =>
      secured.request("/rerank", {
        method: "POST",
        body: JSON.stringify({ query: "q", documents: ["a"] }),
        headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
      });
    expect((await req()).status).toBe(401);
    expect((await req("Bearer wrong")).status).toBe(401);
    expect((await req("Bearer s3cret")).status).toBe(200);
  });
});

describe("GET /health", () => {
  it("warms the model with RERANKER_WARMUP_PAIRS synthetic pairs at load, outside the cache, scores unchanged", async () => {
    expect(cfg.rerankerWarmupPairs).toBe(0); // loadConfig's default: off (it slows a cold start)
    const query = "warm-up: where is the museum";
    const warmed = createLocalReranker(
      { ...cfg, rerankerQuantized: false, rerankerWarmupPairs: 20 },
      { log: () => {} },
    );
    const cold = createLocalReranker({ ...cfg, rerankerQuantized: false }, { log: () => {} });
    await Promise.all([warmed.warm(), cold.warm()]);
    const w = warmed.status();
    expect(w.warmup?.pairs).toBe(20);
    expect(w.warmup?.ms).toBeGreaterThanOrEqual(0);
    expect(w.loadMs).toBeGreaterThanOrEqual(w.warmup?.ms ?? Number.POSITIVE_INFINITY);
    expect(cold.status().warmup).toBeUndefined();
    const a = await warmed.rerank({ query, documents: DOCS });
    const b = await cold.rerank({ query, documents: DOCS });
    expect(a.meta.cache).toEqual({ hits: 0, misses: DOCS.length }); // the warm-up left nothing in the cache
    for (const r of b.results) expect(a.results.find((x) => x.index === r.index)!.logit).toBeCloseTo(r.logit, 5);
  });

  it("reports a cold reranker, then the loaded model, provider and fixture flag", async () => {
    const fresh = createLocalReranker(cfg, { log: () => {} });
    const freshApp = createRerankApp({ reranker: fresh, limits: LIMITS });
    const cold = (await (await freshApp.request("/health")).json()) as Record<string, unknown>;
    expect(cold).toMatchObject({ status: "cold", warm: false, kind: "in-process" });
    await fresh.warm();
    const res = await freshApp.request("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: "ok",
      warm: true,
      model: path.basename(modelDir),
      provider: "cpu",
      requested_provider: "cpu",
      fallbacks: [],
      fixture: true,
      max_length: 128,
      limits: { max_documents: 5, max_body_bytes: MAX_BODY },
    });
  });

  it("is degraded (503) when an explicitly requested provider fell back, and says why", async () => {
    const cuda = createLocalReranker({ ...cfg, rerankerProvider: "cuda" }, { log: () => {} });
    const m = await cuda.warm();
    if (m.provider === "cuda") return; // a machine with CUDA: nothing to fall back from
    const res = await createRerankApp({ reranker: cuda }).request("/health");
    expect(res.status).toBe(503);
    const body = (await res.json()) as {
      status: string;
      provider: string;
      fallbacks: Array<{ provider: string; reason: string }>;
    };
    expect(body.status).toBe("degraded");
    expect(body.provider).toBe("cpu");
    expect(body.fallbacks[0].provider).toBe("cuda");
    // It still answers: degraded means slower than configured, not broken.
    expect(
      (
        await createRerankApp({ reranker: cuda }).request("/rerank", {
          method: "POST",
          body: JSON.stringify({ query: "q", documents: ["a"] }),
        })
      ).status,
    ).toBe(200);
  });

  it("answers 503 with Retry-After when the model cannot be loaded, and still 400 for bad input", async () => {
    const broken = createLocalReranker(
      { ...cfg, rerankerModelDir: path.join(modelDir, "no-such-model") },
      { log: () => {} },
    );
    const brokenApp = createRerankApp({ reranker: broken });
    const res = await brokenApp.request("/rerank", {
      method: "POST",
      body: JSON.stringify({ query: "q", documents: ["a"] }),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("reranker_unavailable");
    expect(body.error.message).toMatch(/no-such-model does not exist/);
    const health = await brokenApp.request("/health");
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({
      status: "error",
      warm: false,
      error: expect.stringMatching(/does not exist/),
    });
    expect(
      (await brokenApp.request("/rerank", { method: "POST", body: JSON.stringify({ query: "", documents: ["a"] }) }))
        .status,
    ).toBe(400);
  });
});

describe("over real HTTP", () => {
  const send = (body: string) =>
    fetch(`${baseUrl}/rerank`, { method: "POST", body, headers: { "content-type": "application/json" } });

  it("ranks documents", async () => {
    const res = await send(JSON.stringify({ query: "berlin", documents: DOCS, top_n: 2 }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    const body = (await res.json()) as RerankResponse;
    expect(body.results).toHaveLength(2);
    expect(body.meta.fixture).toBe(true);
  });

  it.each(BAD)("answers 400 for %s", async (_name, body, message) => {
    const res = await send(JSON.stringify(body));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
  });

  it("answers 400 for malformed JSON and 413 for an oversized body", async () => {
    expect((await send("{")).status).toBe(400);
    const big = await send(JSON.stringify({ query: "q", documents: ["y".repeat(MAX_BODY * 2)] }));
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
  });

  it("serves /health", async () => {
    const res = await fetch(`${baseUrl}/health`);
    expect([200, 503]).toContain(res.status);
    expect(((await res.json()) as { kind: string }).kind).toBe("in-process");
  });
});

describe("Lambda direct invocation", () => {
  it("returns the same response as the HTTP app", async () => {
    const res = (await handleRerankInvoke(reranker, { query: "berlin", documents: DOCS })) as RerankResponse;
    const http = (await (await post({ query: "berlin", documents: DOCS })).json()) as RerankResponse;
    expect(res.results.map((r) => [r.index, r.logit])).toEqual(http.results.map((r) => [r.index, r.logit]));
  });

  it("accepts a JSON string event", async () => {
    const res = (await handleRerankInvoke(
      reranker,
      JSON.stringify({ query: "berlin", documents: ["a", "b"] }),
    )) as RerankResponse;
    expect(res.results).toHaveLength(2);
  });

  it.each(BAD)("returns {error} with status 400 for %s", async (_name, body, message) => {
    const res = await handleRerankInvoke(reranker, body);
    expect(res).toEqual({ error: { code: "invalid_request", status: 400, message: expect.stringMatching(message) } });
  });

  it("returns {error} for an unparsable string event and for a configuration error", async () => {
    expect(await handleRerankInvoke(reranker, "{nope")).toEqual({
      error: { code: "invalid_request", status: 400, message: "event is not valid JSON" },
    });
    const res = await handleRerankInvoke(
      () => {
        throw new ConfigError("RERANKER_MODEL_DIR", "not set");
      },
      { query: "q", documents: ["a"] },
    );
    expect(res).toEqual({
      error: { code: "config_invalid", status: 500, message: "Invalid configuration RERANKER_MODEL_DIR: not set" },
    });
  });

  it("functions/rerank/handler.ts loads the configured model once and answers invocations", async () => {
    process.env.RERANKER_MODEL_DIR = modelDir;
    process.env.RERANKER_PROVIDER = "cpu";
    process.env.RERANKER_THREADS = "1";
    try {
      const { handler } = await import("../../functions/rerank/handler.ts");
      const ok = (await handler({ query: "berlin", documents: DOCS, top_n: 1 })) as RerankResponse;
      expect(ok.results).toHaveLength(1);
      expect(ok.meta.fixture).toBe(true);
      expect(await handler({ query: "", documents: DOCS })).toMatchObject({
        error: { code: "invalid_request", status: 400 },
      });
    } finally {
      delete process.env.RERANKER_MODEL_DIR;
      delete process.env.RERANKER_PROVIDER;
      delete process.env.RERANKER_THREADS;
    }
  });
});

describe("functions/rerank/server.ts", () => {
  it("starts the service on a port, loads the model in the background and serves /rerank", async () => {
    const { startRerankServer } = await import("../../functions/rerank/server.ts");
    const svc = await startRerankServer(cfg, { port: 0, hostname: "127.0.0.1" });
    try {
      const res = await fetch(`http://127.0.0.1:${svc.port}/rerank`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "berlin", documents: DOCS }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as RerankResponse).results).toHaveLength(DOCS.length);
      expect(await (await fetch(`http://127.0.0.1:${svc.port}/health`)).json()).toMatchObject({
        status: "ok",
        warm: true,
      });
    } finally {
      await svc.close();
    }
  });
});

describe("configuration", () => {
  it("without a model source: the lexical reranker by default, a clear error when onnx or a fixture is required", () => {
    const auto = createLocalReranker(loadConfig({}));
    expect(auto.describe()).toMatchObject({ kind: "in-process", model: "lexical-v1", fixture: false });
    expect(auto.describe().note).toMatch(/no trained cross-encoder is configured/);
    expect(() => createLocalReranker(loadConfig({ RERANKER_BACKEND: "onnx" }))).toThrow(
      /RERANKER_MODEL_DIR.*RERANKER_MODEL_S3_PREFIX/,
    );
    expect(() => createLocalReranker(loadConfig({ RERANKER: "fixture" }))).toThrow(
      /RERANKER=fixture needs RERANKER_MODEL_DIR/,
    );
  });

  it("the reranker service answers with the lexical reranker when no model is configured, using term_statistics", async () => {
    const lexical = createLocalReranker(loadConfig({}));
    const service = createRerankApp({ reranker: lexical, limits: LIMITS });
    const res = await service.request("/rerank", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: "snapshots published",
        documents: ["a snapshot", "published"],
        term_statistics: { documents: 1000, average_length: 10, document_frequencies: { snapshot: 2, publish: 800 } },
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      results: Array<{ index: number }>;
      meta: { model: string; fixture?: boolean };
    };
    expect(body.results[0].index).toBe(0);
    expect(body.meta.model).toBe("lexical-v1");
    expect(body.meta.fixture).toBeUndefined();
    const bad = await service.request("/rerank", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "q", documents: ["d"], term_statistics: { documents: "x" } }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/term_statistics/);
  });
});

describe("RERANKER_WORKERS", () => {
  it("RERANKER_IN_WORKER runs the one session in a worker thread, with the in-thread session's scores", async () => {
    const inThread = createLocalReranker({ ...cfg, rerankerCacheMb: 0, rerankerQuantized: false }, { log: () => {} });
    const inWorker = createLocalReranker(
      { ...cfg, rerankerCacheMb: 0, rerankerQuantized: false, rerankerInWorker: true },
      { log: () => {} },
    );
    await inWorker.warm();
    expect(inWorker.status()).toMatchObject({ warm: true, provider: "cpu", thread: "worker", sessions: 1 });
    await inThread.warm();
    expect(inThread.status()).toMatchObject({ thread: "main", sessions: 1 });
    const request = { query: "where is the museum", documents: DOCS };
    const a = await inWorker.rerank(request);
    const b = await inThread.rerank(request);
    expect(a.results.map((x) => [x.index, Math.round(x.logit * 1e4)])).toEqual(
      b.results.map((x) => [x.index, Math.round(x.logit * 1e4)]),
    );
  });

  it("with two worker sessions, parallel requests get the same scores as one session serially", async () => {
    const one = createLocalReranker({ ...cfg, rerankerCacheMb: 0, rerankerQuantized: false }, { log: () => {} });
    const two = createLocalReranker(
      { ...cfg, rerankerCacheMb: 0, rerankerQuantized: false, rerankerWorkers: 2 },
      { log: () => {} },
    );
    await two.warm();
    const requests = ["where is the museum", "berlin", "opening hours", "tickets"].map((query) => ({
      query,
      documents: DOCS,
    }));
    const parallel = await Promise.all(requests.map((r) => two.rerank(r)));
    for (const [i, r] of requests.entries()) {
      const serial = await one.rerank(r);
      expect(parallel[i].results.map((x) => [x.index, Math.round(x.logit * 1e4)])).toEqual(
        serial.results.map((x) => [x.index, Math.round(x.logit * 1e4)]),
      );
    }
  });
});
