// The in-process reranker: a RerankerPort backed by a scorer in this process, chosen by
// RERANKER_BACKEND: the ONNX cross-encoder (onnx), the weight-free lexical scorer (lexical,
// shared/core/lexical-scorer.ts), or auto = the cross-encoder when a model is configured
// (RERANKER_MODEL_DIR / RERANKER_MODEL_S3_PREFIX), else the lexical scorer, so a service with
// no model still reranks with something that helps.
// The model loads lazily on first use (or on warm()), from RERANKER_MODEL_DIR or from
// RERANKER_MODEL_S3_PREFIX through the local model cache; a failed load answers 503 and is
// retried on the next call.
// Scores are cached per instance (RERANKER_CACHE_MB, shared/core/score-cache.ts): a repeated or
// paginated query scores only passages it has not seen with this model and these settings.
import path from "node:path";
import type { Config } from "../core/config.ts";
import { ConfigError, isDomainError, RerankerUnavailableError } from "../core/errors.ts";
import type { Clock, ObjectStore, RerankCallOptions, RerankerDescription, RerankerPort } from "../core/ports.ts";
import { createLexicalScorer, DEFAULT_LEXICAL_WEIGHTS } from "../core/lexical-scorer.ts";
import {
  type PairScorer,
  type RerankLimits,
  type RerankOptions,
  rerank,
  validateRerankRequest,
} from "../core/rerank.ts";
import { createScoreCache, type ScoreCacheStats } from "../core/score-cache.ts";
import type { RerankRequest, RerankResponse } from "../core/types.ts";
import { createWorkGate } from "../core/work-gate.ts";
import { type CrossEncoder, isQuantizedGraph, loadCrossEncoder } from "./cross-encoder.ts";
import { resolveModelDir } from "./model-source.ts";
import { availableCores } from "./ort-session.ts";
import type { OrtLog, ProviderFallback } from "./ort-session.ts";

/** rerankerCacheMb unset: no score cache (loadConfig's default turns it on); rerankerWarmupPairs unset: no warm-up. */
export type LocalRerankerConfig = Partial<
  Pick<
    Config,
    | "rerankerMaxQueue"
    | "rerankerBackend"
    | "reranker"
    | "rerankerCacheMb"
    | "rerankerWorkers"
    | "rerankerWarmupPairs"
    | "rerankerInWorker"
  >
> &
  Pick<
    Config,
    | "rerankerModelDir"
    | "rerankerModelS3"
    | "modelCacheDir"
    | "rerankerProvider"
    | "rerankerQuantized"
    | "rerankerMaxLength"
    | "rerankerBatchTokens"
    | "rerankerMaxDocuments"
    | "rerankerThreads"
  >;

export interface LocalRerankerOptions {
  /** Store holding RERANKER_MODEL_S3_PREFIX (required when that prefix is the model source). */
  store?: ObjectStore;
  log?: OrtLog;
  clock?: Clock;
  /** Longest accepted query in characters (unset: no limit beyond the model's token limit). */
  maxQueryChars?: number;
}

export interface RerankerStatus {
  /** The model is loaded and answers without a cold start. */
  warm: boolean;
  loading: boolean;
  /** Where the model comes from: a folder or "store:<prefix>". */
  source: string;
  /** RERANKER_PROVIDER as configured ("auto", "cuda", …). */
  requestedProvider: string;
  model?: string;
  provider?: string;
  fallbacks?: readonly ProviderFallback[];
  fixture?: boolean;
  maxLength?: number;
  /** The ONNX file that runs and its precision (int8 / fp32). */
  modelFile?: string;
  precision?: string;
  /** Why the last load failed (cleared by a successful load). */
  error?: string;
  /** The score cache's size; absent when RERANKER_CACHE_MB is 0. */
  cache?: ScoreCacheStats;
  /** How long the last successful model load took (files, session creation, warm-up). */
  loadMs?: number;
  /** Where the sessions run once loaded: the calling thread, or worker threads (RERANKER_WORKERS, RERANKER_IN_WORKER). */
  thread?: "main" | "worker";
  sessions?: number;
  /** The warm-up run of that load (RERANKER_WARMUP_PAIRS): pairs scored and its share of loadMs. */
  warmup?: { pairs: number; ms: number };
}

/** What warm() resolves to: the loaded scorer and what /health shows of it. */
export type LoadedScorer = PairScorer & {
  readonly model: string;
  readonly provider: string;
  readonly fixture: boolean;
  readonly fallbacks: readonly ProviderFallback[];
  readonly maxLength?: number;
};

/** A loaded model: the in-thread CrossEncoder, or one worker thread's (RERANKER_WORKERS > 1). */
type ModelHandle = PairScorer &
  Pick<CrossEncoder, "model" | "provider" | "fallbacks" | "maxLength" | "fixture" | "precision" | "modelFile">;

export interface LocalReranker extends RerankerPort {
  /** Loads the model now (cold-start work before the first request). */
  warm(): Promise<LoadedScorer>;
  status(): RerankerStatus;
  readonly limits: RerankLimits;
}

/** Which scorer RERANKER_BACKEND picks for this configuration. */
export function rerankerBackendOf(cfg: LocalRerankerConfig): "onnx" | "lexical" {
  // An explicitly requested fixture is a cross-encoder folder, never silently something else.
  if (cfg.reranker === "fixture") return "onnx";
  const backend = cfg.rerankerBackend ?? "auto";
  if (backend !== "auto") return backend;
  return cfg.rerankerModelDir || cfg.rerankerModelS3 ? "onnx" : "lexical";
}

const WARMUP_QUERY = "how does the first request avoid the cold start";
const WARMUP_WORDS =
  "the search service retrieves many passages with a bi-encoder and reranks a few of them with a cross-encoder whose scores decide the final order of results for each query".split(
    " ",
  );

/**
 * `n` synthetic passages of 40–160 words for the warm-up run (RERANKER_WARMUP_PAIRS): ONNX Runtime
 * plans and allocates buffers on the first run of a batch shape, which costs the first request
 * ~115 ms more than a warm 20-pair rerank here; a warm-up batch of the usual size pays it at init.
 * Off by default: during a cold start it competes with the snapshot load for the cores
 * (`npm run bench -- coldstart`: 1.4× the time to the first answer on 2 cores).
 */
function warmupPassages(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    const words = 40 + ((i * 37) % 121);
    return Array.from({ length: words }, (_, j) => WARMUP_WORDS[(i + j * 7) % WARMUP_WORDS.length]).join(" ");
  });
}

export function createLocalReranker(cfg: LocalRerankerConfig, opts: LocalRerankerOptions = {}): LocalReranker {
  if (rerankerBackendOf(cfg) === "lexical") {
    const note =
      cfg.rerankerBackend === "lexical"
        ? `weight-free lexical reranker (RERANKER_BACKEND=lexical)`
        : `weight-free lexical reranker: no trained cross-encoder is configured (set RERANKER_MODEL_DIR or RERANKER_MODEL_S3_PREFIX; \`npm run cli -- models fetch ms-marco-MiniLM-L-6-v2\` downloads one)`;
    return createLexicalReranker(cfg, opts, note);
  }
  if (cfg.reranker === "fixture" && !cfg.rerankerModelDir) {
    throw new ConfigError(
      "RERANKER_MODEL_DIR",
      "RERANKER=fixture needs RERANKER_MODEL_DIR naming the fixture folder (the local tools generate one: npm run cli -- models fixture)",
    );
  }
  if (!cfg.rerankerModelDir && !cfg.rerankerModelS3) {
    throw new ConfigError(
      "RERANKER_MODEL_DIR",
      "RERANKER_BACKEND=onnx needs a model: set RERANKER_MODEL_DIR to a local cross-encoder folder or RERANKER_MODEL_S3_PREFIX to its bucket prefix (or choose RERANKER_BACKEND=lexical, or RERANKER=none/http/lambda)",
    );
  }
  if (!cfg.rerankerModelDir && !opts.store) {
    throw new ConfigError("RERANKER_MODEL_S3_PREFIX", "a model prefix needs an object store to read it from");
  }
  const source = cfg.rerankerModelDir ?? `store:${cfg.rerankerModelS3}`;
  // RERANKER_WORKERS sessions of the same model, each with its share of the cores, so that many
  // requests (e.g. one search's fan-out) run at once.
  const workers = Math.max(1, cfg.rerankerWorkers ?? 1);
  const threads =
    cfg.rerankerThreads ?? (workers > 1 ? Math.max(1, Math.floor(availableCores() / workers)) : undefined);
  const gate = createWorkGate({ maxQueue: cfg.rerankerMaxQueue ?? 64, concurrency: workers });
  const limits: RerankLimits = { maxDocuments: cfg.rerankerMaxDocuments, maxQueryChars: opts.maxQueryChars };
  const quantized = cfg.rerankerQuantized;
  const cache = createScoreCache(cfg.rerankerCacheMb ?? 0);

  let model: ModelHandle | null = null;
  let pool: ModelHandle[] = [];
  let pending: Promise<ModelHandle> | null = null;
  let lastError: string | undefined;
  let loadMs: number | undefined;
  let warmup: RerankerStatus["warmup"];
  const inWorkers = workers > 1 || cfg.rerankerInWorker === true;

  const load = (): Promise<ModelHandle> => {
    if (model) return Promise.resolve(model);
    const started = performance.now();
    pending ??= (async () => {
      const modelDir = await resolveModelDir({
        localDir: cfg.rerankerModelDir,
        store: opts.store,
        prefix: cfg.rerankerModelS3,
        cacheDir: cfg.modelCacheDir,
        required: ["config.json", "tokenizer.json"],
        // Fetch only the graph that will run.
        include: (rel) => {
          if (!rel.endsWith(".onnx")) return true;
          const file = rel.split("/").pop();
          return file === "model.onnx" || (quantized && isQuantizedGraph(rel));
        },
      });
      const options = {
        modelDir,
        provider: cfg.rerankerProvider,
        quantized,
        maxLength: cfg.rerankerMaxLength,
        batchTokens: cfg.rerankerBatchTokens,
        threads,
        name: cfg.rerankerModelS3 ? cfg.rerankerModelS3.split("/").filter(Boolean).pop() : undefined,
      };
      if (!inWorkers) pool = [await loadCrossEncoder({ ...options, log: opts.log })];
      else {
        // onnxruntime-node creates sessions and runs inference on the calling thread: parallel
        // requests need threads, and RERANKER_IN_WORKER keeps even one session off the event loop.
        const { startRerankWorker } = await import("./rerank-worker-pool.ts");
        pool = await Promise.all(Array.from({ length: workers }, () => startRerankWorker(options)));
      }
      const pairs = cfg.rerankerWarmupPairs ?? 0;
      if (pairs > 0) {
        const t = performance.now();
        const docs = warmupPassages(pairs);
        await Promise.all(pool.map((m) => m.scorePairs(WARMUP_QUERY, docs, { strategy: "truncate" })));
        warmup = { pairs, ms: Math.round(performance.now() - t) };
      }
      return pool[0];
    })().then(
      (m) => {
        model = m;
        lastError = undefined;
        pending = null;
        loadMs = Math.round(performance.now() - started);
        return m;
      },
      (e) => {
        pending = null;
        lastError = (e as Error).message;
        throw new RerankerUnavailableError(`reranker model could not be loaded from ${source}: ${lastError}`, e);
      },
    );
    return pending;
  };

  return {
    limits,
    warm: load,
    describe(): RerankerDescription {
      return {
        kind: "in-process",
        model: model?.model,
        provider: model?.provider,
        fixture: model?.fixture,
        ...(model?.fixture ? { note: "random-weight fixture: its scores carry no meaning" } : {}),
      };
    },
    status(): RerankerStatus {
      return {
        warm: model !== null,
        loading: pending !== null,
        source,
        requestedProvider: cfg.rerankerProvider,
        model: model?.model,
        provider: model?.provider,
        fallbacks: model?.fallbacks,
        fixture: model?.fixture,
        maxLength: model?.maxLength,
        modelFile: model ? path.relative(path.resolve(model.modelFile, "..", ".."), model.modelFile) : undefined,
        precision: model?.precision,
        error: lastError,
        ...(cache ? { cache: cache.stats() } : {}),
        ...(loadMs !== undefined ? { loadMs } : {}),
        ...(warmup ? { warmup } : {}),
        ...(model ? { thread: inWorkers ? ("worker" as const) : ("main" as const), sessions: pool.length } : {}),
      };
    },
    async rerank(req: RerankRequest, callOpts: RerankCallOptions = {}): Promise<RerankResponse> {
      // Bad input is answered as such even while the model cannot load.
      const valid = validateRerankRequest(req, limits);
      throwIfAborted(callOpts.signal);
      const m = await load();
      throwIfAborted(callOpts.signal);
      try {
        const options: RerankOptions = cache ? { cache: { cache, scorer: crossEncoderIdentity(m) } } : {};
        return await gate.run((slot) => rerank(valid, pool[slot] ?? m, limits, opts.clock, options), callOpts.signal);
      } catch (e) {
        if (isDomainError(e)) throw e;
        throw new RerankerUnavailableError(`reranker inference failed: ${(e as Error).message}`, e);
      }
    },
  };
}

/**
 * The weight-free lexical reranker behind the same port: nothing to load, no queue (scoring a pair
 * takes microseconds and never yields), the same validation and response shape.
 */
export function createLexicalReranker(
  cfg: Pick<LocalRerankerConfig, "rerankerMaxDocuments" | "rerankerProvider" | "rerankerCacheMb">,
  opts: Pick<LocalRerankerOptions, "clock" | "maxQueryChars"> = {},
  note = "weight-free lexical reranker",
): LocalReranker {
  const limits: RerankLimits = { maxDocuments: cfg.rerankerMaxDocuments, maxQueryChars: opts.maxQueryChars };
  const scorer = createLexicalScorer();
  const { model, provider } = scorer.describe();
  const loaded: LoadedScorer = Object.assign(scorer, { model, provider, fixture: false, fallbacks: [] as const });
  const cache = createScoreCache(cfg.rerankerCacheMb ?? 0);
  const identity = JSON.stringify([model, provider, DEFAULT_LEXICAL_WEIGHTS]);
  return {
    limits,
    warm: async () => loaded,
    describe: (): RerankerDescription => ({ kind: "in-process", model, provider, fixture: false, note }),
    status: (): RerankerStatus => ({
      warm: true,
      loading: false,
      source: "lexical (no model weights)",
      requestedProvider: cfg.rerankerProvider,
      model,
      provider,
      fallbacks: [],
      fixture: false,
      ...(cache ? { cache: cache.stats() } : {}),
    }),
    async rerank(req: RerankRequest, callOpts: RerankCallOptions = {}): Promise<RerankResponse> {
      const valid = validateRerankRequest(req, limits);
      throwIfAborted(callOpts.signal);
      // Without the index's term statistics a lexical score depends on the other passages sent
      // (BM25 statistics come from the batch), so only requests carrying them are cached.
      const options: RerankOptions = cache && valid.term_statistics ? { cache: { cache, scorer: identity } } : {};
      return rerank(valid, scorer, limits, opts.clock, options);
    },
  };
}

/** What a cross-encoder's scores depend on besides its inputs: model, ONNX file (precision) and pair length. */
export function crossEncoderIdentity(m: Pick<CrossEncoder, "model" | "modelFile" | "maxLength" | "provider">): string {
  return JSON.stringify([m.model, m.modelFile, m.maxLength, m.provider]);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  signal?.throwIfAborted();
}
