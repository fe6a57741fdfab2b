// coldstart: from process start to the first answered search, for a 100K-passage snapshot in
// s3rver, split into runtime start, module imports, model load and snapshot load (these two run
// concurrently during init, as in the Lambda function) and the first query.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ALLOCATOR_ENV } from "../../../infra/process-env.ts";
import { buildFunctions } from "../../build-functions.ts";
import { ensureFixtureModel } from "../../fixtures/index.ts";
import { useLiteHashingIdentity } from "../../../shared/adapters/embedders.ts";
import { chooseIndexType, nativeFlat } from "../../../shared/adapters/faiss-index.ts";
import { createHashingEmbedder } from "../../../shared/adapters/hash-embedder.ts";
import { createUseLiteEmbedder } from "../../../shared/adapters/use-lite-embedder.ts";
import { joinEmbedders } from "../../../shared/core/embedding.ts";
import { publishEmbeddedSnapshot, publishHashingSnapshot } from "../hashing-snapshot.ts";
import { figure, type Suite, type SuiteResult, stats } from "../harness.ts";
import { makePassages, s3rverStore, startS3rverChild } from "./snapshot.ts";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const childScript = fileURLToPath(new URL("../coldstart-child.ts", import.meta.url));
const bundleChildScript = fileURLToPath(new URL("../coldstart-bundle-child.mjs", import.meta.url));
const apiEventFile = fileURLToPath(new URL("../../../test/fixtures/apigw-v2-event.json", import.meta.url));

interface ColdRun {
  status: number;
  reranked: boolean;
  results: number;
  runtime_start_ms: number;
  imports_ms: number;
  model_load_ms: number;
  /** Bundle runs only: the warm-up run's share of model_load_ms. */
  model_warmup_ms?: number;
  snapshot_load_ms: number;
  init_ms: number;
  first_query_ms: number;
  /** Bundle runs only: the 100th search of the process. */
  query_100_ms?: number;
  /** Bundle runs only: the service's timings of the first answer. */
  first_timings?: { embed_ms: number; search_ms: number; texts_ms?: number; rerank_ms: number; total_ms: number };
  total_ms: number;
  /** Bundle runs only: the process's peak RSS (VmHWM) at the end, in MiB. */
  peak_rss_mb?: number;
}

/** The C library's version, e.g. "glibc 2.36" ("unknown" where it is not glibc). */
function glibcVersion(): string {
  const header = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return header?.header?.glibcVersionRuntime ? `glibc ${header.header.glibcVersionRuntime}` : "unknown";
}

/** A fresh process: the bundled handler under plain node, or the TypeScript sources through tsx. */
function runChild(env: Record<string, string>, bundle?: string): Promise<ColdRun> {
  return new Promise((resolve, reject) => {
    const args = bundle ? [bundleChildScript, bundle, apiEventFile] : ["--import", "tsx", childScript];
    const child = spawn(process.execPath, args, {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => {
      const line = out
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .pop();
      if (code !== 0 || !line) return reject(new Error(`coldstart child failed (${code}): ${err.slice(-2000)}`));
      resolve(JSON.parse(line) as ColdRun);
    });
  });
}

export const suite: Suite = {
  name: "coldstart",
  description: "process start → first answered search, 100K-passage snapshot in s3rver, MiniLM-L6 fixture reranker",
  async run(ctx): Promise<SuiteResult> {
    const n = ctx.quick ? 10_000 : 100_000;
    const d = 384;
    const reps = ctx.quick ? 1 : 5;
    const work = mkdtempSync(join(tmpdir(), "bench-coldstart-"));
    const bucket = "bench";
    let s3child: ChildProcess | undefined;
    try {
      ctx.log(`building a ${n}-passage snapshot (hashing embedder, ${d} dims)`);
      const passages = makePassages(n, 7);
      const s3 = await startS3rverChild(join(work, "s3"), bucket);
      s3child = s3.child;
      const store = s3rverStore(s3.endpoint, bucket);
      // The snapshot a reindex publishes by default (INDEX_TYPE=auto): fp16 vectors at 100K×384, kept
      // as fp16 rows by the native fp16 scan (decoded to float32 where that scan is missing).
      const autoType = chooseIndexType(n, "auto", d);
      const { bytes } = await publishHashingSnapshot(store, passages, { dimensions: d, indexType: autoType });
      // The same corpus with float32 vectors (INDEX_TYPE=flat), this suite's headline until 2026-12-07.
      const float32 = await publishHashingSnapshot(store, passages, {
        dimensions: d,
        indexPrefix: "float32/",
        indexType: "flat",
      });
      // The embedded default's first stage against hashing alone: a smaller corpus (USE-lite indexes
      // ~100 passages/s here), embedded for real by each, served with the lexical reranker.
      const nEmb = ctx.quick ? 200 : 2000;
      const embPassages = passages.slice(0, nEmb);
      ctx.log(`building two ${nEmb}-passage snapshots (hashing 2048 dims; use-lite+hashing 2560 dims)`);
      await publishEmbeddedSnapshot(store, embPassages, {
        embedder: createHashingEmbedder({ dimensions: 2048 }),
        indexPrefix: "emb-hashing/",
      });
      const useLiteCache = join(work, "use-lite-build-cache");
      await publishEmbeddedSnapshot(store, embPassages, {
        embedder: joinEmbedders(useLiteHashingIdentity(2048), [
          await createUseLiteEmbedder({ cacheDir: useLiteCache }),
          createHashingEmbedder({ dimensions: 2048 }),
        ]),
        indexPrefix: "emb-use-lite/",
      });
      const modelDir = await ensureFixtureModel(ctx.quick ? "tiny-cross" : "minilm-l6-cross");
      const env = {
        // What every deployed function starts with (the C library's allocator settings).
        ...ALLOCATOR_ENV,
        STORE_KIND: "s3",
        BUCKET: bucket,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: "S3RVER",
        AWS_SECRET_ACCESS_KEY: "S3RVER",
        HASHING_DIMENSIONS: String(d),
        EMBEDDER: "hashing",
        RERANKER: "in-process",
        RERANKER_MODEL_DIR: modelDir,
        RERANKER_TIMEOUT_MS: "30000",
        LOG_LEVEL: "ERROR",
        POWERTOOLS_METRICS_DISABLED: "true",
        AWS_SDK_JS_SUPPRESS_NODE_DEPRECATION_WARNING: "1",
      };
      const [bundle] = await buildFunctions({ outDir: join(repoRoot, ".cache", "bench-bundles"), only: ["search"] });
      ctx.log(
        `search bundle: ${(bundle.codeBytes / 1e6).toFixed(2)} MB, ${(bundle.initialBytes / 1e6).toFixed(2)} MB loaded at init (${bundle.handlerFile})`,
      );
      // Warm the page cache and tsx's compile cache; not counted.
      await runChild(env);
      await runChild(env, bundle.handlerFile);
      const tsxRuns: ColdRun[] = [];
      const float32Runs: ColdRun[] = [];
      // The same two snapshots with glibc's allocator defaults, side by side with ALLOCATOR_ENV.
      const defaultsEnv = { ...env, GLIBC_TUNABLES: "" };
      const mallocDefaultsRuns: ColdRun[] = [];
      const mallocDefaultsFloat32Runs: ColdRun[] = [];
      const warmupRuns: ColdRun[] = [];
      const inWorkerRuns: ColdRun[] = [];
      const inWorkerFloat32Runs: ColdRun[] = [];
      const embRuns: Record<"hashing" | "use_lite_cold" | "use_lite_cached", ColdRun[]> = {
        hashing: [],
        use_lite_cold: [],
        use_lite_cached: [],
      };
      const lexical = { ...env, RERANKER_BACKEND: "lexical", HASHING_DIMENSIONS: "2048" };
      const embEnv = {
        hashing: { ...lexical, EMBEDDER: "hashing", INDEX_PREFIX: "emb-hashing/" },
        // Lambda starts each execution environment with an empty /tmp: the graph is converted again.
        use_lite_cold: (r: number) => ({
          ...lexical,
          EMBEDDER: "auto",
          INDEX_PREFIX: "emb-use-lite/",
          MODEL_CACHE_DIR: join(work, `model-cache-cold-${r}`),
        }),
        use_lite_cached: { ...lexical, EMBEDDER: "auto", INDEX_PREFIX: "emb-use-lite/", MODEL_CACHE_DIR: useLiteCache },
      };
      // PASSAGE_TEXTS modes of the bundle; the first is the default the other figures describe.
      const modes = ["lazy", "background", "eager"] as const;
      const modeRuns: Record<(typeof modes)[number], ColdRun[]> = { background: [], lazy: [], eager: [] };
      // Interleaved, so drift on the machine hits every form alike.
      for (let r = 0; r < reps; r++) {
        // Rotated each round, so no mode always runs first (right after the tsx process).
        for (const mode of modes.map((_, i) => modes[(i + r) % modes.length])) {
          ctx.log(`cold start ${r + 1}/${reps}: bundle, PASSAGE_TEXTS=${mode}`);
          modeRuns[mode].push(await runChild({ ...env, PASSAGE_TEXTS: mode }, bundle.handlerFile));
        }
        ctx.log(`cold start ${r + 1}/${reps}: bundle, float32 vectors`);
        float32Runs.push(await runChild({ ...env, INDEX_PREFIX: "float32/" }, bundle.handlerFile));
        ctx.log(`cold start ${r + 1}/${reps}: bundle, glibc malloc defaults (${autoType} and float32)`);
        mallocDefaultsRuns.push(await runChild(defaultsEnv, bundle.handlerFile));
        mallocDefaultsFloat32Runs.push(
          await runChild({ ...defaultsEnv, INDEX_PREFIX: "float32/" }, bundle.handlerFile),
        );
        ctx.log(`cold start ${r + 1}/${reps}: bundle, RERANKER_WARMUP_PAIRS=20`);
        warmupRuns.push(await runChild({ ...env, RERANKER_WARMUP_PAIRS: "20" }, bundle.handlerFile));
        ctx.log(`cold start ${r + 1}/${reps}: bundle, RERANKER_IN_WORKER=true (${autoType} and float32)`);
        inWorkerRuns.push(await runChild({ ...env, RERANKER_IN_WORKER: "true" }, bundle.handlerFile));
        inWorkerFloat32Runs.push(
          await runChild({ ...env, RERANKER_IN_WORKER: "true", INDEX_PREFIX: "float32/" }, bundle.handlerFile),
        );
        ctx.log(
          `cold start ${r + 1}/${reps}: bundle, ${nEmb} passages, hashing / use-lite+hashing (empty, cached /tmp)`,
        );
        embRuns.hashing.push(await runChild(embEnv.hashing, bundle.handlerFile));
        embRuns.use_lite_cold.push(await runChild(embEnv.use_lite_cold(r), bundle.handlerFile));
        embRuns.use_lite_cached.push(await runChild(embEnv.use_lite_cached, bundle.handlerFile));
        ctx.log(`cold start ${r + 1}/${reps}: tsx`);
        tsxRuns.push(await runChild(env));
      }
      const bundleRuns = modeRuns.lazy;
      const med = (runs: ColdRun[], k: keyof ColdRun) => stats(runs.map((x) => Number(x[k]))).p50;
      const b = (k: keyof ColdRun) => med(bundleRuns, k);
      const t = (k: keyof ColdRun) => med(tsxRuns, k);
      // Flat summary keys: texts_<mode>_<figure>.
      const byMode: Record<string, number> = {};
      for (const m of modes) {
        for (const k of ["total_ms", "snapshot_load_ms", "first_query_ms", "query_100_ms"] as const) {
          byMode[`texts_${m}_${k === "total_ms" ? "cold_start_ms" : k}`] = Math.round(med(modeRuns[m], k));
        }
      }
      const modeFigures = modes.flatMap((m) => [
        figure(`PASSAGE_TEXTS=${m}: process start → first answer`, med(modeRuns[m], "total_ms"), "ms"),
        figure(`PASSAGE_TEXTS=${m}: snapshot load`, med(modeRuns[m], "snapshot_load_ms"), "ms"),
        figure(`PASSAGE_TEXTS=${m}: first query`, med(modeRuns[m], "first_query_ms"), "ms"),
        figure(`PASSAGE_TEXTS=${m}: 100th query`, med(modeRuns[m], "query_100_ms"), "ms"),
      ]);
      const everyRun = [
        ...Object.values(modeRuns).flat(),
        ...float32Runs,
        ...mallocDefaultsRuns,
        ...mallocDefaultsFloat32Runs,
        ...warmupRuns,
        ...inWorkerRuns,
        ...inWorkerFloat32Runs,
        ...tsxRuns,
        ...Object.values(embRuns).flat(),
      ];
      const emb = (k: keyof typeof embRuns, f: keyof ColdRun) => med(embRuns[k], f);
      const fp16Rows =
        typeof nativeFlat()?.scanF16 === "function" ? "kept as fp16 rows (native F16C scan)" : "decoded to float32";
      const ok = everyRun.every((x) => x.status === 200 && x.results > 0);
      return {
        suite: "coldstart",
        figures: [
          figure(
            "snapshot",
            bytes / 1e6,
            "MB",
            undefined,
            `${n} passages × ${d} dims, INDEX_TYPE=auto's choice: ${autoType}${autoType === "fp16" ? ` (${fp16Rows})` : ""}`,
          ),
          figure("search bundle", bundle.codeBytes / 1e6, "MB", undefined, "esbuild output, addons external"),
          figure(
            "search bundle: code loaded at init",
            bundle.initialBytes / 1e6,
            "MB",
            undefined,
            "the handler and the chunks it imports statically (code splitting, as SST builds it)",
          ),
          figure("bundle: runtime start", b("runtime_start_ms"), "ms", undefined, "process start → entry (plain node)"),
          figure("bundle: handler import", b("imports_ms"), "ms", undefined, "bundled code; starts the loads"),
          figure(
            "bundle: model load",
            b("model_load_ms"),
            "ms",
            undefined,
            `cross-encoder session (concurrent)${b("model_warmup_ms") > 0 ? `, of which the warm-up ${Math.round(b("model_warmup_ms"))} ms` : ""}`,
          ),
          figure("bundle: snapshot load", b("snapshot_load_ms"), "ms", undefined, "pointer → files → sha256 → index"),
          figure("bundle: first query", b("first_query_ms"), "ms", undefined, "after both loads (approximate)"),
          figure("bundle: 100th query", b("query_100_ms"), "ms", undefined, "same process, 99 searches later"),
          figure(
            "bundle: first query, in the service",
            stats(bundleRuns.map((x) => x.first_timings?.total_ms ?? 0)).p50,
            "ms",
            undefined,
            `texts ${Math.round(stats(bundleRuns.map((x) => x.first_timings?.texts_ms ?? 0)).p50)} ms, rerank ${Math.round(stats(bundleRuns.map((x) => x.first_timings?.rerank_ms ?? 0)).p50)} ms; the rest of "first query" is the first invocation's own start`,
          ),
          figure("bundle: process start → first answer", b("total_ms"), "ms", {
            text: "≤ 1500 ms",
            met: b("total_ms") <= 1500,
          }),
          figure("tsx: runtime start", t("runtime_start_ms"), "ms", undefined, "node + tsx loader"),
          figure("tsx: module imports", t("imports_ms"), "ms", undefined, "TypeScript sources through tsx"),
          figure("tsx: model load", t("model_load_ms"), "ms"),
          figure("tsx: snapshot load", t("snapshot_load_ms"), "ms"),
          figure("tsx: first query", t("first_query_ms"), "ms"),
          figure("tsx: process start → first answer", t("total_ms"), "ms"),
          ...modeFigures,
          figure("reranker warm-up (20 pairs): process start → first answer", med(warmupRuns, "total_ms"), "ms"),
          figure(
            "reranker warm-up (20 pairs): model load",
            med(warmupRuns, "model_load_ms"),
            "ms",
            undefined,
            `of which the warm-up ${Math.round(med(warmupRuns, "model_warmup_ms"))} ms`,
          ),
          figure("reranker warm-up (20 pairs): snapshot load", med(warmupRuns, "snapshot_load_ms"), "ms"),
          figure(
            "reranker warm-up (20 pairs): first query, in the service",
            stats(warmupRuns.map((x) => x.first_timings?.total_ms ?? 0)).p50,
            "ms",
            undefined,
            `rerank ${Math.round(stats(warmupRuns.map((x) => x.first_timings?.rerank_ms ?? 0)).p50)} ms`,
          ),
          figure("RERANKER_IN_WORKER=true: process start → first answer", med(inWorkerRuns, "total_ms"), "ms", {
            text: "≤ 1500 ms",
            met: med(inWorkerRuns, "total_ms") <= 1500,
          }),
          figure(
            "RERANKER_IN_WORKER=true: snapshot load",
            med(inWorkerRuns, "snapshot_load_ms"),
            "ms",
            undefined,
            `model load ${Math.round(med(inWorkerRuns, "model_load_ms"))} ms (session in a worker thread)`,
          ),
          figure(
            "RERANKER_IN_WORKER=true, float32 vectors: process start → first answer",
            med(inWorkerFloat32Runs, "total_ms"),
            "ms",
          ),
          figure("float32 snapshot", float32.bytes / 1e6, "MB", undefined, "same corpus, INDEX_TYPE=flat"),
          figure("float32 vectors: process start → first answer", med(float32Runs, "total_ms"), "ms"),
          figure("float32 vectors: snapshot load", med(float32Runs, "snapshot_load_ms"), "ms"),
          figure("float32 vectors: first query", med(float32Runs, "first_query_ms"), "ms"),
          figure("float32 vectors: 100th query", med(float32Runs, "query_100_ms"), "ms"),
          figure("float32 vectors: peak RSS", med(float32Runs, "peak_rss_mb"), "MiB"),
          figure("bundle: peak RSS", b("peak_rss_mb"), "MiB", undefined, "VmHWM after the 100th query"),
          figure(
            "glibc malloc defaults: process start → first answer",
            med(mallocDefaultsRuns, "total_ms"),
            "ms",
            undefined,
            `GLIBC_TUNABLES unset; model load ${Math.round(med(mallocDefaultsRuns, "model_load_ms"))} ms (${Math.round(b("model_load_ms"))} with ALLOCATOR_ENV)`,
          ),
          figure("glibc malloc defaults: peak RSS", med(mallocDefaultsRuns, "peak_rss_mb"), "MiB"),
          figure(
            "glibc malloc defaults, float32 vectors: process start → first answer",
            med(mallocDefaultsFloat32Runs, "total_ms"),
            "ms",
          ),
          ...(["hashing", "use_lite_cold", "use_lite_cached"] as const).flatMap((k) => {
            const label = {
              hashing: `${nEmb} passages, EMBEDDER=hashing`,
              use_lite_cold: `${nEmb} passages, use-lite+hashing, empty /tmp`,
              use_lite_cached: `${nEmb} passages, use-lite+hashing, converted graph cached`,
            }[k];
            return [
              figure(`${label}: process start → first answer`, emb(k, "total_ms"), "ms"),
              figure(`${label}: first query`, emb(k, "first_query_ms"), "ms", undefined, "includes the embedder load"),
              figure(`${label}: 100th query`, emb(k, "query_100_ms"), "ms"),
            ];
          }),
        ],
        summary: {
          cold_start_ms: Math.round(b("total_ms")),
          cold_start_tsx_ms: Math.round(t("total_ms")),
          bundle_vs_tsx: Number((b("total_ms") / t("total_ms")).toFixed(3)),
          runtime_start_ms: Math.round(b("runtime_start_ms") + b("imports_ms")),
          runtime_start_tsx_ms: Math.round(t("runtime_start_ms") + t("imports_ms")),
          model_load_ms: Math.round(b("model_load_ms")),
          model_warmup_ms: Math.round(b("model_warmup_ms")),
          snapshot_load_ms: Math.round(b("snapshot_load_ms")),
          first_query_ms: Math.round(b("first_query_ms")),
          query_100_ms: Math.round(b("query_100_ms")),
          bundle_bytes: bundle.codeBytes,
          bundle_initial_bytes: bundle.initialBytes,
          all_answered: ok,
          reranked: everyRun.every((x) => x.reranked),
          ...byMode,
          snapshot_bytes: bytes,
          auto_index_type: autoType,
          fp16_rows: fp16Rows,
          float32_snapshot_bytes: float32.bytes,
          float32_cold_start_ms: Math.round(med(float32Runs, "total_ms")),
          float32_snapshot_load_ms: Math.round(med(float32Runs, "snapshot_load_ms")),
          float32_peak_rss_mb: Math.round(med(float32Runs, "peak_rss_mb")),
          // Below 1 when auto's storage makes the first answer faster than float32 vectors would.
          auto_vs_float32_cold_start: Number((b("total_ms") / med(float32Runs, "total_ms")).toFixed(3)),
          peak_rss_mb: Math.round(b("peak_rss_mb")),
          malloc_defaults_cold_start_ms: Math.round(med(mallocDefaultsRuns, "total_ms")),
          malloc_defaults_model_load_ms: Math.round(med(mallocDefaultsRuns, "model_load_ms")),
          malloc_defaults_peak_rss_mb: Math.round(med(mallocDefaultsRuns, "peak_rss_mb")),
          allocator_vs_malloc_defaults_cold_start: Number(
            (b("total_ms") / med(mallocDefaultsRuns, "total_ms")).toFixed(3),
          ),
          float32_malloc_defaults_cold_start_ms: Math.round(med(mallocDefaultsFloat32Runs, "total_ms")),
          float32_allocator_vs_malloc_defaults_cold_start: Number(
            (med(float32Runs, "total_ms") / med(mallocDefaultsFloat32Runs, "total_ms")).toFixed(3),
          ),
          in_worker_cold_start_ms: Math.round(med(inWorkerRuns, "total_ms")),
          in_worker_vs_default_cold_start: Number((med(inWorkerRuns, "total_ms") / b("total_ms")).toFixed(3)),
          in_worker_float32_cold_start_ms: Math.round(med(inWorkerFloat32Runs, "total_ms")),
          warmup_cold_start_ms: Math.round(med(warmupRuns, "total_ms")),
          warmup_vs_default_cold_start: Number((med(warmupRuns, "total_ms") / b("total_ms")).toFixed(3)),
          embedder_passages: nEmb,
          hashing_cold_start_ms: Math.round(emb("hashing", "total_ms")),
          use_lite_hashing_cold_start_ms: Math.round(emb("use_lite_cold", "total_ms")),
          use_lite_hashing_cached_cold_start_ms: Math.round(emb("use_lite_cached", "total_ms")),
          use_lite_hashing_vs_hashing_cold_start: Number(
            (emb("use_lite_cold", "total_ms") / emb("hashing", "total_ms")).toFixed(3),
          ),
          use_lite_hashing_query_100_ms: Number(emb("use_lite_cold", "query_100_ms").toFixed(2)),
          hashing_query_100_ms: Number(emb("hashing", "query_100_ms").toFixed(2)),
        },
        details: {
          modeRuns,
          float32Runs,
          mallocDefaultsRuns,
          mallocDefaultsFloat32Runs,
          warmupRuns,
          inWorkerRuns,
          inWorkerFloat32Runs,
          tsxRuns,
          embRuns,
        },
        notes: [
          `Snapshot: what a reindex publishes by default (INDEX_TYPE=auto, here ${autoType}); 'float32 vectors' is the same corpus with INDEX_TYPE=flat, the headline form of runs before 2026-12-07 21:00 UTC.`,
          `Median of ${reps} fresh processes per form, interleaved, after one unmeasured warm-up run of each (page cache, tsx compile cache).`,
          "Bundle: dist/functions/search/handler.mjs from `npm run build:functions` under plain node, fed a recorded API Gateway v2 event, as Lambda runs it; its phase split comes from /health (index.load_ms, reranker.loadMs).",
          "tsx: the same service built from the TypeScript sources (scripts/bench/coldstart-child.ts), PASSAGE_TEXTS at its default.",
          "PASSAGE_TEXTS: lazy (default; bundle figures above) serves once the index and the passage store's head are in and reads texts only by verified 64 KiB blocks (64 MB cache); background does the same and downloads all texts behind the first query; eager reads the whole store before serving. The 100th query follows 99 searches with different queries in the same process.",
          "s3rver runs in its own process on loopback; on AWS the snapshot comes from S3 over the network instead.",
          `Every search process starts with ALLOCATOR_ENV (infra/process-env.ts, GLIBC_TUNABLES=${ALLOCATOR_ENV.GLIBC_TUNABLES}), as every deployed function does; 'glibc malloc defaults' runs the same bundle with GLIBC_TUNABLES empty. hugetlb needs glibc ≥ 2.35 (this machine: ${glibcVersion()}); older glibc applies top_pad only.`,
          "Embedder forms: the same bundle on a smaller snapshot embedded by each embedder, lexical reranker; use-lite+hashing is EMBEDDER=auto's pick. 'empty /tmp' converts the TF.js graph again (as each new Lambda execution environment does), 'cached' finds it in MODEL_CACHE_DIR. The USE-lite model load starts when the manifest is read, beside the index download.",
        ],
      };
    } finally {
      s3child?.stdin?.end();
      s3child?.kill();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
