// Rebuilds the index snapshot from everything under the corpus prefix, then makes it live with a
// conditional pointer flip. Pure: the store, embedder, index builder, clock and deadline are injected.
//
// Guarantees (docs/REINDEX.md explains them):
// - The whole corpus is listed on every run, whatever object triggered it: the newest corpus state wins,
//   and a run never publishes a snapshot that misses an object that was listed.
// - The pointer is read BEFORE the corpus is listed and swapped against that read (If-Match / If-None-Match).
//   A snapshot published meanwhile (from a listing at least as new) makes the flip fail; the run then
//   re-reads the pointer and the listing: when the other snapshot was built from exactly the current
//   listing it stops ("superseded"), otherwise it rebuilds and retries (bounded, with jitter).
// - A run whose listing (keys + ETags), embedder and chunking equal the live snapshot's is a no-op.
// - Bad input (malformed lines, empty texts, unsupported or unreadable objects) is skipped and reported
//   in manifest.report; a failed build (embedder down, out of time) never flips the pointer and throws,
//   so the caller (Lambda's async retry) can re-drive it. Embeddings are cached per corpus object as
//   they are made, so a retry resumes where the failed run stopped.
import { type ChunkOptions, chunkDocument } from "./chunking.ts";
import {
  type BuiltIndex,
  buildSnapshot,
  effectiveIndexShards,
  type IndexBuilder,
  manifestIndexShards,
} from "./build.ts";
import { corpusFormat, parseCorpusObject, type SkippedInput } from "./documents.ts";
import { createEmbeddingCache, type EmbeddingCache, embedThroughCache, textSha256 } from "./embedding-cache.ts";
import { sameIdentity } from "./embedding.ts";
import { DomainError, PreconditionFailedError, StoreUnavailableError } from "./errors.ts";
import {
  type Clock,
  type Embedder,
  type EmbedderUsage,
  type ObjectInfo,
  type ObjectStore,
  type SnapshotManifest,
  systemClock,
} from "./ports.ts";
import { pruneSnapshots, publishSnapshot, readPointer } from "./publish.ts";
import { parseManifest } from "./snapshot.ts";
import type { LogFn } from "./snapshot-loader.ts";
import type { EmbedderIdentity, Passage } from "./types.ts";

// ---------- public types ----------

/** Accumulates the corpus statistics a query embedder needs (hashing: document frequencies). */
export interface CorpusStatsAccumulator {
  add(passageText: string): void;
  finish(): unknown;
}

/** How a reindex built its snapshot; recorded as manifest.build. */
export interface ReindexBuildInfo {
  builder: "reindex";
  chunking: { max_tokens: number; overlap: number };
  /** INDEX_PARAMS as given (absent when unset): a change rebuilds even an unchanged corpus. */
  index_params?: Record<string, number>;
  /** Corpus objects listed. */
  objects: number;
  embedding: {
    /** Passage texts sent to the embedder in this run. */
    embedded: number;
    /** Passages whose vector came from the embedding cache. */
    cached: number;
    /** Paid embedding requests in this run (0 for local embedders), from embedder.usage(). */
    calls: number;
    texts: number;
    tokens: number;
  };
  duration_ms: number;
  /** Build attempts in this run (more than 1 after a lost pointer flip). */
  attempt: number;
  /** A sharded build (sharded-reindex.ts): its id, shards, and how many were reused unchanged. */
  sharded?: { build_id: string; shards: number; reused: number };
}

/** A snapshot manifest as written by the reindex (manifest.json keeps unknown top-level fields). */
export type ReindexManifest = SnapshotManifest & { build?: ReindexBuildInfo };

export interface ReindexOptions {
  store: ObjectStore;
  /** CORPUS_PREFIX, e.g. "corpus/". */
  corpusPrefix: string;
  /** INDEX_PREFIX, e.g. "index/". */
  indexPrefix: string;
  /** EMBED_CACHE_PREFIX, e.g. "cache/embeddings/". */
  cachePrefix: string;
  /** The document embedder, or a factory for it (called once per run). */
  embedder: Embedder | (() => Promise<Embedder>);
  indexBuilder: IndexBuilder;
  /** "auto" or a concrete index type. */
  indexType: string;
  /** INDEX_PARAMS for the index builder. */
  indexParams?: Record<string, number>;
  /**
   * SPARSE_INDEX: publish the BM25 index with the snapshot (default true). A live snapshot that
   * lacks it (published before it existed, or with it off) is rebuilt, not left as is.
   */
  sparseIndex?: boolean;
  /**
   * INDEX_SHARDS: dense index files per snapshot (default 1). A live snapshot with another count
   * (for its passage count: never more shards than passages) is rebuilt.
   */
  indexShards?: number;
  chunking: ChunkOptions;
  /** Corpus statistics for the manifest (shared/adapters/embedders.ts corpusStatsBuilder); null = none. */
  corpusStats?: (identity: EmbedderIdentity) => CorpusStatsAccumulator | null;
  /** Milliseconds left before the caller is killed (Lambda: context.getRemainingTimeInMillis). */
  remainingTimeMs?: () => number;
  /** Stop when fewer than this many ms are left (default 10,000): enough to save and return cleanly. */
  reserveMs?: number;
  log?: LogFn;
  clock?: Clock;
  /** Build+publish attempts when the pointer flip loses a race (default 4). */
  maxAttempts?: number;
  /** Base delay between attempts; doubled each time, with ±50% jitter (default 250 ms). */
  retryDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Texts per embedding call (default 128). */
  embedBatchSize?: number;
  /** Snapshot versions kept after a publish (default 3; 0 keeps all). */
  keepSnapshots?: number;
  /** Delete cache bundles of corpus objects that no longer exist (default true). */
  pruneCache?: boolean;
  /** Larger objects are skipped and reported (default 256 MiB): they are parsed in memory. */
  maxObjectBytes?: number;
  /** Vectors kept in memory between embedding and index building (default 256 MiB); the rest is re-read from the cache. */
  vectorMemoryBytes?: number;
  /** What triggered the run (logged). */
  trigger?: string[];
  /**
   * Parsed corpus objects kept between runs of a warm instance (createCorpusReadCache): an object
   * whose ETag is unchanged is not read again. Without it every run reads every object.
   */
  readCache?: CorpusReadCache;
}

export type ReindexStatus = "published" | "unchanged" | "superseded";

export interface ReindexResult {
  status: ReindexStatus;
  /** The live version after the run (null when nothing is published). */
  version: string | null;
  /** The version this run replaced (published) or found live. */
  previousVersion: string | null;
  attempts: number;
  counts: { objects: number; documents: number; passages: number; skipped: number };
  embedding: ReindexBuildInfo["embedding"];
  skipped: SkippedInput[];
  durationMs: number;
}

/** The run stopped before the caller's time limit; nothing was published, the cache keeps its progress. */
export class ReindexTimeoutError extends DomainError {
  constructor(stage: string, remainingMs: number) {
    super(
      "internal",
      503,
      `reindex stopped while ${stage}: only ${Math.max(0, Math.round(remainingMs))} ms left before the time limit; ` +
        "the previous snapshot stays live and embeddings made so far are cached for the next attempt",
      { retryAfterS: 0 },
    );
  }
}

// ---------- S3 events (the trigger) ----------

/** The parts of an S3 notification record the reindex reads (aws-lambda's S3EventRecord fits). */
export interface S3EventRecordLike {
  eventName?: string;
  s3?: { bucket?: { name?: string }; object?: { key?: string; eTag?: string; size?: number } };
}

export interface S3EventLike {
  Records?: S3EventRecordLike[];
}

export interface CorpusChange {
  key: string;
  kind: "created" | "removed";
  eventName: string;
}

/** S3 notifications URL-encode keys with '+' for spaces; s3rver sends them raw. */
export function decodeS3EventKey(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return raw;
  }
}

/**
 * The created/removed corpus objects an event names. Keys outside the corpus prefix (the reindex's own
 * snapshot and cache writes, when the notification is not filtered by prefix) and other event types are dropped.
 */
export function corpusChanges(
  event: S3EventLike | null | undefined,
  opts: { corpusPrefix: string; ignorePrefixes?: readonly string[] },
): CorpusChange[] {
  const out: CorpusChange[] = [];
  for (const r of event?.Records ?? []) {
    const name = r.eventName ?? "";
    const kind = name.startsWith("ObjectCreated:") ? "created" : name.startsWith("ObjectRemoved:") ? "removed" : null;
    const raw = r.s3?.object?.key;
    if (!kind || typeof raw !== "string") continue;
    const key = decodeS3EventKey(raw);
    if (!key.startsWith(opts.corpusPrefix) || key.endsWith("/")) continue;
    if (opts.ignorePrefixes?.some((p) => p !== "" && key.startsWith(p))) continue;
    out.push({ key, kind, eventName: name });
  }
  return out;
}

// ---------- helpers ----------

function normEtag(etag: string): string {
  return etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/** Same keys with the same ETags (order-insensitive). */
export function sameSources(
  a: ReadonlyArray<{ key: string; etag: string }> | undefined,
  b: ReadonlyArray<{ key: string; etag: string }>,
): boolean {
  if (!a || a.length !== b.length) return false;
  const m = new Map(a.map((s) => [s.key, normEtag(s.etag)]));
  return b.every((s) => m.get(s.key) === normEtag(s.etag));
}

const MAX_LOGGED_SKIPS = 100;

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function sameParams(a: Record<string, number> | undefined, b: Record<string, number> | undefined): boolean {
  const x = Object.entries(a ?? {}).sort(([p], [q]) => (p < q ? -1 : 1));
  const y = Object.entries(b ?? {}).sort(([p], [q]) => (p < q ? -1 : 1));
  return JSON.stringify(x) === JSON.stringify(y);
}

export interface LiveSnapshot {
  etag: string;
  version: string;
  manifest: ReindexManifest | null;
}

export interface ParsedDoc {
  id: string;
  passages: Passage[];
  hashes: string[];
}

/** One corpus object as read at `listedEtag`; reused by later attempts of the same run while unchanged. */
export interface ParsedObject {
  key: string;
  listedEtag: string;
  /** ETag of the bytes actually read. */
  etag: string;
  /** Could not be read (store error): left out of `sources`, so the next event rebuilds. */
  unreadable: boolean;
  /** Deleted between listing and reading. */
  vanished: boolean;
  skips: SkippedInput[];
  docs: ParsedDoc[];
  /** Vectors of the accepted passages, while within the memory budget. */
  vectors?: Map<string, Float32Array>;
}

/**
 * Corpus objects a warm reindex instance already read, chunked and embedded, by key, valid while
 * the listed ETag matches. Bounded by the text and vectors it holds (least recently used goes
 * first); emptied when the chunking, the corpus prefix or the embedder changes.
 */
export interface CorpusReadCache {
  /** Entries kept now, and the passage text and vectors they hold (bytes, approximate). */
  stats(): { objects: number; bytes: number };
}

interface CorpusReadCacheState extends CorpusReadCache {
  setting: string;
  entries: Map<string, { parsed: ParsedObject; bytes: number }>;
  bytes: number;
  maxBytes: number;
}

/** A read cache for `reindexCorpus({ readCache })`, holding up to `maxBytes` (default 256 MiB). */
export function createCorpusReadCache(maxBytes = 256 * 1024 * 1024): CorpusReadCache {
  const state: CorpusReadCacheState = {
    setting: "",
    entries: new Map(),
    bytes: 0,
    maxBytes,
    stats: () => ({ objects: state.entries.size, bytes: state.bytes }),
  };
  return state;
}

function parsedBytes(p: ParsedObject): number {
  let n = 0;
  for (const d of p.docs) for (const q of d.passages) n += 2 * q.text.length + 200; // UTF-16 text + fields
  return n;
}

interface PlannedObject {
  parsed: ParsedObject;
  texts: string[];
  hashes: string[];
}

// ---------- steps shared by the single run and the sharded build (sharded-reindex.ts) ----------

/** The live pointer and manifest (null manifest: unreadable, so the next build replaces it). */
export async function readLiveSnapshot(
  store: ObjectStore,
  indexPrefix: string,
  log: LogFn,
): Promise<LiveSnapshot | null> {
  const state = await readPointer(store, indexPrefix);
  if (!state) return null;
  let manifest: ReindexManifest | null = null;
  try {
    const got = await store.get(state.pointer.manifest_key);
    if (got) manifest = parseManifest(got.body) as ReindexManifest;
  } catch (e) {
    log("warn", "the live snapshot's manifest is unreadable; rebuilding", {
      version: state.pointer.version,
      error: message(e),
    });
  }
  return { etag: state.etag, version: state.pointer.version, manifest };
}

/** Every corpus object in key order; folder markers and the reindex's own outputs are never corpus. */
export async function listCorpusObjects(
  store: ObjectStore,
  corpusPrefix: string,
  ignorePrefixes: readonly string[],
): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(corpusPrefix)) {
    if (o.key.endsWith("/") || ignorePrefixes.some((p) => p !== "" && o.key.startsWith(p))) continue;
    out.push(o);
  }
  out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return out;
}

/** What a build of the corpus depends on besides the corpus itself: a change rebuilds. */
export interface BuildSetting {
  identity: EmbedderIdentity;
  chunking: { max_tokens: number; overlap: number };
  indexType: string;
  indexParams?: Record<string, number>;
  sparseIndex: boolean;
  indexShards: number;
}

/** What a run of `opts` builds with (the embedder's identity known). */
export function buildSettingOf(
  opts: Pick<ReindexOptions, "chunking" | "indexType" | "indexParams" | "sparseIndex" | "indexShards">,
  identity: EmbedderIdentity,
): BuildSetting {
  return {
    identity,
    chunking: { max_tokens: opts.chunking.maxTokens, overlap: opts.chunking.overlap },
    indexType: opts.indexType,
    indexParams: opts.indexParams,
    sparseIndex: opts.sparseIndex !== false,
    indexShards: opts.indexShards ?? 1,
  };
}

/** The live snapshot was built from exactly this listing with these settings. */
export function isUpToDate(live: LiveSnapshot, listing: readonly ObjectInfo[], setting: BuildSetting): boolean {
  const m = live.manifest;
  if (!m) return false;
  return (
    sameSources(
      m.sources,
      listing.map((o) => ({ key: o.key, etag: o.etag })),
    ) &&
    sameIdentity(m.embedder, setting.identity) &&
    m.build?.chunking?.max_tokens === setting.chunking.max_tokens &&
    m.build?.chunking?.overlap === setting.chunking.overlap &&
    (setting.indexType === "auto" || m.index_type === setting.indexType) &&
    sameParams(m.build?.index_params, setting.indexParams) &&
    // A snapshot without the sparse index (or with one nobody asked for) is rebuilt.
    (m.sparse !== undefined) === setting.sparseIndex &&
    manifestIndexShards(m) === effectiveIndexShards(setting.indexShards, m.counts.passages)
  );
}

export interface ObjectReadContext {
  store: ObjectStore;
  corpusPrefix: string;
  chunking: ChunkOptions;
  maxObjectBytes: number;
  log: LogFn;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
}

/** Reads, parses and chunks one corpus object (streamed); a failed read is retried once, then reported. */
export async function readCorpusObject(ctx: ObjectReadContext, info: ObjectInfo): Promise<ParsedObject> {
  const { store, log, maxObjectBytes } = ctx;
  const base = {
    key: info.key,
    listedEtag: info.etag,
    etag: info.etag,
    unreadable: false,
    vanished: false,
    skips: [] as SkippedInput[],
    docs: [] as ParsedDoc[],
  };
  if (corpusFormat(info.key) === null) {
    // parseCorpusObject words the "unsupported file type" report without needing the body.
    await parseCorpusObject(info.key, "", { onSkip: (s) => base.skips.push(s) }).next();
    return base;
  }
  if (info.size > maxObjectBytes) {
    base.skips.push({ key: info.key, reason: `object is ${info.size} bytes; the limit is ${maxObjectBytes}` });
    return base;
  }
  for (let attempt = 1; ; attempt++) {
    const skips: SkippedInput[] = [];
    const docs: ParsedDoc[] = [];
    try {
      const got = await store.getStream(info.key);
      if (!got) return { ...base, vanished: true };
      // Streamed: JSONL is split into lines as bytes arrive, never decoded as one string.
      for await (const doc of parseCorpusObject(info.key, got.body, {
        onSkip: (s) => skips.push(s),
        corpusPrefix: ctx.corpusPrefix,
      })) {
        const passages = chunkDocument(doc, ctx.chunking);
        if (passages.length === 0) {
          skips.push({ key: info.key, reason: `document "${doc.id}" has no indexable text` });
          continue;
        }
        docs.push({ id: doc.id, passages, hashes: passages.map((p) => textSha256(p.text)) });
      }
      return { ...base, etag: got.etag || info.etag, skips, docs };
    } catch (e) {
      if (attempt < 2) {
        log("warn", "reading a corpus object failed; retrying", { key: info.key, error: message(e) });
        await ctx.sleep(100 + ctx.random() * 200);
        continue;
      }
      log("error", "corpus object unreadable; skipped", { key: info.key, error: message(e) });
      return { ...base, unreadable: true, skips: [{ key: info.key, reason: `unreadable: ${message(e)}` }] };
    }
  }
}

/** One corpus object as the assembly needs it (a parsed object, or its record in a shard's output). */
export interface ObjectRecord {
  key: string;
  etag: string;
  unreadable: boolean;
  vanished: boolean;
  skips: SkippedInput[];
  /** hashes: textSha256 of each passage, where the caller looks vectors up by text (the single run). */
  docs: Array<{ id: string; passages: Passage[]; hashes?: string[] }>;
}

/**
 * The snapshot's passages, sources and skip report, assembled object by object in key order: the
 * first object that defines a document id wins, later ones are reported. The single run and the
 * sharded merge both go through this, so both resolve duplicates and order passages the same way.
 */
export class CorpusAssembly {
  readonly passages: Passage[] = [];
  readonly hashes: string[] = [];
  readonly sources: Array<{ key: string; etag: string }> = [];
  readonly skipped: SkippedInput[] = [];
  unreadable = 0;
  private readonly owner = new Map<string, string>();

  /** Adds one object; returns the indexes (into record.docs) of the documents it contributes. */
  add(record: ObjectRecord, log: LogFn): number[] {
    if (record.vanished) {
      log("info", "corpus object deleted while reindexing; its delete event triggers the next run", {
        key: record.key,
      });
      return [];
    }
    if (record.unreadable) this.unreadable++;
    else this.sources.push({ key: record.key, etag: record.etag });
    this.skipped.push(...record.skips);
    const accepted: number[] = [];
    for (const [d, doc] of record.docs.entries()) {
      const first = this.owner.get(doc.id);
      if (first !== undefined) {
        this.skipped.push({ key: record.key, reason: `duplicate id "${doc.id}": already defined in ${first}` });
        continue;
      }
      this.owner.set(doc.id, record.key);
      accepted.push(d);
      this.passages.push(...doc.passages);
      if (doc.hashes) this.hashes.push(...doc.hashes);
    }
    return accepted;
  }

  get documents(): number {
    return this.owner.size;
  }

  /** Most objects failing to read is a store outage, not bad input: publishing would drop them all. */
  checkReadable(listing: readonly ObjectInfo[]): void {
    const readable = listing.filter((o) => corpusFormat(o.key) !== null).length;
    if (this.unreadable > 0 && this.unreadable * 2 > readable) {
      throw new StoreUnavailableError(
        `${this.unreadable} of ${readable} corpus objects could not be read; not publishing a snapshot without them`,
      );
    }
  }
}

export interface PublishBuildInput {
  store: ObjectStore;
  indexPrefix: string;
  built: { manifest: SnapshotManifest; files: Record<string, Uint8Array> };
  build: ReindexBuildInfo;
  /** The pointer ETag the build started from (null: none was published). */
  expectedEtag: string | null;
}

/** Uploads a built snapshot and flips the pointer (throws PreconditionFailedError when it lost a race). */
export async function publishBuild(input: PublishBuildInput): Promise<{ version: string; manifest: ReindexManifest }> {
  const manifest: ReindexManifest = { ...input.built.manifest, build: input.build };
  const pub = await publishSnapshot(input.store, {
    indexPrefix: input.indexPrefix,
    manifest,
    files: input.built.files,
    expectedPointerEtag: input.expectedEtag,
  });
  return { version: pub.version, manifest };
}

/** The "snapshot published" log line, then the first skipped inputs (all are in the manifest's report). */
export function logPublished(log: LogFn, result: ReindexResult, indexPrefix: string): void {
  log("info", "snapshot published", {
    version: result.version,
    previous: result.previousVersion,
    ...result.counts,
    ...result.embedding,
    duration_ms: Math.round(result.durationMs),
  });
  // A broken export can skip millions of lines: the logs name the first ones.
  for (const s of result.skipped.slice(0, MAX_LOGGED_SKIPS)) log("warn", "input skipped", { ...s });
  if (result.skipped.length > MAX_LOGGED_SKIPS) {
    log("warn", "more inputs skipped; all are listed in the manifest report", {
      more: result.skipped.length - MAX_LOGGED_SKIPS,
      manifest: `${indexPrefix}v/${result.version}/manifest.json`,
    });
  }
}

/**
 * Corpus statistics, the index and the passage store of an assembled corpus. `vectorAt(i)` gives
 * passage i's vector (from memory, the embedding cache or a shard's output), asked in passage order.
 */
export async function buildAssembledSnapshot(
  opts: Pick<
    ReindexOptions,
    "corpusStats" | "indexType" | "indexParams" | "sparseIndex" | "indexShards" | "indexBuilder"
  >,
  assembly: CorpusAssembly,
  io: {
    identity: EmbedderIdentity;
    checkDeadline: () => void;
    vectorAt: (passage: number) => Promise<Float32Array | undefined>;
  },
) {
  const { passages } = assembly;
  const stats = opts.corpusStats?.(io.identity) ?? null;
  if (stats) for (const p of passages) stats.add(p.text);
  let cursor = 0;
  return buildSnapshot<BuiltIndex>({
    passages,
    embed: async (texts) => {
      io.checkDeadline();
      const out: Float32Array[] = [];
      for (let j = 0; j < texts.length; j++) {
        const i = cursor + j;
        if (passages[i]?.text !== texts[j]) throw new Error("internal: index build out of step with the passages");
        const v = await io.vectorAt(i);
        if (!v) throw new Error(`internal: no vector for passage ${passages[i].id}`);
        out.push(v);
      }
      cursor += texts.length;
      return out;
    },
    embedBatchSize: 2048,
    embedder: io.identity,
    corpusStats: stats?.finish(),
    indexType: opts.indexType,
    indexParams: opts.indexParams,
    sparse: opts.sparseIndex !== false,
    indexShards: opts.indexShards,
    sources: assembly.sources,
    report: { skipped: assembly.skipped },
    indexBuilder: opts.indexBuilder,
  });
}

/** Housekeeping after a publish: old snapshot versions and cache bundles of removed objects. Never throws. */
export async function tidyAfterPublish(opts: {
  store: ObjectStore;
  indexPrefix: string;
  keepSnapshots: number;
  cache: EmbeddingCache | null;
  listing: readonly ObjectInfo[];
  log: LogFn;
}): Promise<void> {
  const { log } = opts;
  if (opts.keepSnapshots > 0) {
    await pruneSnapshots(opts.store, opts.indexPrefix, opts.keepSnapshots)
      .then((gone) => gone.length && log("info", "old snapshots pruned", { versions: gone }))
      .catch((e) => log("warn", "pruning old snapshots failed", { error: message(e) }));
  }
  if (opts.cache) {
    await opts.cache
      .prune(opts.listing.map((o) => o.key))
      .then((gone) => gone.length && log("info", "cache bundles of removed objects pruned", { count: gone.length }))
      .catch((e) => log("warn", "pruning the embedding cache failed", { error: message(e) }));
  }
}

/** The error and its causes, for logs ("embedder down" is often two levels deep). */
export function causeChain(e: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = e;
  for (let i = 0; cur !== undefined && cur !== null && i < 5; i++) {
    out.push(cur instanceof Error ? `${cur.name}: ${cur.message}` : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return out;
}

export function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------- the run ----------

export async function reindexCorpus(opts: ReindexOptions): Promise<ReindexResult> {
  const { store, corpusPrefix, indexPrefix, chunking } = opts;
  const log: LogFn = opts.log ?? (() => {});
  const clock = opts.clock ?? systemClock;
  const t0 = clock.now();
  const reserveMs = opts.reserveMs ?? 10_000;
  const maxAttempts = Math.max(1, opts.maxAttempts ?? 4);
  const batchSize = Math.max(1, opts.embedBatchSize ?? 128);
  const maxObjectBytes = opts.maxObjectBytes ?? 256 * 1024 * 1024;
  const vectorBudget = opts.vectorMemoryBytes ?? 256 * 1024 * 1024;
  const sleep = opts.sleep ?? defaultSleep;
  const random = opts.random ?? Math.random;
  const ignorePrefixes = [indexPrefix, opts.cachePrefix].filter((p) => p !== corpusPrefix);
  let stage = "starting";

  const checkDeadline = (what: string) => {
    const left = opts.remainingTimeMs?.();
    if (left !== undefined && left < reserveMs) throw new ReindexTimeoutError(what, left);
  };

  // Bad chunking settings are a configuration error, not bad input: fail before touching anything.
  chunkDocument({ id: "probe", text: "probe" }, chunking);

  const embedder = typeof opts.embedder === "function" ? await opts.embedder() : opts.embedder;
  const identity = embedder.identity;
  const usage0: EmbedderUsage = { ...embedder.usage() };
  const cache: EmbeddingCache = createEmbeddingCache({ store, prefix: opts.cachePrefix, identity, log });
  const memo = new Map<string, ParsedObject>();
  const readCache = opts.readCache as CorpusReadCacheState | undefined;
  if (readCache) {
    // Parsed passages depend on the prefix and the chunking, their vectors on the embedder.
    const setting = JSON.stringify([corpusPrefix, chunking, identity]);
    if (readCache.setting !== setting) {
      readCache.entries.clear();
      readCache.bytes = 0;
      readCache.setting = setting;
    }
  }
  /** An object parsed by an earlier run at this ETag, or undefined. */
  const fromReadCache = (info: ObjectInfo): ParsedObject | undefined => {
    const hit = readCache?.entries.get(info.key);
    if (!hit || hit.parsed.listedEtag !== info.etag) return undefined;
    readCache!.entries.delete(info.key); // re-inserted last: most recently used
    readCache!.entries.set(info.key, hit);
    return { ...hit.parsed };
  };
  /** Keeps (or updates) a parsed object in the read cache, with its vectors once it has them. */
  const keepRead = (parsed: ParsedObject) => {
    if (!readCache || parsed.unreadable || parsed.vanished) return;
    const old = readCache.entries.get(parsed.key);
    if (old) {
      readCache.bytes -= old.bytes;
      readCache.entries.delete(parsed.key);
    }
    const bytes = parsedBytes(parsed) + (parsed.vectors?.size ?? 0) * identity.dimensions * 4;
    if (bytes > readCache.maxBytes) return;
    readCache.entries.set(parsed.key, { parsed: { ...parsed }, bytes });
    readCache.bytes += bytes;
    for (const [key, e] of readCache.entries) {
      if (readCache.bytes <= readCache.maxBytes) break;
      readCache.entries.delete(key);
      readCache.bytes -= e.bytes;
    }
  };
  const totals = { embedded: 0, cached: 0 };
  const chunkingInfo = { max_tokens: chunking.maxTokens, overlap: chunking.overlap };

  const embedding = (): ReindexBuildInfo["embedding"] => {
    const u = embedder.usage();
    return {
      embedded: totals.embedded,
      cached: totals.cached,
      calls: u.calls - usage0.calls,
      texts: u.texts - usage0.texts,
      tokens: u.tokens - usage0.tokens,
    };
  };

  const setting = buildSettingOf(opts, identity);
  const readCtx: ObjectReadContext = { store, corpusPrefix, chunking, maxObjectBytes, log, sleep, random };

  async function attempt(n: number): Promise<ReindexResult> {
    stage = "reading the live pointer";
    checkDeadline(stage);
    // Pointer first, listing second: any snapshot published after this read makes our flip fail.
    const live = await readLiveSnapshot(store, indexPrefix, log);
    stage = "listing the corpus";
    const listing = await listCorpusObjects(store, corpusPrefix, ignorePrefixes);
    if (readCache) {
      const listed = new Set(listing.map((o) => o.key));
      for (const [key, e] of readCache.entries) {
        if (listed.has(key)) continue;
        readCache.entries.delete(key);
        readCache.bytes -= e.bytes;
      }
    }
    const base = {
      previousVersion: live?.version ?? null,
      attempts: n,
      counts: { objects: listing.length, documents: 0, passages: 0, skipped: 0 },
      skipped: [] as SkippedInput[],
    };
    if (live && isUpToDate(live, listing, setting)) {
      const status: ReindexStatus = n === 1 ? "unchanged" : "superseded";
      log(
        "info",
        n === 1 ? "snapshot is up to date; nothing to do" : "another run published this corpus state; stopping",
        {
          version: live.version,
          objects: listing.length,
        },
      );
      const m = live.manifest!;
      return {
        ...base,
        status,
        version: live.version,
        counts: {
          objects: listing.length,
          documents: m.counts.documents,
          passages: m.counts.passages,
          skipped: m.report?.skipped.length ?? 0,
        },
        skipped: m.report?.skipped ?? [],
        embedding: embedding(),
        durationMs: clock.now() - t0,
      };
    }
    if (!live && listing.length === 0) {
      log("info", "the corpus is empty and nothing is published; nothing to do", { corpus_prefix: corpusPrefix });
      return { ...base, status: "unchanged", version: null, embedding: embedding(), durationMs: clock.now() - t0 };
    }
    log("info", "reindex started", {
      attempt: n,
      objects: listing.length,
      live_version: live?.version ?? null,
      embedder: `${identity.kind}/${identity.model}`,
    });

    // Phase 1: read, parse, chunk and embed (through the cache) object by object.
    stage = "reading and embedding the corpus";
    const assembly = new CorpusAssembly();
    const { passages } = assembly;
    const passageObject: number[] = [];
    const planned: PlannedObject[] = [];
    let heldBytes = 0;
    let lastProgress = clock.now();
    for (const [i, info] of listing.entries()) {
      checkDeadline(stage);
      let parsed = memo.get(info.key);
      if (!parsed || parsed.listedEtag !== info.etag) {
        parsed = fromReadCache(info);
        if (!parsed) {
          parsed = await readCorpusObject(readCtx, info);
          keepRead(parsed);
        }
        memo.set(info.key, parsed);
      }
      if (parsed.vanished) {
        assembly.add(parsed, log);
        continue;
      }
      const texts: string[] = [];
      const hashes: string[] = [];
      for (const d of assembly.add(parsed, log)) {
        const doc = parsed.docs[d];
        for (const [j, p] of doc.passages.entries()) {
          passageObject.push(planned.length);
          texts.push(p.text);
          hashes.push(doc.hashes[j]);
        }
      }
      if (texts.length > 0) {
        const held = parsed.vectors;
        if (held && hashes.every((h) => held.has(h))) {
          totals.cached += texts.length;
          heldBytes += held.size * identity.dimensions * 4;
        } else {
          const r = await embedThroughCache({
            cache,
            corpusKey: info.key,
            texts,
            hashes,
            embedder,
            batchSize,
            beforeBatch: () => checkDeadline(stage),
            log,
          });
          totals.embedded += r.embedded;
          totals.cached += r.cached;
          const bytes = r.vectors.size * identity.dimensions * 4;
          if (heldBytes + bytes <= vectorBudget) {
            parsed.vectors = r.vectors;
            heldBytes += bytes;
            keepRead(parsed); // a later run then needs neither the object nor its cache bundle
          } else {
            parsed.vectors = undefined; // re-read from the cache while the index is built
          }
          log("debug", "corpus object embedded", {
            key: info.key,
            passages: texts.length,
            embedded: r.embedded,
            cached: r.cached,
          });
        }
      }
      planned.push({ parsed, texts, hashes });
      if (clock.now() - lastProgress >= 5000 || i === listing.length - 1) {
        lastProgress = clock.now();
        log("info", "reindex progress", {
          objects_done: i + 1,
          objects: listing.length,
          passages: passages.length,
          embedded: totals.embedded,
          cached: totals.cached,
        });
      }
    }
    assembly.checkReadable(listing);
    const { skipped } = assembly;

    // Phase 2: corpus statistics and the index (vectors from memory or the cache, in passage order).
    stage = "building the index";
    checkDeadline(stage);
    let reloaded: { object: number; vectors: Map<string, Float32Array> } | null = null;
    const vectorsOf = async (object: number): Promise<Map<string, Float32Array>> => {
      const po = planned[object];
      if (po.parsed.vectors) return po.parsed.vectors;
      if (reloaded?.object !== object) {
        const r = await embedThroughCache({
          cache,
          corpusKey: po.parsed.key,
          texts: po.texts,
          hashes: po.hashes,
          embedder,
          batchSize,
          beforeBatch: () => checkDeadline(stage),
          log,
        });
        // Normally all cached; a bundle deleted meanwhile by a concurrent prune is re-embedded.
        totals.embedded += r.embedded;
        reloaded = { object, vectors: r.vectors };
      }
      return reloaded!.vectors;
    };
    const built = await buildAssembledSnapshot(opts, assembly, {
      identity,
      checkDeadline: () => checkDeadline(stage),
      vectorAt: async (i) => (await vectorsOf(passageObject[i])).get(assembly.hashes[i]),
    });

    stage = "publishing the snapshot";
    checkDeadline(stage);
    const pub = await publishBuild({
      store,
      indexPrefix,
      built,
      expectedEtag: live?.etag ?? null,
      build: {
        builder: "reindex",
        chunking: chunkingInfo,
        ...(opts.indexParams && Object.keys(opts.indexParams).length > 0 ? { index_params: opts.indexParams } : {}),
        objects: listing.length,
        embedding: embedding(),
        duration_ms: Math.round(clock.now() - t0),
        attempt: n,
      },
    });
    const result: ReindexResult = {
      status: "published",
      version: pub.version,
      previousVersion: live?.version ?? null,
      attempts: n,
      counts: {
        objects: listing.length,
        documents: assembly.documents,
        passages: passages.length,
        skipped: skipped.length,
      },
      embedding: embedding(),
      skipped,
      durationMs: clock.now() - t0,
    };
    logPublished(log, result, indexPrefix);

    // Housekeeping never fails a published run.
    stage = "cleaning up";
    await tidyAfterPublish({
      store,
      indexPrefix,
      keepSnapshots: opts.keepSnapshots ?? 3,
      cache: (opts.pruneCache ?? true) ? cache : null,
      listing,
      log,
    });
    return result;
  }

  log("info", "reindex triggered", { trigger: opts.trigger?.slice(0, 20) ?? [], count: opts.trigger?.length ?? 0 });
  try {
    for (let n = 1; ; n++) {
      try {
        return await attempt(n);
      } catch (e) {
        if (!(e instanceof PreconditionFailedError) || stage !== "publishing the snapshot") throw e;
        if (n >= maxAttempts) {
          throw new PreconditionFailedError(
            `the index pointer changed under ${n} consecutive reindex attempts; giving up (the last one: ${e.message})`,
          );
        }
        const delay = (opts.retryDelayMs ?? 250) * 2 ** (n - 1) * (0.5 + random());
        log("warn", "the pointer changed while building (another reindex published); re-checking", {
          attempt: n,
          retry_in_ms: Math.round(delay),
        });
        await sleep(delay);
      }
    }
  } catch (e) {
    log("error", "reindex failed; the previous snapshot stays live", {
      stage,
      error: message(e),
      cause: causeChain(e),
      embedded: totals.embedded,
      cached: totals.cached,
    });
    throw e;
  }
}
