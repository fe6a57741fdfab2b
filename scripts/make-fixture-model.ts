// Generate a fixture model (random weights, meaningless scores) in Hugging Face layout.
//   npx tsx scripts/make-fixture-model.ts <name> [--out DIR] [--no-shared-tokenizer]
//     [--layers N --hidden N --heads N --intermediate N --max-length N --seed N --std X --head-std X --layer-norm fused|decomposed]
// Without --out the folder is cached under .cache/fixtures/ and its path printed.
import { rename, rm } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  ensureFixtureModel,
  FIXTURE_NAMES,
  type FixtureName,
  type FixtureOptions,
  type FixtureSpec,
  writeFixtureModel,
} from "./fixtures/index.ts";

export const USAGE = `usage: make-fixture-model <${FIXTURE_NAMES.join("|")}> [--out DIR] [--no-shared-tokenizer]
  shape overrides: --layers N --hidden N --heads N --intermediate N --max-length N --vocab-size N
  weights:         --seed N --std X --head-std X --layer-norm fused|decomposed
Fixture weights are random: the model's scores mean nothing.`;

const NUMERIC: Record<string, keyof FixtureSpec> = {
  "--layers": "layers",
  "--hidden": "hidden",
  "--heads": "heads",
  "--intermediate": "intermediate",
  "--max-length": "maxLength",
  "--vocab-size": "vocabSize",
  "--seed": "seed",
  "--std": "std",
  "--head-std": "headStd",
};

export function parseFixtureArgs(argv: string[]): { name: FixtureName; out?: string; opts: FixtureOptions } {
  const [name, ...rest] = argv;
  if (!name || !(FIXTURE_NAMES as readonly string[]).includes(name))
    throw new Error(`unknown fixture "${name ?? ""}"\n${USAGE}`);
  const overrides: Partial<FixtureSpec> = {};
  const opts: FixtureOptions = { overrides };
  let out: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = () => {
      const v = rest[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--out") out = value();
    else if (flag === "--no-shared-tokenizer") opts.useSharedTokenizer = false;
    else if (flag === "--layer-norm") {
      const v = value();
      if (v !== "fused" && v !== "decomposed") throw new Error("--layer-norm is fused or decomposed");
      overrides.layerNorm = v;
    } else if (flag in NUMERIC) {
      const n = Number(value());
      if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a non-negative number`);
      (overrides as Record<string, number>)[NUMERIC[flag]] = n;
    } else throw new Error(`unknown option ${flag}\n${USAGE}`);
  }
  return { name: name as FixtureName, out, opts };
}

/** Generates (or reuses) the fixture and returns its folder; with `out`, copies it there. */
export async function makeFixture(argv: string[], log: (m: string) => void = console.error): Promise<string> {
  const { name, out, opts } = parseFixtureArgs(argv);
  if (!out) return ensureFixtureModel(name, { ...opts, log });
  const target = path.resolve(out);
  const tmp = `${target}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await writeFixtureModel(tmp, name, opts);
  await rm(target, { recursive: true, force: true });
  await rename(tmp, target);
  log(`fixture ${name} written to ${target} (random weights: scores mean nothing)`);
  return target;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  makeFixture(process.argv.slice(2)).then(
    (dir) => console.log(dir),
    (e) => {
      console.error((e as Error).message);
      process.exit(2);
    },
  );
}
