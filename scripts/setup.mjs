#!/usr/bin/env node
// Bootstraps everything the project needs on a fresh clone; `npm test` and `npm run demo`
// call it first, so it only uses Node's standard library. Idempotent and quick when done.
//
//   1. system packages (Debian/Ubuntu, as root): faiss + OpenBLAS for the faiss-node build,
//      Chromium for the playground's browser test (with --browser)
//   2. `npm ci` when node_modules is missing or package-lock.json changed
//      (.npmrc sets ignore-scripts: dependency install scripts that download from
//      GitHub/NuGet would fail offline; the steps below replace them)
//   3. faiss-node: prebuilt binary or a build from source (scripts/build-faiss-node.mjs)
//   4. onnxruntime-node: the CPU build ships in the npm package; CUDA EP files are fetched
//      only when ONNXRUNTIME_NODE_INSTALL=cuda12 is set, and a failure there is a warning.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
const quiet = args.has("--quiet");
const wantBrowser = args.has("--browser") || process.env.SETUP_BROWSER === "1";
const say = (m) => console.log(`[setup] ${m}`);
const run = (cmd, argv, opts = {}) => {
  const r = spawnSync(cmd, argv, { stdio: quiet ? ["ignore", "ignore", "inherit"] : "inherit", cwd: root, ...opts });
  return r.status ?? 1;
};

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 10)) {
  console.error(`[setup] Node ${process.versions.node} is too old: this project needs Node 20.10 or newer.`);
  process.exit(1);
}

// 1. System packages.
const sysNeeds = [
  {
    file: "/usr/include/faiss/Index.h",
    pkg: "libfaiss-dev",
    why: "faiss headers + static library for building faiss-node offline",
  },
  {
    file: "/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h",
    alt: "/usr/lib/x86_64-linux-gnu/libopenblas.so",
    pkg: "libopenblas-dev",
    why: "BLAS used by faiss",
  },
  { file: "/usr/lib/x86_64-linux-gnu/liblapack.so", pkg: "liblapack-dev", why: "LAPACK used by faiss" },
];
if (wantBrowser) {
  sysNeeds.push({ file: "/usr/bin/chromium", pkg: "chromium", why: "headless browser test of the web playground" });
  sysNeeds.push({
    file: "/usr/bin/patchelf",
    pkg: "patchelf",
    why: "test of the Lambda native-bundle rpath step (layers/)",
  });
}
const faissReady = existsSync(join(root, "node_modules/faiss-node/build/Release/faiss-node.node"));
const missing = sysNeeds
  .filter((n) => !existsSync(n.file) && !(n.alt && existsSync(n.alt)))
  .filter((n) => n.pkg === "chromium" || n.pkg === "patchelf" || !faissReady);
if (missing.length) {
  const isDebian = existsSync("/etc/debian_version");
  const isRoot = process.getuid?.() === 0;
  const list = missing.map((m) => m.pkg).join(" ");
  if (isDebian && isRoot) {
    say(`installing system packages: ${list}\n${missing.map((m) => `         ${m.pkg}: ${m.why}`).join("\n")}`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    if (run("apt-get", ["update", "-qq"], { env }) !== 0) say("apt-get update failed; trying the install anyway");
    if (
      run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing.map((m) => m.pkg)], { env }) !== 0
    ) {
      console.error(`[setup] apt-get install ${list} failed.`);
      process.exit(1);
    }
  } else {
    console.error(
      `[setup] missing system packages: ${list}\n` +
        (isDebian
          ? `  run as root: apt-get update && apt-get install -y ${list}\n`
          : "  this is not Debian/Ubuntu: install faiss 1.7.x (headers + static lib), OpenBLAS and LAPACK with your package manager,\n  or use a machine with internet so faiss-node's prebuilt binary can be fetched.\n") +
        "  continuing: the faiss-node step below says whether it can still succeed.",
    );
  }
}

// 2. npm dependencies.
const lock = join(root, "package-lock.json");
const stamp = join(root, "node_modules", ".setup-stamp");
const lockHash = createHash("sha256").update(readFileSync(lock)).digest("hex");
if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== lockHash) {
  say("installing npm dependencies (npm ci, install scripts off; see .npmrc) ...");
  if (run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"]) !== 0) {
    console.error("[setup] npm ci failed");
    process.exit(1);
  }
  writeFileSync(stamp, lockHash);
}

// 3. faiss-node.
if (
  run(process.execPath, [join(root, "scripts/build-faiss-node.mjs"), ...(quiet ? ["--quiet"] : [])], {
    stdio: "inherit",
  }) !== 0
) {
  console.error("[setup] faiss-node is not usable; see the messages above.");
  process.exit(1);
}

// 4. onnxruntime-node GPU files, only on request.
const ortFlag = process.env.ONNXRUNTIME_NODE_INSTALL ?? process.env.npm_config_onnxruntime_node_install;
if (ortFlag && ortFlag !== "skip") {
  say(`fetching onnxruntime-node execution-provider files (ONNXRUNTIME_NODE_INSTALL=${ortFlag}) ...`);
  const code = run(process.execPath, [join(root, "node_modules/onnxruntime-node/script/install.js")], {
    cwd: join(root, "node_modules/onnxruntime-node"),
    stdio: "inherit",
  });
  if (code !== 0)
    say("WARNING: could not fetch them (offline?). The CPU build still works; the reranker falls back to CPU.");
}
if (!quiet) say("ready");
