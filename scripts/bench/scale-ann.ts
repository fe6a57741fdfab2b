// The large-corpus default index ("ivfpq-refine": IVF-PQ candidates re-scored by an SQ8 copy)
// against Flat on n×d seeded clustered vectors (the generator of the faiss bench): recall@20
// against the exact top 20, single-query latency, serialised bytes and resident memory.
//
// Memory is measured two ways: the RSS growth of this process while each index is built
// (includes the builder's transient allocations and the allocator's slack: an upper bound), and
// the RSS growth of a fresh child process that loads the serialised file the way the search
// function does (faissIndexFromFile) and searches it: the resident memory a search function pays.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildFaissIndex,
  type ConcreteIndexType,
  type FaissIndexParams,
  type FaissVectorIndex,
} from "../../shared/adapters/faiss-index.ts";
import { measure, type TimingStats } from "./harness.ts";
import { clusteredVectors, recallAtK, row } from "./vectors.ts";

const K = 20;
const MB = 1e6;
const ANN: ConcreteIndexType = "ivfpq-refine";
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const childScript = fileURLToPath(new URL("./scale-ann-child.ts", import.meta.url));

export interface ScaleAnnOptions {
  n: number;
  dimensions: number;
  queries: number;
  log?: (s: string) => void;
  /** Build parameters of the approximate index (default: what INDEX_TYPE=auto would use). */
  params?: FaissIndexParams;
}

interface ChildLoad {
  rssBeforeMb: number;
  rssLoadedMb: number;
  rssSearchedMb: number;
  peakMb: number;
  peakMethod: string;
  loadMs: number;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function* batches(x: Float32Array, d: number, rows = 8192): Generator<Float32Array> {
  for (let off = 0; off < x.length; off += rows * d) yield x.subarray(off, Math.min(x.length, off + rows * d));
}

function rssMb(): number {
  return process.memoryUsage().rss / MB;
}

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

function loadInChild(file: string, type: ConcreteIndexType, queryFile: string): Promise<ChildLoad> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", childScript, file, type, queryFile], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`scale-ann child failed (${code}): ${err.slice(-2000)}`));
      resolve(JSON.parse(out.trim().split("\n").pop()!) as ChildLoad);
    });
  });
}

async function timed(index: FaissVectorIndex, queries: Float32Array[]): Promise<TimingStats> {
  let qi = 0;
  return measure(() => index.search(queries[qi++ % queries.length], K), {
    warmup: 10,
    reps: Math.max(200, queries.length),
    maxMs: 30_000,
  });
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

/**
 * Builds Flat and the large-corpus default ("ivfpq-refine") on n×d clustered vectors and measures
 * both. Needs --expose-gc for the in-process RSS figures to mean much (they are upper bounds).
 */
export async function measureAnnAtScale(opts: ScaleAnnOptions): Promise<Record<string, number | string>> {
  const { n, dimensions: d } = opts;
  const nq = opts.queries;
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), "scale-ann-"));
  try {
    log(`scale-ann ${n}×${d}: generating vectors`);
    let base: Float32Array | undefined = clusteredVectors({ n, d, seed: 3 });
    const qs = clusteredVectors({ n: nq, d, seed: 4 });
    const queries = Array.from({ length: nq }, (_, i) => row(qs, d, i));
    const queryFile = join(dir, "queries.f32");
    writeFileSync(queryFile, new Uint8Array(qs.buffer, qs.byteOffset, qs.byteLength));

    // The approximate index first, while the heap is clean, then Flat.
    gc();
    let rss0 = rssMb();
    let t0 = performance.now();
    let ann: FaissVectorIndex | undefined = await buildFaissIndex(
      { dimensions: d, type: ANN, count: n, params: opts.params },
      batches(base, d),
    );
    const annBuildS = (performance.now() - t0) / 1000;
    gc();
    const annBuildRss = rssMb() - rss0;
    log(`scale-ann: ${ann.params.factory} built in ${annBuildS.toFixed(1)} s`);

    rss0 = rssMb();
    t0 = performance.now();
    let flat: FaissVectorIndex | undefined = await buildFaissIndex(
      { dimensions: d, type: "flat", count: n },
      batches(base, d),
    );
    const flatBuildS = (performance.now() - t0) / 1000;
    gc();
    const flatBuildRss = rssMb() - rss0;
    base = undefined; // both indexes hold their own copies

    log("scale-ann: exact top-20 and latencies");
    const exact = queries.map((q) => flat!.search(q, K).ordinals);
    const approx = queries.map((q) => ann!.search(q, K).ordinals);
    const recall = recallAtK(approx, exact, K);
    const flatT = await timed(flat, queries);
    const annT = await timed(ann, queries);

    const files: Record<string, string> = {};
    const bytes: Record<string, number> = {};
    for (const [name, index] of [
      ["flat", flat],
      ["ann", ann],
    ] as const) {
      const buf = index.toBuffer();
      bytes[name] = buf.byteLength;
      files[name] = join(dir, `${name}.faiss`);
      writeFileSync(files[name], buf);
    }
    const annParams = { ...ann.params };
    flat = undefined;
    ann = undefined;
    gc();

    log("scale-ann: resident memory of each index loaded in a fresh process");
    const flatLoad = await loadInChild(files.flat, "flat", queryFile);
    const annLoad = await loadInChild(files.ann, ANN, queryFile);
    const flatResident = flatLoad.rssSearchedMb - flatLoad.rssBeforeMb;
    const annResident = annLoad.rssSearchedMb - annLoad.rssBeforeMb;

    const out: Record<string, number | string> = {
      n,
      dimensions: d,
      queries: nq,
      k: K,
      cpu: cpuModel(),
      type: ANN,
      factory: String(annParams.factory),
      nlist: Number(annParams.nlist),
      nprobe: Number(annParams.nprobe),
      pq_m: Number(annParams.pq_m),
      kFactor: Number(annParams.kFactor),
      recall_at_20: round(recall, 4),
      flat_p50_ms: round(flatT.p50),
      flat_p99_ms: round(flatT.p99),
      ann_p50_ms: round(annT.p50),
      ann_p99_ms: round(annT.p99),
      p50_ratio_vs_flat: round(annT.p50 / flatT.p50, 4),
      speedup_vs_flat: round(flatT.p50 / annT.p50, 1),
      flat_bytes: bytes.flat,
      ann_bytes: bytes.ann,
      bytes_ratio_vs_flat: round(bytes.ann / bytes.flat, 4),
      flat_bytes_per_vector: round(bytes.flat / n, 1),
      ann_bytes_per_vector: round(bytes.ann / n, 1),
      flat_build_s: round(flatBuildS, 1),
      ann_build_s: round(annBuildS, 1),
      flat_build_rss_mb: round(flatBuildRss, 1),
      ann_build_rss_mb: round(annBuildRss, 1),
      flat_loaded_rss_mb: round(flatResident, 1),
      ann_loaded_rss_mb: round(annResident, 1),
      loaded_rss_ratio_vs_flat: round(annResident / flatResident, 4),
      flat_load_peak_mb: round(flatLoad.peakMb - flatLoad.rssBeforeMb, 1),
      ann_load_peak_mb: round(annLoad.peakMb - annLoad.rssBeforeMb, 1),
      flat_load_ms: round(flatLoad.loadMs, 0),
      ann_load_ms: round(annLoad.loadMs, 0),
      rss_note:
        `loaded_rss = RSS growth of a fresh process after faissIndexFromFile + ${nq} searches (peak via ${annLoad.peakMethod}); ` +
        "build_rss = this process's growth while building (after gc" +
        ((globalThis as { gc?: unknown }).gc ? "" : ", unavailable without --expose-gc") +
        "; includes the builder's slack: faiss grows its per-list and code vectors geometrically)",
    };
    log(`scale-ann: ${JSON.stringify(out)}`);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
