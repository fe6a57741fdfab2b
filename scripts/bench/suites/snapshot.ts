// snapshot: how fast and how lean the search function loads a 100K×384 snapshot, from s3rver and
// from the local filesystem store, each against a raw read of the same bytes through the same path.
// Every measurement runs in a fresh child process (clean heap and RSS); s3rver runs in its own
// process so its work does not share the measured event loop.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { faissIndexBuilder } from "../../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../../shared/adapters/fs-store.ts";
import { createS3Store } from "../../../shared/adapters/s3-store.ts";
import { buildSnapshot } from "../../../shared/core/build.ts";
import { publishSnapshot } from "../../../shared/core/publish.ts";
import { MANIFEST_FILE, snapshotFileKey } from "../../../shared/core/snapshot.ts";
import type { Passage } from "../../../shared/core/types.ts";
import { figure, type Suite, type SuiteResult } from "../harness.ts";
import type { LoadJob, LoadResult } from "../snapshot-child.ts";
import { clusteredVectors, mulberry32, row } from "../vectors.ts";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const childScript = fileURLToPath(new URL("../snapshot-child.ts", import.meta.url));
const MB = 1e6;

function runChild<T>(args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", childScript, ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`bench child ${args[0]} failed (${code}): ${err.slice(-2000)}`));
      const last = out.trim().split("\n").pop()!;
      resolve(JSON.parse(last) as T);
    });
  });
}

/** CPU ms (user + system) a process has used so far, from /proc/<pid>/stat; null where unreadable. */
function procCpuMs(pid: number | undefined): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name: utime is the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / clockTicks();
  } catch {
    return null;
  }
}

let ticksPerS: number | undefined;
function clockTicks(): number {
  if (ticksPerS === undefined) {
    try {
      ticksPerS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerS = 100;
    }
  }
  return ticksPerS;
}

/** An S3 store on the benchmark's s3rver child. */
export function s3rverStore(endpoint: string, bucket: string) {
  return createS3Store({
    bucket,
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  });
}

export function startS3rverChild(dir: string, bucket: string): Promise<{ endpoint: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", childScript, "s3rver", dir, bucket], {
      cwd: repoRoot,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) resolve({ endpoint: `http://127.0.0.1:${JSON.parse(line).port}`, child });
    });
    child.on("exit", (code) => reject(new Error(`s3rver child exited (${code}): ${err.slice(-2000)}`)));
  });
}

const WORDS =
  "the of and to in is for on that with as by at from this be are or an it was which can not have more its other time data model search index query vector passage document retrieval rank score fusion latency memory snapshot server function storage cold warm load".split(
    " ",
  );

export function makePassages(n: number, seed: number): Passage[] {
  const rand = mulberry32(seed);
  const out: Passage[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const len = 30 + Math.floor(rand() * 30);
    const words: string[] = [];
    for (let w = 0; w < len; w++) words.push(WORDS[Math.floor(rand() * WORDS.length)]);
    const text = words.join(" ");
    const docId = `doc${Math.floor(i / 4)}`;
    out[i] = {
      id: `${docId}#${i % 4}`,
      docId,
      text,
      source: `corpus/${docId}.md`,
      metadata: { n: i },
      start: 0,
      end: text.length,
    };
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

export const suite: Suite = {
  name: "snapshot",
  description: "snapshot load time and peak RSS, s3rver and local disk, against raw reads of the same bytes",
  async run(ctx): Promise<SuiteResult> {
    // --snapshot-n=N overrides the size (experiments); the figure is 100K.
    const nArg = ctx.args.find((a) => a.startsWith("--snapshot-n="));
    const n = nArg ? Number(nArg.split("=")[1]) : ctx.quick ? 10_000 : 100_000;
    const d = 384;
    const reps = ctx.quick ? 2 : 3;
    const work = mkdtempSync(join(tmpdir(), "bench-snapshot-"));
    const bucket = "bench";
    const indexPrefix = "index/";
    let s3child: ChildProcess | undefined;
    try {
      ctx.log(`generating ${n}×${d} vectors and passages, building a flat snapshot`);
      const flat = clusteredVectors({ n, d, seed: 1 });
      const passages = makePassages(n, 2);
      const vectors = Array.from({ length: n }, (_, i) => row(flat, d, i));
      const built = await buildSnapshot({
        passages,
        vectors,
        embedder: { kind: "hashing", model: "bench-synthetic", dimensions: d, normalized: true },
        indexType: "flat",
        indexBuilder: faissIndexBuilder,
      });
      const snapshotBytes = Object.values(built.manifest.files).reduce((a, f) => a + f.bytes, 0);
      const version = built.manifest.version;

      ctx.log("publishing to the filesystem store and to s3rver (own process)");
      const fsRoot = join(work, "fs");
      await publishSnapshot(createFsStore(fsRoot), { indexPrefix, manifest: built.manifest, files: built.files });
      const s3 = await startS3rverChild(join(work, "s3"), bucket);
      s3child = s3.child;
      const s3store = s3rverStore(s3.endpoint, bucket);
      await publishSnapshot(s3store, { indexPrefix, manifest: built.manifest, files: built.files });

      const names = [...Object.keys(built.manifest.files), MANIFEST_FILE];
      const keys = names.map((name) => snapshotFileKey(indexPrefix, version, name));
      const files = keys.map((k) => join(fsRoot, ...k.split("/")));
      const s3Job: LoadJob = { store: { kind: "s3", endpoint: s3.endpoint, bucket }, indexPrefix, streaming: true };
      const fsJob: LoadJob = { store: { kind: "fs", root: fsRoot }, indexPrefix, streaming: true };

      const raw = { s3: [] as number[], s3Kept: [] as number[], fs: [] as number[] };
      // CPU cores busy during a kept-bodies GET run and a loader run: this process's child + s3rver.
      const cores = { kept: [] as number[], loader: [] as number[], keptMs: [] as number[] };
      const withServerCpu = async <T extends { ms: number; cpuMs: number }>(run: Promise<T>, into: number[]) => {
        const before = procCpuMs(s3child?.pid);
        const r = await run;
        const after = procCpuMs(s3child?.pid);
        if (before !== null && after !== null) into.push((r.cpuMs + after - before) / r.ms);
        return r;
      };
      const loads = {
        s3: [] as LoadResult[],
        s3Small: [] as LoadResult[],
        fs: [] as LoadResult[],
        s3Bytes: [] as LoadResult[],
        s3Lazy: [] as LoadResult[],
      };
      // Warm both paths once (page cache, s3rver's first-request costs), then alternate raw/loader.
      await runChild(["raw-s3", JSON.stringify({ endpoint: s3.endpoint, bucket, keys })]);
      await runChild(["raw-fs", JSON.stringify(files)]);
      for (let r = 0; r < reps; r++) {
        ctx.log(`round ${r + 1}/${reps}`);
        const rs3 = await runChild<{ bytes: number; ms: number }>([
          "raw-s3",
          JSON.stringify({ endpoint: s3.endpoint, bucket, keys }),
        ]);
        raw.s3.push(rs3.bytes / MB / (rs3.ms / 1000));
        const kept = await withServerCpu(
          runChild<{ bytes: number; ms: number; cpuMs: number }>([
            "raw-s3",
            JSON.stringify({ endpoint: s3.endpoint, bucket, keys, keep: true }),
          ]),
          cores.kept,
        );
        raw.s3Kept.push(kept.bytes / MB / (kept.ms / 1000));
        cores.keptMs.push(kept.ms);
        loads.s3.push(await withServerCpu(runChild<LoadResult>(["load", JSON.stringify(s3Job)]), cores.loader));
        loads.s3Small.push(await runChild<LoadResult>(["load", JSON.stringify({ ...s3Job, hugePages: false })]));
        loads.s3Lazy.push(await runChild<LoadResult>(["load", JSON.stringify({ ...s3Job, passageTexts: "lazy" })]));
        const rfs = await runChild<{ bytes: number; ms: number }>(["raw-fs", JSON.stringify(files)]);
        raw.fs.push(rfs.bytes / MB / (rfs.ms / 1000));
        loads.fs.push(await runChild<LoadResult>(["load", JSON.stringify(fsJob)]));
      }
      // --snapshot-sweep (experiments): loader part size × concurrency against the kept baseline.
      const sweep: Array<{ partMB: number; concurrency: number; vs_kept: number; ms: number }> = [];
      if (ctx.args.includes("--snapshot-sweep")) {
        for (const partMB of [4, 8, 16, 32]) {
          for (const concurrency of [2, 4, 8]) {
            const ratios: number[] = [];
            const times: number[] = [];
            for (let r = 0; r < reps; r++) {
              const kept = await runChild<{ bytes: number; ms: number }>([
                "raw-s3",
                JSON.stringify({ endpoint: s3.endpoint, bucket, keys, keep: true }),
              ]);
              const job = { ...s3Job, partBytes: partMB * MB, concurrency };
              const l = await runChild<LoadResult>(["load", JSON.stringify(job)]);
              ratios.push(l.bytes / l.ms / (kept.bytes / kept.ms));
              times.push(l.ms);
            }
            sweep.push({
              partMB,
              concurrency,
              vs_kept: Number(median(ratios).toFixed(3)),
              ms: Math.round(median(times)),
            });
            ctx.log(`sweep ${partMB} MB × ${concurrency}: ${JSON.stringify(sweep[sweep.length - 1])}`);
          }
        }
      }
      const touch = await runChild<{ bytes: number; ms: number; againMs: number }>([
        "first-touch",
        String(snapshotBytes),
      ]);
      loads.s3Bytes.push(await runChild<LoadResult>(["load", JSON.stringify({ ...s3Job, streaming: false })]));
      const sha = await runChild<{ bytes: number; ms: number }>(["sha256", String(snapshotBytes)]);

      const mbps = (l: LoadResult) => l.bytes / MB / (l.ms / 1000);
      const s3Load = median(loads.s3.map(mbps));
      const s3LoadSmall = median(loads.s3Small.map(mbps));
      const fsLoad = median(loads.fs.map(mbps));
      const s3Raw = median(raw.s3);
      const fsRaw = median(raw.fs);
      const rssRatio = median(loads.s3.map((l) => (l.peakRss - l.rssBefore) / l.bytes));
      const rssRatioLazy = median(loads.s3Lazy.map((l) => (l.peakRss - l.rssBefore) / l.bytes));
      const rssRatioFs = median(loads.fs.map((l) => (l.peakRss - l.rssBefore) / l.bytes));
      const rssRatioBytes = (loads.s3Bytes[0].peakRss - loads.s3Bytes[0].rssBefore) / loads.s3Bytes[0].bytes;
      const s3Ratio = s3Load / s3Raw;
      const s3KeptRaw = median(raw.s3Kept);
      const touchMBps = touch.bytes / MB / (touch.ms / 1000);
      const againMBps = touch.bytes / MB / (touch.againMs / 1000);
      const fsRatio = fsLoad / fsRaw;
      const shaMBps = sha.bytes / MB / (sha.ms / 1000);
      // The kept GETs plus one thread hashing the same bytes after them: the loader's time if hashing
      // could not overlap the transfer (no core free for it).
      const keptMs = median(cores.keptMs);
      const serialCeiling = keptMs / (keptMs + sha.ms);

      const figures = [
        figure("snapshot size", snapshotBytes / MB, "MB", undefined, `${n}×${d} flat index + passage store`),
        figure("s3rver: raw GET throughput", s3Raw, "MB/s", undefined, "plain GETs of the same objects, drained"),
        figure("s3rver: loader throughput", s3Load, "MB/s", undefined, "ranged GETs, sha256, index build"),
        figure("s3rver: loader / raw", s3Ratio, "×", { text: "≥ 0.8×", met: s3Ratio >= 0.8 }),
        figure("s3rver: load time", median(loads.s3.map((l) => l.ms)), "ms"),
        figure(
          "s3rver: loader without huge-page advice / raw",
          s3LoadSmall / s3Raw,
          "×",
          undefined,
          `${Math.round(median(loads.s3Small.map((l) => l.ms)))} ms: 4 KiB pages only (as with the prebuilt faiss-node)`,
        ),
        figure(
          "s3rver: raw GET throughput, bodies kept",
          s3KeptRaw,
          "MB/s",
          undefined,
          "the same GETs, each body copied into a fresh buffer of its size",
        ),
        figure("s3rver: loader / raw with bodies kept", s3Load / s3KeptRaw, "×", {
          text: "≥ 1.0×",
          met: s3Load / s3KeptRaw >= 1,
        }),
        figure("sha256, one thread", shaMBps, "MB/s", undefined, `${Math.round(sha.ms)} ms for the snapshot's bytes`),
        figure(
          "kept GETs: CPU cores busy",
          cores.kept.length ? median(cores.kept) : Number.NaN,
          "cores",
          undefined,
          "(client + s3rver CPU time) / wall time",
        ),
        figure(
          "loader: CPU cores busy",
          cores.loader.length ? median(cores.loader) : Number.NaN,
          "cores",
          undefined,
          "(client + s3rver CPU time) / wall time",
        ),
        figure(
          "kept / (kept + sha256)",
          serialCeiling,
          "×",
          undefined,
          "loader / kept if verification cannot overlap the transfer",
        ),
        figure(
          "first write into fresh memory",
          touchMBps,
          "MB/s",
          undefined,
          `snapshot-sized buffer; the same buffer written again: ${Math.round(againMBps)} MB/s (page faults are the difference)`,
        ),
        figure("local disk: raw read throughput", fsRaw, "MB/s", undefined, "fs.readFile of the same files"),
        figure("local disk: loader throughput", fsLoad, "MB/s"),
        figure("local disk: loader / raw", fsRatio, "×", { text: "≥ 0.8×", met: fsRatio >= 0.8 }),
        figure("local disk: load time", median(loads.fs.map((l) => l.ms)), "ms"),
        figure(
          "peak RSS − RSS before / snapshot bytes (s3rver)",
          rssRatio,
          "×",
          { text: "≤ 1.3×", met: rssRatio <= 1.3 },
          loads.s3[0].peakMethod,
        ),
        figure(
          "s3rver: time to serve, PASSAGE_TEXTS=lazy",
          median(loads.s3Lazy.map((l) => l.ms)),
          "ms",
          undefined,
          "index + passage store head; texts are read later, by range",
        ),
        figure("peak RSS − RSS before / snapshot bytes, PASSAGE_TEXTS=lazy", rssRatioLazy, "×", {
          text: "≤ 1.3×",
          met: rssRatioLazy <= 1.3,
        }),
        figure("peak RSS − RSS before / snapshot bytes (local disk)", rssRatioFs, "×", {
          text: "≤ 1.3×",
          met: rssRatioFs <= 1.3,
        }),
        figure(
          "same, index decoded from bytes instead of streamed",
          rssRatioBytes,
          "×",
          undefined,
          "decodeIndex path (no openIndexSink)",
        ),
      ];
      return {
        suite: "snapshot",
        figures,
        summary: {
          s3_vs_raw_throughput: Number(s3Ratio.toFixed(3)),
          s3_vs_kept_throughput: Number((s3Load / s3KeptRaw).toFixed(3)),
          s3_no_huge_pages_vs_raw_throughput: Number((s3LoadSmall / s3Raw).toFixed(3)),
          s3_no_huge_pages_vs_kept_throughput: Number((s3LoadSmall / s3KeptRaw).toFixed(3)),
          sha256_mb_per_s: Math.round(shaMBps),
          kept_cores_busy: cores.kept.length ? Number(median(cores.kept).toFixed(2)) : null,
          loader_cores_busy: cores.loader.length ? Number(median(cores.loader).toFixed(2)) : null,
          kept_over_kept_plus_sha256: Number(serialCeiling.toFixed(3)),
          first_touch_mb_per_s: Math.round(touchMBps),
          fs_vs_raw_throughput: Number(fsRatio.toFixed(3)),
          rss_over_snapshot_bytes: Number(rssRatio.toFixed(3)),
          rss_over_snapshot_bytes_lazy_texts: Number(rssRatioLazy.toFixed(3)),
          s3_serve_ms_lazy_texts: Math.round(median(loads.s3Lazy.map((l) => l.ms))),
          snapshot_bytes: snapshotBytes,
          s3_load_ms: Math.round(median(loads.s3.map((l) => l.ms))),
          fs_load_ms: Math.round(median(loads.fs.map((l) => l.ms))),
        },
        details: { raw, loads, cores, sha, firstTouch: touch, ...(sweep.length ? { sweep } : {}) },
        notes: [
          `Medians of ${reps} rounds; each measurement is a fresh child process, raw and loader alternating.`,
          "Loader = createSnapshotLoader as the search function runs it: pointer + manifest GETs, parallel ranged GETs (8 MiB parts, 4 in flight), incremental sha256 of every file; a flat index.faiss lands part by part in the WebAssembly memory it is searched in (other types stream into a temp file faiss reads); the passage store is kept in memory as downloaded. Both memories are advised to use transparent huge pages (madvise, through our faiss-node build) before the bytes land; the 'without huge-page advice' run skips that.",
          "The throughput and eager RSS figures load with PASSAGE_TEXTS=eager (every byte, as the baselines read); the lazy figures stop when the loader would serve: index, sparse index (absent here) and the passage store's head, the texts still in S3.",
          "Peak RSS is the kernel's VmHWM after resetting it (/proc/self/clear_refs) just before loading, minus the RSS then; snapshot bytes = index.faiss + passages.bin. Before the baseline the child warms its store client with one GET of the pointer (SDK code loading belongs to the function's init).",
          "s3rver runs in its own process on loopback; raw = plain whole-object GETs of the same three objects in parallel, bodies drained and dropped; 'bodies kept' = the same GETs copying each body into a fresh buffer of its size, the least any loader must do.",
        ],
      };
    } finally {
      s3child?.stdin?.end();
      s3child?.kill();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
