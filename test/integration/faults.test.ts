// Fault tolerance with real parts on loopback (issue 10): the search service built by its composition
// root (functions/runtime/search-deps.ts) over s3rver or a filesystem store, a real faiss snapshot, an
// OpenAI-compatible embeddings server on loopback, and the deployed reindex handler in a child
// process that is killed with SIGKILL mid-build.
//
// Reranker faults (slow past RERANKER_TIMEOUT_MS, HTTP 500, malformed JSON, unreachable → first-stage
// results, `reranked: false`, one warning) are covered over every transport in
// test/integration/search-app.test.ts ("a failing reranker never turns into a 5xx"); not repeated here.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startSearchServer } from "../../functions/search/server.ts";
import { createReindexService } from "../../functions/runtime/reindex-deps.ts";
import { createSearchService, type SearchService } from "../../functions/runtime/search-deps.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import { loadConfig } from "../../shared/core/config.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { readPointer } from "../../shared/core/publish.ts";
import { INDEX_FILE, PASSAGES_FILE, snapshotFileKey } from "../../shared/core/snapshot.ts";
import { cleanEnv, spawnScript } from "../helpers/child.ts";
import { doc, jsonl, liveSnapshot } from "../helpers/reindex.ts";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";
import { corpusPassages } from "../helpers/search-fixture.ts";
import { HASHING_DIMENSIONS, INDEX_PREFIX, publishPassages } from "../helpers/search-stack.ts";

const API_KEY = "sk-faults-0123456789abcdefSECRET";

/** An OpenAI-compatible POST /v1/embeddings server whose behaviour the test switches. */
class EmbeddingsServer {
  server!: Server;
  baseURL = "";
  requests = 0;
  /** 200 = answer; anything else = that status with an OpenAI-style error body. */
  status = 200;
  delayMs = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.baseURL = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    this.requests++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (res.destroyed) return;
    if (this.status !== 200) {
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (this.status === 429) headers["retry-after-ms"] = "50";
      res.writeHead(this.status, headers);
      res.end(JSON.stringify({ error: { message: `scripted ${this.status}`, type: "server_error" } }));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const input: string[] = typeof body.input === "string" ? [body.input] : body.input;
    const dims: number = body.dimensions ?? 16;
    const data = input.map((text, index) => {
      // Deterministic vector per text (bag of character codes), so equal texts embed equally.
      const v = new Float32Array(dims);
      for (let i = 0; i < text.length; i++) v[text.charCodeAt(i) % dims] += 1;
      v[0] += 0.5;
      const embedding = body.encoding_format === "base64" ? Buffer.from(v.buffer).toString("base64") : Array.from(v);
      return { object: "embedding", index, embedding };
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "list", data, model: body.model, usage: { prompt_tokens: 1, total_tokens: 1 } }));
  }
}

const s3Env = (s3: { endpoint: string; bucket: string }) => ({
  STORE_KIND: "s3",
  BUCKET: s3.bucket,
  S3_ENDPOINT: s3.endpoint,
  S3_FORCE_PATH_STYLE: "true",
  AWS_REGION: "us-east-1",
});

const hashingEnv = { EMBEDDER: "hashing", HASHING_DIMENSIONS: String(HASHING_DIMENSIONS), RERANKER: "none" };

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const searchReq = (query: string, extra: Record<string, unknown> = {}) =>
  new Request("http://local/search", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, k: 3, ...extra }),
  });

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies of several shapes
async function call(svc: SearchService, req: Request): Promise<{ status: number; headers: Headers; json: any }> {
  const res = await svc.app.request(req);
  return { status: res.status, headers: res.headers, json: await res.json() };
}

const services: SearchService[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const s of services.splice(0)) s.close();
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(() => {
  // The S3 client reads credentials from the environment (s3rver accepts any).
  process.env.AWS_ACCESS_KEY_ID ??= "S3RVER";
  process.env.AWS_SECRET_ACCESS_KEY ??= "S3RVER";
});

describe("object store faults", () => {
  it("S3 unreachable at cold start → /health and /search answer 503 with Retry-After", async () => {
    const port = await closedPort();
    const cfg = loadConfig({ ...s3Env({ endpoint: `http://127.0.0.1:${port}`, bucket: "gone" }), ...hashingEnv });
    const svc = createSearchService(cfg, { quiet: true });
    services.push(svc);

    const health = await call(svc, new Request("http://local/health"));
    expect(health.status).toBe(503);
    expect(Number(health.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(health.json.status).toBe("unavailable");
    expect(health.json.error.code).toMatch(/unavailable/);

    const search = await call(svc, searchReq("cats"));
    expect(search.status).toBe(503);
    expect(Number(search.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(search.json.error.code).toMatch(/unavailable/);
    expect(typeof search.json.error.message).toBe("string");
  });

  it("S3 unreachable while warm → keeps serving the loaded snapshot", async () => {
    const s3 = await startLocalS3();
    let s3Closed = false;
    cleanups.push(() => (s3Closed ? undefined : s3.close()));
    const cfg = loadConfig({ ...s3Env(s3), ...hashingEnv, INDEX_REFRESH_S: "0" });
    await publishPassages(createStore(cfg), corpusPassages());
    const svc = createSearchService(cfg, { quiet: true });
    services.push(svc);

    const before = await call(svc, searchReq("cat purrs"));
    expect(before.status).toBe(200);
    expect(before.json.results.length).toBeGreaterThan(0);

    await s3.close();
    s3Closed = true;
    // INDEX_REFRESH_S=0: every request checks the pointer in the background, and every check now fails.
    expect(await svc.loader.refresh().catch(() => false)).toBe(false);
    for (let i = 0; i < 3; i++) {
      const after = await call(svc, searchReq("cat purrs"));
      expect(after.status).toBe(200);
      expect(after.json.results).toEqual(before.json.results);
    }
    const health = await call(svc, new Request("http://local/health"));
    expect(health.status).toBe(200);
    expect(health.json.index.version).toBe(before.json.index.version);
  });

  it("a passage-text block that does not verify fails only the searches that need it, with a clear 503", async () => {
    const s3 = await startLocalS3();
    cleanups.push(() => s3.close());
    const cfg = loadConfig({ ...s3Env(s3), ...hashingEnv, INDEX_REFRESH_S: "3600", PASSAGE_TEXTS: "lazy" });
    const store: ObjectStore = createStore(cfg);
    // Long texts, so the store has several 64 KiB blocks; the last document sits in the last one.
    const filler = "lorem ipsum dolor sit amet ".repeat(400);
    const docs = Array.from({ length: 40 }, (_, i) => ({
      id: `doc${i}`,
      source: `kb/${i}.md`,
      metadata: {},
      passages: [i === 39 ? `zebra quagga okapi ${filler}` : `${["river", "canyon", "glacier"][i % 3]} ${i} ${filler}`],
    }));
    const { version } = await publishPassages(store, corpusPassages(docs));
    const key = snapshotFileKey(cfg.indexPrefix, version, PASSAGES_FILE);
    const body = Uint8Array.from((await store.get(key))!.body);
    body[body.length - 3] ^= 0x20;
    await store.put(key, body);
    const svc = createSearchService(cfg, { quiet: true });
    services.push(svc);

    const bad = await call(svc, searchReq("zebra quagga okapi", { k: 1, candidates: 1, retrieval: "sparse" }));
    expect(bad.status).toBe(503);
    expect(bad.headers.get("retry-after")).toBe("5");
    expect(bad.json.error.code).toBe("store_unavailable");
    expect(bad.json.error.message).toMatch(/passage texts .* could not be read: block \d+ does not match its digest/);
    const good = await call(svc, searchReq("glacier", { k: 2, candidates: 2, retrieval: "sparse" }));
    expect(good.status).toBe(200);
    expect(good.json.results[0].text).toMatch(/^glacier/);
    const health = await call(svc, new Request("http://local/health"));
    expect(health.status).toBe(200);
    expect(health.json.index.passages).toMatchObject({ texts: "lazy" });
    expect(health.json.index.passages.failed_reads).toBeGreaterThan(0);
  });

  it("a corrupt or partial new snapshot is rejected and the previous one keeps serving", async () => {
    const s3 = await startLocalS3();
    cleanups.push(() => s3.close());
    const cfg = loadConfig({ ...s3Env(s3), ...hashingEnv, INDEX_REFRESH_S: "3600" });
    const store: ObjectStore = createStore(cfg);
    const v1 = await publishPassages(store, corpusPassages(), { version: "20260101T000001Z-good" });
    const svc = createSearchService(cfg, { quiet: true });
    services.push(svc);
    const first = await call(svc, searchReq("cat purrs"));
    expect(first.status, JSON.stringify(first.json)).toBe(200);
    expect(first.json.index.version).toBe(v1.version);

    const damage: Array<[string, string, (b: Uint8Array) => Uint8Array]> = [
      [
        "20260101T000002Z-flippedbyte",
        INDEX_FILE,
        (b) => {
          const c = Uint8Array.from(b);
          c[Math.floor(c.length / 2)] ^= 0xff;
          return c;
        },
      ],
      ["20260101T000003Z-truncpassages", PASSAGES_FILE, (b) => b.slice(0, Math.floor(b.length / 2))],
      ["20260101T000004Z-truncindex", INDEX_FILE, (b) => b.slice(0, 100)],
    ];
    for (const [version, file, corrupt] of damage) {
      await publishPassages(store, corpusPassages().slice(1), { version });
      const key = snapshotFileKey(INDEX_PREFIX, version, file);
      const original = (await store.get(key))!.body;
      await store.put(key, corrupt(original));
      expect((await readPointer(store, INDEX_PREFIX))?.pointer.version, version).toBe(version);

      await expect(svc.loader.refresh(), version).resolves.toBe(false);
      const r = await call(svc, searchReq("cat purrs"));
      expect(r.status, version).toBe(200);
      expect(r.json.index.version, version).toBe(v1.version);
      expect(r.json.results, version).toEqual(first.json.results);
    }

    // A sound version after the bad ones goes live.
    const v5 = await publishPassages(store, corpusPassages(), { version: "20260101T000005Z-good" });
    await expect(svc.loader.refresh()).resolves.toBe(true);
    expect((await call(svc, searchReq("cat purrs"))).json.index.version).toBe(v5.version);
  });
});

describe("local servers", () => {
  it("startSearchServer rejects when the port is taken (EADDRINUSE) instead of crashing", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => taken.close(r)));
    const port = (taken.address() as AddressInfo).port;
    const dir = mkdtempSync(join(tmpdir(), "faults-port-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const cfg = loadConfig({ STORE_KIND: "fs", STORE_DIR: dir, ...hashingEnv });
    await expect(
      startSearchServer(cfg, { port, hostname: "127.0.0.1", overrides: { quiet: true } }),
    ).rejects.toMatchObject({ code: "EADDRINUSE" });
  });
});

describe("embedding provider faults", () => {
  const embeddings = new EmbeddingsServer();
  let dir: string;
  beforeAll(async () => {
    await embeddings.start();
    dir = mkdtempSync(join(tmpdir(), "faults-embed-"));
  });
  afterAll(async () => {
    await embeddings.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("429/5xx → retries within EMBED_TIMEOUT_MS, then dense answers a clear 503 embedder_unavailable and hybrid answers from BM25 with a warning; recovers after", async () => {
    const cfg = loadConfig({
      STORE_KIND: "fs",
      STORE_DIR: dir,
      EMBEDDER: "openai",
      OPENAI_BASE_URL: embeddings.baseURL,
      OPENAI_API_KEY: API_KEY,
      OPENAI_EMBEDDING_DIMENSIONS: "16",
      EMBED_TIMEOUT_MS: "1500",
      RERANKER: "none",
      LOG_LEVEL: "SILENT",
    });
    // A snapshot embedded by this provider, so the query embedder matches its identity.
    const reindex = createReindexService(cfg, { log: () => {} });
    await reindex.store.put("corpus/a.jsonl", jsonl([doc("a1", "glacier"), doc("a2", "volcano"), doc("a3", "comet")]));
    await reindex.run();
    const svc = createSearchService(cfg, { quiet: true });
    services.push(svc);
    expect((await call(svc, searchReq("glacier report"))).status).toBe(200);

    for (const status of [429, 500, 503]) {
      embeddings.status = status;
      embeddings.requests = 0;
      // The default (hybrid) still has a first stage without the embedder: BM25, said in a warning.
      const hybrid = await call(svc, searchReq(`glacier report ${status}`));
      expect(hybrid.status, String(status)).toBe(200);
      expect(hybrid.json.retrieval).toBe("sparse");
      expect(hybrid.json.results[0].doc_id).toBe("a1");
      expect(hybrid.json.warnings.join(" ")).toMatch(/query embedding failed.*results are sparse \(BM25\) only/);
      expect(JSON.stringify(hybrid.json)).not.toContain(API_KEY);
      embeddings.requests = 0;
      const r = await call(svc, searchReq(`glacier report ${status}`, { retrieval: "dense" }));
      expect(r.status, String(status)).toBe(503);
      expect(r.json.error.code, String(status)).toBe("embedder_unavailable");
      expect(r.json.error.message, String(status)).toMatch(/\S/);
      expect(JSON.stringify(r.json)).not.toContain(API_KEY);
      expect(Number(r.headers.get("retry-after")), String(status)).toBeGreaterThanOrEqual(1);
      // Retried before giving up (the server failed every attempt).
      expect(embeddings.requests, String(status)).toBeGreaterThan(1);
    }

    embeddings.status = 200;
    expect((await call(svc, searchReq("glacier report again"))).status).toBe(200);
  });
});

describe("reindex killed mid-build", () => {
  let s3: LocalS3;
  const embeddings = new EmbeddingsServer();
  beforeAll(async () => {
    s3 = await startLocalS3();
    await embeddings.start();
  });
  afterAll(async () => {
    await embeddings.close();
    await s3?.close();
  });

  const childEnv = () =>
    cleanEnv({
      ...s3Env(s3),
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      EMBEDDER: "openai",
      OPENAI_BASE_URL: embeddings.baseURL,
      OPENAI_API_KEY: API_KEY,
      OPENAI_EMBEDDING_DIMENSIONS: "16",
      LOG_LEVEL: "DEBUG",
    });

  async function runToEnd(key: string): Promise<string> {
    const child = spawnScript(["test/helpers/run-reindex-handler.ts", key], childEnv());
    cleanups.push(() => child.kill());
    await child.waitFor(/reindex-result /, 60_000);
    expect((await child.exited).code).toBe(0);
    return child.output();
  }

  it("SIGKILL during embedding leaves the pointer unchanged; the next event completes the job", async () => {
    const store = createStore(loadConfig({ ...s3Env(s3), ...hashingEnv }));
    await store.put("corpus/first.jsonl", jsonl([doc("f1", "river"), doc("f2", "canyon")]));
    await runToEnd("corpus/first.jsonl");
    const before = await liveSnapshot(store);
    expect(before?.docIds).toEqual(["f1", "f2"]);

    const added = Array.from({ length: 6 }, (_, i) => `batch${i}`);
    for (const [i, id] of added.entries()) {
      await store.put(`corpus/more/${i}.jsonl`, jsonl([doc(id, "nebula", 4)]));
    }
    embeddings.delayMs = 400; // slow provider: the build is still embedding when it is killed
    const child = spawnScript(["test/helpers/run-reindex-handler.ts", "corpus/more/0.jsonl"], childEnv());
    cleanups.push(() => child.kill());
    await child.waitFor(/corpus object embedded/, 60_000);
    child.process.kill("SIGKILL");
    expect((await child.exited).signal).toBe("SIGKILL");
    expect(child.output()).not.toMatch(/snapshot published|reindex-result/);

    const afterKill = await liveSnapshot(store);
    expect(afterKill?.version).toBe(before?.version);
    expect(afterKill?.etag).toBe(before?.etag);
    expect(afterKill?.docIds).toEqual(["f1", "f2"]);

    embeddings.delayMs = 0;
    const out = await runToEnd("corpus/more/5.jsonl");
    expect(out).toMatch(/snapshot published/);
    const after = await liveSnapshot(store);
    expect(after?.version).not.toBe(before?.version);
    expect(after?.docIds).toEqual([...added, "f1", "f2"].sort());
  });
});
