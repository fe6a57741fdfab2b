// The search API end to end on real parts: a snapshot built with the hashing embedder and a real
// faiss index, published to s3rver, loaded by the snapshot loader; rerankers are real HTTP
// services on loopback (our rerank app, and raw node:http servers that are slow, fail or answer
// garbage). Requests go through app.request(), a real HTTP server and the Lambda adapter with API
// Gateway v2 events, and must give the same answers.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { handle } from "hono/aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInProcessReranker, createHttpReranker } from "../../shared/adapters/reranker-clients.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { createRerankCostTracker } from "../../shared/core/budget.ts";
import { type Config, loadConfig } from "../../shared/core/config.ts";
import { ConfigError } from "../../shared/core/errors.ts";
import type { LoadedSnapshot, ObjectStore, RerankerPort, SnapshotSource } from "../../shared/core/ports.ts";
import type { SnapshotLoader } from "../../shared/core/snapshot-loader.ts";
import { createRerankApp } from "../../shared/http/rerank-app.ts";
import { createSearchApp, type SearchAppDeps } from "../../shared/http/search-app.ts";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";
import {
  bowEmbedder,
  corpusPassages,
  jsSnapshot,
  overlapScore,
  rerankAnswer,
  sleep,
} from "../helpers/search-fixture.ts";
import { HASHING_DIMENSIONS, hashingEmbedderFor, loaderFor, publishPassages } from "../helpers/search-stack.ts";
import { type Answer, type Call, type Transport, viaApp, viaHttp, viaLambda } from "../helpers/transports.ts";

let s3: LocalS3;
let store: ObjectStore;
let loader: SnapshotLoader;
let rerankService: { url: string; close(): void };
let badReranker: { url: string; server: Server };
const loaders: SnapshotLoader[] = [];
const closers: Array<() => unknown> = [];

const VERSION = "20260313T091500Z-aaaaaa";
const config = (env: Record<string, string> = {}): Config => loadConfig({ LOG_LEVEL: "SILENT", ...env });

function app(over: Partial<SearchAppDeps> = {}, env: Record<string, string> = {}) {
  return createSearchApp({
    snapshots: loader,
    embedderFor: hashingEmbedderFor,
    reranker: createHttpReranker({ url: rerankService.url }),
    config: config(env),
    store: store.describe(),
    ...over,
  });
}

const post = (body: unknown, headers: Record<string, string> = {}): Call => ({
  method: "POST",
  path: "/search",
  body: typeof body === "string" ? body : JSON.stringify(body),
  headers: { "content-type": "application/json", ...headers },
});

beforeAll(async () => {
  s3 = await startLocalS3();
  store = createS3Store({
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: s3.credentials,
  });
  loader = loaderFor(store);
  loaders.push(loader);
  await publishPassages(store, corpusPassages(), { version: VERSION });

  // Our reranker service (the real rerank app) scoring with a deterministic word-overlap model.
  const scorer = createInProcessReranker(
    async (req) => rerankAnswer(req, overlapScore(req.query), 10 * req.documents.length),
    {
      model: "overlap",
    },
  );
  const rerankApp = createRerankApp({ reranker: scorer });
  const rs = await new Promise<{ server: ReturnType<typeof serve>; port: number }>((resolve) => {
    const server = serve({ fetch: rerankApp.fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
      resolve({ server, port: info.port }),
    );
  });
  rerankService = { url: `http://127.0.0.1:${rs.port}`, close: () => rs.server.close() };

  // A misbehaving reranker: /slow sleeps past any timeout, /fail answers 500, /garbage answers broken JSON.
  const bad = createServer((req, res) => {
    req.resume();
    req.on("end", async () => {
      if (req.url?.startsWith("/slow")) {
        await sleep(3000);
        if (!res.destroyed) res.end("[]");
      } else if (req.url?.startsWith("/fail")) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: "internal", message: "CUDA out of memory" } }));
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"results": [{"index": 0, "relevance_score": 0.9}');
      }
    });
  });
  await new Promise<void>((r) => bad.listen(0, "127.0.0.1", r));
  badReranker = { url: `http://127.0.0.1:${(bad.address() as AddressInfo).port}`, server: bad };
});

afterAll(async () => {
  for (const l of loaders) l.close();
  for (const c of closers) await c();
  rerankService?.close();
  badReranker?.server.closeAllConnections();
  badReranker?.server.close();
  await s3?.close();
});

/** The three transports over one app. */
async function transports(a: ReturnType<typeof app>): Promise<Record<string, Transport>> {
  const http = await viaHttp(a);
  closers.push(http.close);
  return { app: viaApp(a), http: http.call, lambda: viaLambda(handle(a)) };
}

/** What must be equal across transports: status and body, less the measured times (timings, snapshot age). */
const comparable = (a: Answer) => {
  const { timings, ...rest } = a.json ?? {};
  const body = timings === undefined ? a.json : rest;
  if (body?.index?.age_s !== undefined) body.index = { ...body.index, age_s: "(varies)" };
  return { status: a.status, body };
};

describe("before any snapshot is published", () => {
  it("answers 503 with Retry-After on /health and /search, through every transport", async () => {
    // Same bucket, a prefix nothing was published under.
    const empty = loaderFor(store, 3600, "empty-index/");
    loaders.push(empty);
    const t = await transports(app({ snapshots: empty }));
    for (const [name, call] of Object.entries(t)) {
      const health = await call({ method: "GET", path: "/health" });
      expect(health.status, name).toBe(503);
      expect(health.headers["retry-after"], name).toBe("5");
      expect(health.json, name).toMatchObject({
        status: "unavailable",
        index: null,
        cold: true,
        store: { kind: "s3", bucket: s3.bucket, endpoint: s3.endpoint },
        error: { code: "index_not_ready" },
      });
      const search = await call(post({ query: "cats" }));
      expect(search.status, name).toBe(503);
      expect(search.headers["retry-after"], name).toBe("5");
      expect(search.json.error.code, name).toBe("index_not_ready");
      expect(search.json.error.message, name).toMatch(/No index snapshot has been published yet/);
    }
  });
});

describe("with a published snapshot", () => {
  it("gives the same answers through app.request, a real HTTP server and the Lambda handler", async () => {
    const t = await transports(app());
    const calls: Call[] = [
      post({ query: "cat purrs", k: 3 }),
      post({ query: "programming language", filter: { source_prefix: "kb/code/" }, rerank: false }),
      post({ query: "cats", fusion: "rrf", collapse: true, k: 5 }),
      { ...post({ query: "bread flour" }), base64: true },
      { method: "GET", path: "/search?q=wild%20cats&k=2&fusion=linear&alpha=0.5" },
      { method: "GET", path: "/search?q=coffee&rerank=false&source_prefix=blog%2F" },
      post({ query: "yeast dough", retrieval: "sparse", k: 2 }),
      post({ query: "cat purrs", hybrid: { fusion: "convex", dense_weight: 0.3 }, rerank: false }),
      { method: "GET", path: "/search?q=wild%20cats&retrieval=hybrid&hybrid_fusion=rrf&rrf_k=10" },
      post({ query: "cats", k: 30 }),
      post("{oops"),
      { method: "GET", path: "/nowhere" },
      { method: "GET", path: "/health" },
    ];
    for (const call of calls) {
      const answers = await Promise.all(Object.values(t).map((f) => f(call)));
      const [first, ...rest] = answers.map(comparable);
      for (const other of rest) expect(other, `${call.method} ${call.path} ${call.body ?? ""}`).toEqual(first);
      for (const a of answers) {
        expect(a.headers["content-type"]).toMatch(/application\/json/);
        if (a.status === 200 && call.path.startsWith("/search")) {
          expect(a.headers["server-timing"]).toMatch(
            /^embed;dur=[\d.]+, search;dur=[\d.]+, sparse;dur=[\d.]+, texts;dur=[\d.]+, rerank;dur=[\d.]+, total;dur=[\d.]+$/,
          );
        }
      }
    }
  });

  it("reranks through our reranker service and reports both stages", async () => {
    const r = await viaApp(app())(post({ query: "wild cats savanna", k: 3, candidates: 10 }));
    expect(r.status).toBe(200);
    const body = r.json;
    expect(body.reranked).toBe(true);
    expect(body.reranked_candidates).toBe(10);
    expect(body.warnings).toEqual([]);
    expect(body.index).toEqual({ version: VERSION, count: corpusPassages().length });
    expect(body.results[0]).toMatchObject({ id: "lions#0", doc_id: "lions", source: "kb/animals/lions.md" });
    const score = overlapScore("wild cats savanna");
    for (const [i, h] of body.results.entries()) {
      expect(h.rerank.rank).toBe(i + 1);
      expect(h.score).toBeCloseTo(score(h.text), 12);
      expect(h.retrieval.rank).toBeGreaterThanOrEqual(1);
    }
    expect(body.retrieval).toBe("hybrid");
    expect(Object.keys(body.timings)).toEqual([
      "embed_ms",
      "search_ms",
      "sparse_ms",
      "texts_ms",
      "rerank_ms",
      "total_ms",
    ]);
  });

  it("applies filters and collapse", async () => {
    const call = viaApp(app());
    const code = await call(post({ query: "cats language", k: 10, filter: { source_prefix: "kb/code/" } }));
    expect(code.json.results.map((h: { doc_id: string }) => h.doc_id).sort()).toEqual(["python", "rust", "sql"]);
    const german = await call(post({ query: "cats", k: 10, filter: { metadata: { lang: "de" } } }));
    expect(german.json.results.map((h: { doc_id: string }) => h.doc_id)).toEqual(["katzen"]);
    const collapsed = await call(post({ query: "cat cats", k: 4, collapse: true }));
    const docs = collapsed.json.results.map((h: { doc_id: string }) => h.doc_id);
    expect(new Set(docs).size).toBe(4);
  });

  it("/health reports the snapshot, embedder, reranker and store", async () => {
    const r = await viaApp(app())({ method: "GET", path: "/health" });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      status: "ok",
      index: { version: VERSION, count: corpusPassages().length, type: "flat", params: { factory: "Flat" } },
      embedder: { setting: "auto", identity: { kind: "hashing", dimensions: HASHING_DIMENSIONS, normalized: true } },
      reranker: { kind: "http", url: `${rerankService.url}/rerank` },
      store: { kind: "s3", bucket: s3.bucket, endpoint: s3.endpoint },
      cold: false,
    });
    expect(typeof r.json.index.age_s).toBe("number");
  });

  it("serves a valid OpenAPI 3.1 document generated from the request schemas", async () => {
    const r = await viaApp(app({}, { SEARCH_MAX_CANDIDATES: "50" }))({ method: "GET", path: "/openapi.json" });
    expect(r.status).toBe(200);
    const doc = r.json;
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info.title).toBeTruthy();
    expect(Object.keys(doc.paths).sort()).toEqual(["/health", "/search"]);
    expect(Object.keys(doc.paths["/search"]).sort()).toEqual(["get", "post"]);
    const req = doc.components.schemas.SearchRequest;
    expect(req.required).toEqual(["query"]);
    expect(req.additionalProperties).toBe(false);
    expect(Object.keys(req.properties).sort()).toEqual(
      [
        "alpha",
        "budget_ms",
        "candidates",
        "collapse",
        "filter",
        "fusion",
        "hybrid",
        "k",
        "query",
        "rerank",
        "retrieval",
      ].sort(),
    );
    expect(req.properties.retrieval.enum).toEqual(["dense", "sparse", "hybrid"]);
    expect(req.properties.retrieval.description).toMatch(/default hybrid.*union of each side's top `candidates`/);
    expect(req.properties.hybrid.$ref).toBe("#/components/schemas/HybridOptions");
    const hybrid = doc.components.schemas.HybridOptions;
    expect(hybrid.additionalProperties).toBe(false);
    expect(Object.keys(hybrid.properties).sort()).toEqual(["dense_weight", "fusion", "rrf_k"]);
    expect(hybrid.properties.fusion.enum).toEqual(["rrf", "convex"]);
    expect(hybrid.properties.fusion.description).toMatch(/Σ 1\/\(rrf_k \+ rank\).*minmax\(bm25\).*contributes 0/);
    expect(hybrid.properties.dense_weight).toMatchObject({ minimum: 0, maximum: 1 });
    expect(hybrid.properties.rrf_k.exclusiveMinimum).toBe(0);
    const getParams = doc.paths["/search"].get.parameters.map((p: { name: string }) => p.name);
    for (const name of ["retrieval", "hybrid_fusion", "dense_weight", "rrf_k"]) expect(getParams).toContain(name);
    // the response documents what the first stage did
    const res = doc.components.schemas.SearchResponse;
    expect(res.properties.retrieval.enum).toEqual(["dense", "sparse", "hybrid"]);
    expect(Object.keys(doc.components.schemas.SearchTimings.properties)).toContain("sparse_ms");
    const hit = doc.components.schemas.SearchHit.properties;
    for (const side of ["dense", "sparse"]) expect(JSON.stringify(hit[side]), side).toMatch(/StageScore.*null/);
    // the configured limit is what the document says (and what validation enforces)
    expect(req.properties.candidates.maximum).toBe(50);
    expect(req.properties.query.maxLength).toBe(2000);
    expect(doc.paths["/search"].get.parameters.map((p: { name: string }) => p.name)).toContain("q");
    // every $ref resolves
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      const name = ref.slice('"$ref":"#/components/schemas/'.length, -1);
      expect(doc.components.schemas[name], ref).toBeDefined();
    }
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, { responses: object }>>)) {
      for (const [method, op] of Object.entries(ops))
        expect(Object.keys(op.responses), `${method} ${path}`).toContain("200");
    }
  });
});

describe("first-stage retrieval", () => {
  interface Hit {
    id: string;
    retrieval: { score: number; rank: number };
    dense: { score: number; rank: number } | null;
    sparse: { score: number; rank: number } | null;
  }
  const get = (query: string): Call => ({ method: "GET", path: `/search?${query}` });
  const fixed = (snapshot: LoadedSnapshot): SnapshotSource => ({
    current: async () => snapshot,
    status: () => ({ version: snapshot.version, count: snapshot.passages.count, ageS: 0, cold: false }),
  });

  it("POST and GET accept retrieval and the hybrid options, and give the same answers", async () => {
    const call = viaApp(app());
    const pairs: Array<[Record<string, unknown>, string]> = [
      [{ retrieval: "dense" }, "retrieval=dense"],
      [{ retrieval: "sparse" }, "retrieval=sparse"],
      [{ retrieval: "hybrid" }, "retrieval=hybrid"],
      [{ hybrid: { fusion: "rrf", rrf_k: 5 } }, "hybrid_fusion=rrf&rrf_k=5"],
      [{ hybrid: { fusion: "convex", dense_weight: 0.25 } }, "hybrid_fusion=convex&dense_weight=0.25"],
    ];
    for (const [extra, query] of pairs) {
      const p = await call(post({ query: "wild cats savanna", k: 4, candidates: 4, rerank: false, ...extra }));
      const g = await call(get(`q=wild%20cats%20savanna&k=4&candidates=4&rerank=false&${query}`));
      expect(p.status, query).toBe(200);
      expect(comparable(g), query).toEqual(comparable(p));
      expect(p.json.retrieval, query).toBe(extra.retrieval ?? "hybrid");
    }
  });

  it("reports each side's score and rank per hit, and which first stage answered", async () => {
    const call = viaApp(app());
    // k ≤ candidates here, so a hybrid answer shows the best k of its pool (up to 2 × candidates).
    const body = { query: "cat purrs", k: 4, candidates: 4, rerank: false };
    const dense = (await call(post({ ...body, retrieval: "dense" }))).json;
    const sparse = (await call(post({ ...body, retrieval: "sparse" }))).json;
    const hybrid = (await call(post(body))).json;
    expect([dense.retrieval, sparse.retrieval, hybrid.retrieval]).toEqual(["dense", "sparse", "hybrid"]);
    for (const h of dense.results as Hit[]) expect([h.dense, h.sparse]).toEqual([h.retrieval, null]);
    for (const h of sparse.results as Hit[]) expect([h.dense, h.sparse]).toEqual([null, h.retrieval]);
    const denseIds = new Map((dense.results as Hit[]).map((h) => [h.id, h.retrieval]));
    const sparseIds = new Map((sparse.results as Hit[]).map((h) => [h.id, h.retrieval]));
    const ids = (hybrid.results as Hit[]).map((h) => h.id);
    const union = new Set([...denseIds.keys(), ...sparseIds.keys()]);
    expect(union.size).toBeGreaterThan(4);
    expect(hybrid.candidates).toBe(union.size);
    for (const id of ids) expect(union.has(id), id).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const h of hybrid.results as Hit[]) {
      expect(h.dense, h.id).toEqual(denseIds.get(h.id) ?? null);
      expect(h.sparse, h.id).toEqual(sparseIds.get(h.id) ?? null);
      const rrf = (h.dense ? 1 / (60 + h.dense.rank) : 0) + (h.sparse ? 1 / (60 + h.sparse.rank) : 0);
      expect(h.retrieval.score, h.id).toBeCloseTo(rrf, 12);
    }
    expect(dense.timings.sparse_ms).toBe(0);
  });

  it("takes its defaults from configuration; a request's values override them", async () => {
    const dense = viaApp(app({}, { SEARCH_DEFAULT_RETRIEVAL: "dense" }));
    const r = await dense(post({ query: "cats" }));
    expect(r.status).toBe(200);
    expect(r.json.retrieval).toBe("dense");
    expect(r.json.warnings).toEqual([]);
    for (const h of r.json.results as Hit[]) expect(h.sparse).toBeNull();
    expect(r.headers["server-timing"]).toMatch(/, sparse;dur=0, /);
    expect((await dense(get("q=cats"))).json.retrieval).toBe("dense");
    expect((await dense(post({ query: "cats", retrieval: "sparse" }))).json.retrieval).toBe("sparse");
    expect((await dense(get("q=cats&retrieval=hybrid"))).json.retrieval).toBe("hybrid");
    const doc = (await dense({ method: "GET", path: "/openapi.json" })).json;
    expect(doc.components.schemas.SearchRequest.properties.retrieval.description).toMatch(
      /^First stage \(default dense\)/,
    );

    // SEARCH_HYBRID_FUSION / SEARCH_DENSE_WEIGHT: convex with all weight on the dense side
    const body = { query: "wild cats savanna", k: 4, candidates: 4, rerank: false };
    const convex = viaApp(app({}, { SEARCH_HYBRID_FUSION: "convex", SEARCH_DENSE_WEIGHT: "1" }));
    const byConfig = await convex(post(body));
    const byRequest = await viaApp(app())(post({ ...body, hybrid: { fusion: "convex", dense_weight: 1 } }));
    expect(byConfig.json.results).toEqual(byRequest.json.results);
    expect(byConfig.json.results[0].retrieval.score).toBe(1); // the best dense passage, min-max normalised
    // the request's fusion wins over the configured one
    const rrf = await convex(post({ ...body, hybrid: { fusion: "rrf" } }));
    expect(rrf.json.results[0].retrieval.score).toBeLessThanOrEqual(2 / 61);
    // a partial hybrid object keeps the configured remainder
    const half = await convex(post({ ...body, hybrid: { dense_weight: 0.5 } }));
    const halfByRequest = await viaApp(app())(post({ ...body, hybrid: { fusion: "convex", dense_weight: 0.5 } }));
    expect(half.json.results).toEqual(halfByRequest.json.results);
  });

  it("rejects invalid settings, naming the variable", () => {
    expect(() => config({ SEARCH_DEFAULT_RETRIEVAL: "bm25" })).toThrow(ConfigError);
    expect(() => config({ SEARCH_DEFAULT_RETRIEVAL: "bm25" })).toThrow(/SEARCH_DEFAULT_RETRIEVAL/);
    expect(() => config({ SEARCH_HYBRID_FUSION: "sum" })).toThrow(/SEARCH_HYBRID_FUSION/);
    for (const bad of ["1.5", "-0.1", "half", "NaN"])
      expect(() => config({ SEARCH_DENSE_WEIGHT: bad }), bad).toThrow(/SEARCH_DENSE_WEIGHT/);
    expect(config({ SEARCH_DENSE_WEIGHT: "0.25" }).denseWeight).toBe(0.25);
    expect(config()).toMatchObject({ defaultRetrieval: "hybrid", hybridFusion: "rrf", denseWeight: 0.5 });
  });

  it("Server-Timing has the sparse (BM25) search", async () => {
    const r = await viaApp(app())(post({ query: "cats", retrieval: "sparse" }));
    const timing = r.headers["server-timing"];
    expect(timing).toMatch(
      /^embed;dur=[\d.]+, search;dur=[\d.]+, sparse;dur=[\d.]+, texts;dur=[\d.]+, rerank;dur=[\d.]+, total;dur=[\d.]+$/,
    );
    expect(timing).toContain(`sparse;dur=${r.json.timings.sparse_ms},`);
  });

  it("a snapshot without a BM25 index answers dense and says so; one with it answers hybrid", async () => {
    const over = (snapshot: LoadedSnapshot) => ({ snapshots: fixed(snapshot), embedderFor: async () => bowEmbedder() });
    const old = await viaApp(app(over(jsSnapshot(corpusPassages(), "v-old"))))(post({ query: "cats", rerank: false }));
    expect(old.status).toBe(200);
    expect(old.json.retrieval).toBe("dense");
    expect(old.json.warnings).toHaveLength(1);
    expect(old.json.warnings[0]).toMatch(/no sparse index/);
    const current = await viaApp(app(over(jsSnapshot(corpusPassages(), "v-new", { sparse: true }))))(
      post({ query: "cats", rerank: false }),
    );
    expect(current.json.retrieval).toBe("hybrid");
    expect(current.json.warnings).toEqual([]);
  });
});

describe("validation", () => {
  const cases: Array<[string, Call, number, string]> = [
    ["missing query", post({ k: 2 }), 400, "query: is required"],
    ["query not a string", post({ query: 42 }), 400, "query: must be a string"],
    ["blank query", post({ query: "   " }), 400, "query: must not be empty"],
    ["query too long", post({ query: "x".repeat(2001) }), 400, "query: must be at most 2000 characters"],
    ["k below 1", post({ query: "a", k: 0 }), 400, "k: must be ≥ 1"],
    ["k not an integer", post({ query: "a", k: 2.5 }), 400, "k: must be an integer"],
    ["k as a string", post({ query: "a", k: "3" }), 400, "k: must be a number"],
    ["k above candidates", post({ query: "a", k: 21 }), 400, "k: must be ≤ candidates (20)"],
    ["k above explicit candidates", post({ query: "a", k: 6, candidates: 5 }), 400, "k: must be ≤ candidates (5)"],
    ["candidates above the limit", post({ query: "a", candidates: 201 }), 400, "candidates: must be ≤ 200"],
    ["candidates below 1", post({ query: "a", candidates: 0 }), 400, "candidates: must be ≥ 1"],
    ["unknown fusion", post({ query: "a", fusion: "max" }), 400, "fusion: must be one of rerank, linear, rrf"],
    ["alpha out of range", post({ query: "a", alpha: 1.5 }), 400, "alpha: must be between 0 and 1"],
    ["rerank not boolean", post({ query: "a", rerank: "yes" }), 400, "rerank: must be true or false"],
    [
      "unknown retrieval",
      post({ query: "a", retrieval: "bm25" }),
      400,
      "retrieval: must be one of dense, sparse, hybrid",
    ],
    ["hybrid not an object", post({ query: "a", hybrid: "rrf" }), 400, "hybrid: must be a JSON object"],
    [
      "unknown hybrid fusion",
      post({ query: "a", hybrid: { fusion: "max" } }),
      400,
      "hybrid.fusion: must be one of rrf, convex",
    ],
    [
      "dense_weight out of range",
      post({ query: "a", hybrid: { fusion: "convex", dense_weight: 1.5 } }),
      400,
      "hybrid.dense_weight: must be between 0 and 1",
    ],
    [
      "dense_weight not a number",
      post({ query: "a", hybrid: { dense_weight: "0.5" } }),
      400,
      "hybrid.dense_weight: must be a number",
    ],
    ["rrf_k not positive", post({ query: "a", hybrid: { rrf_k: 0 } }), 400, "hybrid.rrf_k: must be > 0"],
    [
      "hybrid with an unknown field",
      post({ query: "a", hybrid: { weight: 0.5 } }),
      400,
      'hybrid: unknown field "weight"',
    ],
    ["collapse not boolean", post({ query: "a", collapse: 1 }), 400, "collapse: must be true or false"],
    ["budget_ms below 1", post({ query: "a", budget_ms: 0 }), 400, "budget_ms: must be ≥ 1"],
    ["budget_ms above the cap", post({ query: "a", budget_ms: 30_001 }), 400, "budget_ms: must be ≤ 30000"],
    [
      "filter with an unknown field",
      post({ query: "a", filter: { source: "kb/" } }),
      400,
      'filter: unknown field "source"',
    ],
    [
      "filter.source_prefix not a string",
      post({ query: "a", filter: { source_prefix: 1 } }),
      400,
      "filter.source_prefix: must be a string",
    ],
    [
      "filter.metadata with an array value",
      post({ query: "a", filter: { metadata: { tags: ["x"] } } }),
      400,
      "filter.metadata.tags: must be a string, number, boolean or null",
    ],
    ["unknown top-level field", post({ query: "a", top_k: 3 }), 400, 'body: unknown field "top_k"'],
    ["body is an array", post([{ query: "a" }]), 400, "body: must be a JSON object"],
    [
      "two errors at once",
      post({ query: "a", k: 0, fusion: "x" }),
      400,
      "k: must be ≥ 1; fusion: must be one of rerank, linear, rrf",
    ],
    ["malformed JSON", post('{"query": "a",'), 400, "request body is not valid JSON"],
    [
      "not JSON content",
      {
        method: "POST",
        path: "/search",
        body: "query=a",
        headers: { "content-type": "application/x-www-form-urlencoded" },
      },
      415,
      "content-type must be application/json",
    ],
    ["body over 64 KiB", post({ query: "a", pad: "x".repeat(65_536) }), 413, "request body exceeds 65536 bytes"],
    ["GET without q", { method: "GET", path: "/search?k=2" }, 400, "q: is required"],
    ["GET k not a number", { method: "GET", path: "/search?q=a&k=abc" }, 400, "k: must be a number"],
    [
      "GET k above candidates",
      { method: "GET", path: "/search?q=a&k=9&candidates=8" },
      400,
      "k: must be ≤ candidates (8)",
    ],
    [
      "GET rerank not boolean",
      { method: "GET", path: "/search?q=a&rerank=maybe" },
      400,
      "rerank: must be true or false",
    ],
    ["GET blank q", { method: "GET", path: "/search?q=%20" }, 400, "q: must not be empty"],
    [
      "GET unknown retrieval",
      { method: "GET", path: "/search?q=a&retrieval=both" },
      400,
      "retrieval: must be one of dense, sparse, hybrid",
    ],
    [
      "GET bad hybrid options",
      { method: "GET", path: "/search?q=a&hybrid_fusion=sum&dense_weight=abc&rrf_k=-1" },
      400,
      "hybrid_fusion: must be one of rrf, convex; dense_weight: must be a number; rrf_k: must be > 0",
    ],
    [
      "GET dense_weight out of range",
      { method: "GET", path: "/search?q=a&dense_weight=2" },
      400,
      "dense_weight: must be between 0 and 1",
    ],
    ["unknown route", { method: "GET", path: "/search/extra" }, 404, "no route GET /search/extra"],
    ["unsupported method", { method: "DELETE", path: "/search" }, 404, "no route DELETE /search"],
  ];

  const table = cases.map(([name, call, status, message]) => ({ name, call, status, message }));
  it.each(table)("$name → $status with a message naming the field", async ({ call, status, message }) => {
    const t = await transports(app());
    for (const [name, transport] of Object.entries(t)) {
      const r = await transport(call);
      expect(r.status, name).toBe(status);
      expect(r.json, name).toEqual({ error: { code: expect.any(String), message } });
      const code = { 400: "invalid_request", 404: "not_found", 413: "payload_too_large", 415: "invalid_request" }[
        status
      ];
      expect(r.json.error.code, name).toBe(code);
    }
  });

  it("takes its limits from configuration", async () => {
    const call = viaApp(
      app(
        {},
        {
          SEARCH_MAX_CANDIDATES: "30",
          SEARCH_MAX_QUERY_CHARS: "10",
          SEARCH_MAX_BODY_BYTES: "1024",
          SEARCH_DEFAULT_CANDIDATES: "3",
        },
      ),
    );
    expect((await call(post({ query: "a", candidates: 31 }))).json.error.message).toBe("candidates: must be ≤ 30");
    expect((await call(post({ query: "a".repeat(11) }))).json.error.message).toBe(
      "query: must be at most 10 characters",
    );
    expect((await call(post({ query: "a", pad: "x".repeat(2000) }))).status).toBe(413);
    // default candidates 3 → default k = min(4, 3)
    const ok = await call(post({ query: "cats", retrieval: "dense" }));
    expect(ok.status).toBe(200);
    expect(ok.json.results).toHaveLength(3);
    expect(ok.json.candidates).toBe(3);
    // hybrid: 3 from each side, deduplicated
    const hybrid = await call(post({ query: "cats" }));
    expect(hybrid.json.retrieval).toBe("hybrid");
    expect(hybrid.json.results).toHaveLength(3);
    expect(hybrid.json.candidates).toBeGreaterThanOrEqual(3);
    expect(hybrid.json.candidates).toBeLessThanOrEqual(6);
  });
});

describe("a failing reranker never turns into a 5xx", () => {
  async function firstStage(query: string) {
    const r = await viaApp(app())(post({ query, rerank: false, k: 4 }));
    return r.json.results;
  }

  const cases: Array<[string, string, Record<string, string>, RegExp]> = [
    [
      "slow (past RERANKER_TIMEOUT_MS)",
      "/slow",
      { RERANKER_TIMEOUT_MS: "200" },
      /^reranker failed \(reranker at .*\/slow\/rerank timed out after 200 ms\)/,
    ],
    [
      "answering 500",
      "/fail",
      {},
      /^reranker failed \(reranker at .*\/fail\/rerank answered HTTP 500: internal: CUDA out of memory\)/,
    ],
    [
      "answering malformed JSON",
      "/garbage",
      {},
      /^reranker failed \(reranker at .*\/garbage\/rerank returned a malformed answer: not JSON/,
    ],
  ];

  it.each(cases)("%s → first-stage results, reranked: false, a warning", async (_name, path, env, warning) => {
    const a = app({ reranker: createHttpReranker({ url: `${badReranker.url}${path}` }) }, env);
    const t = await transports(a);
    const expected = await firstStage("cat purrs");
    for (const [name, call] of Object.entries(t)) {
      const started = performance.now();
      const r = await call(post({ query: "cat purrs", k: 4 }));
      expect(r.status, name).toBe(200);
      expect(r.json.reranked, name).toBe(false);
      expect(r.json.reranked_candidates, name).toBe(0);
      expect(r.json.warnings, name).toHaveLength(1);
      expect(r.json.warnings[0], name).toMatch(warning);
      expect(r.json.results, name).toEqual(expected);
      if (path === "/slow") expect(performance.now() - started, name).toBeLessThan(2500);
    }
  });

  it("an unreachable reranker degrades the same way", async () => {
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, "127.0.0.1", r));
    const port = (gone.address() as AddressInfo).port;
    await new Promise((r) => gone.close(r));
    const r = await viaApp(app({ reranker: createHttpReranker({ url: `http://127.0.0.1:${port}` }) }))(
      post({ query: "cats" }),
    );
    expect(r.status).toBe(200);
    expect(r.json.warnings[0]).toMatch(/unreachable: ECONNREFUSED/);
  });

  it("RERANKER=none answers first-stage results and says reranking is not configured (not logged as degraded)", async () => {
    const logged: string[] = [];
    const log = { warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) };
    const r = await viaApp(app({ reranker: null, log }))(post({ query: "cats" }));
    expect(r.status).toBe(200);
    expect(r.json.reranked).toBe(false);
    expect(r.json.warnings).toEqual(["reranking is not configured (RERANKER=none); results are first-stage only"]);
    expect(logged).toEqual([]);
    // a configured reranker that fails is logged
    await viaApp(app({ reranker: createHttpReranker({ url: `${badReranker.url}/fail` }), log }))(
      post({ query: "cats" }),
    );
    expect(logged).toEqual(["search degraded"]);
  });
});

describe("latency budget", () => {
  // Frozen clock: no time passes, so the plan depends only on the estimate (10 ms per pair).
  const frozen = { now: () => 0 };
  const estimate = () => createRerankCostTracker({ prior: { msPerPair: 10, msPerToken: 0, overheadMs: 0 } });

  it("budget_ms reranks only the best first-stage candidates that fit", async () => {
    const seen: number[] = [];
    const counting: RerankerPort = createInProcessReranker(async (req) => {
      seen.push(req.documents.length);
      return rerankAnswer(req, overlapScore(req.query));
    });
    const r = await viaApp(app({ reranker: counting, clock: frozen, estimate: estimate() }))(
      post({ query: "cat purrs", k: 3, candidates: 10, budget_ms: 41 }),
    );
    // 41 − 1 (reserve) = 40 ms → 4 candidates of 10 ms
    expect(r.json.reranked).toBe(true);
    expect(r.json.reranked_candidates).toBe(4);
    expect(seen).toEqual([4]);
    expect(r.json.warnings).toEqual([
      "latency budget: reranked the best 4 of 10 candidates (all predicted to take 100 ms, 40 ms of the 41 ms budget left)",
    ]);
  });

  it("budget_ms skips reranking when too little is left", async () => {
    const r = await viaApp(app({ clock: frozen, estimate: estimate() }))(
      post({ query: "cat purrs", candidates: 10, budget_ms: 12 }),
    );
    expect(r.json.reranked).toBe(false);
    expect(r.json.reranked_candidates).toBe(0);
    expect(r.json.warnings[0]).toMatch(/^latency budget: reranking skipped/);
  });

  it("SEARCH_BUDGET_MS is the default budget; a request's budget_ms overrides it", async () => {
    // In-process scorer: with a frozen clock the rerank call's time limit is what the plan says is left (30 ms).
    const fast = createInProcessReranker(async (req) => rerankAnswer(req, overlapScore(req.query)));
    const a = () => app({ reranker: fast, clock: frozen, estimate: estimate() }, { SEARCH_BUDGET_MS: "31" });
    expect((await viaApp(a())(post({ query: "cats", candidates: 10 }))).json.reranked_candidates).toBe(3);
    expect((await viaApp(a())(post({ query: "cats", candidates: 10, budget_ms: 1000 }))).json.reranked_candidates).toBe(
      10,
    );
  });
});

describe("errors from the first stage", () => {
  it("an embedder that does not match the snapshot → 409 embedder_mismatch", async () => {
    const r = await viaApp(
      app({
        embedderFor: async (m) =>
          hashingEmbedderFor({ ...m, embedder: { ...m.embedder, dimensions: 512 }, corpus_stats: undefined }),
      }),
    )(post({ query: "cats" }));
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe("embedder_mismatch");
    expect(r.json.error.message).toMatch(/1024 dims.*512 dims/);
  });

  it("an embedder that cannot be created or fails → 503 embedder_unavailable with Retry-After", async () => {
    let attempts = 0;
    const failing = app({
      embedderFor: async () => {
        attempts++;
        throw new Error("model folder not found");
      },
    });
    const r = await viaApp(failing)(post({ query: "cats" }));
    expect(r.status).toBe(503);
    expect(r.headers["retry-after"]).toBe("5");
    expect(r.json.error).toEqual({
      code: "embedder_unavailable",
      message: "query embedder could not be created: model folder not found",
    });
    // a failed creation is not cached
    await viaApp(failing)(post({ query: "cats" }));
    expect(attempts).toBe(2);
  });

  it("an unexpected exception → 500 internal without details", async () => {
    const r = await viaApp(app({ embedderFor: async () => Promise.reject(new TypeError("x is undefined")) }))(
      post({ query: "cats" }),
    );
    expect(r.status).toBe(503);
    const broken = app({
      snapshots: {
        current: async () => {
          throw new TypeError("secret internal detail");
        },
        status: () => ({ version: null, count: 0, ageS: null, cold: true }),
      },
    });
    const s = await viaApp(broken)(post({ query: "cats" }));
    expect(s.status).toBe(500);
    expect(s.json).toEqual({ error: { code: "internal", message: "internal error" } });
  });
});

describe("extension slots and CORS", () => {
  it("auth middleware guards /search only; extra routes take GET /", async () => {
    const call = viaApp(
      app({
        auth: async (c, next) =>
          c.req.header("x-api-key") === "k1"
            ? next()
            : c.json({ error: { code: "unauthorized", message: "no key" } }, 401),
        routes: (a) => a.get("/", (c) => c.html("<h1>playground</h1>")),
      }),
    );
    expect((await call(post({ query: "cats" }))).status).toBe(401);
    expect((await call({ method: "GET", path: "/search?q=cats" })).status).toBe(401);
    expect((await call(post({ query: "cats" }, { "x-api-key": "k1" }))).status).toBe(200);
    expect((await call({ method: "GET", path: "/health" })).status).toBe(200);
    const root = await call({ method: "GET", path: "/" });
    expect(root.text).toBe("<h1>playground</h1>");
    // without a playground, GET / describes the API
    expect((await viaApp(app())({ method: "GET", path: "/" })).json.endpoints).toContain("POST /search");
  });

  it("answers preflights and allows only the configured origins", async () => {
    const preflight = (a: ReturnType<typeof app>, origin: string) =>
      viaApp(a)({
        method: "OPTIONS",
        path: "/search",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
      });
    const open = await preflight(app(), "https://anywhere.example");
    expect(open.status).toBe(204);
    expect(open.headers["access-control-allow-origin"]).toBe("*");
    const listed = app({}, { CORS_ORIGINS: "https://a.example, https://b.example" });
    expect((await preflight(listed, "https://b.example")).headers["access-control-allow-origin"]).toBe(
      "https://b.example",
    );
    expect((await preflight(listed, "https://evil.example")).headers["access-control-allow-origin"]).toBeUndefined();
    const r = await viaApp(listed)(post({ query: "cats" }, { origin: "https://a.example" }));
    expect(r.headers["access-control-expose-headers"]).toMatch(/Server-Timing/);
  });
});
