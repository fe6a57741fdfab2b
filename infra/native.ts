// Puts the native addons built for Amazon Linux 2023 (layers/build.sh) inside each function
// package, next to the bundled code, instead of attaching them as Lambda layers.
//
// Why not layers: SST bundles functions as ES modules, and Node's ESM resolver ignores NODE_PATH,
// so `import "faiss-node"` from /var/task never looks in /opt/nodejs/node_modules. Copying the
// packages to <package>/node_modules makes ordinary resolution find them, in every import style.
// See layers/README.md.
import { existsSync } from "node:fs";
import { join, posix, resolve } from "node:path";
import {
  ALWAYS_EXTERNAL,
  bundleExternals,
  FUNCTION_BUNDLES,
  functionNodejs,
  type FunctionName,
  NATIVE_BUNDLES,
  type NativeBundle,
  USE_LITE_PACKAGES,
} from "./bundles.ts";
import { settings } from "./config.ts";

export { ALWAYS_EXTERNAL, NATIVE_BUNDLES, type NativeBundle } from "./bundles.ts";

export interface NativePackaging {
  copyFiles: { from: string; to: string }[];
  /** Kept out of the esbuild bundle; they resolve from the copied node_modules at runtime. */
  external: string[];
}

/** A function's packaging, with the `nodejs` options for its sst.aws.Function (functionNodejs). */
export interface FunctionPackaging extends NativePackaging {
  nodejs: ReturnType<typeof functionNodejs>;
}

export class NativeBundleMissingError extends Error {
  constructor(bundle: NativeBundle, dir: string, missing: string[]) {
    super(
      `The "${bundle}" native bundle is missing or incomplete (${dir}: no ${missing.join(", ")}). ` +
        "Build it first with `layers/build.sh` " +
        "(needs Docker; it compiles inside the Lambda build image for Amazon Linux 2023).",
    );
    this.name = "NativeBundleMissingError";
  }
}

/**
 * copyFiles + esbuild externals for the native packages a function needs. The packages are always
 * external: esbuild cannot bundle a .node addon (and faiss-node's `bindings` looks for it beside
 * the package). Under `sst dev` functions run on the developer's own node_modules, so nothing is
 * copied and the bundles need not exist.
 */
export function nativePackaging(bundles: NativeBundle[], opts: { root?: string; dev?: boolean } = {}): NativePackaging {
  const root = opts.root ?? settings.nativeDir;
  const dev = opts.dev ?? $dev;
  const copyFiles: NativePackaging["copyFiles"] = [];
  const external = new Set<string>(ALWAYS_EXTERNAL);
  for (const bundle of bundles) {
    const { packages, marker } = NATIVE_BUNDLES[bundle];
    for (const name of packages) external.add(name);
    if (dev) continue;
    const modulesDir = posix.join(root, bundle, "build", "nodejs", "node_modules");
    const missing = [marker, ...packages].filter((p) => !existsSync(join(resolve(modulesDir), p)));
    if (missing.length) throw new NativeBundleMissingError(bundle, modulesDir, missing);
    for (const name of packages)
      copyFiles.push({ from: posix.join(modulesDir, name), to: posix.join("node_modules", name) });
  }
  return { copyFiles, external: [...external].sort() };
}

export { USE_LITE_PACKAGES } from "./bundles.ts";

/** EMBEDDER values whose functions run USE-lite: auto picks use-lite+hashing when no OpenAI key or ONNX model is set. */
const RUNS_USE_LITE = new Set(["auto", "use-lite", "use-lite+hashing"]);

/**
 * Unless DEPLOY_RUNTIME_ENV names an embedder without USE-lite (hashing, openai, onnx), the search
 * and reindex functions carry the USE-lite packages (copied from this checkout's node_modules;
 * always kept out of esbuild, infra/bundles.ts). A plain deploy ships them because EMBEDDER=auto
 * picks use-lite+hashing when no OpenAI key is set; with the key set they are 31 MB unused (set
 * EMBEDDER=openai to drop them). The graph is converted to ONNX into /tmp at the first cold start
 * that needs it (BENCHMARKS.md, embed and coldstart).
 */
export function embedderPackaging(runtimeEnv: Record<string, string>, opts: { dev?: boolean } = {}): NativePackaging {
  const dev = opts.dev ?? $dev;
  if (!RUNS_USE_LITE.has(runtimeEnv.EMBEDDER ?? "auto") || dev)
    return { copyFiles: [], external: [...USE_LITE_PACKAGES] };
  const copyFiles = USE_LITE_PACKAGES.map((name) => ({
    from: posix.join("node_modules", name),
    to: posix.join("node_modules", name),
  }));
  return { copyFiles, external: [...USE_LITE_PACKAGES] };
}

/** Two packagings as one (copy lists and externals joined). */
export function joinPackaging(...parts: NativePackaging[]): NativePackaging {
  return {
    copyFiles: parts.flatMap((p) => p.copyFiles),
    external: [...new Set(parts.flatMap((p) => p.external))].sort(),
  };
}

/**
 * Everything one function's package needs beyond esbuild's output (infra/bundles.ts): its native
 * packages, the files it reads beside its code, and USE-lite where the stage runs it. Externals
 * are the same list `npm run build:functions` uses.
 */
export function functionPackaging(
  name: FunctionName,
  runtimeEnv: Record<string, string>,
  opts: { root?: string; dev?: boolean; bundleDir?: string } = {},
): FunctionPackaging {
  const fn = FUNCTION_BUNDLES[name];
  const parts = [nativePackaging(fn.native, opts)];
  if (fn.optional.length) parts.push(embedderPackaging(runtimeEnv, opts));
  const joined = joinPackaging(...parts);
  const dev = opts.dev ?? $dev;
  const assets = dev ? [] : [...fn.assets, ...workerFiles(name, runtimeEnv, opts.bundleDir)];
  const external = bundleExternals(fn, joined.external);
  return { copyFiles: [...assets, ...joined.copyFiles], external, nodejs: functionNodejs(external) };
}

/**
 * SST bundles only the handler. With RERANKER_WORKERS > 1 or RERANKER_IN_WORKER=true in
 * DEPLOY_RUNTIME_ENV, the reranker also needs its worker-thread entry beside the handler: the one
 * `npm run build:functions` wrote.
 */
function workerFiles(
  name: FunctionName,
  runtimeEnv: Record<string, string>,
  bundleDir = "dist/functions",
): { from: string; to: string }[] {
  const workers = Object.keys(FUNCTION_BUNDLES[name].workers);
  const threaded = Number(runtimeEnv.RERANKER_WORKERS ?? 1) > 1 || runtimeEnv.RERANKER_IN_WORKER === "true";
  if (workers.length === 0 || !threaded) return [];
  return workers.map((w) => {
    const from = posix.join(bundleDir, name, `${w}.mjs`);
    if (!existsSync(resolve(from))) {
      throw new Error(
        `RERANKER_WORKERS > 1 (or RERANKER_IN_WORKER=true) needs ${from} in the ${name} package: run \`npm run build:functions\` before \`sst deploy\`.`,
      );
    }
    return { from, to: `${w}.mjs` };
  });
}
