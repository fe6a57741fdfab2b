// Composition root of the search function: reads the configuration once, builds the store, the
// snapshot loader, the query embedder per snapshot and the reranker client, and hands them to the
// search app. Built once per warm instance (a memoised promise, dropped on failure so the next
// request retries instead of replaying the error forever).
import type { OpenAPIHono } from "@hono/zod-openapi";
import {
  allocateSnapshotBytes,
  createFaissIndexSinkFactory,
  decodeFaissSnapshotIndex,
} from "../../shared/adapters/faiss-index.ts";
import { createEmbedder, prepareEmbedder } from "../../shared/adapters/embedders.ts";
import { createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import {
  logger,
  metrics,
  observe,
  redactConsole,
  requestLogging,
  searchObservation,
} from "../../shared/adapters/observability.ts";
import { rerankerFromConfig } from "../../shared/adapters/reranker-clients.ts";
import { shardClientFromConfig } from "../../shared/adapters/shard-clients.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Config } from "../../shared/core/config.ts";
import type { Embedder, ObjectStore, RerankerPort, SnapshotManifest } from "../../shared/core/ports.ts";
import { fanoutIndexOpener } from "../../shared/core/sharded-index.ts";
import { createSnapshotLoader, type SnapshotLoader } from "../../shared/core/snapshot-loader.ts";
import { type ApiKeySecurity, createApiKeySecurity } from "../../shared/http/auth.ts";
import { playgroundRoutes } from "../../shared/http/playground.ts";
import { createSearchApp, type SearchAppDeps } from "../../shared/http/search-app.ts";
import { loadFunctionConfig } from "./resources.ts";

// Library code that logs through console (SDKs, onnxruntime) must not print secrets either.
redactConsole();

export interface SearchService {
  app: OpenAPIHono;
  config: Config;
  loader: SnapshotLoader;
  reranker: RerankerPort;
  store: ObjectStore;
  /** API keys, rate limiter and usage meter (auth is a no-op when AUTH_MODE=off). */
  security: ApiKeySecurity;
  /** Stops background snapshot refreshes (local servers, tests). */
  close(): void;
}

export interface SearchServiceOverrides {
  store?: ObjectStore;
  reranker?: RerankerPort;
  embedderFor?: SearchAppDeps["embedderFor"];
  /**
   * Extra options for createSearchApp. `routes` replaces the default playground at GET / (the usage
   * route is mounted either way); `auth` replaces the API-key middleware.
   */
  app?: Partial<Pick<SearchAppDeps, "auth" | "routes" | "middleware" | "hooks">>;
  /** Skip request logging and EMF metrics (benchmarks, tests). */
  quiet?: boolean;
}

/** The query embedder matching a snapshot's manifest (its identity and corpus statistics). */
export function embedderForConfig(cfg: Config): (manifest: SnapshotManifest) => Promise<Embedder> {
  return (manifest) => createEmbedder(cfg, { identity: manifest.embedder, corpusStats: manifest.corpus_stats });
}

/** Builds the whole search service from a configuration (no memoisation; see searchApp()). */
export function createSearchService(cfg: Config, overrides: SearchServiceOverrides = {}): SearchService {
  const store = overrides.store ?? createStore(cfg);
  const log = (level: "debug" | "info" | "warn" | "error", msg: string, data?: Record<string, unknown>) =>
    logger[level](msg, { ...data });
  // SEARCH_SHARDS=lambda|http: the index files stay with the shard functions; queries fan out.
  const shardClient = shardClientFromConfig(cfg);
  const loader = createSnapshotLoader({
    store,
    indexPrefix: cfg.indexPrefix,
    refreshS: cfg.indexRefreshS,
    decodeIndex: (bytes, manifest) => decodeFaissSnapshotIndex(bytes, manifest, cfg.indexSearchParams),
    // index.faiss streams into the flat index's memory (or a temp file faiss reads): peak ≈ the index.
    openIndexSink: createFaissIndexSinkFactory({ searchParams: cfg.indexSearchParams }),
    allocate: allocateSnapshotBytes,
    passageTexts: cfg.passageTexts,
    passageCacheBytes: cfg.passageCacheMb * 1024 * 1024,
    // The query embedder's model loads while the index downloads (USE-lite: conversion + session ~0.8 s on a fresh /tmp, BENCHMARKS.md).
    onManifest: (manifest) => void prepareEmbedder(cfg, manifest.embedder),
    ...(shardClient
      ? {
          openRemoteIndex: fanoutIndexOpener({
            client: shardClient,
            timeoutMs: cfg.shardTimeoutMs,
            loadTimeoutMs: cfg.shardLoadTimeoutMs,
            log,
          }),
        }
      : {}),
    log,
  });
  const reranker =
    overrides.reranker ??
    rerankerFromConfig(cfg, {
      local: () => {
        const local = createLocalReranker(cfg, {
          store: cfg.rerankerModelS3 ? store : undefined,
          maxQueryChars: cfg.maxQueryChars,
        });
        // Load the model while the instance initialises; a failure is retried by the first rerank call.
        local.warm().catch(() => {});
        return local;
      },
    });
  // Lambda may freeze the instance right after the response, so a due usage flush is awaited there.
  const security = createApiKeySecurity(cfg, store, {
    flush: process.env.AWS_LAMBDA_FUNCTION_NAME ? "inline" : "background",
  });
  const rerankerConfigured = reranker.describe().kind !== "none";
  const extraRoutes = overrides.app?.routes ?? ((a) => a.route("/", playgroundRoutes()));
  const app = createSearchApp({
    snapshots: loader,
    embedderFor: overrides.embedderFor ?? embedderForConfig(cfg),
    reranker,
    config: cfg,
    store: store.describe(),
    log: { warn: (m, extra) => logger.warn(m, { ...extra }), error: (m, extra) => logger.error(m, { ...extra }) },
    middleware: overrides.quiet ? [] : [requestLogging({ logger, metrics })],
    hooks: overrides.app?.hooks ?? {
      onSearch: (c, res) => observe(c, searchObservation(res, { rerankerConfigured })),
    },
    ...(overrides.app?.middleware ? { middleware: overrides.app.middleware } : {}),
    auth: overrides.app?.auth ?? security.auth,
    routes: (a) => {
      a.route("/", security.usageApp);
      extraRoutes(a);
    },
  });
  // Start loading the snapshot now (Lambda's init phase) rather than on the first request.
  loader.current().catch(() => {});
  return { app, config: cfg, loader, reranker, store, security, close: () => loader.close() };
}

let service: Promise<SearchService> | undefined;

/** The search service of this warm instance, built on first use from the function's configuration. */
export function searchService(): Promise<SearchService> {
  service ??= Promise.resolve()
    .then(() => createSearchService(loadFunctionConfig()))
    .catch((e) => {
      service = undefined;
      throw e;
    });
  return service;
}
