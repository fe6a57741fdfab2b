// `npm run build:functions`: bundles each Lambda function the way `sst deploy` packages it
// (infra/bundles.ts: esbuild ES module + source map, native addons external, assets copied), into
// dist/functions/<name>/. The coldstart benchmark and the bundle tests start these files, so what
// they measure is what Lambda runs, not TypeScript through tsx.
//
//   npm run build:functions [-- --out dir] [--only search,rerank] [--json]
//
// The bundles resolve their external packages from this checkout's node_modules (the deploy copies
// the Amazon Linux builds of the same packages into the package instead: infra/native.ts).
import { cpSync, mkdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type BuildResult, build, type Metafile } from "esbuild";
import { BUNDLE_ESBUILD, bundleExternals, FUNCTION_BUNDLES, type FunctionName } from "../infra/bundles.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DEFAULT_BUNDLE_DIR = join(repoRoot, "dist", "functions");

export interface BuiltFunction {
  name: FunctionName;
  /** The handler module: `import(handlerFile).handler`. */
  handlerFile: string;
  dir: string;
  /** Bytes of the bundled JavaScript (handler, its chunks, workers), source maps and assets excluded. */
  codeBytes: number;
  /** Bytes of the handler and the chunks it imports statically: what a cold start compiles. */
  initialBytes: number;
  mapBytes: number;
  external: string[];
  ms: number;
}

export async function buildFunctions(opts: { outDir?: string; only?: FunctionName[] } = {}): Promise<BuiltFunction[]> {
  const outDir = resolve(opts.outDir ?? DEFAULT_BUNDLE_DIR);
  const names = opts.only ?? (Object.keys(FUNCTION_BUNDLES) as FunctionName[]);
  const built: BuiltFunction[] = [];
  for (const name of names) {
    const fn = FUNCTION_BUNDLES[name];
    if (!fn)
      throw new Error(`unknown function "${name}" (expected one of ${Object.keys(FUNCTION_BUNDLES).join(", ")})`);
    const dir = join(outDir, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const external = bundleExternals(fn);
    const t0 = performance.now();
    const common = {
      ...BUNDLE_ESBUILD,
      mainFields: [...BUNDLE_ESBUILD.mainFields],
      outdir: dir,
      external,
      metafile: true as const,
      logLevel: "warning" as const,
    };
    // The handler with code splitting, as SST builds it (dynamically imported modules in chunks of
    // their own). Worker entries are built apart and unsplit: the deploy copies a worker file into
    // a package whose chunks SST named, so a worker must not import chunks of this build.
    const results: BuildResult<{ metafile: true }>[] = [
      await build({ ...common, entryPoints: { handler: join(repoRoot, fn.entry) } }),
    ];
    for (const [out, src] of Object.entries(fn.workers))
      results.push(await build({ ...common, splitting: false, entryPoints: { [out]: join(repoRoot, src) } }));
    for (const a of fn.assets) cpSync(join(repoRoot, a.from), join(dir, a.to), { recursive: true });
    let codeBytes = 0;
    let mapBytes = 0;
    const outputs = Object.assign({}, ...results.map((r) => r.metafile.outputs)) as Metafile["outputs"];
    const sizes = new Map<string, number>();
    for (const file of Object.keys(outputs)) {
      // esbuild names outputs relative to its working directory (this process's cwd).
      const bytes = statSync(resolve(file)).size;
      sizes.set(file, bytes);
      if (file.endsWith(".map")) mapBytes += bytes;
      else codeBytes += bytes;
    }
    // What a cold start compiles before the handler runs: the handler and the chunks it imports
    // statically (chunks reached only by import() load when a setting needs them).
    const handlerOut = Object.keys(outputs).find((f) => resolve(f) === join(dir, "handler.mjs"));
    const initial = new Set<string>();
    const pending = handlerOut ? [handlerOut] : [];
    while (pending.length) {
      const f = pending.pop() as string;
      if (initial.has(f)) continue;
      initial.add(f);
      for (const i of outputs[f].imports) if (i.kind === "import-statement" && outputs[i.path]) pending.push(i.path);
    }
    const initialBytes = [...initial].reduce((n, f) => n + (sizes.get(f) ?? 0), 0);
    built.push({
      name,
      handlerFile: join(dir, "handler.mjs"),
      dir,
      codeBytes,
      initialBytes,
      mapBytes,
      external,
      ms: performance.now() - t0,
    });
  }
  return built;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { out: { type: "string" }, only: { type: "string" }, json: { type: "boolean" } },
  });
  const only = values.only ? (values.only.split(",").map((s) => s.trim()) as FunctionName[]) : undefined;
  const built = await buildFunctions({ outDir: values.out, only });
  if (values.json) {
    console.log(JSON.stringify(built, null, 2));
    return;
  }
  for (const b of built) {
    console.log(
      `${b.name.padEnd(8)} ${relative(process.cwd(), b.handlerFile)}  ${(b.codeBytes / 1e6).toFixed(2)} MB code (${(b.initialBytes / 1e6).toFixed(2)} MB loaded at init), ` +
        `${(b.mapBytes / 1e6).toFixed(2)} MB source map, ${Math.round(b.ms)} ms; external: ${b.external.join(" ")}`,
    );
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`build:functions failed: ${(e as Error).message}`);
    process.exit(1);
  });
}
