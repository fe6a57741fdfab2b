// The search app (createSearchApp) wired with API keys, rate limits, usage metering and request
// logging exactly as the composition root should do it, served over real HTTP on loopback.
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../shared/core/config.ts";
import type { RerankerPort, SnapshotSource } from "../../shared/core/ports.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import {
  createLogger,
  createMetrics,
  observe,
  requestLogging,
  searchObservation,
} from "../../shared/adapters/observability.ts";
import { createApiKeySecurity } from "../../shared/http/auth.ts";
import { createSearchApp } from "../../shared/http/search-app.ts";
import { bowEmbedder, jsSnapshot, overlapScore, rerankAnswer } from "../helpers/search-fixture.ts";

let root: string;
let server: ServerType;
let url: string;
let goodKey: string;
let slowKey: string;
let rerankFails = false;
let stdout: string[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "search-auth-"));
  const cfg = loadConfig({ STORE_DIR: root, AUTH_MODE: "required" });
  const store = createFsStore(cfg.storeDir);
  const security = createApiKeySecurity(cfg, store);
  goodKey = (await security.keys.create({ name: "tenant" })).key;
  slowKey = (await security.keys.create({ name: "slow", rate: { rps: 0.01, burst: 1 } })).key;
  const obsOpts = { serviceName: "search-auth-test", logLevel: "INFO" as const, namespace: "Test", secrets: [] };

  const snapshot = jsSnapshot();
  const snapshots: SnapshotSource = {
    current: async () => snapshot,
    status: () => ({ version: snapshot.version, count: snapshot.passages.count, ageS: 0, cold: false }),
  };
  const reranker: RerankerPort = {
    describe: () => ({ kind: "in-process", model: "overlap" }),
    rerank: async (req) => {
      if (rerankFails) throw new Error("reranker down");
      return rerankAnswer(req, overlapScore(req.query));
    },
  };
  const app = createSearchApp({
    snapshots,
    embedderFor: async () => bowEmbedder(),
    reranker,
    config: cfg,
    middleware: [requestLogging({ logger: createLogger(obsOpts), metrics: createMetrics(obsOpts) })],
    auth: security.auth,
    hooks: { onSearch: (c, res) => observe(c, searchObservation(res, { rerankerConfigured: true })) },
    routes: (a) => {
      a.route("/", security.usageApp);
    },
  });
  server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  vi.spyOn(process.stdout, "write").mockImplementation(((chunk: unknown) => {
    stdout.push(String(chunk));
    return true;
  }) as typeof process.stdout.write);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await new Promise<void>((r) => server?.close(() => r()));
  rmSync(root, { recursive: true, force: true });
});

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/search`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

describe("search API with API keys", () => {
  it("requires a key on /search (POST and GET) but not on /health", async () => {
    expect((await post({ query: "cats" })).status).toBe(401);
    expect((await fetch(`${url}/search?q=cats`)).status).toBe(401);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await post({ query: "cats" }, { "x-api-key": goodKey })).status).toBe(200);
    expect((await fetch(`${url}/search?q=cats`, { headers: { authorization: `Bearer ${goodKey}` } })).status).toBe(200);
  });

  it("rate-limits per key with Retry-After", async () => {
    expect((await post({ query: "dogs" }, { "x-api-key": slowKey })).status).toBe(200);
    const limited = await post({ query: "dogs" }, { "x-api-key": slowKey });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });

  it("meters queries, rerank pairs and degraded answers, and shows them to the key owner", async () => {
    stdout = [];
    const before = (await (await fetch(`${url}/usage`, { headers: { "x-api-key": goodKey } })).json()) as {
      totals: Record<string, number>;
    };
    const ok = await post({ query: "cats purr", k: 3, candidates: 8 }, { "x-api-key": goodKey });
    const okBody = (await ok.json()) as { reranked: boolean; reranked_candidates: number };
    expect(okBody.reranked).toBe(true);
    rerankFails = true;
    const degraded = await post({ query: "cats purr", k: 3, candidates: 8 }, { "x-api-key": goodKey });
    rerankFails = false;
    expect(((await degraded.json()) as { reranked: boolean }).reranked).toBe(false);
    expect((await post({ query: "" }, { "x-api-key": goodKey })).status).toBe(400);

    const after = (await (await fetch(`${url}/usage`, { headers: { "x-api-key": goodKey } })).json()) as {
      totals: Record<string, number>;
    };
    const delta = (k: string) => after.totals[k] - before.totals[k];
    expect(delta("queries")).toBe(2);
    expect(delta("rerank_pairs")).toBe(okBody.reranked_candidates);
    expect(delta("degraded")).toBe(1);
    // The two searches, the invalid one, and the first /usage call itself.
    expect(delta("requests")).toBe(4);

    const lines = stdout
      .join("")
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const searchLines = lines.filter((l) => l.message === "request" && l.path === "/search");
    expect(searchLines.map((l) => l.status)).toEqual([200, 200, 400]);
    expect(searchLines[0].key_id).toMatch(/^[0-9a-f]{16}$/);
    expect(stdout.join("")).not.toContain(goodKey);
    expect(lines.some((l) => l._aws && l.DegradedResponses === 1)).toBe(true);
  });
});
