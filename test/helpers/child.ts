// Long-running repository scripts (`npm run demo`, `cli serve`) as child processes: wait for a line
// of their output, send them a signal, and check how they exit.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { connect } from "node:net";
import path from "node:path";
import { promisify } from "node:util";

export const repoRoot = path.resolve(import.meta.dirname, "../..");

/** The environment of a child that must not pick up the developer's keys or model settings. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of [
    "OPENAI_API_KEY",
    "EMBEDDING_MODEL_DIR",
    "RERANKER_MODEL_DIR",
    "RERANKER_MODEL_S3_PREFIX",
    "RERANKER",
    "RERANKER_URL",
    "EMBEDDER",
    "STORE_KIND",
    "STORE_DIR",
    "BUCKET",
    "S3_ENDPOINT",
    "PORT",
    "RERANKER_PORT",
    "S3_PORT",
    "LOG_LEVEL",
    "AUTH_MODE",
  ]) {
    delete env[k];
  }
  return { ...env, CI: "true", ...extra };
}

export interface Child {
  process: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves with the first match of `re` in the output (waiting for it), rejects after timeoutMs or on exit. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the process group if it is still running (test cleanup). */
  kill(): void;
}

export function spawnScript(args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, ["--import", "tsx", ...args], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    }),
  );
  return {
    process: child,
    output: () => out,
    exited,
    waitFor(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) {
            done();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) before printing ${re}:\n${out}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${re} within ${timeoutMs} ms; output so far:\n${out}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

/** A short-lived CLI run: `npm run cli -- <args>` without npm. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, ["--import", "tsx", "scripts/cli.ts", ...args], {
      cwd: repoRoot,
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== "number") throw e;
    return { code: err.code, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

/** The last non-empty stdout line parsed as JSON (the `--json` contract). */
export function lastJsonLine<T = unknown>(stdout: string): T {
  const lines = stdout.trim().split("\n").filter(Boolean);
  return JSON.parse(lines[lines.length - 1]) as T;
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
