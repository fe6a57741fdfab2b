// One benchmark harness: every suite measures with the same warm-up/repetition rules, reports
// median and p99, puts each figure beside its goal, and describes the machine it ran on.
// Human output is a table; with --json the last line printed is one JSON object.
import { execSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** Human-readable goal, e.g. "≤ 1.25× bound". */
  goal?: string;
  /** Whether the goal is met (undefined when there is no goal). */
  met?: boolean;
  note?: string;
}

export interface SuiteResult {
  suite: string;
  figures: Figure[];
  /** Machine-readable key figures required by the issues (e.g. flat_ratio_to_bound). */
  summary: Record<string, number | string | boolean | null>;
  /** Extra rows for the table (free-form). */
  details?: Record<string, unknown>;
  notes?: string[];
}

export interface SuiteContext {
  /** Smaller sizes for smoke runs (--quick); figures are then not representative. */
  quick: boolean;
  args: string[];
  log: (msg: string) => void;
}

export interface Suite {
  name: string;
  description: string;
  run(ctx: SuiteContext): Promise<SuiteResult>;
}

export interface TimingStats {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

export function stats(samples: number[]): TimingStats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return {
    n: s.length,
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    min: s[0],
    max: s[s.length - 1],
  };
}

/** Runs fn `warmup` times unmeasured, then `reps` times measured (ms per call). */
export async function measure(
  fn: () => unknown,
  opts: { warmup?: number; reps?: number; maxMs?: number } = {},
): Promise<TimingStats> {
  const { warmup = 3, reps = 30, maxMs = 60_000 } = opts;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
    if (performance.now() - start > maxMs && samples.length >= 5) break;
  }
  return stats(samples);
}

export function machine(): Record<string, string | number> {
  const cpus = os.cpus();
  let flags = "";
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const f = /flags\s*:\s*(.*)/.exec(info)?.[1] ?? "";
    flags = ["avx2", "avx512f", "avx512_vnni", "amx_tile"].filter((x) => f.split(" ").includes(x)).join(",");
  } catch {}
  const version = (pkg: string) => {
    try {
      return JSON.parse(readFileSync(new URL(`../../node_modules/${pkg}/package.json`, import.meta.url), "utf8"))
        .version;
    } catch {
      return "n/a";
    }
  };
  let kernel = "";
  try {
    kernel = execSync("uname -r", { encoding: "utf8" }).trim();
  } catch {}
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    simd: flags,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${kernel}`,
    node: process.versions.node,
    "faiss-node": version("faiss-node"),
    "onnxruntime-node": version("onnxruntime-node"),
    "onnxruntime-web": version("onnxruntime-web"),
    "@huggingface/transformers": version("@huggingface/transformers"),
    date: new Date().toISOString(),
  };
}

export function figure(
  name: string,
  value: number,
  unit: string,
  goal?: { text: string; met: boolean },
  note?: string,
): Figure {
  return { name, value, unit, goal: goal?.text, met: goal?.met, note };
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

export function renderTable(result: SuiteResult): string {
  const rows = result.figures.map((f) => [
    f.name,
    `${fmt(f.value)} ${f.unit}`,
    f.goal ? `${f.goal} ${f.met ? "✓" : "✗"}` : "",
    f.note ?? "",
  ]);
  const head = ["figure", "value", "goal", "note"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

const registry = new Map<string, () => Promise<Suite>>();

/** Suites register lazily so `bench rerank` does not load faiss, and vice versa. */
export function registerSuite(name: string, load: () => Promise<Suite>): void {
  registry.set(name, load);
}

export function suiteNames(): string[] {
  return [...registry.keys()];
}

export async function runSuites(
  names: string[],
  opts: { json: boolean; quick: boolean; args: string[] },
): Promise<SuiteResult[]> {
  const results: SuiteResult[] = [];
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const m = machine();
  if (!opts.json)
    console.log(
      `machine: ${Object.entries(m)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}\n`,
    );
  for (const name of names) {
    const load = registry.get(name);
    if (!load) throw new Error(`unknown benchmark suite "${name}"; known: ${suiteNames().join(", ")}, all`);
    const suite = await load();
    log(
      `== ${suite.name}: ${suite.description}${opts.quick ? " (quick: sizes reduced, figures not representative)" : ""}`,
    );
    const result = await suite.run({ quick: opts.quick, args: opts.args, log });
    results.push(result);
    if (!opts.json) {
      console.log(`\n## ${suite.name}\n${renderTable(result)}`);
      if (result.notes?.length) console.log(result.notes.map((n) => `- ${n}`).join("\n"));
      console.log(`summary: ${JSON.stringify(result.summary)}\n`);
    }
  }
  if (opts.json) {
    const out =
      results.length === 1
        ? { machine: m, quick: opts.quick, ...results[0] }
        : {
            machine: m,
            quick: opts.quick,
            suites: results,
            summary: Object.fromEntries(results.map((r) => [r.suite, r.summary])),
          };
    console.log(JSON.stringify(out));
  }
  return results;
}
