// The functions as deployed: `npm run build:functions` output (esbuild bundles, native addons
// external, assets beside the code), started under plain Node with no TypeScript loader and fed
// the recorded events: S3 notifications to the reindex bundle (against s3rver), API Gateway v2
// events to the search bundle, direct invokes to the rerank bundle (tiny fixture model).
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FUNCTION_BUNDLES, type FunctionName, NATIVE_BUNDLES } from "../../infra/bundles.ts";
import { type BuiltFunction, buildFunctions } from "../../scripts/build-functions.ts";
import { ensureFixtureModel } from "../../scripts/fixtures/index.ts";
import { cleanEnv, repoRoot } from "../helpers/child.ts";
import { doc, jsonl } from "../helpers/reindex.ts";
import { type LocalS3, localS3Env, startLocalS3 } from "../helpers/s3rver.ts";

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), "bundles-"));
const bundleDir = join(repoRoot, ".cache", `bundles-test-${process.pid}`);
let built: Record<string, BuiltFunction>;
let s3: LocalS3;

const recordedApiEvent = JSON.parse(readFileSync(join(repoRoot, "test/fixtures/apigw-v2-event.json"), "utf8"));
const apiEvent = (method: string, path: string, body?: unknown) => ({
  ...recordedApiEvent,
  rawPath: path,
  requestContext: {
    ...recordedApiEvent.requestContext,
    http: { ...recordedApiEvent.requestContext.http, method, path },
  },
  body: body === undefined ? "" : JSON.stringify(body),
});

function s3Env(): Record<string, string> {
  return {
    ...localS3Env(s3),
    EMBEDDER: "hashing",
    HASHING_DIMENSIONS: "64",
    LOG_LEVEL: "ERROR",
    POWERTOOLS_METRICS_DISABLED: "true",
  };
}

/**
 * A function package laid out as a deploy ships it, outside the checkout, so an external package
 * missing from the copy list fails here as it would on Lambda: the bundle, its native packages
 * (linked from this checkout; the deploy copies the Amazon Linux builds) and its optional pure-JS
 * packages (copied, as infra/native.ts copies them). Returns the handler file.
 */
function deployedLayout(fn: FunctionName): string {
  const dir = join(work, `package-${fn}`);
  cpSync(built[fn].dir, dir, { recursive: true });
  const modules = join(dir, "node_modules");
  for (const bundle of FUNCTION_BUNDLES[fn].native)
    for (const pkg of NATIVE_BUNDLES[bundle].packages) {
      mkdirSync(dirname(join(modules, pkg)), { recursive: true });
      symlinkSync(join(repoRoot, "node_modules", pkg), join(modules, pkg));
    }
  for (const pkg of FUNCTION_BUNDLES[fn].optional)
    cpSync(join(repoRoot, "node_modules", pkg), join(modules, pkg), { recursive: true });
  return join(dir, "handler.mjs");
}

/** Invokes one bundle in a fresh `node` process (no --import tsx) with the events in order. */
async function invoke(
  fn: string,
  events: unknown[],
  env: Record<string, string>,
  handlerFile = built[fn].handlerFile,
  // biome-ignore lint/suspicious/noExplicitAny: handler results parsed from a child's output, checked by the tests
): Promise<any[]> {
  const file = join(work, `${fn}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(events));
  const { stdout } = await run(process.execPath, ["test/helpers/invoke-bundle.mjs", handlerFile, file], {
    cwd: repoRoot,
    env: cleanEnv(env),
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("invoke-result "))
    .map((l) => JSON.parse(l.slice("invoke-result ".length)));
}

beforeAll(async () => {
  // Inside the checkout, so the external packages resolve from its node_modules as they would from
  // the package's own node_modules on Lambda.
  const list = await buildFunctions({ outDir: bundleDir });
  built = Object.fromEntries(list.map((b) => [b.name, b]));
  s3 = await startLocalS3({ bucket: "bundles" });
}, 120_000);

afterAll(async () => {
  await s3?.close();
  rmSync(work, { recursive: true, force: true });
  rmSync(bundleDir, { recursive: true, force: true });
});

describe("npm run build:functions", () => {
  it("writes one ES module per function with a source map, addons left external", () => {
    for (const name of ["search", "rerank", "reindex"]) {
      const code = readFileSync(built[name].handlerFile, "utf8");
      expect(code, name).toMatch(/sourceMappingURL=handler\.mjs\.map/);
      expect(built[name].mapBytes).toBeGreaterThan(0);
      expect(built[name].external).toContain("onnxruntime-node");
      // External packages are imported, not inlined.
      expect(code).not.toMatch(/class InferenceSession\b/);
    }
    expect(built.search.external).toEqual(expect.arrayContaining(["faiss-node", "bindings"]));
    expect(built.rerank.external).not.toContain("faiss-node");
  });

  it("splits code a setting may never load into chunks of its own; worker entries import no chunk", () => {
    const dir = built.search.dir;
    const initial = new Set<string>();
    const pending = ["handler.mjs"];
    while (pending.length) {
      const f = pending.pop() as string;
      if (initial.has(f)) continue;
      initial.add(f);
      const code = readFileSync(join(dir, f), "utf8");
      for (const m of code.matchAll(/(?:^|[;}\s])import\s*(?:[\w${},\s*]+from\s*)?"\.\/([\w.-]+\.mjs)"/g))
        pending.push(m[1]);
    }
    const initialCode = [...initial].map((f) => readFileSync(join(dir, f), "utf8")).join("\n");
    // The OpenAI SDK (EMBEDDER=openai) and the TF.js → ONNX converter's protobuf code (a USE-lite
    // cache miss) are reached only through import(); the S3 client is needed by every cold start.
    expect(initialCode).not.toMatch(/api\.openai\.com/);
    expect(initialCode).not.toMatch(/onnx\.ModelProto/);
    expect(initialCode).toMatch(/GetObjectCommand/);
    const all = readdirSync(dir).filter((f) => f.endsWith(".mjs"));
    expect(all.length).toBeGreaterThan(initial.size);
    expect(built.search.initialBytes).toBeLessThan(built.search.codeBytes);
    expect(built.search.initialBytes).toBe([...initial].reduce((n, f) => n + readFileSync(join(dir, f)).byteLength, 0));
    for (const fn of ["search", "rerank"]) {
      const worker = readFileSync(join(built[fn].dir, "rerank-worker.mjs"), "utf8");
      expect(worker, fn).not.toMatch(/from\s*"\.\/chunk-/);
      expect(worker, fn).not.toMatch(/import\("\.\/chunk-/);
    }
  });
});

describe("bundled handlers on recorded events", () => {
  it("reindex (S3 notification) publishes a snapshot that the search bundle serves through API Gateway events", async () => {
    const put = (key: string, body: string) =>
      fetch(`${s3.endpoint}/${s3.bucket}/${key}`, { method: "PUT", body }).then((r) => expect(r.status).toBe(200));
    await put("corpus/a.jsonl", jsonl([doc("g1", "glacier"), doc("v1", "volcano"), doc("c1", "comet")]));
    const s3Event = {
      Records: [
        {
          eventVersion: "2.1",
          eventSource: "aws:s3",
          awsRegion: "us-east-1",
          eventName: "ObjectCreated:Put",
          s3: { bucket: { name: s3.bucket }, object: { key: "corpus/a.jsonl", size: 1 } },
        },
      ],
    };
    const [summary] = await invoke("reindex", [s3Event], s3Env());
    expect(summary).toMatchObject({ status: "published" });
    expect(summary.version).toMatch(/^\d{8}T\d{6}Z-/);

    const [searchRes, healthRes, pageRes] = await invoke(
      "search",
      [apiEvent("POST", "/search", { query: "volcano", k: 2 }), apiEvent("GET", "/health"), apiEvent("GET", "/")],
      { ...s3Env(), RERANKER_BACKEND: "lexical" },
    );
    expect(searchRes.statusCode, searchRes.body).toBe(200);
    const body = JSON.parse(searchRes.body);
    expect(body.results[0].doc_id).toBe("v1");
    expect(body.reranked).toBe(true);
    expect(JSON.parse(healthRes.body).index).toMatchObject({ version: summary.version, count: 3 });
    // The playground page is an asset copied beside the bundle.
    expect(pageRes.statusCode).toBe(200);
    expect(pageRes.headers["content-type"]).toMatch(/text\/html/);
  }, 120_000);

  it("reindex and search with the default embedder (auto: use-lite+hashing) run from packages laid out as deployed", async () => {
    const prefix = "auto-index/";
    await fetch(`${s3.endpoint}/${s3.bucket}/auto-corpus/a.jsonl`, {
      method: "PUT",
      body: jsonl([
        doc("pw", "Account recovery: you can reset your login credentials from the profile page."),
        doc("bread", "Bread dough rises because yeast ferments the sugars in the flour."),
        doc("tide", "Tides follow the pull of the moon on the oceans."),
      ]),
    });
    const env: Record<string, string> = {
      ...localS3Env(s3),
      CORPUS_PREFIX: "auto-corpus/",
      INDEX_PREFIX: prefix,
      MODEL_CACHE_DIR: join(work, "model-cache"),
      LOG_LEVEL: "ERROR",
      POWERTOOLS_METRICS_DISABLED: "true",
    };
    const event = {
      Records: [
        {
          eventSource: "aws:s3",
          eventName: "ObjectCreated:Put",
          s3: { bucket: { name: s3.bucket }, object: { key: "auto-corpus/a.jsonl", size: 1 } },
        },
      ],
    };
    const [summary] = await invoke("reindex", [event], env, deployedLayout("reindex"));
    expect(summary).toMatchObject({ status: "published" });
    const pointer = await (await fetch(`${s3.endpoint}/${s3.bucket}/${prefix}LATEST.json`)).json();
    const manifest = await (await fetch(`${s3.endpoint}/${s3.bucket}/${pointer.manifest_key}`)).json();
    expect(manifest.embedder).toMatchObject({ kind: "use-lite+hashing", normalized: true });

    const [res, health] = await invoke(
      "search",
      // No word in common with the passage it should find: the trained half carries it.
      [
        apiEvent("POST", "/search", { query: "how do I change my forgotten password", k: 3 }),
        apiEvent("GET", "/health"),
      ],
      { ...env, RERANKER_BACKEND: "lexical" },
      deployedLayout("search"),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(JSON.parse(res.body).results[0].doc_id).toBe("pw");
    expect(JSON.parse(health.body).embedder).toMatchObject({ setting: "auto", identity: { kind: "use-lite+hashing" } });
  }, 180_000);

  it("shard (direct invoke) answers its own index shard of a snapshot cut by INDEX_SHARDS, and refuses others", async () => {
    await fetch(`${s3.endpoint}/${s3.bucket}/corpus/a.jsonl`, {
      method: "PUT",
      body: jsonl([doc("g1", "glacier"), doc("v1", "volcano"), doc("c1", "comet"), doc("m1", "meteor")]),
    });
    const env = { ...s3Env(), INDEX_PREFIX: "sharded-index/", INDEX_SHARDS: "2" };
    const event = {
      Records: [
        {
          eventSource: "aws:s3",
          eventName: "ObjectCreated:Put",
          s3: { bucket: { name: s3.bucket }, object: { key: "corpus/a.jsonl", size: 1 } },
        },
      ],
    };
    const [summary] = await invoke("reindex", [event], env);
    expect(summary).toMatchObject({ status: "published" });
    const pointer = await (await fetch(`${s3.endpoint}/${s3.bucket}/sharded-index/LATEST.json`)).json();
    const manifest = await (await fetch(`${s3.endpoint}/${s3.bucket}/${pointer.manifest_key}`)).json();
    expect(manifest.index_shards).toHaveLength(2);
    const [, second] = manifest.index_shards;
    const vector = Array.from({ length: manifest.embedder.dimensions }, (_, i) => ((i % 7) + 1) / 7);
    const [answer, refused] = await invoke(
      "shard",
      [
        { version: summary.version, shard: 1, vector, k: 10 },
        { version: summary.version, shard: 0, vector, k: 10 },
      ],
      { ...env, SHARD_ID: "1" },
    );
    expect(answer.version).toBe(summary.version);
    // Every passage of shard 1, as global ordinals, best first.
    expect([...answer.ordinals].sort()).toEqual(Array.from({ length: second.count }, (_, i) => second.offset + i));
    expect(answer.scores).toEqual([...answer.scores].sort((a: number, b: number) => b - a));
    expect(refused).toMatchObject({ error: { code: "invalid_request", status: 400 } });
  }, 120_000);

  it("rerank (direct invoke) scores pairs with onnxruntime-node, in the handler and in bundled worker threads", async () => {
    const modelDir = await ensureFixtureModel("tiny-cross");
    const event = { query: "cat purrs", documents: ["A cat purrs when content.", "Bread needs yeast."] };
    const env = { RERANKER_MODEL_DIR: modelDir, LOG_LEVEL: "ERROR", POWERTOOLS_METRICS_DISABLED: "true" };
    const [single] = await invoke("rerank", [event, { query: "" }], env);
    expect(single.results, JSON.stringify(single)).toHaveLength(2);
    expect(single.meta?.precision ?? single.model?.precision).toBeDefined();
    const [pooled, bad] = await invoke("rerank", [event, { documents: [] }], { ...env, RERANKER_WORKERS: "2" });
    expect(bad.error.code).toBe("invalid_request");
    const byIndex = (r: { results: { index: number; score: number }[] }) =>
      [...r.results].sort((a, b) => a.index - b.index).map((x) => x.score);
    expect(byIndex(pooled)).toEqual(byIndex(single));
  }, 120_000);
});
