// Composition root of the reindex function: configuration, store, embedder, faiss builder and logger
// wired into shared/core/reindex.ts, plus the S3-event handler factory that the Lambda handler and
// the local s3rver event path (shared/adapters/s3rver-events.ts) both use.
import { corpusStatsBuilder, createEmbedder } from "../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { logger } from "../../shared/adapters/observability.ts";
import { createStepFunctionsStarter } from "../../shared/adapters/step-functions.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Config } from "../../shared/core/config.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { Embedder, ObjectStore } from "../../shared/core/ports.ts";
import {
  corpusChanges,
  createCorpusReadCache,
  type ReindexOptions,
  type ReindexResult,
  type ReindexStatus,
  reindexCorpus,
  type S3EventLike,
} from "../../shared/core/reindex.ts";
import {
  buildReindexShard,
  type CoordinateResult,
  coordinateShardedReindex,
  createInProcessStarter,
  type ExecutionStarter,
  type MergeResult,
  mergeReindexShards,
  type ShardBuildResult,
  type ShardedReindexOptions,
} from "../../shared/core/sharded-reindex.ts";
import type { LogFn } from "../../shared/core/snapshot-loader.ts";
import { loadFunctionConfig } from "./resources.ts";

/** What the handler needs from a Lambda context (a real one fits; the local event path builds its own). */
export interface InvocationContext {
  getRemainingTimeInMillis(): number;
}

export interface ReindexService {
  config: Config;
  store: ObjectStore;
  log: LogFn;
  /**
   * One full reindex of the corpus prefix. REINDEX_MODE=sharded: plans the shards and starts the
   * workflow (on AWS it returns once started; in-process it returns the merge's result).
   */
  run(opts?: RunOptions): Promise<ReindexResult | MergeResult | CoordinateResult>;
  /** Sharded mode's workflow tasks (the Step Functions Map item and the merge). */
  shard(req: { plan_key: string; shard: number }, opts?: RunOptions): Promise<ShardBuildResult>;
  merge(req: { plan_key: string; state_machine?: string }, opts?: RunOptions): Promise<MergeResult>;
}

interface RunOptions {
  remainingTimeMs?: () => number;
  trigger?: string[];
}

export interface ReindexServiceOverrides {
  store?: ObjectStore;
  embedder?: Embedder | (() => Promise<Embedder>);
  log?: LogFn;
  /** Any other reindexCorpus option (reserveMs, retry timing, memory budget, ...). */
  options?: Partial<Omit<ReindexOptions, "store" | "embedder" | "log">>;
}

const powertoolsLog: LogFn = (level, msg, data) => logger[level](msg, { ...data });

/** Builds the reindex service from a configuration (no memoisation; see reindexService()). */
export function createReindexService(cfg: Config, overrides: ReindexServiceOverrides = {}): ReindexService {
  const store = overrides.store ?? createStore(cfg);
  const log = overrides.log ?? powertoolsLog;
  // One embedder per warm instance (the ONNX one loads a model); a failed creation is retried next run.
  let embedderPromise: Promise<Embedder> | undefined;
  const embedder =
    overrides.embedder ??
    (() =>
      (embedderPromise ??= createEmbedder(cfg).catch((e) => {
        embedderPromise = undefined;
        throw e;
      })));
  // Parsed corpus objects kept across the runs of a warm instance: unchanged objects are not re-read.
  const readCache = createCorpusReadCache();
  const options = (o: RunOptions): ShardedReindexOptions => ({
    readCache,
    store,
    corpusPrefix: cfg.corpusPrefix,
    indexPrefix: cfg.indexPrefix,
    cachePrefix: cfg.cachePrefix,
    embedder,
    indexBuilder: faissIndexBuilder,
    indexType: cfg.indexType,
    indexParams: cfg.indexParams,
    sparseIndex: cfg.sparseIndex,
    indexShards: cfg.indexShards,
    chunking: { maxTokens: cfg.chunkTokens, overlap: cfg.chunkOverlap },
    corpusStats: corpusStatsBuilder,
    log,
    remainingTimeMs: o.remainingTimeMs,
    // Time kept back at the end of an invocation to save partial embeddings, log and return.
    reserveMs: 15_000,
    trigger: o.trigger,
    sharding: { maxShardBytes: cfg.reindexShardMb * 1024 * 1024, maxShardPassages: cfg.reindexShardPassages },
    ...overrides.options,
  });
  // Step Functions when deployed (the state machine is linked); else the same definition in-process.
  const starterFor = (opts: ShardedReindexOptions, stateMachine = cfg.reindexStateMachine): ExecutionStarter =>
    stateMachine && !stateMachine.startsWith("local:")
      ? createStepFunctionsStarter(stateMachine)
      : createInProcessStarter(opts, {
          workflow: { maxConcurrency: cfg.reindexShardConcurrency, shardAttempts: cfg.reindexShardAttempts },
          executions: localExecutions,
        });
  const localExecutions = new Map();
  return {
    config: cfg,
    store,
    log,
    run: async (o = {}) => {
      const opts = options(o);
      if (cfg.reindexMode !== "sharded") return reindexCorpus(opts);
      const started = await coordinateShardedReindex(opts, starterFor(opts));
      return (started.output as MergeResult | undefined) ?? started;
    },
    shard: (req, o = {}) => buildReindexShard(options(o), req),
    merge: (req, o = {}) => {
      const opts = options(o);
      return mergeReindexShards(opts, req, starterFor(opts, req.state_machine));
    },
  };
}

/** What the reindex function returns (and logs): enough to see what a run did at a glance. */
export interface ReindexSummary {
  /** Sharded mode adds started/running (the workflow continues) and replanned (a newer build took over). */
  status: ReindexStatus | "ignored" | "started" | "running" | "replanned";
  /** Corpus changes in the event (after filtering by the corpus prefix). */
  changes: number;
  version: string | null;
  previous_version: string | null;
  objects: number;
  documents: number;
  passages: number;
  /** Passages embedded in this run (paid for, with OpenAI). */
  embedded: number;
  /** Passages whose vectors came from the embedding cache. */
  cached: number;
  embed_calls: number;
  embed_tokens: number;
  skipped: number;
  /** The first skipped inputs (all of them are in the manifest's report). */
  skipped_examples: Array<{ key: string; line?: number; reason: string }>;
  attempts: number;
  duration_ms: number;
  /** Sharded mode: the build, its shards, and how many were reused unchanged. */
  build_id?: string | null;
  shards?: number;
  reused_shards?: number;
}

export function summarize(
  outcome: ReindexResult | MergeResult | CoordinateResult | null,
  changes: number,
): ReindexSummary {
  if (outcome && "build_id" in outcome && !("counts" in outcome)) {
    // A sharded build that was started (or found running): the workflow reports the rest.
    return {
      ...summarize(null, changes),
      status: outcome.status,
      version: outcome.live_version,
      previous_version: outcome.live_version,
      objects: outcome.objects,
      build_id: outcome.build_id,
      shards: outcome.shards,
      reused_shards: outcome.reused,
    };
  }
  const result = outcome as ReindexResult | MergeResult | null;
  const sharded =
    result && "build_id" in result
      ? { build_id: result.build_id, shards: result.shards, reused_shards: result.reused }
      : {};
  return {
    ...sharded,
    status: result?.status ?? "ignored",
    changes,
    version: result?.version ?? null,
    previous_version: result?.previousVersion ?? null,
    objects: result?.counts.objects ?? 0,
    documents: result?.counts.documents ?? 0,
    passages: result?.counts.passages ?? 0,
    embedded: result?.embedding.embedded ?? 0,
    cached: result?.embedding.cached ?? 0,
    embed_calls: result?.embedding.calls ?? 0,
    embed_tokens: result?.embedding.tokens ?? 0,
    skipped: result?.counts.skipped ?? 0,
    skipped_examples: result?.skipped.slice(0, 10) ?? [],
    attempts: result?.attempts ?? 0,
    duration_ms: Math.round(result?.durationMs ?? 0),
  };
}

export type ReindexHandler = (event: S3EventLike, context?: InvocationContext) => Promise<ReindexSummary>;

/**
 * The S3-event handler: ignores records outside the corpus prefix (the reindex's own snapshot and
 * cache writes included), otherwise runs one full reindex within the invocation's time limit.
 * Failures propagate so Lambda's async retry re-drives the event.
 */
export function createReindexHandler(service: () => Promise<ReindexService>): ReindexHandler {
  return async (event, context) => {
    const svc = await service();
    const { corpusPrefix, indexPrefix, cachePrefix } = svc.config;
    const changes = corpusChanges(event, { corpusPrefix, ignorePrefixes: [indexPrefix, cachePrefix] });
    if (changes.length === 0) {
      svc.log("debug", "event has no corpus changes; ignored", { records: event?.Records?.length ?? 0 });
      return summarize(null, 0);
    }
    const result = await svc.run({
      remainingTimeMs: context ? () => context.getRemainingTimeInMillis() : undefined,
      trigger: changes.map((c) => `${c.kind} ${c.key}`),
    });
    const summary = summarize(result, changes.length);
    svc.log("info", "reindex finished", { ...summary });
    return summary;
  };
}

let service: Promise<ReindexService> | undefined;

/** The reindex service of this warm instance, built on first use from the function's configuration. */
export function reindexService(): Promise<ReindexService> {
  service ??= Promise.resolve()
    .then(() => createReindexService(loadFunctionConfig()))
    .catch((e) => {
      service = undefined;
      throw e;
    });
  return service;
}

/** The Map item the state machine sends a shard worker: {plan_key, shard}. */
export function parseShardTask(event: unknown): { plan_key: string; shard: number } {
  const e = event as { plan_key?: unknown; shard?: unknown } | null;
  if (!e || typeof e.plan_key !== "string" || !Number.isInteger(e.shard) || (e.shard as number) < 0) {
    throw new ValidationError("a shard task needs {plan_key: string, shard: non-negative integer}");
  }
  return { plan_key: e.plan_key, shard: e.shard as number };
}

/** The merge task's payload: {plan_key, state_machine?}. */
export function parseMergeTask(event: unknown): { plan_key: string; state_machine?: string } {
  const e = event as { plan_key?: unknown; state_machine?: unknown } | null;
  if (!e || typeof e.plan_key !== "string") throw new ValidationError("a merge task needs {plan_key: string}");
  if (e.state_machine !== undefined && typeof e.state_machine !== "string") {
    throw new ValidationError("state_machine must be a string (the state machine's ARN)");
  }
  return { plan_key: e.plan_key, ...(typeof e.state_machine === "string" ? { state_machine: e.state_machine } : {}) };
}
