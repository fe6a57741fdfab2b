// layers/: the Lambda size check, build.sh's argument handling and Docker detection, and the two
// steps of the in-image build that can run without Docker (library bundling, the load check),
// exercised on this machine's own faiss-node and onnxruntime-node builds.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { USE_LITE_PACKAGES } from "../../infra/bundles.ts";
import {
  checkProfiles,
  dirSize,
  LAMBDA_UNZIPPED_LIMIT_BYTES,
  parseArgs,
  SizeCheckError,
} from "../../layers/size-check.ts";

const repoRoot = resolve(import.meta.dirname, "../..");
const MB = 1024 * 1024;
const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "layers-test-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function writeSized(path: string, bytes: number): void {
  mkdirSync(resolve(path, ".."), { recursive: true });
  writeFileSync(path, Buffer.alloc(bytes));
}

const run = (cmd: string, args: string[], env: Record<string, string> = {}) =>
  spawnSync(cmd, args, { cwd: repoRoot, encoding: "utf8", env: { ...process.env, ...env } });

describe("size check", () => {
  it("measures the regular files under a folder, recursively", () => {
    const dir = join(tmp, "measure");
    writeSized(join(dir, "a.bin"), 1000);
    writeSized(join(dir, "x/y/b.bin"), 2345);
    writeSized(join(dir, "x/c.bin"), 0);
    expect(dirSize(dir)).toBe(3345);
  });

  it("compares function code plus bundles with Lambda's 250 MB unzipped limit", () => {
    const a = join(tmp, "bundle-a");
    const b = join(tmp, "bundle-b");
    writeSized(join(a, "lib.so"), 3 * MB);
    writeSized(join(b, "lib.so"), 2 * MB);
    expect(LAMBDA_UNZIPPED_LIMIT_BYTES).toBe(262_144_000);
    const opts = { limitBytes: 6 * MB, codeBytes: 1 * MB };
    const [fits] = checkProfiles([{ name: "search", dirs: [a, b] }], opts);
    expect(fits.parts.map((p) => p.bytes)).toEqual([3 * MB, 2 * MB]);
    expect(fits.totalBytes).toBe(6 * MB);
    expect(fits.ok).toBe(true);
    // One byte more of code and the same bundles no longer fit.
    expect(checkProfiles([{ name: "search", dirs: [a, b] }], { ...opts, codeBytes: 1 * MB + 1 })[0].ok).toBe(false);
  });

  it("names a missing bundle folder", () => {
    expect(() => checkProfiles([{ name: "search", dirs: [join(tmp, "nope")] }])).toThrow(
      /search: .*nope does not exist.*layers\/build\.sh/,
    );
  });

  it("parses profiles and limits, and rejects anything else", () => {
    expect(parseArgs(["--limit-mb", "10", "--code-mb", "0.5", "search=a,b", "reranker=c"])).toEqual({
      profiles: [
        { name: "search", dirs: ["a", "b"] },
        { name: "reranker", dirs: ["c"] },
      ],
      limitBytes: 10 * MB,
      codeBytes: 0.5 * MB,
    });
    expect(() => parseArgs([])).toThrow(SizeCheckError);
    expect(() => parseArgs(["--limit-mb"])).toThrow(/--limit-mb needs a number/);
    expect(() => parseArgs(["layers/faiss/build"])).toThrow(/unknown argument/);
  });

  it("exits 0 when every profile fits, 1 when one does not, 2 on bad input", () => {
    const dir = join(tmp, "cli");
    writeSized(join(dir, "f"), 2 * MB);
    const cli = (...args: string[]) => run(process.execPath, ["--import", "tsx", "layers/size-check.ts", ...args]);
    const ok = cli("--limit-mb", "3", "--code-mb", "0", `fn=${dir}`);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^fn: 2\.0 MB of 3\.0 MB unzipped, fits/);
    const over = cli("--limit-mb", "1", "--code-mb", "0", `fn=${dir}`);
    expect(over.status).toBe(1);
    expect(over.stdout).toContain("OVER THE LIMIT");
    expect(cli("--frob").status).toBe(2);
  });
});

describe("layers/build.sh", () => {
  const build = (args: string[], env: Record<string, string> = {}) => run("bash", ["layers/build.sh", ...args], env);

  it("prints its usage", () => {
    const r = build(["--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("usage: layers/build.sh");
  });

  it.each([
    [["--target", "gpu"], /--target must be all, faiss or onnxruntime \(got "gpu"\)/],
    [["--frobnicate"], /unknown argument: --frobnicate/],
  ])("rejects %j with exit 2", (args, message) => {
    const r = build(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it("builds with the versions package.json pins, one export stage per target (dry run)", () => {
    const all = build(["--dry-run"]);
    expect(all.status).toBe(0);
    expect(all.stdout).toContain(`FAISS_NODE_VERSION=${pkg.dependencies["faiss-node"]}`);
    expect(all.stdout).toContain(`ORT_VERSION=${pkg.dependencies["onnxruntime-node"]}`);
    expect(all.stdout).toMatch(/--platform linux\/amd64 -f \S+\/layers\/Dockerfile --target export /);
    expect(build(["--dry-run", "--target=faiss"]).stdout).toContain("--target export-faiss ");
    const dockerfile = readFileSync(join(repoRoot, "layers/Dockerfile"), "utf8");
    for (const stage of ["export", "export-faiss", "export-onnxruntime"])
      expect(dockerfile).toMatch(new RegExp(`^FROM scratch AS ${stage}$`, "m"));
    expect(dockerfile).toMatch(/^ARG BUILD_IMAGE=public\.ecr\.aws\/sam\/build-nodejs20\.x/m);
    expect(dockerfile).toMatch(/^ARG RUNTIME_IMAGE=public\.ecr\.aws\/lambda\/nodejs:20$/m);
  });

  it("says clearly that Docker is missing, and builds nothing", () => {
    const out = join(tmp, "no-docker-out");
    const r = build([], { DOCKER: "/nonexistent/docker", LAYERS_OUT: out });
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/Docker is not available: there is no "\/nonexistent\/docker" command/);
    expect(r.stderr).toContain("Nothing was built.");
    expect(existsSync(out)).toBe(false);
  });

  it("says clearly when the docker command exists but no daemon answers", () => {
    const fake = join(tmp, "fake-docker");
    writeFileSync(fake, "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n", { mode: 0o755 });
    const r = build(["--target", "onnxruntime"], { DOCKER: fake });
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/cannot reach a Docker daemon/);
  });

  it("checks already-built bundles against the limit per function (--check-only)", () => {
    const out = join(tmp, "built");
    writeSized(join(out, "faiss/build/nodejs/node_modules/faiss-node/build/Release/faiss-node.node"), 5 * MB);
    writeSized(join(out, "onnxruntime/build/nodejs/node_modules/onnxruntime-node/lib.so"), 40 * MB);
    const r = build(["--check-only"], { LAYERS_OUT: out });
    expect(r.status).toBe(0);
    // Search and reindex also count the USE-lite packages a plain deploy copies from node_modules.
    const useLiteMb = USE_LITE_PACKAGES.reduce((a, p) => a + dirSize(join(repoRoot, "node_modules", p)), 0) / MB;
    expect(useLiteMb).toBeGreaterThan(25);
    const searchMb = (60 + useLiteMb).toFixed(1).replace(".", "\\.");
    expect(r.stdout).toMatch(new RegExp(`^search: ${searchMb} MB of 250\\.0 MB unzipped, fits`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^reindex: ${searchMb} MB`, "m"));
    expect(r.stdout).toMatch(/node_modules\/@energetic-ai\/model-embeddings-en/);
    expect(r.stdout).toMatch(/^reranker: 55\.0 MB/m);
    const over = build(["--check-only"], { LAYERS_OUT: out, CODE_MB: "220" });
    expect(over.status).toBe(1);
    const none = build(["--check-only"], { LAYERS_OUT: join(tmp, "empty") });
    expect(none.status).toBe(1);
    expect(none.stderr).toContain("no bundle");
  });
});

describe("in-image steps on this machine's native builds", () => {
  const hasTools = ["patchelf", "ldd", "readelf"].every((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status === 0);
  const addon = join(repoRoot, "node_modules/faiss-node/build/Release/faiss-node.node");

  it.skipIf(!hasTools || !existsSync(addon))(
    "bundles BLAS/OpenMP next to faiss-node with an $ORIGIN rpath, and the bundle loads (needs patchelf)",
    () => {
      const root = join(tmp, "bundle");
      const modules = join(root, "faiss/nodejs/node_modules");
      const release = join(modules, "faiss-node/build/Release");
      mkdirSync(release, { recursive: true });
      cpSync(join(repoRoot, "node_modules/faiss-node/package.json"), join(modules, "faiss-node/package.json"));
      cpSync(join(repoRoot, "node_modules/faiss-node/lib"), join(modules, "faiss-node/lib"), { recursive: true });
      cpSync(addon, join(release, "faiss-node.node"));
      for (const dep of ["bindings", "file-uri-to-path"])
        cpSync(join(repoRoot, "node_modules", dep), join(modules, dep), { recursive: true });

      const r = run("bash", ["layers/in-image.sh", "bundle-libs", join(release, "faiss-node.node")]);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      // Every BLAS/OpenMP library the addon loads now resolves inside the bundle.
      const ldd = run("ldd", [join(release, "faiss-node.node")]).stdout;
      const resolved = [...ldd.matchAll(/(lib(?:openblas|gomp|gfortran|quadmath)\S*) => (\S+)/g)];
      expect(resolved.map((m) => m[1])).toEqual(
        expect.arrayContaining([expect.stringMatching(/^libopenblas/), "libgomp.so.1"]),
      );
      for (const [, , path] of resolved) expect(path.startsWith(release)).toBe(true);
      expect(run("readelf", ["-d", join(release, "faiss-node.node")]).stdout).toMatch(
        /\(RPATH\)\s+Library rpath: \[\$ORIGIN\]/,
      );

      // And the load check of the Docker build passes on it, patched methods included.
      const onnx = join(root, "onnxruntime/nodejs/node_modules");
      mkdirSync(onnx, { recursive: true });
      for (const dep of ["onnxruntime-node", "onnxruntime-common"])
        symlinkSync(join(repoRoot, "node_modules", dep), join(onnx, dep));
      const verify = run(process.execPath, ["layers/verify.cjs", root, "faiss", "onnxruntime"]);
      expect(verify.stderr).toBe("");
      expect(verify.stdout).toContain("faiss: loads and runs");
      expect(verify.stdout).toContain("onnxruntime: loads and runs");
    },
  );
});
