#!/usr/bin/env node
// Makes node_modules/faiss-node/build/Release/faiss-node.node exist and load. Idempotent.
//
// faiss-node's own install script downloads a prebuilt binary from GitHub and, failing
// that, `git clone`s faiss: both need the internet. This script:
//   1. keeps an addon that already loads (a stamp records how it was made);
//   2. FAISS_NODE_BUILD=auto (default): tries the prebuilt binary (prebuild-install),
//      then builds from the npm tarball's own src/faiss.cc against the system faiss
//      (Debian libfaiss-dev 1.7.3 + OpenBLAS) with node-gyp;
//      FAISS_NODE_BUILD=source skips the download; =prebuilt never compiles.
// Our source build adds four methods (addTyped, searchTyped, setSearchParameter,
// setBuildParameter; see scripts/faiss-node/patch-methods.cc) and a native flat scan (scanInnerProduct;
// scripts/faiss-node/flat-scan.cc). The prebuilt binary lacks them; the adapters in
// shared/adapters/faiss-index.ts detect that and fall back.
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const pkgDir = join(root, "node_modules", "faiss-node");
const addon = join(pkgDir, "build", "Release", "faiss-node.node");
const stampFile = join(pkgDir, "build", "two-stage-retrieval.stamp");
const mode = process.env.FAISS_NODE_BUILD ?? "auto";
const quiet = process.argv.includes("--quiet");
const log = (m) => console.log(`[faiss-node] ${m}`);
const sourceVersion = "patch-v5"; // v5: fp16 flat scan, FLAT_SCAN_KERNEL

function loads() {
  const r = spawnSync(
    process.execPath,
    [
      "-e",
      `const f=require(${JSON.stringify(pkgDir)});const i=new f.IndexFlatIP(2);i.add([1,0]);if(i.search([1,0],1).labels[0]!==0)process.exit(3)`,
    ],
    { encoding: "utf8" },
  );
  return r.status === 0 ? null : (r.stderr || `exit ${r.status}`).trim().split("\n").slice(-3).join(" ");
}

if (!existsSync(pkgDir)) {
  console.error("[faiss-node] node_modules/faiss-node is missing: run `npm ci` first.");
  process.exit(1);
}
if (existsSync(addon) && existsSync(stampFile) && !loads()) {
  const stamp = readFileSync(stampFile, "utf8").trim();
  if (stamp !== `source ${sourceVersion}` && !(stamp === "prebuilt" && mode !== "source")) {
    log(`existing addon is "${stamp}", rebuilding for mode ${mode}`);
  } else {
    if (!quiet) log(`addon present (${stamp}), nothing to do`);
    process.exit(0);
  }
}

function tryPrebuilt() {
  log("trying the prebuilt binary (prebuild-install, needs GitHub) ...");
  const bin = createRequire(join(pkgDir, "package.json")).resolve("prebuild-install/bin.js");
  const r = spawnSync(process.execPath, [bin, "--runtime", "napi"], { cwd: pkgDir, stdio: "inherit", timeout: 90_000 });
  if (r.status === 0 && existsSync(addon) && !loads()) {
    writeFileSync(stampFile, "prebuilt\n");
    log("prebuilt binary installed (search-time parameters unavailable with it)");
    return true;
  }
  log("prebuilt binary not available here (offline or no matching build); building from source instead");
  return false;
}

function buildFromSource() {
  const lib = process.env.FAISS_STATIC_LIB ?? "/usr/lib/x86_64-linux-gnu/libfaiss.a";
  if (!existsSync(lib) || !existsSync("/usr/include/faiss/Index.h")) {
    console.error(
      `[faiss-node] cannot build from source: ${lib} or /usr/include/faiss is missing.\n` +
        "  On Debian/Ubuntu: apt-get install libfaiss-dev libopenblas-dev liblapack-dev (scripts/setup.mjs does this as root).\n" +
        "  Elsewhere: install faiss 1.7.x with its headers and set FAISS_STATIC_LIB, or use a machine with internet for the prebuilt binary.",
    );
    process.exit(1);
  }
  log(`building from node_modules/faiss-node/src/faiss.cc against ${lib} (node-gyp, ~1 min) ...`);
  const src = readFileSync(join(pkgDir, "src", "faiss.cc"), "utf8");
  const anchor = "  Napi::Value ntotal(const Napi::CallbackInfo &info)";
  if (!src.includes(anchor)) throw new Error("faiss-node source layout changed: patch anchor not found");
  let patched = src.replace(
    "#include <faiss/impl/IDSelector.h>",
    "#include <faiss/impl/IDSelector.h>\n#include <faiss/AutoTune.h>\n#include <faiss/IndexHNSW.h>\n#include <string>\n#include <vector>",
  );
  patched = patched.replace(anchor, readFileSync(join(here, "faiss-node", "patch-methods.cc"), "utf8") + anchor);
  patched = patched.replace(
    /InstanceMethod\("search", &(\w+)::search\),/g,
    (m, cls) =>
      `${m}\n      InstanceMethod("searchTyped", &${cls}::searchTyped),\n      InstanceMethod("addTyped", &${cls}::addTyped),\n      InstanceMethod("setSearchParameter", &${cls}::setSearchParameter),\n      InstanceMethod("setBuildParameter", &${cls}::setBuildParameter),`,
  );
  const initAnchor = "  IndexFlatIP::Init(env, exports);";
  if (!patched.includes(initAnchor)) throw new Error("faiss-node source layout changed: Init anchor not found");
  patched = patched.replace(initAnchor, `${initAnchor}\n  RegisterFlatScan(env, exports);`);
  patched = patched.replace(
    "Napi::Object Init(Napi::Env env, Napi::Object exports)\n{",
    "void RegisterFlatScan(Napi::Env env, Napi::Object exports); // scripts/faiss-node/flat-scan.cc\n\nNapi::Object Init(Napi::Env env, Napi::Object exports)\n{",
  );
  if (!patched.includes("void RegisterFlatScan"))
    throw new Error("faiss-node source layout changed: Init signature not found");
  writeFileSync(join(pkgDir, "src", "faiss-patched.cc"), patched);
  copyFileSync(join(here, "faiss-node", "flat-scan.cc"), join(pkgDir, "src", "flat-scan.cc"));
  copyFileSync(join(here, "faiss-node", "compat.h"), join(pkgDir, "src", "compat.h"));
  copyFileSync(join(here, "faiss-node", "binding.gyp"), join(pkgDir, "binding.gyp"));
  const candidates = [
    join(
      dirname(process.execPath),
      "..",
      "lib",
      "node_modules",
      "npm",
      "node_modules",
      "node-gyp",
      "bin",
      "node-gyp.js",
    ),
    join(
      dirname(process.execPath),
      "..",
      "lib",
      "node_modules",
      "npm",
      "node_modules",
      "node-gyp",
      "bin",
      "node-gyp.js",
    ).replace("/bin/..", ""),
  ];
  const gyp = candidates.find((p) => existsSync(p));
  if (!gyp) throw new Error("node-gyp not found (it ships with npm)");
  const args = [gyp, "rebuild", `--jobs=${Math.max(1, availableParallelism())}`];
  if (quiet) args.push("--loglevel=error");
  const headers = resolve(dirname(process.execPath), "..", "include", "node");
  if (existsSync(join(headers, "node_api.h"))) args.push(`--nodedir=${resolve(headers, "..", "..")}`);
  const r = spawnSync(process.execPath, args, {
    cwd: pkgDir,
    stdio: quiet ? ["ignore", "ignore", "inherit"] : "inherit",
    env: { ...process.env, FAISS_STATIC_LIB: lib },
  });
  if (r.status !== 0) throw new Error(`node-gyp failed with exit ${r.status}`);
  const err = loads();
  if (err) throw new Error(`built addon does not load: ${err}`);
  mkdirSync(dirname(stampFile), { recursive: true });
  writeFileSync(stampFile, `source ${sourceVersion}\n`);
  log("built from source with search-time parameters");
}

if (mode === "prebuilt") {
  if (!tryPrebuilt()) process.exit(1);
} else if (mode === "source" || !tryPrebuilt()) {
  buildFromSource();
}
