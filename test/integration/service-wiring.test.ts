// The composition roots as deployed: createSearchService (functions/runtime/search-deps.ts) and
// startRerankServer (functions/rerank/server.ts) wire API keys (AUTH_MODE), the usage route and the
// playground. Filesystem store, hashing snapshot, tiny fixture cross-encoder; real HTTP for rerank.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRerankServer } from "../../functions/rerank/server.ts";
import { createSearchService } from "../../functions/runtime/search-deps.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { createApiKeySecurity } from "../../shared/http/auth.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";
import { corpusPassages } from "../helpers/search-fixture.ts";
import { HASHING_DIMENSIONS, publishPassages } from "../helpers/search-stack.ts";

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wiring-"));
  await publishPassages(createFsStore(dir), corpusPassages());
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = (extra: Record<string, string> = {}) =>
  loadConfig({
    STORE_KIND: "fs",
    STORE_DIR: dir,
    EMBEDDER: "hashing",
    HASHING_DIMENSIONS: String(HASHING_DIMENSIONS),
    RERANKER: "none",
    LOG_LEVEL: "SILENT",
    ...extra,
  });

const search = (headers: Record<string, string> = {}) =>
  new Request("http://local/search", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query: "cat purrs", k: 2 }),
  });

describe("search composition root", () => {
  it("AUTH_MODE=off: /search is open and the playground is served at GET /", async () => {
    const svc = createSearchService(env({ AUTH_MODE: "off" }), { quiet: true });
    try {
      expect((await svc.app.request(search())).status).toBe(200);
      const page = await svc.app.request("/");
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/text\/html/);
      // /usage is per key: without auth there is no key to report on.
      expect((await svc.app.request("/usage")).status).toBe(401);
    } finally {
      svc.close();
    }
  });

  it("INDEX_SEARCH_PARAMS reach the loaded index, over what the snapshot recorded", async () => {
    const hnswDir = mkdtempSync(join(tmpdir(), "wiring-hnsw-"));
    try {
      await publishPassages(createFsStore(hnswDir), corpusPassages(), { indexType: "hnsw" });
      const recorded = createSearchService(env({ STORE_DIR: hnswDir }), { quiet: true });
      const tuned = createSearchService(env({ STORE_DIR: hnswDir, INDEX_SEARCH_PARAMS: "efSearch=7" }), {
        quiet: true,
      });
      try {
        const params = async (svc: typeof tuned) =>
          ((await svc.loader.current()).index as unknown as { params: Record<string, unknown> }).params;
        expect((await params(recorded)).efSearch).toBe(128);
        expect((await params(tuned)).efSearch).toBe(7);
        expect((await tuned.app.request(search())).status).toBe(200);
        const health = (await (await tuned.app.request("/health")).json()) as { index: unknown };
        expect(health.index).toMatchObject({ type: "hnsw", params: { factory: "HNSW32,Flat", efSearch: 7 } });
      } finally {
        recorded.close();
        tuned.close();
      }
    } finally {
      rmSync(hnswDir, { recursive: true, force: true });
    }
  });

  it("AUTH_MODE=required: /search needs a key, /health does not, /usage reports the key's queries", async () => {
    const svc = createSearchService(env({ AUTH_MODE: "required" }), { quiet: true });
    try {
      const { key } = await svc.security.keys.create({ name: "tenant" });
      expect((await svc.app.request(search())).status).toBe(401);
      expect((await svc.app.request("/health")).status).toBe(200);
      expect((await svc.app.request(search({ "x-api-key": key }))).status).toBe(200);
      const usage = await svc.app.request("/usage", { headers: { "x-api-key": key } });
      expect(usage.status).toBe(200);
      const body = (await usage.json()) as { totals: Record<string, number> };
      expect(body.totals.queries).toBe(1);
      expect(JSON.stringify(body)).not.toContain(key);
    } finally {
      svc.close();
    }
  });
});

describe("rerank server", () => {
  it("AUTH_MODE=required: /rerank needs a key, /health does not, /usage counts rerank pairs", async () => {
    const modelDir = await ensureFixtureModel("tiny-cross");
    const cfg = env({ AUTH_MODE: "required", RERANKER_MODEL_DIR: modelDir, RERANKER_PROVIDER: "cpu" });
    // Keys live in the same store the server reads (created as the CLI would).
    const { key } = await createApiKeySecurity(cfg, createFsStore(dir)).keys.create({ name: "rerank-tenant" });
    const server = await startRerankServer(cfg, { port: 0, hostname: "127.0.0.1", quiet: true });
    const url = `http://127.0.0.1:${server.port}`;
    try {
      const rerank = (headers: Record<string, string> = {}) =>
        fetch(`${url}/rerank`, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ query: "cats", documents: ["a cat", "a dog", "a bird"] }),
        });
      expect((await rerank()).status).toBe(401);
      expect((await fetch(`${url}/health`)).status).toBeLessThan(500);
      expect((await rerank({ "x-api-key": key })).status).toBe(200);
      const usage = await fetch(`${url}/usage`, { headers: { "x-api-key": key } });
      expect(usage.status).toBe(200);
      expect(((await usage.json()) as { totals: Record<string, number> }).totals.rerank_pairs).toBe(3);
    } finally {
      await server.close();
    }
  });

  it("startRerankServer rejects when the port is taken (EADDRINUSE)", async () => {
    const modelDir = await ensureFixtureModel("tiny-cross");
    const cfg = env({ RERANKER_MODEL_DIR: modelDir, RERANKER_PROVIDER: "cpu" });
    const first = await startRerankServer(cfg, { port: 0, hostname: "127.0.0.1", quiet: true });
    try {
      await expect(
        startRerankServer(cfg, { port: first.port, hostname: "127.0.0.1", quiet: true }),
      ).rejects.toMatchObject({ code: "EADDRINUSE" });
    } finally {
      await first.close();
    }
  });
});
