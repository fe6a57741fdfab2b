// Checks native bundles against Lambda's deployment size limit: function code plus every layer
// must stay under 250 MB unzipped (AWS Lambda quotas). Sizes are what unzipping would write: the
// bytes of regular files (symbolic links count as their own small size).
//
//   node --import tsx layers/size-check.ts [--limit-mb 250] [--code-mb 15] NAME=DIR[,DIR...] ...
//   e.g. search=layers/faiss/build,layers/onnxruntime/build reranker=layers/onnxruntime/build
// Exit 0 when every profile fits, 1 when one does not, 2 on bad arguments or a missing directory.
import { existsSync, lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** 250 MB as AWS counts it for the unzipped deployment package (function + layers). */
export const LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024;
/** Default allowance for the esbuild bundle of a function's own code. */
export const DEFAULT_CODE_BYTES = 15 * 1024 * 1024;

export class SizeCheckError extends Error {}

/** Total size in bytes of the regular files under `dir`, recursively. */
export function dirSize(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += dirSize(path);
    else total += lstatSync(path).size;
  }
  return total;
}

export interface Profile {
  name: string;
  dirs: string[];
}

export interface ProfileResult {
  name: string;
  parts: { dir: string; bytes: number }[];
  codeBytes: number;
  totalBytes: number;
  limitBytes: number;
  ok: boolean;
}

export function checkProfiles(
  profiles: Profile[],
  opts: { limitBytes?: number; codeBytes?: number } = {},
): ProfileResult[] {
  const limitBytes = opts.limitBytes ?? LAMBDA_UNZIPPED_LIMIT_BYTES;
  const codeBytes = opts.codeBytes ?? DEFAULT_CODE_BYTES;
  return profiles.map(({ name, dirs }) => {
    const parts = dirs.map((dir) => {
      if (!existsSync(dir)) throw new SizeCheckError(`${name}: ${dir} does not exist (build it with layers/build.sh)`);
      return { dir, bytes: dirSize(dir) };
    });
    const totalBytes = codeBytes + parts.reduce((sum, p) => sum + p.bytes, 0);
    return { name, parts, codeBytes, totalBytes, limitBytes, ok: totalBytes <= limitBytes };
  });
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

export function formatReport(results: ProfileResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const verdict = r.ok ? "fits" : "OVER THE LIMIT";
    lines.push(
      `${r.name}: ${mb(r.totalBytes)} of ${mb(r.limitBytes)} unzipped, ${verdict} (headroom ${mb(r.limitBytes - r.totalBytes)})`,
    );
    for (const p of r.parts) lines.push(`  ${mb(p.bytes).padStart(10)}  ${p.dir}`);
    lines.push(`  ${mb(r.codeBytes).padStart(10)}  function code (allowance)`);
  }
  return lines.join("\n");
}

export function parseArgs(argv: string[]): { profiles: Profile[]; limitBytes: number; codeBytes: number } {
  let limitBytes = LAMBDA_UNZIPPED_LIMIT_BYTES;
  let codeBytes = DEFAULT_CODE_BYTES;
  const profiles: Profile[] = [];
  const number = (flag: string, value: string | undefined) => {
    const n = Number(value);
    if (value === undefined || !Number.isFinite(n) || n < 0)
      throw new SizeCheckError(`${flag} needs a number of MB, got "${value ?? ""}"`);
    return Math.round(n * 1024 * 1024);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--limit-mb") limitBytes = number(arg, argv[++i]);
    else if (arg === "--code-mb") codeBytes = number(arg, argv[++i]);
    else if (/^[\w.-]+=.+/.test(arg)) {
      const [name, list] = [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)];
      profiles.push({ name, dirs: list.split(",").filter(Boolean) });
    } else
      throw new SizeCheckError(`unknown argument "${arg}" (expected NAME=DIR[,DIR...], --limit-mb N or --code-mb N)`);
  }
  if (profiles.length === 0) throw new SizeCheckError("no profiles given (NAME=DIR[,DIR...])");
  return { profiles, limitBytes, codeBytes };
}

export function main(argv: string[]): number {
  try {
    const { profiles, limitBytes, codeBytes } = parseArgs(argv);
    const results = checkProfiles(profiles, { limitBytes, codeBytes });
    console.log(formatReport(results));
    return results.every((r) => r.ok) ? 0 : 1;
  } catch (e) {
    if (!(e instanceof SizeCheckError)) throw e;
    console.error(`size-check: ${e.message}`);
    return 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href)
  process.exit(main(process.argv.slice(2)));
