// load: a bounded soak of the local stack on loopback. One server process runs the search API (the
// real composition root over a hashing/faiss snapshot in a filesystem store, RERANKER=http) and the
// rerank service (the ONNX cross-encoder on a generated fixture model: MiniLM-L6-shaped, tiny with
// --quick; random weights, so scores carry no meaning). autocannon drives mixed traffic for 60 s at
// concurrency 32 (--quick: 10 s): 3/4 of the connections POST /search (reranked through the rerank
// service), 1/4 POST /rerank directly. The server process samples its own RSS every second, so the
// load generator's memory is not counted.
//
// Reported: unexpected errors (socket errors, timeouts and any non-2xx: this run sends no requests
// meant to be refused, so even a 429 would be unexpected), p50/p99 latency, throughput, degraded
// searches (answered first-stage only), and RSS growth between the mean of the first and last 10 s.
// Flags: --duration=S, --connections=N.
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureFixtureModel } from "../../fixtures/index.ts";
import { figure, stats, type Suite, type SuiteContext, type SuiteResult } from "../harness.ts";

const HASHING_DIMENSIONS = 1024;
const RSS_GROWTH_GOAL = 0.1;

type FromChild =
  | { type: "ready"; searchPort: number; rerankPort: number }
  | { type: "stats"; rss: Array<[number, number]>; searches: number; degraded: number; warnings: string[] }
  | { type: "error"; message: string };
type ToChild = { type: "start-sampling" } | { type: "stats" } | { type: "exit" };

// ---------- the server process ----------

const WORDS =
  "boundary layer flow plate supersonic speed heat transfer pressure shock wave wing body nozzle turbulent laminar drag lift vortex jet cylinder cone".split(
    " ",
  );
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
}
const textOf = (rnd: () => number, n: number) =>
  Array.from({ length: n }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(" ");

async function childMain(): Promise<void> {
  const send = (m: FromChild) => process.send?.(m);
  try {
    const { loadConfig } = await import("../../../shared/core/config.ts");
    const { createFsStore } = await import("../../../shared/adapters/fs-store.ts");
    const { publishHashingSnapshot } = await import("../hashing-snapshot.ts");
    const { startSearchServer } = await import("../../../functions/search/server.ts");
    const { startRerankServer } = await import("../../../functions/rerank/server.ts");

    const storeDir = process.env.LOAD_BENCH_STORE_DIR ?? "";
    const rnd = rng(11);
    const passages = Array.from({ length: 2000 }, (_, i) => {
      const text = textOf(rnd, 60);
      return { id: `d${i}#0`, docId: `d${i}`, text, source: `corpus/d${i}.md`, start: 0, end: text.length };
    });
    await publishHashingSnapshot(createFsStore(storeDir), passages, { dimensions: HASHING_DIMENSIONS });

    const base = {
      STORE_KIND: "fs",
      STORE_DIR: storeDir,
      EMBEDDER: "hashing",
      HASHING_DIMENSIONS: String(HASHING_DIMENSIONS),
      LOG_LEVEL: "SILENT",
      AUTH_MODE: "off",
    };
    const rerank = await startRerankServer(
      loadConfig({
        ...base,
        RERANKER_MODEL_DIR: process.env.LOAD_BENCH_MODEL_DIR ?? "",
        RERANKER_PROVIDER: "cpu",
        RERANKER_QUANTIZED: process.env.LOAD_BENCH_QUANTIZED ?? "",
        RERANKER_CACHE_MB: process.env.LOAD_BENCH_CACHE_MB ?? "",
      }),
      { port: 0, hostname: "127.0.0.1", quiet: true },
    );
    let searches = 0;
    let degraded = 0;
    const warnings = new Set<string>();
    const search = await startSearchServer(
      loadConfig({
        ...base,
        RERANKER: "http",
        RERANKER_URL: `http://127.0.0.1:${rerank.port}`,
        // The service default (1,500 ms): past it a search answers first-stage results (counted as degraded).
        RERANKER_TIMEOUT_MS: process.env.LOAD_BENCH_RERANK_TIMEOUT_MS ?? "",
      }),
      {
        port: 0,
        hostname: "127.0.0.1",
        overrides: {
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
        },
      },
    );
    await search.service.loader.current();
    // Load the model before the clock starts: the first /rerank would otherwise pay for it.
    const res = await fetch(`http://127.0.0.1:${rerank.port}/rerank`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "warm up", documents: ["a", "b"] }),
    });
    if (!res.ok) throw new Error(`rerank warm-up answered ${res.status}: ${await res.text()}`);

    const rss: Array<[number, number]> = [];
    let sampler: NodeJS.Timeout | undefined;
    process.on("message", async (msg: ToChild) => {
      if (msg.type === "start-sampling") {
        rss.length = 0;
        const t0 = performance.now();
        const sample = () => rss.push([(performance.now() - t0) / 1000, process.memoryUsage().rss]);
        sample();
        sampler = setInterval(sample, 1000);
      }
      if (msg.type === "stats") {
        clearInterval(sampler);
        send({ type: "stats", rss, searches, degraded, warnings: [...warnings] });
      }
      if (msg.type === "exit") {
        await Promise.all([search.close(), rerank.close()]);
        process.exit(0);
      }
    });
    send({ type: "ready", searchPort: search.port, rerankPort: rerank.port });
  } catch (e) {
    send({ type: "error", message: (e as Error).stack ?? String(e) });
    process.exit(1);
  }
}

if (process.env.LOAD_BENCH_CHILD === "1") await childMain();

// ---------- load generation ----------

interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats?: Record<string, { count: number }>;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: "response", fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = ((opts: Record<string, unknown>) => AutocannonInstance) & { track?: unknown };
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

function flag(args: string[], name: string): number | undefined {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  const v = a ? Number(a.split("=")[1]) : undefined;
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : undefined;
}

interface Variant {
  name: string;
  quantized: boolean;
  cacheMb: number;
}

/** The service defaults (int8 on the CPU, score cache on), and the same without them, in one run. */
const VARIANTS: Variant[] = [
  { name: "fp32_nocache", quantized: false, cacheMb: 0 },
  { name: "int8_nocache", quantized: true, cacheMb: 0 },
  { name: "int8_cache", quantized: true, cacheMb: 32 },
];

async function run(ctx: SuiteContext): Promise<SuiteResult> {
  // --compare: the three variants back to back (fp32 → int8 → int8 + cache), else the defaults only.
  if (!ctx.args.includes("--compare")) return soak(ctx, VARIANTS[2]);
  const results: SuiteResult[] = [];
  for (const v of VARIANTS) {
    ctx.log(`load: variant ${v.name}`);
    results.push(await soak(ctx, v));
  }
  const summary: SuiteResult["summary"] = {};
  results.forEach((r, i) => {
    for (const [k, v] of Object.entries(r.summary)) summary[`${VARIANTS[i].name}_${k}`] = v;
  });
  const rps = (i: number) => Number(results[i].summary.req_per_s);
  summary.int8_vs_fp32_req_per_s = rps(1) / rps(0);
  summary.cache_vs_nocache_req_per_s = rps(2) / rps(1);
  return {
    suite: "load",
    figures: results.flatMap((r, i) => r.figures.map((f) => ({ ...f, name: `${VARIANTS[i].name}: ${f.name}` }))),
    summary,
    notes: [
      ...(results[0].notes ?? []),
      "variants run back to back in this process, same requests: the 64 search and 64 rerank bodies repeat, so the cache variant hits after the first round (an upper bound on what a cache gives).",
    ],
  };
}

async function soak(ctx: SuiteContext, variant: Variant): Promise<SuiteResult> {
  const durationS = flag(ctx.args, "duration") ?? (ctx.quick ? 10 : 60);
  const connections = Math.max(2, Math.round(flag(ctx.args, "connections") ?? 32));
  const rerankConnections = Math.max(1, Math.round(connections / 4));
  const searchConnections = connections - rerankConnections;
  const fixture = ctx.quick ? "tiny-cross" : "minilm-l6-cross";
  const modelDir = await ensureFixtureModel(fixture);
  const storeDir = mkdtempSync(path.join(tmpdir(), "bench-load-"));

  ctx.log(
    `server process: search API + rerank service (fixture ${fixture}; random weights), snapshot of 2000 passages`,
  );
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    execArgv: ["--import", "tsx"],
    env: {
      ...process.env,
      LOAD_BENCH_CHILD: "1",
      LOAD_BENCH_STORE_DIR: storeDir,
      LOAD_BENCH_MODEL_DIR: modelDir,
      LOAD_BENCH_QUANTIZED: String(variant.quantized),
      LOAD_BENCH_CACHE_MB: String(variant.cacheMb),
      LOG_LEVEL: "SILENT",
    },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const next = <T extends FromChild["type"]>(type: T): Promise<Extract<FromChild, { type: T }>> =>
    new Promise((resolve, reject) => {
      const onMessage = (m: FromChild) => {
        if (m.type === "error") {
          cleanup();
          reject(new Error(`server process failed: ${m.message}`));
        } else if (m.type === type) {
          cleanup();
          resolve(m as Extract<FromChild, { type: T }>);
        }
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`server process exited (${code}) before "${type}"`));
      };
      const cleanup = () => {
        child.off("message", onMessage);
        child.off("exit", onExit);
      };
      child.on("message", onMessage);
      child.on("exit", onExit);
    });

  try {
    const ready = await next("ready");
    const rnd = rng(23);
    const searchRequests = Array.from({ length: 64 }, () => ({
      method: "POST",
      path: "/search",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: textOf(rnd, 6), k: 5, candidates: 20 }),
    }));
    const rerankRequests = Array.from({ length: 64 }, () => ({
      method: "POST",
      path: "/rerank",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: textOf(rnd, 6), documents: Array.from({ length: 10 }, () => textOf(rnd, 40)) }),
    }));

    ctx.log(
      `load: ${durationS} s, ${searchConnections} connections on /search + ${rerankConnections} on /rerank (total ${connections})`,
    );
    child.send({ type: "start-sampling" });
    const samples = { search: [] as number[], rerank: [] as number[] };
    const statuses: Record<string, number> = {};
    const drive = (port: number, conns: number, requests: unknown[], into: number[]) => {
      const inst = autocannon({
        url: `http://127.0.0.1:${port}`,
        connections: conns,
        duration: durationS,
        requests,
        // A request unanswered after 10 s counts as a timeout (unexpected), which bounds the run.
        timeout: 10,
      });
      inst.on("response", (_c, status, _b, ms) => {
        into.push(ms);
        statuses[status] = (statuses[status] ?? 0) + 1;
      });
      return inst;
    };
    const started = performance.now();
    const [s, r] = await Promise.all([
      drive(ready.searchPort, searchConnections, searchRequests, samples.search),
      drive(ready.rerankPort, rerankConnections, rerankRequests, samples.rerank),
    ]);
    const seconds = (performance.now() - started) / 1000;
    child.send({ type: "stats" });
    const st = await next("stats");

    // Every non-2xx is unexpected: nothing in this run is meant to be refused (auth off, no limits hit).
    const unexpected = s.errors + s.timeouts + s.non2xx + r.errors + r.timeouts + r.non2xx;
    const all = stats([...samples.search, ...samples.rerank]);
    const searchLat = stats(samples.search);
    const rerankLat = stats(samples.rerank);
    const total = samples.search.length + samples.rerank.length;

    // RSS growth: mean of the last window against the first (10 s each; a third of shorter runs).
    const windowS = Math.min(10, durationS / 3);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const lastT = st.rss.length ? st.rss[st.rss.length - 1][0] : 0;
    const first = mean(st.rss.filter(([t]) => t <= windowS).map(([, v]) => v));
    const last = mean(st.rss.filter(([t]) => t >= lastT - windowS).map(([, v]) => v));
    const rssGrowth = first > 0 ? last / first - 1 : Number.NaN;
    const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

    return {
      suite: "load",
      figures: [
        figure("unexpected errors", unexpected, "", { text: "= 0", met: unexpected === 0 }),
        figure("requests", total, "", undefined, `${(total / seconds).toFixed(1)} req/s over ${seconds.toFixed(1)} s`),
        figure("p50 (all)", all.p50, "ms"),
        figure("p99 (all)", all.p99, "ms"),
        figure(
          "p99 /search",
          searchLat.p99,
          "ms",
          undefined,
          `${samples.search.length} requests, p50 ${searchLat.p50.toFixed(1)} ms`,
        ),
        figure(
          "p99 /rerank",
          rerankLat.p99,
          "ms",
          undefined,
          `${samples.rerank.length} requests, p50 ${rerankLat.p50.toFixed(1)} ms`,
        ),
        figure(
          "degraded searches",
          st.degraded,
          "",
          undefined,
          `of ${st.searches} (first-stage only: reranker late or failed)`,
        ),
        figure("RSS first window", mb(first), "MiB"),
        figure("RSS last window", mb(last), "MiB"),
        figure(
          "RSS growth",
          rssGrowth * 100,
          "%",
          { text: `< ${RSS_GROWTH_GOAL * 100}%`, met: rssGrowth < RSS_GROWTH_GOAL },
          `windows of ${windowS.toFixed(1)} s`,
        ),
      ],
      summary: {
        unexpected_errors: unexpected,
        p99_ms: Math.round(all.p99 * 100) / 100,
        p50_ms: Math.round(all.p50 * 100) / 100,
        rss_growth: Math.round(rssGrowth * 10000) / 10000,
        requests: total,
        req_per_s: Math.round((total / seconds) * 10) / 10,
        degraded_searches: st.degraded,
        duration_s: durationS,
        connections,
        fixture,
        variant: variant.name,
      },
      details: { statuses, rss_samples_mib: st.rss.map(([t, v]) => [Math.round(t), mb(v)]), warnings: st.warnings },
      notes: [
        `fixture model ${fixture} has random weights: latencies are real, scores are not`,
        "RSS is the server process's (search API + rerank service), sampled every second; the load generator runs in the parent",
        ...(st.warnings.length ? [`degraded warnings seen: ${st.warnings.join(" | ")}`] : []),
        ...(ctx.quick
          ? ["--quick: 10 s with the tiny fixture; RSS windows shorter than 10 s; not representative"]
          : []),
      ],
    };
  } finally {
    if (child.exitCode === null) {
      child.send({ type: "exit" });
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          child.kill("SIGKILL");
          r();
        }, 5000);
        child.once("exit", () => {
          clearTimeout(t);
          r();
        });
      });
    }
    rmSync(storeDir, { recursive: true, force: true });
  }
}

export const suite: Suite = {
  name: "load",
  description:
    "bounded mixed load (autocannon, loopback): /search + /rerank at concurrency 32 for 60 s; unexpected errors, p99, server RSS growth",
  run,
};
