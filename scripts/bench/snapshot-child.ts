// Child processes of the snapshot benchmark, so each measurement starts clean: its own heap and
// RSS, and s3rver on its own event loop instead of the one being measured.
//   s3rver <dir> <bucket>          serve <dir> over S3 on a free loopback port; prints {"port"}; exits when stdin closes
//   raw-s3 <json>                  plain GETs of the given keys, bodies drained and dropped (or, with
//                                  keep, copied into fresh buffers); prints {bytes, ms, cpuMs}
//   first-touch <bytes>            write rate into never-touched memory, then the same memory again
//   sha256 <bytes>                 one thread's sha256 rate over that many bytes, in 8 MiB updates
//   raw-fs <json>                  plain reads of the given files; prints {bytes, ms}
//   load <json>                    the snapshot loader, as the search function runs it; prints timings and RSS
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";
import {
  allocateSnapshotBytes,
  createFaissIndexSinkFactory,
  decodeFaissSnapshotIndex,
  hasTypedFaiss,
} from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { createSnapshotLoader } from "../../shared/core/snapshot-loader.ts";

export interface S3Target {
  endpoint: string;
  bucket: string;
}

export interface LoadJob {
  store: { kind: "s3"; endpoint: string; bucket: string } | { kind: "fs"; root: string };
  indexPrefix: string;
  /** Stream index.faiss into a temp file faiss reads (default), or decode it from bytes in memory. */
  streaming: boolean;
  partBytes?: number;
  concurrency?: number;
  /** Ask for huge pages for the index and passage memory (default true, as the search function does). */
  hugePages?: boolean;
  /** PASSAGE_TEXTS of the loader (default eager: the throughput comparisons fetch every byte). */
  passageTexts?: "background" | "lazy" | "eager";
}

export interface LoadResult {
  ms: number;
  /** CPU time of this process (all its threads) during the load. */
  cpuMs: number;
  bytes: number;
  version: string;
  rssBefore: number;
  peakRss: number;
  rssAfter: number;
  /** How the peak was measured: "VmHWM" (kernel high-water mark, reset before loading) or "sampled". */
  peakMethod: string;
}

const credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** User + system CPU ms of this process since `from`. */
function cpuMsSince(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

function s3Client(endpoint: string): S3Client {
  return new S3Client({ endpoint, forcePathStyle: true, region: "us-east-1", credentials });
}

function vmKb(field: string): number | null {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resets the kernel's peak-RSS mark (VmHWM) so it measures from now on; false where unsupported. */
async function resetPeakRss(): Promise<boolean> {
  try {
    const { writeFileSync } = await import("node:fs");
    writeFileSync("/proc/self/clear_refs", "5");
    return vmKb("VmHWM") !== null;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const [role, arg, arg2] = process.argv.slice(2);
  if (role === "s3rver") {
    const server = new S3rver({
      address: "127.0.0.1",
      port: 0,
      silent: true,
      directory: arg,
      configureBuckets: [{ name: arg2, configs: [] }],
      allowMismatchedSignatures: true,
      vhostBuckets: false,
    });
    const { port } = (await server.run()) as { port: number };
    process.stdout.write(`${JSON.stringify({ port })}\n`);
    process.stdin.resume();
    process.stdin.on("end", () => server.close().then(() => process.exit(0)));
    return;
  }
  if (role === "raw-s3") {
    // keep: copy each body into a fresh buffer of its size (what any loader must at least do),
    // instead of dropping the chunks.
    const job = JSON.parse(arg) as S3Target & { keys: string[]; keep?: boolean };
    const client = s3Client(job.endpoint);
    const kept: Uint8Array[] = [];
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const sizes = await Promise.all(
      job.keys.map(async (key) => {
        const res = await client.send(new GetObjectCommand({ Bucket: job.bucket, Key: key }));
        const into = job.keep ? new Uint8Array(res.ContentLength ?? 0) : undefined;
        if (into) kept.push(into);
        let n = 0;
        for await (const chunk of res.Body as AsyncIterable<Uint8Array>) {
          into?.set(chunk, n);
          n += chunk.byteLength;
        }
        return n;
      }),
    );
    const ms = performance.now() - t0;
    const cpuMs = cpuMsSince(cpu0);
    process.stdout.write(`${JSON.stringify({ bytes: sizes.reduce((a, b) => a + b, 0), ms, cpuMs })}\n`);
    client.destroy();
    return;
  }
  if (role === "first-touch") {
    // Writing into memory the process has never touched: every 4 KiB page faults on first write.
    const bytes = Number(arg);
    const chunk = new Uint8Array(1 << 16).fill(7);
    const fresh = new Uint8Array(bytes);
    const t0 = performance.now();
    for (let at = 0; at < bytes; at += chunk.byteLength)
      fresh.set(chunk.subarray(0, Math.min(chunk.byteLength, bytes - at)), at);
    const ms = performance.now() - t0;
    const t1 = performance.now();
    for (let at = 0; at < bytes; at += chunk.byteLength)
      fresh.set(chunk.subarray(0, Math.min(chunk.byteLength, bytes - at)), at);
    const againMs = performance.now() - t1;
    process.stdout.write(`${JSON.stringify({ bytes, ms, againMs })}\n`);
    return;
  }
  if (role === "sha256") {
    // One thread's sha256 rate over fresh bytes of the snapshot's size: the loader's verification cost.
    const bytes = Number(arg);
    const data = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i += 4096) data[i] = i & 0xff;
    const part = 8 * 1024 * 1024;
    const t0 = performance.now();
    const h = createHash("sha256");
    for (let at = 0; at < bytes; at += part) h.update(data.subarray(at, Math.min(bytes, at + part)));
    h.digest();
    process.stdout.write(`${JSON.stringify({ bytes, ms: performance.now() - t0 })}\n`);
    return;
  }
  if (role === "raw-fs") {
    const files = JSON.parse(arg) as string[];
    const t0 = performance.now();
    const sizes = await Promise.all(files.map(async (f) => (await readFile(f)).byteLength));
    const ms = performance.now() - t0;
    process.stdout.write(`${JSON.stringify({ bytes: sizes.reduce((a, b) => a + b, 0), ms })}\n`);
    return;
  }
  if (role === "load") {
    const job = JSON.parse(arg) as LoadJob;
    hasTypedFaiss(); // load the native addon before the baseline
    const store: ObjectStore =
      job.store.kind === "s3"
        ? createS3Store({ bucket: job.store.bucket, endpoint: job.store.endpoint, forcePathStyle: true, credentials })
        : createFsStore(job.store.root);
    const loader = createSnapshotLoader({
      store,
      indexPrefix: job.indexPrefix,
      refreshS: 3600,
      decodeIndex: decodeFaissSnapshotIndex,
      openIndexSink: job.streaming ? createFaissIndexSinkFactory({ hugePages: job.hugePages !== false }) : undefined,
      allocate: job.hugePages === false ? undefined : allocateSnapshotBytes,
      partBytes: job.partBytes,
      concurrency: job.concurrency,
      passageTexts: job.passageTexts ?? "eager",
    });
    // Warm the store client (SDK modules, GetObject's code path, first connection) with one GET of
    // the pointer before the baseline: that cost belongs to the function's init, not to the load.
    await store.get(`${job.indexPrefix}LATEST.json`);
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 50));
    globalThis.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const hwm = await resetPeakRss();
    let sampled = rssBefore;
    // Sampling only where the kernel keeps no high-water mark: it would take time from the load.
    const sampler = hwm
      ? undefined
      : setInterval(() => {
          sampled = Math.max(sampled, process.memoryUsage().rss);
        }, 2);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const snap = await loader.current();
    const ms = performance.now() - t0;
    const cpuMs = cpuMsSince(cpu0);
    if (sampler) clearInterval(sampler);
    const peakRss = Math.max(hwm ? (vmKb("VmHWM") ?? 0) : 0, sampled, process.memoryUsage().rss);
    const bytes = Object.values(snap.manifest.files).reduce((a, f) => a + f.bytes, 0);
    const out: LoadResult = {
      ms,
      cpuMs,
      bytes,
      version: snap.version,
      rssBefore,
      peakRss,
      rssAfter: process.memoryUsage().rss,
      peakMethod: hwm ? "VmHWM" : "sampled",
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
    loader.close();
    return;
  }
  throw new Error(`unknown role ${role}`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
