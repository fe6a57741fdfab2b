// Index shard workers as local child processes (functions/shard/server.ts), one per shard, each
// pinned with SHARD_ID: the local stand-in for the shard Lambdas of SEARCH_SHARDS=lambda. Used by
// the local stack (SEARCH_SHARDS=http without SHARD_URLS), the scale benchmark and the tests.
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";

const repoRoot = path.resolve(import.meta.dirname, "../..");

export interface ShardWorkers {
  /** Base URLs, shard i → urls[i] (what SHARD_URLS takes). */
  urls: string[];
  /** Each worker's output so far (for error messages). */
  output(shard: number): string;
  close(): Promise<void>;
}

export interface ShardWorkerOptions {
  shards: number;
  /** Environment of every worker (store settings, INDEX_PREFIX); SHARD_ID/SHARD_PORT are set here. */
  env: NodeJS.ProcessEnv;
  host?: string;
  /** How long a worker may take to listen. */
  startTimeoutMs?: number;
}

function startOne(
  shard: number,
  opts: ShardWorkerOptions,
): { child: ChildProcess; out: () => string; url: Promise<string> } {
  const host = opts.host ?? "127.0.0.1";
  const child = spawn(process.execPath, ["--import", "tsx", "functions/shard/server.ts"], {
    cwd: repoRoot,
    env: { ...opts.env, SHARD_ID: String(shard), SHARD_PORT: "0", SHARD_HOST: host },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  let out = "";
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`shard worker ${shard} did not listen within ${opts.startTimeoutMs ?? 60_000} ms:\n${out}`)),
      opts.startTimeoutMs ?? 60_000,
    );
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("message", (m: { type?: string; port?: number }) => {
      if (m?.type !== "listening") return;
      clearTimeout(timer);
      resolve(`http://${host}:${m.port}`);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`shard worker ${shard} exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
  return { child, out: () => out, url };
}

export async function startShardWorkers(opts: ShardWorkerOptions): Promise<ShardWorkers> {
  const workers = Array.from({ length: opts.shards }, (_, i) => startOne(i, opts));
  const close = async () => {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
            w.child.once("exit", () => resolve());
            w.child.kill("SIGTERM");
          }),
      ),
    );
  };
  try {
    const urls = await Promise.all(workers.map((w) => w.url));
    return { urls, output: (i) => workers[i].out(), close };
  } catch (e) {
    await close();
    throw e;
  }
}
