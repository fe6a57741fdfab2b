// The seams between the pure core and the technology adapters (shared/adapters/*).
import type { EmbedderIdentity, Passage, RerankRequest, RerankResponse } from "./types.ts";

// ---------- object storage (S3 or local filesystem) ----------

export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  lastModified?: Date;
}

export interface PutOptions {
  contentType?: string;
  /** Only write if the current object's ETag equals this (compare-and-swap). */
  ifMatch?: string;
  /** "*" = only write if the object does not exist. */
  ifNoneMatch?: "*";
}

export interface StoreDescription {
  kind: "s3" | "fs";
  bucket?: string;
  /** Only for S3-compatible servers (custom endpoint). */
  endpoint?: string;
  root?: string;
}

export interface ObjectStore {
  describe(): StoreDescription;
  /**
   * Whole object, or null when it does not exist. `range` is inclusive [start, end]. With `into`,
   * an adapter may write the body into that buffer (when it is large enough) and return a view of
   * it, so callers can reuse buffers; callers must use the returned `body` either way.
   */
  get(
    key: string,
    opts?: { range?: [number, number]; signal?: AbortSignal; into?: Uint8Array },
  ): Promise<{ body: Uint8Array; etag: string } | null>;
  /** Streamed body, or null when it does not exist. */
  getStream(
    key: string,
    opts?: { signal?: AbortSignal },
  ): Promise<{ body: AsyncIterable<Uint8Array>; etag: string; size: number } | null>;
  head(key: string): Promise<ObjectInfo | null>;
  /** Throws PreconditionFailedError when a conditional write loses. */
  put(key: string, body: Uint8Array | string, opts?: PutOptions): Promise<{ etag: string }>;
  delete(key: string): Promise<void>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
}

// ---------- embedders ----------

export interface EmbedOptions {
  signal?: AbortSignal;
  /** Called with the number of texts embedded so far (progress bars). */
  onProgress?: (done: number, total: number) => void;
}

export interface EmbedderUsage {
  /** Requests sent to a paid provider (0 for local embedders). */
  calls: number;
  /** Texts embedded. */
  texts: number;
  /** Tokens billed or processed. */
  tokens: number;
}

export interface Embedder {
  readonly identity: EmbedderIdentity;
  /** Passage vectors, L2-normalised when identity.normalized. */
  embedDocuments(texts: string[], opts?: EmbedOptions): Promise<Float32Array[]>;
  /** Query vector; may differ from a document vector (e.g. IDF weighting in the hashing embedder). */
  embedQuery(text: string, opts?: EmbedOptions): Promise<Float32Array>;
  /** Counters since creation. */
  usage(): EmbedderUsage;
}

// ---------- first-stage index ----------

export interface VectorSearchResult {
  /** Passage ordinals in the snapshot, best first. */
  ordinals: number[];
  scores: number[];
}

export interface VectorIndex {
  readonly dimensions: number;
  readonly count: number;
  /** Factory and search parameters in effect (efSearch, nprobe), for /health; optional. */
  readonly params?: Record<string, string | number>;
  /** Inner-product (cosine on normalised vectors) top-k; fewer results if the index is smaller. */
  search(query: Float32Array, k: number): VectorSearchResult;
}

/** One shard that did not answer a fan-out search (timed out, failed, unreachable). */
export interface MissingShard {
  shard: number;
  /** "timeout" | "unavailable" | "invalid" (the shard refused the version or the request). */
  code: "timeout" | "unavailable" | "invalid";
  message: string;
}

export interface FanoutSearchResult extends VectorSearchResult {
  /** Shards asked. */
  shards: number;
  /** Shards whose candidates are not in the result; empty = exact. */
  missing: MissingShard[];
}

/**
 * A dense index whose shards live in other processes (SEARCH_SHARDS=lambda|http): searched
 * asynchronously, in parallel, within a time limit; a shard that does not answer in time leaves
 * a partial (but otherwise exact) result and is named in `missing`. Its synchronous search()
 * throws: callers must check for searchShards first (shared/core/search.ts does).
 */
export interface FanoutVectorIndex extends VectorIndex {
  searchShards(query: Float32Array, k: number, opts?: { signal?: AbortSignal }): Promise<FanoutSearchResult>;
}

export function isFanoutIndex(index: VectorIndex): index is FanoutVectorIndex {
  return typeof (index as Partial<FanoutVectorIndex>).searchShards === "function";
}

/** A shard search request (the shard function's event, the shard server's body). */
export interface ShardSearchRequest {
  /** Snapshot version; the shard loads that version's index file when it holds another. */
  version: string;
  shard: number;
  vector: Float32Array;
  k: number;
}

export interface ShardSearchResponse {
  /** Global passage ordinals (the shard's offset added), best first. */
  ordinals: number[];
  scores: number[];
  version: string;
}

/** Where the search function sends a query's shard searches (shared/adapters/shard-clients.ts). */
export interface IndexShardClient {
  describe(): { kind: "lambda" | "http"; targets: string[] };
  /**
   * Throws ShardUnavailableError (message names the cause; `timeout` when the time limit passed)
   * or a DomainError the shard returned (snapshot_invalid, invalid_request).
   */
  search(req: ShardSearchRequest, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<ShardSearchResponse>;
  /** Loads a version's shard ahead of the first query (k = 0 search); same errors as search(). */
  warm(req: { version: string; shard: number }, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<void>;
}

/** A passage without its text: what filters, collapse and ids need. */
export type PassageInfo = Omit<Passage, "text">;

export interface PassageStore {
  readonly count: number;
  /** Random access by ordinal without parsing the whole store (a lazily read store throws: use load). */
  get(ordinal: number): Passage;
  /** Lazily read stores: the passage without its text, from memory. */
  info?(ordinal: number): PassageInfo;
  /**
   * Lazily read stores: these passages with their texts (read by byte range, verified against the
   * manifest's block digests), in the order asked. Throws StoreUnavailableError for this request
   * when a range cannot be read or does not verify; the store keeps serving.
   */
  load?(ordinals: readonly number[], signal?: AbortSignal): Promise<Passage[]>;
  /** How the texts are held, for /health (e.g. {texts: "lazy", cached_bytes}). */
  describe?(): Record<string, unknown>;
}

// ---------- second stage ----------

export interface RerankCallOptions {
  signal?: AbortSignal;
  /** Hard time limit for this call; adapters abort past it. */
  timeoutMs?: number;
}

export interface RerankerDescription {
  kind: "in-process" | "lambda" | "http" | "none";
  model?: string;
  provider?: string;
  url?: string;
  fixture?: boolean;
  /** Why this second stage runs (e.g. the lexical reranker because no trained model is configured). */
  note?: string;
}

export interface RerankerPort {
  describe(): RerankerDescription;
  rerank(req: RerankRequest, opts?: RerankCallOptions): Promise<RerankResponse>;
}

// ---------- clock (tests inject their own) ----------

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => performance.now() };

// ---------- snapshots (first-stage index + passages, as published in the store) ----------

export interface SnapshotFileEntry {
  key: string;
  bytes: number;
  sha256: string;
}

/** manifest.json of a snapshot. Owned by shared/core/snapshot.ts, which may add fields. */
export interface SnapshotManifest {
  format_version: number;
  version: string;
  created_at: string;
  embedder: import("./types.ts").EmbedderIdentity;
  metric: "inner_product";
  index_type: string;
  /** Index factory string and search parameters (efSearch, nprobe, ...) the loader applies. */
  index_params?: Record<string, string | number>;
  counts: { documents: number; passages: number };
  files: Record<string, SnapshotFileEntry>;
  /** Embedder-specific corpus statistics (e.g. document frequencies for the hashing embedder). */
  corpus_stats?: unknown;
  /** Corpus objects (key → ETag) this snapshot was built from. */
  sources?: Array<{ key: string; etag: string }>;
  /** The BM25 index over the passages (analyzer, parameters, statistics); absent in older snapshots. */
  sparse?: import("./sparse-index.ts").SparseIndexInfo;
  /** The passage store's layout and text-block digests, for reading its texts by range (v2 stores). */
  passages?: import("./snapshot.ts").PassageLayout;
  /**
   * Format 3: the dense vectors as N index files, shard i holding ordinals [offset, offset + count)
   * (its label j is ordinal offset + j); absent = one index.faiss. Passages and sparse stay one each.
   */
  index_shards?: Array<{ file: string; offset: number; count: number }>;
  /** Skipped inputs (bad lines, unsupported files) with reasons. */
  report?: { skipped: Array<{ key: string; line?: number; reason: string }> };
}

export interface LoadedSnapshot {
  version: string;
  manifest: SnapshotManifest;
  index: VectorIndex;
  passages: PassageStore;
  /** The sparse (BM25) half of the first stage; null for snapshots published without one. */
  sparse: import("./sparse-index.ts").SparseIndex | null;
  /** performance.now()-independent wall-clock ms when it was loaded. */
  loadedAt: number;
}

/** What the search function reads its snapshot from (module-scoped, hot-swapping loader). */
export interface SnapshotSource {
  /** The live snapshot; throws IndexNotReadyError when none is published or reachable yet. */
  current(): Promise<LoadedSnapshot>;
  /** Non-throwing view for /health. */
  status(): {
    version: string | null;
    count: number;
    ageS: number | null;
    cold: boolean;
    lastError?: string;
    /** How long loading the live version took (pointer → verified files → index), ms. */
    loadMs?: number;
  };
}
