// Output of the local CLI subcommands: progress bars with rate and ETA on stderr (cli-progress),
// informational lines on stderr, results on stdout. `--quiet` drops bars and informational lines;
// `--json` also drops them and prints one JSON object as the last stdout line.
import cliProgress from "cli-progress";
import { ValidationError } from "../../shared/core/errors.ts";

export interface OutputMode {
  json: boolean;
  quiet: boolean;
}

export interface ProgressBar {
  update(done: number, total?: number): void;
  stop(): void;
}

export interface Progress {
  /** A new bar for one stage; its rate is per second since the bar started. */
  bar(stage: string, total: number, unit?: string): ProgressBar;
  /** An informational line on stderr that does not tear an active bar (nothing when quiet or JSON). */
  log(line: string): void;
  /** Stops every bar (call before printing anything else). */
  stop(): void;
}

const noBar: ProgressBar = { update() {}, stop() {} };

/** Bars only for an interactive stderr; logs and pipes get no control characters. */
export function createProgress(mode: OutputMode, stream: NodeJS.WriteStream = process.stderr): Progress {
  const plain = infoLogger(mode);
  if (mode.json || mode.quiet || !stream.isTTY) return { bar: () => noBar, log: plain, stop() {} };
  let multi: cliProgress.MultiBar | null = null;
  return {
    log(line) {
      if (multi) multi.log(`${line}\n`);
      else plain(line);
    },
    bar(stage, total, unit = "items") {
      multi ??= new cliProgress.MultiBar(
        {
          stream,
          barsize: 28,
          etaBuffer: 50,
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      );
      const started = performance.now();
      const b = multi.create(
        total,
        0,
        { rate: "0" },
        {
          format: `${stage.padEnd(10)} [{bar}] {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted}`,
        },
      );
      return {
        update(done, newTotal) {
          if (newTotal !== undefined) b.setTotal(newTotal);
          const s = (performance.now() - started) / 1000;
          b.update(done, { rate: s > 0 ? (done / s).toFixed(1) : "0" });
        },
        stop() {
          b.stop();
        },
      };
    },
    stop() {
      multi?.stop();
      multi = null;
    },
  };
}

/** Informational line on stderr, unless quiet or JSON output was asked for. */
export function infoLogger(mode: OutputMode): (line: string) => void {
  return mode.json || mode.quiet ? () => {} : (line) => process.stderr.write(`${line}\n`);
}

/** The one JSON object of `--json` mode, on its own last line of stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export interface Column {
  header: string;
  align?: "left" | "right";
  /** Longest cell width; longer cells are cut with "…". */
  max?: number;
}

/** A plain-text table (no colours), columns padded to their widest cell. */
export function formatTable(columns: Column[], rows: string[][]): string {
  const cut = (s: string, max?: number) =>
    max !== undefined && s.length > max ? `${s.slice(0, Math.max(1, max - 1))}…` : s;
  const cells = rows.map((r) => r.map((c, i) => cut(c, columns[i].max)));
  const widths = columns.map((col, i) => Math.max(col.header.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (columns[i].align === "right" ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(columns.map((c) => c.header)), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

/** A framed block that is hard to miss in a terminal (the fixture notice). */
export function banner(lines: string[]): string {
  const width = Math.max(...lines.map((l) => l.length));
  const edge = `+${"-".repeat(width + 2)}+`;
  return [edge, ...lines.map((l) => `| ${l.padEnd(width)} |`), edge].join("\n");
}

/** A flag's integer value, at least `min`; undefined when the flag was not given. */
export function intFlag(raw: string | undefined, flag: string, min = 1): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < min)
    throw new ValidationError(`${flag} expects an integer ≥ ${min}, got "${raw}"`);
  return n;
}
