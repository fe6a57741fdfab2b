// The search function's snapshot source: loads the live snapshot once per warm instance and
// swaps to newer versions in the background. Pure: the store and the index decoder are injected.
//
// - Cold: the first current() reads the pointer and loads the snapshot; concurrent callers share
//   that one load. No pointer → IndexNotReadyError; store unreachable → StoreUnavailableError.
// - Warm: current() answers from memory at once. At most every refreshS seconds it starts a
//   pointer check in the background; a new version is downloaded, verified and built beside the
//   live one, then swapped in with a single assignment. Queries never wait for it.
// - A new version that is missing files, corrupt, or undecodable is rejected and logged; the old
//   one keeps serving, and that version is not tried again for badVersionRetryS seconds.
import {
  IndexNotReadyError,
  isDomainError,
  SnapshotInvalidError,
  StoreUnavailableError,
  ValidationError,
} from "./errors.ts";
import type {
  LoadedSnapshot,
  ObjectStore,
  PassageStore,
  SnapshotManifest,
  SnapshotSource,
  VectorIndex,
} from "./ports.ts";
import { createTextBlockReader } from "./passage-texts.ts";
import { readPointer } from "./publish.ts";
import { ShardedVectorIndex } from "./sharded-index.ts";
import { analyzerFromDescription, openSparseIndex, type SparseIndex } from "./sparse-index.ts";
import {
  createSha256,
  type IndexShard,
  indexShardsOf,
  isSnapshotVersion,
  MANIFEST_FILE,
  openLazyPassageStore,
  openPassageStore,
  PASSAGES_FILE,
  parseManifest,
  type SnapshotPointer,
  shardManifestView,
  snapshotPrefix,
  verifyDigest,
} from "./snapshot.ts";

export type LogFn = (level: "debug" | "info" | "warn" | "error", msg: string, data?: Record<string, unknown>) => void;

/** Receives index.faiss in order while it downloads (e.g. into a temp file faiss reads directly). */
export interface IndexSink {
  /**
   * Optional: where bytes [offset, offset + length) of the file should be downloaded to, so parts
   * land in their final place (write() then sees that same memory). May return undefined.
   */
  target?(offset: number, length: number): Uint8Array | undefined;
  write(chunk: Uint8Array): Promise<void>;
  /** Called after the bytes were verified; builds the index. */
  finish(): Promise<VectorIndex>;
  /** Called when the download or verification failed; must not throw. */
  abort(): Promise<void>;
}

export interface SnapshotFetchOptions {
  /** Files larger than this are fetched as parallel ranged GETs of this size (default 8 MiB). */
  partBytes?: number;
  /** Ranged GETs in flight per snapshot load (default 4). */
  concurrency?: number;
  signal?: AbortSignal;
  /**
   * Zeroed memory for a file held in memory (default `new Uint8Array`). The faiss adapter's
   * allocateSnapshotBytes asks for huge pages: first-touch faults dominate a load on microVMs.
   */
  allocate?: (bytes: number) => Uint8Array;
  /**
   * How passage texts are held (PASSAGE_TEXTS), for snapshots whose manifest has a `passages`
   * layout (older ones are always read whole):
   * - "lazy" (default): serve once the index and the store's head are in; texts are read by range,
   *   verified blocks kept in a cache of passageCacheBytes;
   * - "background": as lazy, and a background download brings all texts into memory after the
   *   first query's reads;
   * - "eager": the whole store before serving, as before.
   */
  passageTexts?: PassageTextsMode;
  /** Bytes of verified text blocks a lazily read store keeps (PASSAGE_CACHE_MB; default 64 MiB). */
  passageCacheBytes?: number;
  log?: LogFn;
}

export type PassageTextsMode = "lazy" | "background" | "eager";

export interface SnapshotLoaderOptions extends SnapshotFetchOptions {
  store: ObjectStore;
  indexPrefix: string;
  /** Minimum seconds between pointer checks of a warm instance (0 = on every call, still in the background). */
  refreshS: number;
  /** Builds the index from the verified bytes of index.faiss. */
  decodeIndex: (bytes: Uint8Array, manifest: SnapshotManifest) => VectorIndex;
  /**
   * Optional streaming alternative to decodeIndex: the loader never holds index.faiss in memory,
   * so peak memory stays close to the index itself.
   */
  openIndexSink?: (manifest: SnapshotManifest) => Promise<IndexSink>;
  /**
   * SEARCH_SHARDS=lambda|http: the dense index is not downloaded; this builds the index that fans
   * queries out to shard functions (shared/core/sharded-index.ts createFanoutIndex), after asking
   * them to load the version. A SnapshotInvalidError rejects the version like a corrupt file.
   */
  openRemoteIndex?: (manifest: SnapshotManifest, signal?: AbortSignal) => Promise<VectorIndex>;
  /**
   * Called once a version's manifest is read and valid, before its files download: the search
   * service starts the query embedder's model load here, so it overlaps the index download instead
   * of following it. Must not throw (a throw is logged and ignored).
   */
  onManifest?: (manifest: SnapshotManifest) => void;
  log?: LogFn;
  /** Wall clock in ms (tests inject their own). */
  now?: () => number;
  /** A rejected version is not retried before this many seconds (default 300). */
  badVersionRetryS?: number;
  /** After a failed cold load, callers get the same error for this long before a new attempt (default 1). */
  coldRetryS?: number;
}

export interface SnapshotLoader extends SnapshotSource {
  /** Checks the pointer now and loads a new version; true when a new version went live. */
  refresh(): Promise<boolean>;
  /** Drops the snapshot and cancels a load in progress. */
  close(): void;
}

interface LoadStats {
  bytes: number;
  ms: number;
}

/** Runs async jobs with at most `limit` at a time. */
function limiter(limit: number) {
  let active = 0;
  const queue: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((r) => queue.push(r));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

interface PartTarget {
  /** Where part bytes [offset, offset + length) may be read into (a store may ignore it). */
  bufferFor(offset: number, length: number, slot: number): Uint8Array | undefined;
  /** Receives each part in order, after it was hashed; the part's buffer is reused afterwards. */
  onChunk(chunk: Uint8Array, offset: number): Promise<void> | void;
}

/**
 * Fetches one snapshot file and feeds it to the target in order, verifying size and sha256 against
 * the manifest. Large files come as parallel ranged GETs; a window of `concurrency` parts (each in
 * its own reusable buffer slot) bounds the bytes held at once.
 */
async function fetchVerified(
  store: ObjectStore,
  key: string,
  name: string,
  manifest: SnapshotManifest,
  target: PartTarget,
  opts: Required<Pick<SnapshotFetchOptions, "partBytes" | "concurrency">> & {
    signal?: AbortSignal;
    run: ReturnType<typeof limiter>;
    /** The entry describes the first `bytes` bytes of a longer object (the passage store's head). */
    prefix?: boolean;
    /** Receives the object's ETag (the same for every part). */
    onEtag?: (etag: string) => void;
  },
): Promise<void> {
  const entry = manifest.files[name];
  const size = entry.bytes;
  const hash = createSha256();
  const missing = () => new SnapshotInvalidError(`snapshot ${manifest.version}: ${name} is missing (${key})`);
  if (size <= opts.partBytes) {
    const range: [number, number] | undefined = opts.prefix ? [0, size - 1] : undefined;
    const got = await opts.run(() => store.get(key, { signal: opts.signal, range }));
    if (!got) throw missing();
    hash.update(got.body);
    verifyDigest(name, got.body.byteLength, hash.digest(), manifest);
    opts.onEtag?.(got.etag);
    await target.onChunk(got.body, 0);
    return;
  }
  const parts = Math.ceil(size / opts.partBytes);
  const pending: Array<Promise<{ body: Uint8Array; etag: string } | null> | undefined> = new Array(parts);
  let launched = 0;
  let etag: string | undefined;
  const launch = (i: number) => {
    const start = i * opts.partBytes;
    // The last part asks for one byte more than the manifest says: a longer object shows up here.
    const end = i === parts - 1 && !opts.prefix ? size : Math.min(size, start + opts.partBytes) - 1;
    const into = target.bufferFor(start, end - start + 1, i % opts.concurrency);
    const p = opts.run(() => store.get(key, { range: [start, end], signal: opts.signal, into }));
    p.catch(() => {}); // awaited in order below; this only silences early rejections
    pending[i] = p;
  };
  try {
    for (let i = 0; i < parts; i++) {
      // Part i+concurrency-1 reuses the slot of part i-1, which was fully consumed last iteration.
      while (launched < parts && launched < i + opts.concurrency) launch(launched++);
      const got = await pending[i]!;
      pending[i] = undefined;
      if (!got) throw missing();
      // Parts of two different uploads must never be stitched together.
      if (etag !== undefined && got.etag !== etag) {
        throw new SnapshotInvalidError(`snapshot ${manifest.version}: ${name} changed while it was downloaded`);
      }
      etag = got.etag;
      const expected = Math.min(size, (i + 1) * opts.partBytes) - i * opts.partBytes;
      if (got.body.byteLength !== expected) {
        const what = got.body.byteLength > expected ? "more" : "fewer";
        throw new SnapshotInvalidError(
          `snapshot ${manifest.version}: ${name} has ${what} bytes than the manifest's ${size} (part ${i} returned ${got.body.byteLength} of ${expected})`,
        );
      }
      hash.update(got.body);
      await target.onChunk(got.body, i * opts.partBytes);
    }
  } finally {
    // On failure, let the parts still in flight finish quietly.
    for (const p of pending) p?.catch(() => {});
  }
  verifyDigest(name, size, hash.digest(), manifest);
  if (etag !== undefined) opts.onEtag?.(etag);
}

type FetchParts = Required<Pick<SnapshotFetchOptions, "partBytes" | "concurrency">> & {
  signal?: AbortSignal;
  run: ReturnType<typeof limiter>;
};

/** One snapshot file fetched whole into memory, verified (parts land in place in one buffer). */
async function fetchWhole(
  store: ObjectStore,
  prefix: string,
  name: string,
  manifest: SnapshotManifest,
  allocate: ((bytes: number) => Uint8Array) | undefined,
  fetchOpts: FetchParts,
): Promise<Uint8Array> {
  const entry = manifest.files[name];
  // One extra byte for the last part's "is the object longer?" probe.
  const whole = allocate ? allocate(entry.bytes + 1) : new Uint8Array(entry.bytes + 1);
  let small: Uint8Array | undefined;
  await fetchVerified(
    store,
    prefix + entry.key,
    name,
    manifest,
    {
      bufferFor: (offset, length) => whole.subarray(offset, offset + length),
      onChunk: (chunk, offset) => {
        if (entry.bytes <= fetchOpts.partBytes) small = chunk;
        else if (chunk.buffer !== whole.buffer || chunk.byteOffset !== offset) whole.set(chunk, offset);
      },
    },
    fetchOpts,
  );
  return small ?? whole.subarray(0, entry.bytes);
}

/**
 * Fetches one dense index file (index.faiss or a shard's index-<i>.faiss), verified against the
 * manifest, and decodes it: streamed into the sink when there is one, else whole in memory. The
 * decoder and sink see the shard's view of the manifest (shardManifestView), so the ones written
 * for index.faiss size and check a shard from its own entry and count.
 */
async function fetchIndexFile(
  store: ObjectStore,
  prefix: string,
  manifest: SnapshotManifest,
  shard: IndexShard,
  opts: Pick<SnapshotLoaderOptions, "decodeIndex" | "openIndexSink" | "allocate">,
  fetchOpts: FetchParts,
): Promise<VectorIndex> {
  const name = shard.file;
  const view = shardManifestView(manifest, shard);
  const entry = manifest.files[name];
  const undecodable = (e: unknown) =>
    new SnapshotInvalidError(`snapshot ${manifest.version}: ${name} does not decode: ${(e as Error).message}`, e);
  let index: VectorIndex;
  if (!opts.openIndexSink) {
    const bytes = await fetchWhole(store, prefix, name, manifest, opts.allocate, fetchOpts);
    try {
      index = opts.decodeIndex(bytes, view);
    } catch (e) {
      throw undecodable(e);
    }
  } else {
    const sink = await opts.openIndexSink(view);
    // A few reusable part buffers: the index streams through them into the sink.
    const slots: Uint8Array[] = [];
    try {
      await fetchVerified(
        store,
        prefix + entry.key,
        name,
        manifest,
        {
          bufferFor: (offset, length, slot) => {
            const direct = sink.target?.(offset, length);
            if (direct) return direct;
            if (!slots[slot] || slots[slot].byteLength < length) slots[slot] = new Uint8Array(fetchOpts.partBytes + 1);
            return slots[slot].byteLength >= length ? slots[slot] : undefined;
          },
          onChunk: (chunk) => sink.write(chunk),
        },
        fetchOpts,
      );
    } catch (e) {
      await sink.abort();
      throw e;
    }
    slots.length = 0;
    try {
      index = await sink.finish();
    } catch (e) {
      throw undecodable(e);
    }
  }
  if (manifest.index_shards && index.count !== shard.count) {
    throw new SnapshotInvalidError(
      `snapshot ${manifest.version}: ${name} holds ${index.count} vectors, the manifest says ${shard.count}`,
    );
  }
  return index;
}

/** One index shard of a version, verified and decoded (the shard function's load). */
export interface LoadedIndexShard {
  version: string;
  manifest: SnapshotManifest;
  shard: number;
  range: IndexShard;
  index: VectorIndex;
}

/**
 * Loads shard `shard` of snapshot `version` (an unsharded snapshot has one shard, 0: its
 * index.faiss): manifest → that one file, checked against its manifest entry → decoded. Throws
 * SnapshotInvalidError for a missing or bad version or shard, StoreUnavailableError when the
 * store cannot be read.
 */
export async function loadIndexShard(
  store: ObjectStore,
  indexPrefix: string,
  version: string,
  shard: number,
  opts: Pick<SnapshotFetchOptions, "partBytes" | "concurrency" | "signal" | "allocate"> &
    Pick<SnapshotLoaderOptions, "decodeIndex" | "openIndexSink">,
): Promise<LoadedIndexShard> {
  if (!isSnapshotVersion(version)) throw new ValidationError(`"${version}" is not a snapshot version`);
  try {
    const prefix = snapshotPrefix(indexPrefix, version);
    const manifestObj = await store.get(prefix + MANIFEST_FILE, { signal: opts.signal });
    if (!manifestObj) throw new SnapshotInvalidError(`snapshot ${version} has no manifest (${prefix}${MANIFEST_FILE})`);
    const manifest = parseManifest(manifestObj.body);
    if (manifest.version !== version)
      throw new SnapshotInvalidError(`snapshot ${version}: its manifest says version ${manifest.version}`);
    const shards = indexShardsOf(manifest);
    if (!Number.isInteger(shard) || shard < 0 || shard >= shards.length)
      throw new ValidationError(`snapshot ${version} has ${shards.length} index shard(s); there is no shard ${shard}`);
    const fetchOpts: FetchParts = {
      partBytes: Math.max(1, opts.partBytes ?? 8 * 1024 * 1024),
      concurrency: Math.max(1, opts.concurrency ?? 4),
      signal: opts.signal,
      run: limiter(Math.max(1, opts.concurrency ?? 4)),
    };
    const index = await fetchIndexFile(store, prefix, manifest, shards[shard], opts, fetchOpts);
    if (index.dimensions !== manifest.embedder.dimensions) {
      throw new SnapshotInvalidError(
        `snapshot ${version}: ${shards[shard].file} has ${index.dimensions} dimensions, the embedder ${manifest.embedder.dimensions}`,
      );
    }
    return { version, manifest, shard, range: shards[shard], index };
  } catch (e) {
    throw toDomain(e);
  }
}

/** Loads and verifies the snapshot a pointer names. Throws SnapshotInvalidError / StoreUnavailableError. */
export async function loadSnapshot(
  store: ObjectStore,
  indexPrefix: string,
  pointer: SnapshotPointer,
  opts: SnapshotFetchOptions &
    Pick<SnapshotLoaderOptions, "decodeIndex" | "openIndexSink" | "openRemoteIndex" | "onManifest" | "now">,
): Promise<LoadedSnapshot & { stats: LoadStats; afterLive?: (signal: AbortSignal) => void }> {
  const now = opts.now ?? Date.now;
  const t0 = now();
  const manifestObj = await store.get(pointer.manifest_key, { signal: opts.signal });
  if (!manifestObj)
    throw new SnapshotInvalidError(`snapshot ${pointer.version}: manifest ${pointer.manifest_key} is missing`);
  const manifest = parseManifest(manifestObj.body);
  if (manifest.version !== pointer.version) {
    throw new SnapshotInvalidError(`pointer names ${pointer.version} but its manifest says ${manifest.version}`);
  }
  try {
    opts.onManifest?.(manifest);
  } catch (e) {
    opts.log?.("warn", "onManifest hook failed", { error: (e as Error).message });
  }
  const prefix = snapshotPrefix(indexPrefix, manifest.version);
  const run = limiter(Math.max(1, opts.concurrency ?? 4));
  const fetchOpts = {
    partBytes: Math.max(1, opts.partBytes ?? 8 * 1024 * 1024),
    concurrency: Math.max(1, opts.concurrency ?? 4),
    signal: opts.signal,
    run,
  };

  const fetchToMemory = (name: string): Promise<Uint8Array> =>
    fetchWhole(store, prefix, name, manifest, opts.allocate, fetchOpts);

  const fetchIndex = async (): Promise<VectorIndex> => {
    if (opts.openRemoteIndex) {
      try {
        return await opts.openRemoteIndex(manifest, opts.signal);
      } catch (e) {
        if (isDomainError(e)) throw e;
        throw new SnapshotInvalidError(
          `snapshot ${manifest.version}: its index shards could not be reached: ${(e as Error).message}`,
          e,
        );
      }
    }
    const shards = indexShardsOf(manifest);
    // An unsharded snapshot: index.faiss, exactly as before shards existed.
    if (!manifest.index_shards) return fetchIndexFile(store, prefix, manifest, shards[0], opts, fetchOpts);
    const loaded = await Promise.all(
      shards.map((shard) => fetchIndexFile(store, prefix, manifest, shard, opts, fetchOpts)),
    );
    return new ShardedVectorIndex(loaded.map((index, i) => ({ index, offset: shards[i].offset })));
  };

  const openSparse = async (): Promise<SparseIndex | null> => {
    const info = manifest.sparse;
    if (!info) return null;
    const bytes = await fetchToMemory(info.file);
    try {
      const sparse = openSparseIndex(bytes, { params: info.params, analyzer: analyzerFromDescription(info.analyzer) });
      if (sparse.count !== manifest.counts.passages) {
        throw new Error(`it indexes ${sparse.count} passages, the manifest says ${manifest.counts.passages}`);
      }
      return sparse;
    } catch (e) {
      throw new SnapshotInvalidError(
        `snapshot ${manifest.version}: ${info.file} does not open: ${(e as Error).message}`,
        e,
      );
    }
  };

  const textsMode = opts.passageTexts ?? "lazy";
  let afterLive: ((signal: AbortSignal) => void) | undefined;
  const openPassages = async (): Promise<PassageStore> => {
    const layout = manifest.passages;
    if (!layout || textsMode === "eager") return openPassageStore(await fetchToMemory(PASSAGES_FILE));
    // Only the head (offset tables and passage info) before serving, in parallel parts like any
    // file, verified against its own digest; texts by range later.
    const key = prefix + manifest.files[PASSAGES_FILE].key;
    const headName = `${PASSAGES_FILE} (head)`;
    const headManifest = {
      ...manifest,
      files: { ...manifest.files, [headName]: { key, bytes: layout.head_bytes, sha256: layout.head_sha256 } },
    };
    const headBytes = opts.allocate ? opts.allocate(layout.head_bytes) : new Uint8Array(layout.head_bytes);
    let etag: string | undefined;
    await fetchVerified(
      store,
      key,
      headName,
      headManifest,
      {
        bufferFor: (offset, length) => headBytes.subarray(offset, offset + length),
        onChunk: (chunk, offset) => {
          if (chunk.buffer !== headBytes.buffer || chunk.byteOffset !== headBytes.byteOffset + offset)
            headBytes.set(chunk, offset);
        },
      },
      { ...fetchOpts, prefix: true, onEtag: (e: string) => (etag = e) },
    );
    const reader = createTextBlockReader({
      store,
      key,
      layout,
      etag: etag ?? "",
      version: manifest.version,
      cacheBytes: opts.passageCacheBytes,
      allocate: opts.allocate,
      log: opts.log,
      now: opts.now,
    });
    // After the first query's texts were read, so the download does not slow the first answer.
    if (textsMode === "background") afterLive = (signal) => void reader.fill(signal, { afterFirstRead: true });
    return openLazyPassageStore(headBytes, layout, reader.read, reader.stats);
  };

  const [index, passages, sparse] = await Promise.all([fetchIndex(), openPassages(), openSparse()]);
  if (index.count !== manifest.counts.passages || passages.count !== manifest.counts.passages) {
    throw new SnapshotInvalidError(
      `snapshot ${manifest.version}: index has ${index.count} vectors, passage store ${passages.count}, manifest says ${manifest.counts.passages}`,
    );
  }
  if (index.dimensions !== manifest.embedder.dimensions) {
    throw new SnapshotInvalidError(
      `snapshot ${manifest.version}: index has ${index.dimensions} dimensions, the embedder ${manifest.embedder.dimensions}`,
    );
  }
  // Bytes fetched before serving: a lazily read store leaves its texts in the store.
  const lazyTexts = manifest.passages && textsMode !== "eager" ? manifest.passages.text_bytes : 0;
  // A fan-out index leaves the shard files to the shard functions.
  const remoteIndex = opts.openRemoteIndex
    ? indexShardsOf(manifest).reduce((a, s) => a + manifest.files[s.file].bytes, 0)
    : 0;
  const bytes =
    Object.values(manifest.files).reduce((a, f) => a + f.bytes, 0) +
    manifestObj.body.byteLength -
    lazyTexts -
    remoteIndex;
  const loadedAt = now();
  return {
    version: manifest.version,
    manifest,
    index,
    passages,
    sparse,
    loadedAt,
    stats: { bytes, ms: loadedAt - t0 },
    afterLive,
  };
}

function toDomain(e: unknown): Error {
  if (isDomainError(e)) return e;
  return new StoreUnavailableError(`loading the snapshot failed: ${(e as Error)?.message ?? String(e)}`, e);
}

export function createSnapshotLoader(opts: SnapshotLoaderOptions): SnapshotLoader {
  const now = opts.now ?? Date.now;
  const log: LogFn = opts.log ?? (() => {});
  const refreshMs = Math.max(0, opts.refreshS) * 1000;
  const badRetryMs = (opts.badVersionRetryS ?? 300) * 1000;
  const coldRetryMs = (opts.coldRetryS ?? 1) * 1000;

  let live: LoadedSnapshot | null = null;
  let liveLoadMs: number | undefined;
  let liveFill: AbortController | undefined;
  let lastCheck = 0;
  let lastError: string | undefined;
  let inflight: Promise<boolean> | null = null;
  let coldFailure: { error: Error; at: number } | null = null;
  const rejected = new Map<string, number>(); // version → when it was rejected
  let controller = new AbortController();
  let closed = false;

  /** One pointer check (+ load when it names a new version). Returns whether a new version went live. */
  async function check(): Promise<boolean> {
    lastCheck = now();
    const started = now();
    const signal = controller.signal;
    const state = await readPointer(opts.store, opts.indexPrefix, signal);
    if (!state) {
      if (!live) throw new IndexNotReadyError();
      // The pointer vanished while we serve a snapshot: keep serving it.
      log("warn", "snapshot pointer is missing; keeping the loaded version", { version: live.version });
      return false;
    }
    const { pointer } = state;
    if (live && pointer.version === live.version) {
      lastError = undefined;
      return false;
    }
    const badAt = rejected.get(pointer.version);
    if (badAt !== undefined && now() - badAt < badRetryMs) {
      if (!live) throw new SnapshotInvalidError(`snapshot ${pointer.version} was rejected: ${lastError ?? "invalid"}`);
      return false;
    }
    try {
      const loaded = await loadSnapshot(opts.store, opts.indexPrefix, pointer, {
        decodeIndex: opts.decodeIndex,
        openIndexSink: opts.openIndexSink,
        openRemoteIndex: opts.openRemoteIndex,
        onManifest: opts.onManifest,
        partBytes: opts.partBytes,
        concurrency: opts.concurrency,
        allocate: opts.allocate,
        passageTexts: opts.passageTexts,
        passageCacheBytes: opts.passageCacheBytes,
        log,
        signal,
        now,
      });
      if (closed) return false;
      const { stats, afterLive, ...snapshot } = loaded;
      const previous = live?.version ?? null;
      live = snapshot;
      liveLoadMs = Math.round(now() - started);
      // The background text download belongs to this version: a swap or close() stops it.
      liveFill?.abort();
      liveFill = new AbortController();
      const fillSignal = AbortSignal.any([signal, liveFill.signal]);
      afterLive?.(fillSignal);
      rejected.delete(pointer.version);
      lastError = undefined;
      log("info", previous ? "snapshot swapped" : "snapshot loaded", {
        version: snapshot.version,
        previous,
        passages: snapshot.passages.count,
        bytes: stats.bytes,
        load_ms: Math.round(stats.ms),
        mb_per_s: stats.ms > 0 ? Math.round(stats.bytes / 1e3 / stats.ms) : null,
      });
      return true;
    } catch (e) {
      const err = toDomain(e);
      if (err instanceof SnapshotInvalidError) {
        rejected.set(pointer.version, now());
        log("error", "snapshot rejected", {
          version: pointer.version,
          keeping: live?.version ?? null,
          error: err.message,
        });
      }
      throw err;
    }
  }

  function startCheck(): Promise<boolean> {
    if (!inflight) {
      inflight = check().finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  function backgroundCheck(): void {
    startCheck().catch((e) => {
      lastError = (e as Error).message;
      // A warm instance keeps serving through store outages and bad versions.
      if (!(e instanceof SnapshotInvalidError)) {
        log("warn", "snapshot refresh failed; keeping the loaded version", {
          version: live?.version ?? null,
          error: lastError,
        });
      }
    });
  }

  return {
    async current(): Promise<LoadedSnapshot> {
      if (closed) throw new IndexNotReadyError("the snapshot loader was closed");
      if (live) {
        if (!inflight && now() - lastCheck >= refreshMs) backgroundCheck();
        return live;
      }
      if (coldFailure && !inflight && now() - coldFailure.at < coldRetryMs) throw coldFailure.error;
      try {
        await startCheck();
      } catch (e) {
        const err = toDomain(e);
        lastError = err.message;
        coldFailure = { error: err, at: now() };
        if (!live) throw err;
      }
      if (!live) throw new IndexNotReadyError();
      coldFailure = null;
      return live;
    },

    status() {
      return {
        version: live?.version ?? null,
        count: live?.passages.count ?? 0,
        ageS: live ? Math.max(0, (now() - live.loadedAt) / 1000) : null,
        cold: live === null,
        ...(lastError ? { lastError } : {}),
        ...(live && liveLoadMs !== undefined ? { loadMs: liveLoadMs } : {}),
      };
    },

    async refresh(): Promise<boolean> {
      if (closed) return false;
      try {
        return await startCheck();
      } catch (e) {
        lastError = (e as Error).message;
        if (live) return false;
        throw toDomain(e);
      }
    },

    close(): void {
      closed = true;
      controller.abort();
      controller = new AbortController();
      live = null;
    },
  };
}
