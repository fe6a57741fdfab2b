// Deploy-time settings of a stage, read once from the environment of `npx sst deploy`.
//
// Names start with DEPLOY_ so they never collide with the runtime variables the functions read
// (shared/core/config.ts): a developer's local RERANKER=http must not change what gets deployed.
// Every value is typed, defaulted and validated here; infra/*.ts only reads `settings`.

import { ALLOCATOR_ENV } from "./process-env.ts";

export type RerankerBackend = "lambda" | "gpu" | "external";

export interface StageSettings {
  stage: string;
  /** Bucket prefixes; the runtime defaults of shared/core/config.ts unless overridden. */
  prefixes: { corpus: string; index: string; models: string; cache: string; apiKeys: string };
  reranker: {
    backend: RerankerBackend;
    /** What scores pairs in our reranker: the uploaded cross-encoder or the lexical reranker. */
    scorer: "onnx" | "lexical";
    /** Bucket prefix of the cross-encoder folder (config.json, tokenizer.json, onnx/model.onnx). */
    modelPrefix: string;
    memoryMb: number;
    timeoutS: number;
    /** 0 = none. Needs versioning; the search function then invokes the published version. */
    provisioned: number;
    /** Parallel rerank calls per search; warm queries need this many reranker instances each. */
    fanout: number;
    /** Prefer onnx/model_quantized.onnx (int8) on the CPU Lambda. */
    quantized: boolean;
    /** external backend only: a Cohere/TEI-compatible base URL. */
    externalUrl?: string;
    /** external backend only: request shape ("cohere" or "tei") and the model name to send. */
    externalApi?: "cohere" | "tei";
    externalModel?: string;
  };
  gpu: {
    /** SST `gpu` value, "<manufacturer>/<accelerator>": nvidia/t4 = g4dn, nvidia/a10g = g5. */
    accelerator: string;
    cpu: `${number} vCPU`;
    memory: `${number} GB`;
    storage: `${number} GB`;
    min: number;
    max: number;
    /** ALB requests per target per minute that trigger a scale-out. */
    requestsPerTarget: number;
    /** Custom domain for HTTPS on the reranker's load balancer (recommended: the token travels in a header). */
    domain?: string;
    port: number;
  };
  search: { memoryMb: number; timeoutS: number };
  reindex: {
    memoryMb: number;
    timeoutS: number;
    storageMb: number;
    reservedConcurrency: number | "off";
    /** sharded: the coordinator starts a Step Functions workflow of shard workers and a merge. */
    mode: "single" | "sharded";
    shardConcurrency: number;
    shardAttempts: number;
    mergeMemoryMb: number;
  };
  /**
   * Index shards (INDEX_SHARDS of the reindex) and how the search function reaches them: local =
   * it loads every shard file; lambda = one shard function per shard, invoked per query (fan-out).
   */
  shards: { count: number; search: "local" | "lambda"; memoryMb: number; timeoutMs: number };
  api: { rateLimit: number; burstLimit: number; corsOrigins: string[]; authMode: "off" | "required" };
  /** Runtime variables passed to every function (non-secret): ALLOCATOR_ENV, then DEPLOY_RUNTIME_ENV (JSON object) over it. */
  runtimeEnv: Record<string, string>;
  logRetention: string;
  /** Where layers/build.sh leaves the Amazon Linux 2023 native bundles (relative to the repo root). */
  nativeDir: string;
}

export class StageSettingError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = "StageSettingError";
  }
}

type Env = Record<string, string | undefined>;

/** Variables that hold secrets: they go through sst.Secret, never DEPLOY_RUNTIME_ENV. */
export const SECRET_RUNTIME_VARIABLES = ["OPENAI_API_KEY", "RERANKER_TOKEN"] as const;

export function readStageSettings(env: Env, stage: string): StageSettings {
  const raw = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const v = raw(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new StageSettingError(name, `expected an integer in [${min}, ${max}], got "${v}"`);
    return n;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const v = raw(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    throw new StageSettingError(name, `expected true/false, got "${v}"`);
  };
  const oneOf = <T extends string>(name: string, values: readonly T[], fallback: T): T => {
    const v = raw(name);
    if (v === undefined) return fallback;
    if (!(values as readonly string[]).includes(v))
      throw new StageSettingError(name, `expected one of ${values.join(", ")}, got "${v}"`);
    return v as T;
  };
  const prefix = (name: string, fallback: string): string => {
    const v = raw(name) ?? fallback;
    if (v.startsWith("/")) throw new StageSettingError(name, `an S3 prefix must not start with "/", got "${v}"`);
    return v.endsWith("/") ? v : `${v}/`;
  };
  const size = <U extends string>(name: string, fallback: `${number} ${U}`, unit: U): `${number} ${U}` => {
    const v = raw(name);
    if (v === undefined) return fallback;
    const m = new RegExp(`^(\\d+(?:\\.\\d+)?)\\s*${unit}$`, "i").exec(v);
    if (!m) throw new StageSettingError(name, `expected "<number> ${unit}", got "${v}"`);
    return `${Number(m[1])} ${unit}`;
  };

  const backend = oneOf("DEPLOY_RERANKER", ["lambda", "gpu", "external"] as const, "lambda");
  const externalUrl = raw("DEPLOY_RERANKER_URL");
  if (backend === "external") {
    if (!externalUrl) throw new StageSettingError("DEPLOY_RERANKER_URL", "required when DEPLOY_RERANKER=external");
    if (!/^https?:\/\//.test(externalUrl))
      throw new StageSettingError("DEPLOY_RERANKER_URL", `expected an http(s) URL, got "${externalUrl}"`);
  }
  const externalApi = oneOf("DEPLOY_RERANKER_API", ["cohere", "tei"] as const, "cohere");
  // What scores pairs in our reranker (lambda/gpu): the uploaded cross-encoder, or the weight-free
  // lexical reranker (no model to upload; RERANKER_BACKEND=lexical).
  const scorer = oneOf("DEPLOY_RERANKER_SCORER", ["onnx", "lexical"] as const, "onnx");
  const externalModel = raw("DEPLOY_RERANKER_MODEL");
  const provisioned = int("DEPLOY_RERANKER_PROVISIONED", 0, 0, 1000);
  // Parallel rerank calls per search (RERANKER_FANOUT of the search function).
  const fanout = int("DEPLOY_RERANKER_FANOUT", 1, 1, 64);
  if (provisioned > 0 && backend !== "lambda") {
    throw new StageSettingError("DEPLOY_RERANKER_PROVISIONED", "only applies to DEPLOY_RERANKER=lambda");
  }

  const models = prefix("DEPLOY_MODEL_PREFIX", "models/");
  const gpuMin = int("DEPLOY_GPU_MIN", 1, 0, 100);
  const gpuMax = int("DEPLOY_GPU_MAX", 2, 1, 100);
  if (gpuMax < gpuMin) throw new StageSettingError("DEPLOY_GPU_MAX", `must be at least DEPLOY_GPU_MIN (${gpuMin})`);
  const accelerator = raw("DEPLOY_GPU") ?? "nvidia/t4";
  if (!/^[a-z-]+\/[a-z0-9-]+$/.test(accelerator)) {
    throw new StageSettingError(
      "DEPLOY_GPU",
      `expected "<manufacturer>/<accelerator>" such as nvidia/t4, got "${accelerator}"`,
    );
  }

  const shardCount = int("DEPLOY_INDEX_SHARDS", 1, 1, 256);
  const shardSearch = oneOf("DEPLOY_SEARCH_SHARDS", ["local", "lambda"] as const, "local");
  if (shardSearch === "lambda" && shardCount < 2) {
    throw new StageSettingError(
      "DEPLOY_SEARCH_SHARDS",
      "lambda fans each query out to one shard function per index shard: set DEPLOY_INDEX_SHARDS to 2 or more",
    );
  }

  const reservedRaw = raw("DEPLOY_REINDEX_CONCURRENCY");
  const reservedConcurrency = reservedRaw === "off" ? "off" : int("DEPLOY_REINDEX_CONCURRENCY", 1, 1, 1000);

  const corsOrigins = (raw("DEPLOY_CORS_ORIGINS") ?? "*")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

  return {
    stage,
    prefixes: {
      corpus: prefix("DEPLOY_CORPUS_PREFIX", "corpus/"),
      index: prefix("DEPLOY_INDEX_PREFIX", "index/"),
      models,
      cache: prefix("DEPLOY_EMBED_CACHE_PREFIX", "cache/embeddings/"),
      apiKeys: prefix("DEPLOY_API_KEYS_PREFIX", "auth/keys/"),
    },
    reranker: {
      backend,
      scorer,
      modelPrefix: prefix("DEPLOY_RERANKER_MODEL_PREFIX", `${models}reranker/`),
      // 3008 MB: ~1.7 vCPUs for ORT's intra-op threads and room for a base-size model.
      memoryMb: int("DEPLOY_RERANKER_MEMORY_MB", 3008, 512, 10240),
      timeoutS: int("DEPLOY_RERANKER_TIMEOUT_S", 30, 3, 900),
      provisioned,
      fanout,
      // int8 on the CPU Lambda (the app falls back to the fp32 graph when no int8 one was uploaded).
      quantized: bool("DEPLOY_RERANKER_QUANTIZED", true),
      externalUrl: backend === "external" ? externalUrl : undefined,
      externalApi: backend === "external" ? externalApi : undefined,
      externalModel: backend === "external" ? externalModel : undefined,
    },
    gpu: {
      accelerator,
      cpu: size("DEPLOY_GPU_CPU", "2 vCPU", "vCPU"),
      // Below g4dn.xlarge's 16 GiB so the task fits next to the ECS agent.
      memory: size("DEPLOY_GPU_MEMORY", "12 GB", "GB"),
      storage: size("DEPLOY_GPU_STORAGE", "40 GB", "GB"),
      min: gpuMin,
      max: gpuMax,
      requestsPerTarget: int("DEPLOY_GPU_REQUESTS_PER_TARGET", 3000, 1, 1_000_000),
      domain: raw("DEPLOY_GPU_DOMAIN"),
      port: int("DEPLOY_GPU_PORT", 3001, 1, 65535),
    },
    search: {
      memoryMb: int("DEPLOY_SEARCH_MEMORY_MB", 2048, 256, 10240),
      // API Gateway HTTP APIs stop waiting at 30 s.
      timeoutS: int("DEPLOY_SEARCH_TIMEOUT_S", 29, 3, 30),
    },
    reindex: {
      memoryMb: int("DEPLOY_REINDEX_MEMORY_MB", 3008, 512, 10240),
      timeoutS: int("DEPLOY_REINDEX_TIMEOUT_S", 900, 30, 900),
      storageMb: int("DEPLOY_REINDEX_STORAGE_MB", 2048, 512, 10240),
      reservedConcurrency,
      mode: oneOf("DEPLOY_REINDEX_MODE", ["single", "sharded"] as const, "single"),
      shardConcurrency: int("DEPLOY_REINDEX_SHARD_CONCURRENCY", 8, 1, 10_000),
      shardAttempts: int("DEPLOY_REINDEX_SHARD_ATTEMPTS", 3, 1, 10),
      // The merge holds every passage and vector of the corpus while it builds the index.
      mergeMemoryMb: int("DEPLOY_REINDEX_MERGE_MEMORY_MB", 10240, 512, 10240),
    },
    shards: {
      count: shardCount,
      search: shardSearch,
      // Holds one shard's index file; size it with the shard (index bytes ÷ DEPLOY_INDEX_SHARDS, plus ~300 MB).
      memoryMb: int("DEPLOY_SHARD_MEMORY_MB", 3008, 256, 10240),
      timeoutMs: int("DEPLOY_SHARD_TIMEOUT_MS", 1000, 50, 30_000),
    },
    api: {
      rateLimit: int("DEPLOY_API_RATE_LIMIT", 50, 1, 100_000),
      burstLimit: int("DEPLOY_API_BURST_LIMIT", 100, 1, 100_000),
      corsOrigins: corsOrigins.length ? corsOrigins : ["*"],
      authMode: oneOf("DEPLOY_AUTH_MODE", ["off", "required"] as const, "off"),
    },
    runtimeEnv: { ...ALLOCATOR_ENV, ...parseRuntimeEnv(raw("DEPLOY_RUNTIME_ENV")) },
    logRetention: raw("DEPLOY_LOG_RETENTION") ?? "1 month",
    nativeDir: raw("DEPLOY_NATIVE_DIR") ?? "layers",
  };
}

function parseRuntimeEnv(json: string | undefined): Record<string, string> {
  if (json === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new StageSettingError("DEPLOY_RUNTIME_ENV", "expected a JSON object of string values");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new StageSettingError("DEPLOY_RUNTIME_ENV", "expected a JSON object of string values");
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!/^[A-Za-z][A-Za-z0-9_]+$/.test(k))
      throw new StageSettingError("DEPLOY_RUNTIME_ENV", `"${k}" is not a valid variable name`);
    if ((SECRET_RUNTIME_VARIABLES as readonly string[]).includes(k)) {
      throw new StageSettingError(
        "DEPLOY_RUNTIME_ENV",
        `${k} is a secret: set it with \`npx sst secret set\`, not as a plain value`,
      );
    }
    if (typeof v !== "string") throw new StageSettingError("DEPLOY_RUNTIME_ENV", `${k} must be a string`);
    out[k] = v;
  }
  return out;
}

/** The settings of the stage being deployed (infra modules are imported inside run(), so $app exists). */
export const settings: StageSettings = readStageSettings(process.env, $app.stage);
