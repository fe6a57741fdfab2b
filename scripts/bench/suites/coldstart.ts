// coldstart: from process start to the first answered search, for a 100K-passage snapshot in
// s3rver, split into runtime start, module imports, model load and snapshot load (these two run
// concurrently during init, as in the Lambda function) and the first query.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureFixtureModel } from "../../fixtures/index.ts";
import { publishHashingSnapshot } from "../hashing-snapshot.ts";
import { figure, type Suite, type SuiteResult, stats } from "../harness.ts";
import { makePassages, s3rverStore, startS3rverChild } from "./snapshot.ts";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const childScript = fileURLToPath(new URL("../coldstart-child.ts", import.meta.url));

interface ColdRun {
  status: number;
  reranked: boolean;
  results: number;
  runtime_start_ms: number;
  imports_ms: number;
  model_load_ms: number;
  snapshot_load_ms: number;
  init_ms: number;
  first_query_ms: number;
  total_ms: number;
}

function runChild(env: Record<string, string>): Promise<ColdRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", childScript], {
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
    const reps = ctx.quick ? 1 : 3;
    const work = mkdtempSync(join(tmpdir(), "bench-coldstart-"));
    const bucket = "bench";
    let s3child: ChildProcess | undefined;
    try {
      ctx.log(`building a ${n}-passage snapshot (hashing embedder, ${d} dims)`);
      const passages = makePassages(n, 7);
      const s3 = await startS3rverChild(join(work, "s3"), bucket);
      s3child = s3.child;
      const store = s3rverStore(s3.endpoint, bucket);
      const { bytes } = await publishHashingSnapshot(store, passages, { dimensions: d });
      const modelDir = await ensureFixtureModel(ctx.quick ? "tiny-cross" : "minilm-l6-cross");
      const env = {
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
      await runChild(env); // warm the page cache and tsx's compile cache; not counted
      const runs: ColdRun[] = [];
      for (let r = 0; r < reps; r++) {
        ctx.log(`cold start ${r + 1}/${reps}`);
        runs.push(await runChild(env));
      }
      const med = (k: keyof ColdRun) => stats(runs.map((x) => Number(x[k]))).p50;
      const ok = runs.every((x) => x.status === 200 && x.results > 0);
      return {
        suite: "coldstart",
        figures: [
          figure("snapshot", bytes / 1e6, "MB", undefined, `${n} passages × ${d} dims, flat`),
          figure(
            "runtime start",
            med("runtime_start_ms"),
            "ms",
            undefined,
            "process start → entry module (node + tsx loader)",
          ),
          figure(
            "module imports",
            med("imports_ms"),
            "ms",
            undefined,
            "search function code, AWS SDK, hono, faiss-node",
          ),
          figure(
            "model load",
            med("model_load_ms"),
            "ms",
            undefined,
            "cross-encoder session (concurrent with snapshot)",
          ),
          figure("snapshot load", med("snapshot_load_ms"), "ms", undefined, "pointer → files → sha256 → index"),
          figure("init (both)", med("init_ms"), "ms"),
          figure("first query", med("first_query_ms"), "ms", undefined, "embed + search + rerank 20 + fuse"),
          figure("total: process start → first answer", med("total_ms"), "ms"),
        ],
        summary: {
          total_ms: Math.round(med("total_ms")),
          runtime_start_ms: Math.round(med("runtime_start_ms") + med("imports_ms")),
          model_load_ms: Math.round(med("model_load_ms")),
          snapshot_load_ms: Math.round(med("snapshot_load_ms")),
          first_query_ms: Math.round(med("first_query_ms")),
          all_answered: ok,
          reranked: runs.every((x) => x.reranked),
        },
        details: { runs },
        notes: [
          `Median of ${reps} fresh processes after one unmeasured warm-up run (page cache, tsx compile cache).`,
          "Runs the TypeScript sources through tsx; a bundled Lambda skips tsx's transform, so runtime start is an upper bound.",
          "s3rver runs in its own process on loopback; on AWS the snapshot comes from S3 over the network instead.",
        ],
      };
    } finally {
      s3child?.stdin?.end();
      s3child?.kill();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
