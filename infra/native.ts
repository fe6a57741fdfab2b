// Puts the native addons built for Amazon Linux 2023 (layers/build.sh) inside each function
// package, next to the bundled code, instead of attaching them as Lambda layers.
//
// Why not layers: SST bundles functions as ES modules, and Node's ESM resolver ignores NODE_PATH,
// so `import "faiss-node"` from /var/task never looks in /opt/nodejs/node_modules. Copying the
// packages to <package>/node_modules makes ordinary resolution find them, in every import style.
// See layers/README.md.
import { existsSync, readdirSync } from "node:fs";
import { join, posix, resolve } from "node:path";
import { settings } from "./config.ts";

export type NativeBundle = "faiss" | "onnxruntime";

/** The file each bundle must contain once built: proof that layers/build.sh ran to the end. */
export const NATIVE_BUNDLE_MARKERS: Record<NativeBundle, string> = {
  faiss: "faiss-node/build/Release/faiss-node.node",
  onnxruntime: "onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node",
};

/**
 * Never bundled: onnxruntime-web is ORT's WASM fallback for machines without the native addon. The
 * functions always carry onnxruntime-node, and a bundled copy could not find its .wasm files anyway.
 */
export const ALWAYS_EXTERNAL = ["onnxruntime-web"];

export interface NativePackaging {
  copyFiles: { from: string; to: string }[];
  /** Kept out of the esbuild bundle; they resolve from the copied node_modules at runtime. */
  external: string[];
}

export class NativeBundleMissingError extends Error {
  constructor(bundle: NativeBundle, dir: string) {
    super(
      `The "${bundle}" native bundle is missing (${dir}). Build it first with \`layers/build.sh\` ` +
        "(needs Docker; it compiles inside the Lambda build image for Amazon Linux 2023).",
    );
    this.name = "NativeBundleMissingError";
  }
}

/**
 * copyFiles + esbuild externals for the native packages a function needs. Under `sst dev`
 * functions run locally on the developer's own node_modules, so nothing is copied.
 */
export function nativePackaging(bundles: NativeBundle[], opts: { root?: string; dev?: boolean } = {}): NativePackaging {
  const root = opts.root ?? settings.nativeDir;
  const dev = opts.dev ?? $dev;
  const copyFiles: NativePackaging["copyFiles"] = [];
  const external = new Set<string>(ALWAYS_EXTERNAL);
  for (const bundle of bundles) {
    const modulesDir = posix.join(root, bundle, "build", "nodejs", "node_modules");
    const absolute = resolve(modulesDir);
    const packages = existsSync(join(absolute, NATIVE_BUNDLE_MARKERS[bundle])) ? listPackages(absolute) : undefined;
    if (!packages) {
      if (dev) continue;
      throw new NativeBundleMissingError(bundle, modulesDir);
    }
    for (const name of packages) {
      external.add(name);
      if (!dev) copyFiles.push({ from: posix.join(modulesDir, name), to: posix.join("node_modules", name) });
    }
  }
  return { copyFiles, external: [...external].sort() };
}

/** Package names in a node_modules folder, scoped ones as "@scope/name". */
function listPackages(modulesDir: string): string[] {
  const names: string[] = [];
  for (const entry of readdirSync(modulesDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith(".")) continue;
    if (entry.name.startsWith("@")) {
      for (const inner of readdirSync(join(modulesDir, entry.name), { withFileTypes: true })) {
        if (inner.isDirectory()) names.push(`${entry.name}/${inner.name}`);
      }
    } else {
      names.push(entry.name);
    }
  }
  return names.sort();
}
