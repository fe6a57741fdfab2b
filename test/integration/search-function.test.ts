// The search function as deployed: configuration from environment variables, the composition
// root (functions/runtime/search-deps.ts), the Lambda handler fed API Gateway v2 events, and the
// local server. Snapshot in a filesystem store; reranker = our rerank service over loopback HTTP,
// or the in-process ONNX cross-encoder on the tiny fixture model (scores carry no meaning).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtureModel } from "../../scripts/fixtures/index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createInProcessReranker } from "../../shared/adapters/reranker-clients.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { createRerankApp } from "../../shared/http/rerank-app.ts";
import { corpusPassages, overlapScore, rerankAnswer } from "../helpers/search-fixture.ts";
import { HASHING_DIMENSIONS, publishPassages } from "../helpers/search-stack.ts";
import { type Call, viaHttp, viaLambda } from "../helpers/transports.ts";

const storeDir = mkdtempSync(join(tmpdir(), "search-fn-"));
let rerankServer: ReturnType<typeof serve>;
let rerankUrl: string;

const env = (extra: Record<string, string> = {}) => ({
  STORE_KIND: "fs",
  STORE_DIR: storeDir,
  EMBEDDER: "hashing",
  HASHING_DIMENSIONS: String(HASHING_DIMENSIONS),
  LOG_LEVEL: "SILENT",
  ...extra,
});

const search: Call = {
  method: "POST",
  path: "/search",
  body: JSON.stringify({ query: "cat purrs", k: 3 }),
  headers: { "content-type": "application/json" },
};

beforeAll(async () => {
  const scorer = createInProcessReranker(async (req) =>
    rerankAnswer(req, overlapScore(req.query), 5 * req.documents.length),
  );
  const app = createRerankApp({ reranker: scorer, token: "tok" });
  const port = await new Promise<number>((resolve) => {
    rerankServer = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => resolve(info.port));
  });
  rerankUrl = `http://127.0.0.1:${port}`;
  await publishPassages(createFsStore(storeDir), corpusPassages());
});

afterAll(() => {
  rerankServer?.close();
  rmSync(storeDir, { recursive: true, force: true });
});

describe("search function (Lambda handler, configuration from the environment)", () => {
  it("answers API Gateway v2 events with reranked results", async () => {
    Object.assign(process.env, env({ RERANKER: "http", RERANKER_URL: rerankUrl, RERANKER_TOKEN: "tok" }));
    const { handler } = await import("../../functions/search/handler.ts");
    const call = viaLambda(handler);
    const r = await call(search);
    expect(r.status, r.text).toBe(200);
    expect(r.json.reranked).toBe(true);
    expect(r.json.results[0].doc_id).toBe("cats");
    expect(r.json.results.map((h: { rerank: { rank: number } }) => h.rerank.rank)).toEqual([1, 2, 3]);
    // request logging takes API Gateway's request id
    expect(r.headers["x-request-id"]).toMatch(/^req-\d+-/);
    const health = await call({ method: "GET", path: "/health" });
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({
      index: { count: corpusPassages().length },
      embedder: { setting: "hashing", identity: { kind: "hashing", dimensions: HASHING_DIMENSIONS } },
      reranker: { kind: "http", url: `${rerankUrl}/rerank` },
      store: { kind: "fs" },
    });
  });

  it("the local server gives the same results", async () => {
    const { startSearchServer } = await import("../../functions/search/server.ts");
    const srv = await startSearchServer(
      loadConfig(env({ RERANKER: "http", RERANKER_URL: rerankUrl, RERANKER_TOKEN: "tok" })),
      {
        port: 0,
        hostname: "127.0.0.1",
        overrides: { quiet: true },
      },
    );
    try {
      const res = await fetch(`http://127.0.0.1:${srv.port}/search`, {
        method: "POST",
        headers: search.headers,
        body: search.body,
      });
      const body = await res.json();
      const { handler } = await import("../../functions/search/handler.ts");
      const viaFn = await viaLambda(handler)(search);
      expect(body.results).toEqual(viaFn.json.results);
    } finally {
      await srv.close();
    }
  });

  it("a wrong reranker token degrades to first-stage results with the reranker's 401 in the warning", async () => {
    const { createSearchService } = await import("../../functions/runtime/search-deps.ts");
    const svc = createSearchService(
      loadConfig(env({ RERANKER: "http", RERANKER_URL: rerankUrl, RERANKER_TOKEN: "wrong" })),
      { quiet: true },
    );
    try {
      const http = await viaHttp(svc.app);
      const r = await http.call(search);
      await http.close();
      expect(r.status).toBe(200);
      expect(r.json.reranked).toBe(false);
      expect(r.json.warnings[0]).toMatch(/answered HTTP 401: unauthorized: missing or wrong bearer token/);
    } finally {
      svc.close();
    }
  });

  it("RERANKER=in-process runs the ONNX cross-encoder in the function (tiny fixture model)", async () => {
    const modelDir = await ensureFixtureModel("tiny-cross");
    const { createSearchService } = await import("../../functions/runtime/search-deps.ts");
    const svc = createSearchService(
      loadConfig(env({ RERANKER: "in-process", RERANKER_MODEL_DIR: modelDir, RERANKER_TIMEOUT_MS: "20000" })),
      {
        quiet: true,
      },
    );
    try {
      const r = await viaHttp(svc.app).then(async (h) => {
        const a = await h.call({ ...search, body: JSON.stringify({ query: "cat purrs", k: 3, candidates: 6 }) });
        await h.close();
        return a;
      });
      expect(r.status).toBe(200);
      expect(r.json.warnings).toEqual([]);
      expect(r.json.reranked).toBe(true);
      expect(r.json.reranked_candidates).toBe(6);
      // fixture weights: the order carries no meaning, but every result has a finite rerank score and rank
      for (const h of r.json.results) expect(Number.isFinite(h.rerank.score)).toBe(true);
      const health = await svc.app.request("/health");
      expect((await health.json()).reranker).toMatchObject({ kind: "in-process", fixture: true, warm: true });
    } finally {
      svc.close();
    }
  });

  it("a query embedder that cannot match the snapshot → 409 naming the settings to use", async () => {
    const { createSearchService } = await import("../../functions/runtime/search-deps.ts");
    const svc = createSearchService(
      loadConfig(env({ RERANKER: "none", EMBEDDER: "openai", OPENAI_API_KEY: "sk-test-not-used" })),
      {
        quiet: true,
      },
    );
    try {
      const r = await svc.app.request("/search?q=cats");
      const body = await r.json();
      expect(r.status).toBe(409);
      expect(body.error.code).toBe("embedder_mismatch");
      expect(body.error.message).toMatch(/built with hashing\/.*EMBEDDER=hashing HASHING_DIMENSIONS=1024/);
    } finally {
      svc.close();
    }
  });

  it("RERANKER=none serves first-stage results", async () => {
    const { createSearchService } = await import("../../functions/runtime/search-deps.ts");
    const svc = createSearchService(loadConfig(env({ RERANKER: "none" })), { quiet: true });
    try {
      const r = await svc.app.request("/search?q=cats&k=2");
      const body = await r.json();
      expect(r.status).toBe(200);
      expect(body.reranked).toBe(false);
      expect(body.results).toHaveLength(2);
    } finally {
      svc.close();
    }
  });
});
