// Every setting the service reads from the environment, in one place: typed, with defaults,
// and a clear error naming the variable when a value is invalid. Functions and scripts call
// loadConfig() once; the core receives plain values and never reads process.env itself.
import { ConfigError } from "./errors.ts";
import { EMBEDDER_KINDS } from "./types.ts";

type Env = Record<string, string | undefined>;

interface Spec<T> {
  env: string;
  doc: string;
  parse: (raw: string, env: string) => T;
  fallback: T;
}

const str = (env: string, fallback: string, doc: string): Spec<string> => ({ env, doc, fallback, parse: (r) => r });
const optStr = (env: string, doc: string): Spec<string | undefined> => ({
  env,
  doc,
  fallback: undefined,
  parse: (r) => r,
});
const int = (env: string, fallback: number, doc: string, min = 0, max = Number.MAX_SAFE_INTEGER): Spec<number> => ({
  env,
  doc,
  fallback,
  parse: (r, name) => {
    const n = Number(r);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new ConfigError(name, `expected an integer in [${min}, ${max}], got "${r}"`);
    return n;
  },
});
const optInt = (env: string, doc: string, min = 0): Spec<number | undefined> => ({
  env,
  doc,
  fallback: undefined,
  parse: (r, name) => int(name, 0, doc, min).parse(r, name),
});
const float = (env: string, fallback: number, doc: string, min: number, max: number): Spec<number> => ({
  env,
  doc,
  fallback,
  parse: (r, name) => {
    const n = r.trim() === "" ? Number.NaN : Number(r);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new ConfigError(name, `expected a number in [${min}, ${max}], got "${r}"`);
    return n;
  },
});
const bool = (env: string, fallback: boolean, doc: string): Spec<boolean> => ({
  env,
  doc,
  fallback,
  parse: (r, name) => {
    const v = r.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    throw new ConfigError(name, `expected true/false, got "${r}"`);
  },
});
const oneOf = <const T extends string>(env: string, values: readonly T[], fallback: T, doc: string): Spec<T> => ({
  env,
  doc,
  fallback,
  parse: (r, name) => {
    if (!(values as readonly string[]).includes(r))
      throw new ConfigError(name, `expected one of ${values.join(", ")}, got "${r}"`);
    return r as T;
  },
});
const prefix = (env: string, fallback: string, doc: string): Spec<string> => ({
  env,
  doc,
  fallback,
  parse: (r, name) => {
    if (r.startsWith("/")) throw new ConfigError(name, `an S3 prefix must not start with "/", got "${r}"`);
    return r === "" || r.endsWith("/") ? r : `${r}/`;
  },
});

/** "name=value,..." with positive integer values, each name one of `names`. */
const intParams = (env: string, names: readonly string[], doc: string): Spec<Record<string, number> | undefined> => ({
  env,
  doc,
  fallback: undefined,
  parse: (r, name) => {
    const out: Record<string, number> = {};
    for (const part of r
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== "")) {
      const m = /^([A-Za-z]+)\s*=\s*(\d+)$/.exec(part);
      if (!m) throw new ConfigError(name, `expected name=integer pairs separated by commas, got "${part}"`);
      if (!names.includes(m[1]))
        throw new ConfigError(name, `unknown parameter "${m[1]}"; expected ${names.join(", ")}`);
      const v = Number(m[2]);
      if (!Number.isSafeInteger(v) || v < 1)
        throw new ConfigError(name, `${m[1]} must be a positive integer, got "${m[2]}"`);
      out[m[1]] = v;
    }
    return out;
  },
});

/** FAISS index parameters INDEX_PARAMS accepts (shared/adapters/faiss-index.ts FaissIndexParams). */
const INDEX_PARAM_NAMES = [
  "nlist",
  "nprobe",
  "efSearch",
  "efConstruction",
  "hnswM",
  "pqM",
  "kFactor",
  "trainSize",
] as const;

/** The settings table; docs/CONFIG.md is generated from it (npm run cli -- config). */
export const settings = {
  // storage
  storeKind: oneOf(
    "STORE_KIND",
    ["fs", "s3"] as const,
    "fs",
    "Object store: local filesystem (embedded default) or S3.",
  ),
  storeDir: str("STORE_DIR", ".data/store", "Root folder of the filesystem store."),
  bucket: optStr("BUCKET", "S3 bucket (set by SST linking on AWS)."),
  s3Endpoint: optStr("S3_ENDPOINT", "Custom S3 endpoint for S3-compatible servers (s3rver, MinIO)."),
  s3ForcePathStyle: bool(
    "S3_FORCE_PATH_STYLE",
    false,
    "Path-style S3 addressing (needed by most S3-compatible servers).",
  ),
  awsRegion: str("AWS_REGION", "us-east-1", "AWS region."),
  corpusPrefix: prefix("CORPUS_PREFIX", "corpus/", "Prefix of corpus documents; uploads here trigger a reindex."),
  indexPrefix: prefix("INDEX_PREFIX", "index/", "Prefix of index snapshots and the live pointer."),
  modelPrefix: prefix("MODEL_PREFIX", "models/", "Prefix of model folders in the bucket."),
  cachePrefix: prefix("EMBED_CACHE_PREFIX", "cache/embeddings/", "Prefix of the embedding cache."),
  // embedder
  embedder: oneOf(
    "EMBEDDER",
    ["auto", ...EMBEDDER_KINDS] as const,
    "auto",
    "auto = openai when OPENAI_API_KEY is set, else onnx when EMBEDDING_MODEL_DIR holds a model, else use-lite+hashing when the USE-lite npm package is installed, else hashing. use-lite = Universal Sentence Encoder Lite alone (trained, offline, from npm, run on onnxruntime); use-lite+hashing = its vectors joined with the hashing embedder's (docs/EVAL.md says why auto picks the pair).",
  ),
  openaiApiKey: optStr("OPENAI_API_KEY", "OpenAI API key (an SST secret on AWS)."),
  openaiBaseUrl: optStr("OPENAI_BASE_URL", "Base URL of an OpenAI-compatible embeddings server."),
  openaiModel: str("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small", "OpenAI embedding model."),
  openaiDimensions: optInt("OPENAI_EMBEDDING_DIMENSIONS", "Shortened embedding size (text-embedding-3-* only).", 1),
  embeddingModelDir: optStr(
    "EMBEDDING_MODEL_DIR",
    "Local sentence-transformers model folder (tokenizer.json, config.json, onnx/model.onnx).",
  ),
  embeddingPooling: oneOf("EMBEDDING_POOLING", ["mean", "cls"] as const, "mean", "Pooling of the local ONNX embedder."),
  hashingDimensions: int("HASHING_DIMENSIONS", 2048, "Vector size of the hashing embedder.", 16, 65536),
  embedTimeoutMs: int("EMBED_TIMEOUT_MS", 10_000, "Time budget for embedding one query, retries included.", 100),
  // chunking
  chunkTokens: int("CHUNK_TOKENS", 256, "Passage window in tokens (cross-encoders truncate at 512).", 16, 512),
  chunkOverlap: int("CHUNK_OVERLAP", 32, "Token overlap between neighbouring passages.", 0, 256),
  // index
  indexType: oneOf(
    "INDEX_TYPE",
    ["auto", "flat", "hnsw", "ivf", "ivfpq", "ivfpq-refine", "sq8", "fp16"] as const,
    "auto",
    "FAISS index type; auto picks by corpus size: flat up to 4.2M floats (count × dimensions; 10.4K×384), fp16 up to 40M (104K×384: exact scan, vectors stored, shipped and scanned as fp16), ivf up to 5M vectors, ivfpq-refine beyond (IVF-PQ candidates re-scored by an SQ8 copy: 0.28× flat's bytes and resident memory, recall@20 0.97 at 1M×384 clustered, BENCHMARKS.md). ivfpq (no re-scoring, recall@20 ≈ 0.35 on clustered data) stays available. sq8 stores a quarter of flat's bytes (recall@20 ≈ 0.97), decoded to float32 at load.",
  ),
  indexParams: intParams(
    "INDEX_PARAMS",
    INDEX_PARAM_NAMES,
    "Reindex: FAISS build parameters, e.g. `nlist=2048,nprobe=16` (nlist, nprobe, efSearch, efConstruction, hnswM, pqM, kFactor, trainSize); unset ones follow the corpus size. efSearch/nprobe/kFactor are recorded in the snapshot and applied when it loads.",
  ),
  reindexMode: oneOf(
    "REINDEX_MODE",
    ["single", "sharded"] as const,
    "single",
    "Reindex: single = one invocation builds the snapshot; sharded = a coordinator cuts the corpus into key-range shards and starts a workflow (Step Functions on AWS, the same definition in-process locally) whose shard workers embed in parallel and whose merge publishes (docs/REINDEX.md).",
  ),
  reindexShardMb: int("REINDEX_SHARD_MB", 200, "Sharded reindex: corpus bytes per shard at most (MiB).", 1),
  reindexShardPassages: int(
    "REINDEX_SHARD_PASSAGES",
    100_000,
    "Sharded reindex: estimated passages per shard at most (bytes ÷ (CHUNK_TOKENS − CHUNK_OVERLAP) ÷ 4).",
    1,
  ),
  reindexShardConcurrency: int(
    "REINDEX_SHARD_CONCURRENCY",
    8,
    "Sharded reindex: shard workers at once (the Map's MaxConcurrency).",
    1,
    10_000,
  ),
  reindexShardAttempts: int(
    "REINDEX_SHARD_ATTEMPTS",
    3,
    "Sharded reindex: attempts per shard (first try + retries).",
    1,
    10,
  ),
  reindexStateMachine: optStr(
    "REINDEX_STATE_MACHINE",
    "Sharded reindex on AWS: the state machine's ARN (linked by infra/reindex.ts); unset = run the workflow in-process.",
  ),
  indexSearchParams: intParams(
    "INDEX_SEARCH_PARAMS",
    ["efSearch", "nprobe", "kFactor"],
    "Search function: efSearch/nprobe/kFactor (ivfpq-refine: candidates re-scored per result) that override the snapshot's recorded values, without a reindex; one the live index type lacks is ignored.",
  ),
  indexShards: int(
    "INDEX_SHARDS",
    1,
    "Reindex and `cli index`: dense index files per snapshot. 1 = one index.faiss; N > 1 cuts the passages into N contiguous ordinal ranges, each its own index file (index-<i>.faiss, manifest `index_shards`; at most one shard per passage). The passage store and the BM25 index stay one per snapshot. A change rebuilds an unchanged corpus.",
    1,
    256,
  ),
  searchShards: oneOf(
    "SEARCH_SHARDS",
    ["local", "lambda", "http"] as const,
    "local",
    "Search function: where dense search over the index shards runs. local = every shard file loaded into this process and searched as one index (an unsharded snapshot as before); lambda = each query fans out to the shard functions (SHARD_FUNCTIONS), http = to shard workers (SHARD_URLS), in parallel within SHARD_TIMEOUT_MS, and the search function loads everything but the index files. A shard that does not answer leaves partial results with a warning.",
  ),
  shardFunctions: optStr(
    "SHARD_FUNCTIONS",
    "SEARCH_SHARDS=lambda: Lambda function names, comma separated, shard i → name i (one name serves every shard). Set by SST from the linked IndexShard<i> functions.",
  ),
  shardUrls: optStr(
    "SHARD_URLS",
    "SEARCH_SHARDS=http: shard worker base URLs (functions/shard/server.ts), comma separated, shard i → URL i (one URL serves every shard). Unset in the local stack (`npm run demo`): it starts one worker process per INDEX_SHARDS.",
  ),
  shardTimeoutMs: int(
    "SHARD_TIMEOUT_MS",
    1000,
    "Search function, fan-out: how long a query waits for each index shard; a shard past it is left out (partial results, a warning, the ShardsMissing metric).",
    1,
  ),
  shardLoadTimeoutMs: int(
    "SHARD_LOAD_TIMEOUT_MS",
    30_000,
    "Search function, fan-out: how long a new snapshot version waits for its shards to load it before going live (shards still loading then answer later queries once ready).",
    1,
  ),
  shardId: optInt(
    "SHARD_ID",
    "Shard function / worker: the one index shard it serves (requests for others are refused); unset = any shard it is asked for.",
    0,
  ),
  shardPort: int("SHARD_PORT", 3002, "Shard worker port (functions/shard/server.ts, local).", 0, 65535),
  shardHost: optStr(
    "SHARD_HOST",
    "Shard worker: the interface it listens on (unset = all; the local stack's workers use 127.0.0.1).",
  ),
  indexRefreshS: int("INDEX_REFRESH_S", 30, "How often a warm search function rechecks the snapshot pointer.", 0),
  passageTexts: oneOf(
    "PASSAGE_TEXTS",
    ["lazy", "background", "eager"] as const,
    "lazy",
    "Search function: how passage texts load. lazy = serve once the index and the passage store's head are in, read each query's texts by byte range (verified 64 KiB blocks, cached: PASSAGE_CACHE_MB); background = the same, and all texts download behind the first query; eager = the whole store before serving. Chosen by `npm run bench -- coldstart` (BENCHMARKS.md). Snapshots published before the split store are always read whole.",
  ),
  passageCacheMb: int(
    "PASSAGE_CACHE_MB",
    64,
    "Search function: MB of verified passage-text blocks kept in memory with PASSAGE_TEXTS=lazy (and with background until its download completes). A corpus whose texts fit is read from S3 once per block.",
    0,
  ),
  // reranker
  reranker: oneOf(
    "RERANKER",
    ["in-process", "lambda", "http", "none", "fixture"] as const,
    "in-process",
    "Where the search function sends rerank calls. fixture = in-process with a generated random-weight cross-encoder (tests and benchmarks; the local tools generate it, elsewhere RERANKER_MODEL_DIR names the fixture folder; every answer says fixture: true).",
  ),
  rerankerUrl: optStr(
    "RERANKER_URL",
    "HTTP reranker base URL (our reranker service or any Cohere/TEI-compatible /rerank).",
  ),
  rerankerToken: optStr("RERANKER_TOKEN", "Bearer token for the HTTP reranker."),
  rerankerApi: oneOf(
    "RERANKER_API",
    ["cohere", "tei"] as const,
    "cohere",
    "HTTP reranker request shape: cohere = {query, documents} (ours, Cohere v2, Infinity, Jina); tei = {query, texts} (text-embeddings-inference). Answers of either shape are read.",
  ),
  rerankerModel: optStr(
    "RERANKER_MODEL",
    "Model name sent to the HTTP reranker (Cohere requires one, e.g. rerank-v3.5).",
  ),
  rerankerFunction: optStr("RERANKER_FUNCTION", "Lambda function name of the reranker (lambda mode)."),
  rerankerTimeoutMs: int(
    "RERANKER_TIMEOUT_MS",
    1500,
    "Time budget of one rerank call; past it the search answers with first-stage results.",
    1,
  ),
  rerankerBackend: oneOf(
    "RERANKER_BACKEND",
    ["auto", "onnx", "lexical"] as const,
    "auto",
    "What scores pairs in the reranker: onnx = the cross-encoder (RERANKER_MODEL_DIR / RERANKER_MODEL_S3_PREFIX); lexical = the weight-free lexical reranker (phrase, proximity, coverage, BM25; no model files); auto = onnx when a model is configured, else lexical.",
  ),
  sparseIndex: bool(
    "SPARSE_INDEX",
    true,
    "Reindex: build the BM25 index (sparse.bin) with every snapshot, for sparse and hybrid retrieval.",
  ),
  rerankerModelDir: optStr(
    "RERANKER_MODEL_DIR",
    "Local cross-encoder folder (config.json, tokenizer.json, onnx/model.onnx).",
  ),
  rerankerModelS3: optStr(
    "RERANKER_MODEL_S3_PREFIX",
    "Bucket prefix of the cross-encoder; cached under MODEL_CACHE_DIR.",
  ),
  modelCacheDir: str(
    "MODEL_CACHE_DIR",
    "/tmp/models",
    "Local cache of models fetched from the bucket, and of USE-lite's graph converted to ONNX.",
  ),
  rerankerProvider: oneOf(
    "RERANKER_PROVIDER",
    ["auto", "cuda", "webgpu", "cpu", "wasm"] as const,
    "auto",
    "ONNX Runtime execution provider; auto tries cuda, webgpu, then cpu.",
  ),
  rerankerQuantized: bool(
    "RERANKER_QUANTIZED",
    true,
    "On the CPU, run the model folder's dynamic-int8 graph when it has one (onnx/model_quantized.onnx, model_int8.onnx, model_qint8_avx512_vnni.onnx, model_qint8_avx512.onnx, model_quint8_avx2.onnx, model_qint8_arm64.onnx; `npm run cli -- models quantize <folder>` writes one); false = always fp32. GPU providers run fp32.",
  ),
  rerankerMaxLength: optInt("RERANKER_MAX_LENGTH", "Pair length limit in tokens (default: the model's).", 8),
  rerankerBatchTokens: optInt(
    "RERANKER_BATCH_TOKENS",
    "Padded tokens per inference micro-batch (never below the pair length limit). Default: 512 on the CPU and WASM, where small batches keep activations in cache (int8 MiniLM, 20 pairs of ~200 tokens against 8192-token batches: 0.83× the warm time, 0.50× a fresh process's first call, 0.50× its peak RSS; BENCHMARKS.md, rerank); 8192 on a GPU.",
    64,
  ),
  rerankerMaxDocuments: int("RERANKER_MAX_DOCUMENTS", 1000, "Most documents one rerank request may carry.", 1),
  rerankerMaxQueue: int(
    "RERANKER_MAX_QUEUE",
    64,
    "Rerank requests that may wait for the model; past it the service answers 503 overloaded with Retry-After.",
    0,
  ),
  rerankerWarmupPairs: int(
    "RERANKER_WARMUP_PAIRS",
    0,
    "Synthetic query–passage pairs scored once right after the model loads, so the first request does not pay ONNX Runtime's first run at that batch size (~115–150 ms of a 20-pair rerank here); not cached or counted. Off by default: on a cold start the warm-up competes with the snapshot load for the cores and cost 1.2–1.4× the time to the first answer (BENCHMARKS.md, coldstart). Worth it where init runs before traffic (provisioned concurrency, the rerank function kept warm). 0 = off.",
    0,
    1000,
  ),
  rerankerThreads: optInt("RERANKER_THREADS", "Intra-op threads (default: the cores available).", 1),
  rerankerFanout: int(
    "RERANKER_FANOUT",
    1,
    "Search function: most rerank calls one search makes at once. The candidates are split into length-balanced groups (at least RERANKER_FANOUT_PAIRS pairs each), one call per group, in parallel; a failed group keeps first-stage scores. Useful with RERANKER=lambda (each call its own instance).",
    1,
    64,
  ),
  rerankerWorkers: int(
    "RERANKER_WORKERS",
    1,
    "Reranker: ONNX sessions of the model that run at once, each with cores ÷ workers intra-op threads (unless RERANKER_THREADS), so parallel requests (RERANKER_FANOUT) run in parallel on one host. 1 = one session using every core: the fastest single request.",
    1,
    64,
  ),
  rerankerInWorker: bool(
    "RERANKER_IN_WORKER",
    false,
    "Reranker: run the one ONNX session (RERANKER_WORKERS=1) in a worker thread instead of the calling thread. onnxruntime-node creates sessions and runs inference synchronously, so in-thread they block the event loop: in the search function with RERANKER=in-process, 0.2–0.3 s of session creation stall the snapshot download at cold start (BENCHMARKS.md, coldstart). Costs a thread start and a message per request.",
  ),
  rerankerFanoutPairs: int(
    "RERANKER_FANOUT_PAIRS",
    8,
    "Fewest pairs worth a rerank call of their own when fanning out.",
    1,
  ),
  rerankerCacheMb: int(
    "RERANKER_CACHE_MB",
    32,
    "In-memory LRU of reranker scores per warm instance, in MiB, keyed by model, truncation settings, query and passage text, so repeated and paginated queries skip the model; 0 = off.",
    0,
  ),
  // search API
  defaultK: int("SEARCH_DEFAULT_K", 4, "Results returned when k is not given.", 1),
  defaultCandidates: int("SEARCH_DEFAULT_CANDIDATES", 20, "First-stage candidates when not given.", 1),
  maxCandidates: int("SEARCH_MAX_CANDIDATES", 200, "Upper limit of candidates.", 1),
  maxQueryChars: int("SEARCH_MAX_QUERY_CHARS", 2000, "Upper limit of query length in characters.", 1),
  maxBodyBytes: int("SEARCH_MAX_BODY_BYTES", 65536, "Upper limit of a request body.", 256),
  budgetMs: optInt("SEARCH_BUDGET_MS", "Default latency budget per search (unset = none).", 1),
  defaultRetrieval: oneOf(
    "SEARCH_DEFAULT_RETRIEVAL",
    ["dense", "sparse", "hybrid"] as const,
    "hybrid",
    "First stage when a request gives no retrieval: the vector index, the BM25 index, or both fused (a snapshot without a BM25 index answers dense).",
  ),
  hybridFusion: oneOf(
    "SEARCH_HYBRID_FUSION",
    ["rrf", "convex"] as const,
    "rrf",
    "How hybrid retrieval merges the two rankings when a request does not say: reciprocal rank fusion or a convex combination of min-max normalised scores.",
  ),
  denseWeight: float(
    "SEARCH_DENSE_WEIGHT",
    0.5,
    "Weight of the dense side in convex hybrid fusion when a request does not say (0..1; BM25 gets the rest).",
    0,
    1,
  ),
  corsOrigins: str("CORS_ORIGINS", "*", "Allowed CORS origins, comma separated."),
  // security and metering
  authMode: oneOf(
    "AUTH_MODE",
    ["off", "required"] as const,
    "off",
    "required = every search/rerank call needs an API key (x-api-key).",
  ),
  apiKeysPrefix: prefix("API_KEYS_PREFIX", "auth/keys/", "Prefix of API key records (hashes only)."),
  rateLimitRps: int("RATE_LIMIT_RPS", 20, "Sustained requests per second per API key.", 1),
  rateLimitBurst: int("RATE_LIMIT_BURST", 40, "Burst size per API key.", 1),
  apiKeyCacheTtlS: int(
    "API_KEY_CACHE_TTL_S",
    30,
    "Seconds a looked-up API key record is cached; a revoked key stops working within this time.",
    0,
    3600,
  ),
  usagePrefix: prefix("USAGE_PREFIX", "auth/usage/", "Prefix of per-key per-day usage counters."),
  usageFlushS: int(
    "USAGE_FLUSH_S",
    10,
    "How often in-memory usage counters are written to the store (checked after each request).",
    0,
  ),
  // local stack
  port: int("PORT", 3000, "Search API port (local).", 0, 65535),
  rerankerPort: int("RERANKER_PORT", 3001, "Reranker service port (local).", 0, 65535),
  s3Port: int("S3_PORT", 4569, "Local S3 (s3rver) port.", 0, 65535),
  // observability
  serviceName: str("POWERTOOLS_SERVICE_NAME", "two-stage-retrieval", "Service name in logs and metrics."),
  logLevel: oneOf("LOG_LEVEL", ["DEBUG", "INFO", "WARN", "ERROR", "SILENT"] as const, "INFO", "Log level."),
  metricsNamespace: str(
    "POWERTOOLS_METRICS_NAMESPACE",
    "TwoStageRetrieval",
    "CloudWatch namespace of the EMF metrics.",
  ),
} as const;

type Settings = typeof settings;
export type Config = { [K in keyof Settings]: Settings[K] extends Spec<infer T> ? T : never };

/** Reads every setting; throws ConfigError naming the first invalid variable. */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(settings) as [string, Spec<unknown>][]) {
    const raw = env[spec.env];
    out[key] = raw === undefined || raw === "" ? spec.fallback : spec.parse(raw, spec.env);
  }
  const cfg = { ...(out as Config), ...overrides };
  if (cfg.chunkOverlap >= cfg.chunkTokens) throw new ConfigError("CHUNK_OVERLAP", "must be smaller than CHUNK_TOKENS");
  if (cfg.storeKind === "s3" && !cfg.bucket) throw new ConfigError("BUCKET", "required when STORE_KIND=s3");
  if (cfg.reranker === "http" && !cfg.rerankerUrl) throw new ConfigError("RERANKER_URL", "required when RERANKER=http");
  if (cfg.reranker === "lambda" && !cfg.rerankerFunction)
    throw new ConfigError("RERANKER_FUNCTION", "required when RERANKER=lambda");
  if (cfg.searchShards === "lambda" && !cfg.shardFunctions)
    throw new ConfigError("SHARD_FUNCTIONS", "required when SEARCH_SHARDS=lambda");
  // SEARCH_SHARDS=http without SHARD_URLS is the local stack's (it starts the workers); the search
  // service itself refuses it (shared/adapters/shard-clients.ts).
  if (cfg.defaultCandidates > cfg.maxCandidates)
    throw new ConfigError("SEARCH_DEFAULT_CANDIDATES", "must not exceed SEARCH_MAX_CANDIDATES");
  return cfg;
}

/** Markdown table of every setting, for docs/CONFIG.md. */
export function settingsTable(): string {
  const rows = (Object.values(settings) as Spec<unknown>[]).map(
    (s) => `| \`${s.env}\` | ${s.fallback === undefined ? "(unset)" : `\`${String(s.fallback)}\``} | ${s.doc} |`,
  );
  return ["| variable | default | meaning |", "| --- | --- | --- |", ...rows].join("\n");
}
