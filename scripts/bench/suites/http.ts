// http: the search API under load. A snapshot of the Cranfield abstracts (or a synthetic corpus
// when ../shared/data is absent) is built with the hashing embedder, published to a filesystem
// store and served by the real composition root (functions/runtime/search-deps.ts, request logging
// off) in a child process, with the in-process ONNX cross-encoder on a generated fixture model
// (MiniLM-L6-shaped; tiny with --quick; its scores carry no meaning). autocannon drives it over
// loopback at concurrency 1 and 32, reranking off and on.
//
// The API layer's own overhead is the HTTP p50 at concurrency 1 minus the p50 of the same pipeline
// called in-process (searchTwoStage with the same snapshot, embedder and reranker), measured in the
// server process in the same run. app.request() (Hono without a socket) is measured beside it, so
// the overhead splits into routing/validation/JSON and node:http + loopback TCP.
import { type ChildProcess, fork } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { once } from "node:events";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_SHARED_DATA, ensureFixtureModel } from "../../fixtures/index.ts";
import {
  type Figure,
  figure,
  stats,
  type Suite,
  type SuiteContext,
  type SuiteResult,
  type TimingStats,
} from "../harness.ts";

const HASHING_DIMENSIONS = 2048;
const K = 4;
const CANDIDATES = 20;
const OVERHEAD_GOAL_MS = 2;

// ---------- corpus and queries ----------

interface Doc {
  id: string;
  text: string;
}

function readJsonl<T>(file: string): T[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

/** Cranfield when present (1400 abstracts, 225 queries), else a deterministic synthetic corpus. */
function corpus(): { docs: Doc[]; queries: string[]; name: string } {
  const dir = path.join(DEFAULT_SHARED_DATA, "cranfield");
  if (existsSync(path.join(dir, "corpus.jsonl"))) {
    const docs = readJsonl<{ _id: string; title?: string; text: string }>(path.join(dir, "corpus.jsonl")).map((d) => ({
      id: d._id,
      text: d.title ? `${d.title}. ${d.text}` : d.text,
    }));
    const queries = readJsonl<{ text: string }>(path.join(dir, "queries.jsonl")).map((q) => q.text);
    return { docs, queries, name: "cranfield" };
  }
  const words =
    "boundary layer flow plate supersonic speed heat transfer pressure shock wave wing body nozzle turbulent laminar drag lift vortex jet cylinder cone".split(
      " ",
    );
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const text = (n: number) => Array.from({ length: n }, () => words[Math.floor(rnd() * words.length)]).join(" ");
  const docs = Array.from({ length: 1400 }, (_, i) => ({ id: String(i + 1), text: text(120) }));
  const queries = Array.from({ length: 100 }, () => text(8));
  return { docs, queries, name: "synthetic (../shared/data absent)" };
}

// ---------- the server process ----------

type ToChild =
  | { type: "inproc"; rerank: boolean; reps: number; warmup: number; queries: string[] }
  | { type: "core1"; rerank: boolean; query: string }
  | { type: "stats" }
  | { type: "exit" };
type FromChild =
  | { type: "ready"; port: number; reranker: Record<string, unknown> }
  | { type: "inproc"; core: number[]; app: number[]; warnings: string[] }
  | { type: "core1"; ms: number }
  | { type: "stats"; searches: number; degraded: number; warnings: string[] }
  | { type: "error"; message: string };

async function childMain(): Promise<void> {
  const { serve } = await import("@hono/node-server");
  const { loadConfig } = await import("../../../shared/core/config.ts");
  const { createRerankCostTracker } = await import("../../../shared/core/budget.ts");
  const { searchTwoStage } = await import("../../../shared/core/search.ts");
  const { createSearchService, embedderForConfig } = await import("../../../functions/runtime/search-deps.ts");
  const send = (m: FromChild) => process.send?.(m);
  try {
    const cfg = loadConfig({
      STORE_KIND: "fs",
      STORE_DIR: process.env.BENCH_STORE_DIR,
      EMBEDDER: "hashing",
      HASHING_DIMENSIONS: String(HASHING_DIMENSIONS),
      RERANKER: "in-process",
      RERANKER_MODEL_DIR: process.env.BENCH_MODEL_DIR,
      // Long enough that every "rerank on" answer is really reranked, even queued behind 31 others.
      RERANKER_TIMEOUT_MS: "60000",
      // The service defaults unless set: BENCH_RERANKER_CACHE_MB=0 measures the model on every call.
      RERANKER_CACHE_MB: process.env.BENCH_RERANKER_CACHE_MB ?? "",
      RERANKER_QUANTIZED: process.env.BENCH_RERANKER_QUANTIZED ?? "",
      LOG_LEVEL: "SILENT",
    });
    let searches = 0;
    let degraded = 0;
    const warnings = new Set<string>();
    const service = createSearchService(cfg, {
      quiet: true,
      app: {
        hooks: {
          onSearch: (_c, r) => {
            searches++;
            if (r.warnings.length > 0) {
              degraded++;
              for (const w of r.warnings) if (warnings.size < 5) warnings.add(w);
            }
          },
        },
      },
    });
    const snapshot = await service.loader.current();
    await (service.reranker as { warm?: () => Promise<unknown> }).warm?.();
    const embedder = await embedderForConfig(cfg)(snapshot.manifest);
    const server = serve({ fetch: service.app.fetch, port: 0, hostname: "127.0.0.1" }, (info) =>
      send({ type: "ready", port: info.port, reranker: { ...service.reranker.describe() } }),
    );
    process.on("message", async (msg: ToChild) => {
      if (msg.type === "exit") {
        server.close();
        service.close();
        process.exit(0);
      }
      if (msg.type === "stats") send({ type: "stats", searches, degraded, warnings: [...warnings] });
      const deps = {
        snapshot,
        embedder,
        reranker: service.reranker,
        estimate: createRerankCostTracker(),
        limits: { maxCandidates: cfg.maxCandidates, embedTimeoutMs: cfg.embedTimeoutMs },
        rerankTimeoutMs: cfg.rerankerTimeoutMs,
      };
      if (msg.type === "core1") {
        const t = performance.now();
        await searchTwoStage(
          { query: msg.query, k: K, candidates: CANDIDATES, rerank: msg.rerank, fusion: "rerank" },
          deps,
        );
        send({ type: "core1", ms: performance.now() - t });
      }
      if (msg.type === "inproc") {
        const request = (query: string) => ({
          query,
          k: K,
          candidates: CANDIDATES,
          rerank: msg.rerank,
          fusion: "rerank" as const,
        });
        const core: number[] = [];
        const app: number[] = [];
        const seen = new Set<string>();
        // Alternate the two paths so drift (GC, frequency) hits both alike.
        for (let i = 0; i < msg.warmup + msg.reps; i++) {
          const q = msg.queries[i % msg.queries.length];
          let t = performance.now();
          const r = await searchTwoStage(request(q), deps);
          const coreMs = performance.now() - t;
          for (const w of r.warnings) seen.add(w);
          t = performance.now();
          const res = await service.app.request("/search", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(request(q)),
          });
          await res.text();
          const appMs = performance.now() - t;
          if (i >= msg.warmup) {
            core.push(coreMs);
            app.push(appMs);
          }
        }
        send({ type: "inproc", core, app, warnings: [...seen] });
      }
    });
  } catch (e) {
    send({ type: "error", message: (e as Error).stack ?? String(e) });
    process.exit(1);
  }
}

if (process.env.HTTP_BENCH_CHILD === "1") await childMain();

class ServerProcess {
  private waiters: Array<(m: FromChild) => void> = [];
  private constructor(readonly child: ChildProcess) {
    child.on("message", (m: FromChild) => {
      if (m.type === "error") throw new Error(`search server failed: ${m.message}`);
      this.waiters.shift()?.(m);
    });
  }

  static async start(
    env: Record<string, string>,
  ): Promise<{ server: ServerProcess; ready: Extract<FromChild, { type: "ready" }> }> {
    const child = fork(fileURLToPath(import.meta.url), [], {
      execArgv: ["--import", "tsx"],
      env: { ...process.env, ...env, HTTP_BENCH_CHILD: "1", LOG_LEVEL: "SILENT" },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    const server = new ServerProcess(child);
    const ready = await new Promise<FromChild>((resolve, reject) => {
      server.waiters.push(resolve);
      child.once("exit", (code) => reject(new Error(`search server exited with code ${code} before it was ready`)));
    });
    return { server, ready: ready as Extract<FromChild, { type: "ready" }> };
  }

  ask<T extends FromChild["type"]>(msg: ToChild): Promise<Extract<FromChild, { type: T }>> {
    return new Promise((resolve) => {
      this.waiters.push(resolve as (m: FromChild) => void);
      this.child.send(msg);
    });
  }

  stop(): void {
    this.child.send({ type: "exit" });
  }
}

// ---------- load generation ----------

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats?: Record<string, { count: number }>;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: "response", fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = (opts: Record<string, unknown>) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

interface LoadRun {
  connections: number;
  rerank: boolean;
  reqPerS: number;
  latency: TimingStats;
  errors: number;
  requests: number;
}

/**
 * One autocannon run of exactly `amount` requests (not a duration: every response, however
 * queued, is waited for, so the server is idle again when the next run starts).
 */
async function load(
  port: number,
  queries: string[],
  rerank: boolean,
  connections: number,
  amount: number,
): Promise<LoadRun> {
  const requests = queries.map((query) => ({
    method: "POST",
    path: "/search",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, k: K, candidates: CANDIDATES, rerank }),
  }));
  const opts = { url: `http://127.0.0.1:${port}`, connections, requests, timeout: 120 };
  // Warm-up: connections open, JIT warm.
  await autocannon({ ...opts, amount: Math.max(connections * 2, Math.ceil(amount / 10)) });
  const samples: number[] = [];
  let ok = 0;
  const inst = autocannon({ ...opts, amount });
  // Per-response times in ms with sub-ms resolution (autocannon's own histogram keeps whole ms).
  inst.on("response", (_c, status, _b, ms) => {
    samples.push(ms);
    if (status >= 200 && status < 300) ok++;
  });
  const started = performance.now();
  const result = await inst;
  const seconds = (performance.now() - started) / 1000;
  return {
    connections,
    rerank,
    reqPerS: ok / seconds,
    latency: stats(samples),
    errors: result.errors + result.timeouts + result.non2xx,
    requests: samples.length,
  };
}

/**
 * HTTP latency at concurrency 1 paired with the in-process pipeline: each HTTP request (a raw
 * keep-alive socket, see rawHttpClient) is followed by the same search run in-process in the server, so
 * both samples share the machine's state at that moment and drift cancels out of the difference.
 */
async function paired(
  server: ServerProcess,
  port: number,
  queries: string[],
  rerank: boolean,
  reps: number,
): Promise<{ http: TimingStats; core: TimingStats; errors: number }> {
  const client = await rawHttpClient(port);
  const post = (body: string) =>
    client.send(
      `POST /search HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  const http: number[] = [];
  const core: number[] = [];
  let errors = 0;
  const warmup = 20;
  for (let i = 0; i < warmup + reps; i++) {
    const query = queries[i % queries.length];
    const t = performance.now();
    const status = await post(JSON.stringify({ query, k: K, candidates: CANDIDATES, rerank }));
    const httpMs = performance.now() - t;
    const { ms } = await server.ask<"core1">({ type: "core1", rerank, query });
    if (status !== 200) errors++;
    if (i >= warmup) {
      http.push(httpMs);
      core.push(ms);
    }
  }
  client.close();
  return { http: stats(http), core: stats(core), errors };
}

/**
 * A keep-alive HTTP/1.1 client on one raw socket, as lean as autocannon's: the request is written
 * as one string and the answer read up to its content length (or the last chunk), so what the
 * paired timing adds to the in-process run is the server's HTTP layer and loopback TCP, not a
 * client library's own work (node:http's client added ~1 ms per request here).
 */
async function rawHttpClient(port: number): Promise<{ send(request: string): Promise<number>; close(): void }> {
  const socket = connect({ host: "127.0.0.1", port, noDelay: true });
  await once(socket, "connect");
  let pending: { resolve: (status: number) => void; reject: (e: Error) => void } | undefined;
  let buf: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const head = buf.indexOf("\r\n\r\n");
    if (head < 0 || !pending) return;
    const headers = buf.subarray(0, head).toString("latin1");
    const status = Number(headers.slice(9, 12));
    const length = /\r\ncontent-length: *(\d+)/i.exec(headers);
    const complete = length
      ? buf.length >= head + 4 + Number(length[1])
      : /\r\ntransfer-encoding: *chunked/i.test(headers) && buf.subarray(buf.length - 5).toString() === "0\r\n\r\n";
    if (!complete) return;
    buf = Buffer.alloc(0);
    const p = pending;
    pending = undefined;
    p.resolve(status);
  });
  socket.on("error", (e) => pending?.reject(e));
  socket.on("close", () => pending?.reject(new Error("the server closed the connection")));
  return {
    send(request) {
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        socket.write(request);
      });
    },
    close: () => socket.destroy(),
  };
}

// ---------- the suite ----------

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const { docs, queries, name } = corpus();
  const fixture = ctx.quick ? "tiny-cross" : "minilm-l6-cross";
  const reps = ctx.quick ? 60 : 300;
  // Requests per run (rerank → concurrency); reranking costs far more per request, so fewer.
  const amounts: Record<string, Record<number, number>> = ctx.quick
    ? { off: { 1: 100, 32: 320 }, on: { 1: 20, 32: 64 } }
    : { off: { 1: 2000, 32: 6400 }, on: { 1: 100, 32: 320 } };

  const storeDir = mkdtempSync(path.join(tmpdir(), "bench-http-"));
  let server: ServerProcess | undefined;
  try {
    ctx.log(
      `building the snapshot (${docs.length} documents of ${name}, hashing embedder ${HASHING_DIMENSIONS}d, flat index)`,
    );
    const { createFsStore } = await import("../../../shared/adapters/fs-store.ts");
    const { publishHashingSnapshot } = await import("../hashing-snapshot.ts");
    const { chunkDocuments } = await import("../../../shared/core/chunking.ts");
    const passages = chunkDocuments(docs, { maxTokens: 200, overlap: 20 });
    await publishHashingSnapshot(createFsStore(storeDir), passages, { dimensions: HASHING_DIMENSIONS });

    ctx.log(`reranker: in-process, fixture model ${fixture} (random weights: scores carry no meaning)`);
    const modelDir = await ensureFixtureModel(fixture);
    const started = await ServerProcess.start({ BENCH_STORE_DIR: storeDir, BENCH_MODEL_DIR: modelDir });
    server = started.server;
    const port = started.ready.port;

    const inproc: Record<string, { core: TimingStats; app: TimingStats }> = {};
    const pairs: Record<string, Awaited<ReturnType<typeof paired>>> = {};
    const runs: LoadRun[] = [];
    const notes: string[] = [];
    for (const rerank of [false, true]) {
      const label = rerank ? "on" : "off";
      ctx.log(`rerank ${label}: in-process pipeline and app.request(), ${reps} calls each`);
      const r = await server.ask<"inproc">({
        type: "inproc",
        rerank,
        reps: rerank ? Math.ceil(reps / 3) : reps,
        warmup: 20,
        queries,
      });
      if (r.warnings.length) notes.push(`in-process rerank ${label} warnings: ${r.warnings.join(" | ")}`);
      inproc[label] = { core: stats(r.core), app: stats(r.app) };
      ctx.log(`rerank ${label}: HTTP at concurrency 1 paired with in-process runs, ${r.core.length} pairs`);
      pairs[label] = await paired(server, port, queries, rerank, r.core.length);
      for (const connections of [1, 32]) {
        const amount = amounts[label][connections];
        ctx.log(`rerank ${label}: autocannon, ${connections} connection(s), ${amount} requests`);
        runs.push(await load(port, queries, rerank, connections, amount));
      }
    }
    const served = await server.ask<"stats">({ type: "stats" });

    const figures: Figure[] = [];
    const ms = (v: number) => Math.round(v * 1000) / 1000;
    for (const label of ["off", "on"]) {
      figures.push(figure(`in-process pipeline p50, rerank ${label}`, ms(inproc[label].core.p50), "ms"));
      figures.push(
        figure(
          `app.request() p50, rerank ${label}`,
          ms(inproc[label].app.p50),
          "ms",
          undefined,
          "Hono routing, validation, JSON, no socket",
        ),
      );
    }
    for (const r of runs) {
      const tag = `rerank ${r.rerank ? "on" : "off"}, c=${r.connections}`;
      figures.push(figure(`HTTP req/s, ${tag}`, Math.round(r.reqPerS * 10) / 10, "req/s"));
      figures.push(figure(`HTTP p50, ${tag}`, ms(r.latency.p50), "ms"));
      figures.push(figure(`HTTP p99, ${tag}`, ms(r.latency.p99), "ms"));
      figures.push(
        figure(`HTTP errors, ${tag}`, r.errors, "", { text: "= 0", met: r.errors === 0 }, `${r.requests} requests`),
      );
    }
    const c1 = (rerank: boolean) => runs.find((r) => r.connections === 1 && r.rerank === rerank)!;
    for (const label of ["off", "on"]) {
      const p = pairs[label];
      figures.push(figure(`paired HTTP p50 (raw keep-alive socket), rerank ${label}`, ms(p.http.p50), "ms"));
      figures.push(figure(`paired in-process p50, rerank ${label}`, ms(p.core.p50), "ms"));
    }
    const overhead = pairs.off.http.p50 - pairs.off.core.p50;
    const overheadOn = pairs.on.http.p50 - pairs.on.core.p50;
    const appOverhead = inproc.off.app.p50 - inproc.off.core.p50;
    figures.push(
      figure("API overhead p50 (HTTP − in-process, paired), rerank off", ms(overhead), "ms", {
        text: `≤ ${OVERHEAD_GOAL_MS} ms`,
        met: overhead <= OVERHEAD_GOAL_MS,
      }),
    );
    figures.push(
      figure(
        "API overhead p50 (HTTP − in-process, paired), rerank on",
        ms(overheadOn),
        "ms",
        undefined,
        "noisier: rerank cost dominates",
      ),
    );
    figures.push(
      figure(
        "of which Hono app (app.request − in-process), rerank off",
        ms(appOverhead),
        "ms",
        undefined,
        "routing, validation, JSON",
      ),
    );
    figures.push(
      figure(
        "degraded answers (warnings)",
        served.degraded,
        "",
        { text: "= 0", met: served.degraded === 0 },
        `${served.searches} searches served`,
      ),
    );
    if (served.warnings.length) notes.push(`server warnings: ${served.warnings.join(" | ")}`);
    notes.push(
      `corpus: ${name}, ${docs.length} documents → ${passages.length} passages; k=${K}, candidates=${CANDIDATES}; queries cycle through ${queries.length}`,
      `reranker: in-process ${fixture} fixture (random weights; latency is real, scores are not); RERANKER_TIMEOUT_MS=60000 so "on" answers are fully reranked`,
      "server in a child process (request logging off), autocannon in this process; both on this machine's loopback",
    );
    const errors = runs.reduce((a, r) => a + r.errors, 0) + pairs.off.errors + pairs.on.errors;
    return {
      suite: "http",
      figures,
      notes,
      summary: {
        api_overhead_p50_ms: ms(overhead),
        api_overhead_rerank_on_p50_ms: ms(overheadOn),
        errors,
        degraded: served.degraded,
        in_process_p50_ms: ms(pairs.off.core.p50),
        http_c1_p50_ms: ms(c1(false).latency.p50),
        app_overhead_p50_ms: ms(appOverhead),
        rps_c32_rerank_off: Math.round(runs.find((r) => r.connections === 32 && !r.rerank)!.reqPerS),
        rps_c32_rerank_on: Math.round(runs.find((r) => r.connections === 32 && r.rerank)!.reqPerS * 10) / 10,
        reranker_fixture: fixture,
      },
      details: { reranker: started.ready.reranker, passages: passages.length },
    };
  } finally {
    server?.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

export const suite: Suite = {
  name: "http",
  description: "search API over loopback HTTP (autocannon, c=1/32, rerank off/on) and the API layer's own overhead",
  run,
};
