// Composition root of the reindex function: configuration, store, embedder, faiss builder and logger
// wired into shared/core/reindex.ts, plus the S3-event handler factory that the Lambda handler and
// the local s3rver event path (shared/adapters/s3rver-events.ts) both use.
import { corpusStatsBuilder, createEmbedder } from "../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { logger } from "../../shared/adapters/observability.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Config } from "../../shared/core/config.ts";
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
  /** One full reindex of the corpus prefix. */
  run(opts?: { remainingTimeMs?: () => number; trigger?: string[] }): Promise<ReindexResult>;
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
  return {
    config: cfg,
    store,
    log,
    run: (o = {}) =>
      reindexCorpus({
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
        chunking: { maxTokens: cfg.chunkTokens, overlap: cfg.chunkOverlap },
        corpusStats: corpusStatsBuilder,
        log,
        remainingTimeMs: o.remainingTimeMs,
        // Time kept back at the end of an invocation to save partial embeddings, log and return.
        reserveMs: 15_000,
        trigger: o.trigger,
        ...overrides.options,
      }),
  };
}

/** What the reindex function returns (and logs): enough to see what a run did at a glance. */
export interface ReindexSummary {
  status: ReindexStatus | "ignored";
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
}

export function summarize(result: ReindexResult | null, changes: number): ReindexSummary {
  return {
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
