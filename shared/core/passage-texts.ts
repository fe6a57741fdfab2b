// Passage texts read by byte range from the snapshot's passages.bin, so a cold instance serves
// its first query once the index (and the store's small head) is in memory. Pure: the store is
// injected.
//
// - Reads are whole blocks of the text section (manifest `passages.block_bytes`, 64 KiB), each
//   checked against its sha256 in the manifest before use; verified blocks stay in an LRU bounded
//   in bytes (PASSAGE_CACHE_MB).
// - A failed GET is retried once; a block that does not verify, a missing object, or an object
//   that changed since the head was read (ETag) fails only the request that needed it
//   (StoreUnavailableError, 503 with Retry-After), never the snapshot.
// - fill() (PASSAGE_TEXTS=background) downloads the whole text section in large parts, verifying
//   every block, and from then on serves every text from memory; until it is done, reads go by
//   range as above. A failed fill is logged and retried on a later read, after a pause.
import { StoreUnavailableError } from "./errors.ts";
import type { ObjectStore } from "./ports.ts";
import { createSha256, type PassageLayout, type TextRangeReader } from "./snapshot.ts";

export interface TextBlockReaderOptions {
  store: ObjectStore;
  /** Object key of passages.bin. */
  key: string;
  layout: PassageLayout;
  /** ETag of the object the head came from: every block must come from the same object. */
  etag: string;
  /** Snapshot version, for messages. */
  version: string;
  /** Bytes of verified blocks kept for later reads (default 64 MiB; 0 keeps none). */
  cacheBytes?: number;
  /** Part size of fill()'s ranged GETs (default 8 MiB). */
  fillPartBytes?: number;
  /** Zeroed memory for fill()'s copy of the text section. */
  allocate?: (bytes: number) => Uint8Array;
  log?: (level: "info" | "warn", msg: string, data?: Record<string, unknown>) => void;
  now?: () => number;
}

export interface TextBlockReader {
  read: TextRangeReader;
  /**
   * Downloads the whole text section in the background; resolves when it is in memory (or failed).
   * With afterFirstRead the download waits until a read was served (at most maxWaitMs, default 1 s).
   */
  fill(signal?: AbortSignal, when?: { afterFirstRead?: boolean; maxWaitMs?: number }): Promise<void>;
  stats(): {
    texts: "lazy" | "filling" | "memory";
    cached_bytes: number;
    block_reads: number;
    block_hits: number;
    failed_reads: number;
  };
}

/** Retries of a failed fill wait this long. */
const FILL_RETRY_MS = 30_000;

export function createTextBlockReader(opts: TextBlockReaderOptions): TextBlockReader {
  const { store, key, layout } = opts;
  const headBytes = layout.head_bytes;
  const blockBytes = layout.block_bytes;
  const cacheLimit = Math.max(0, opts.cacheBytes ?? 64 * 1024 * 1024);
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => {});
  // Insertion order = recency: a hit is deleted and re-inserted.
  const cache = new Map<number, Uint8Array>();
  const inflight = new Map<number, Promise<Uint8Array>>();
  let cachedBytes = 0;
  let full: Uint8Array | null = null;
  let filling: Promise<void> | null = null;
  let fillFailedAt = -Infinity;
  let blockReads = 0;
  let blockHits = 0;
  let failedReads = 0;
  let fillWanted = false;
  /** A fill deferred until the first read is served (see fill's `afterFirstRead`). */
  let onFirstRead: (() => void) | undefined;
  let fillSignal: AbortSignal | undefined;

  const blockRange = (b: number): [number, number] => {
    const start = b * blockBytes;
    return [start, Math.min(layout.text_bytes, start + blockBytes)];
  };
  const fail = (what: string, why: string, cause?: unknown) =>
    new StoreUnavailableError(
      `snapshot ${opts.version}: passage texts (${what} of passages.bin) could not be read: ${why}; the index keeps serving, retry the request`,
      cause,
    );

  function remember(b: number, bytes: Uint8Array): void {
    if (cacheLimit === 0 || bytes.byteLength > cacheLimit) return;
    cache.set(b, bytes);
    cachedBytes += bytes.byteLength;
    for (const [old, v] of cache) {
      if (cachedBytes <= cacheLimit) break;
      cache.delete(old);
      cachedBytes -= v.byteLength;
    }
  }

  /** Fetches blocks [first, last] in one ranged GET (retried once) and verifies each. */
  async function fetchBlocks(first: number, last: number, signal?: AbortSignal): Promise<Uint8Array[]> {
    const start = blockRange(first)[0];
    const end = blockRange(last)[1];
    const what = `bytes ${headBytes + start}–${headBytes + end - 1}`;
    let got: { body: Uint8Array; etag: string } | null = null;
    for (let attempt = 0; ; attempt++) {
      try {
        got = await store.get(key, { range: [headBytes + start, headBytes + end - 1], signal });
        break;
      } catch (e) {
        if (attempt >= 1 || signal?.aborted) {
          failedReads++;
          throw fail(what, (e as Error)?.message ?? String(e), e);
        }
      }
    }
    blockReads += last - first + 1;
    if (!got) {
      failedReads++;
      throw fail(what, "the object is gone");
    }
    if (got.etag !== opts.etag) {
      failedReads++;
      throw fail(what, "the object changed since the snapshot was loaded");
    }
    if (got.body.byteLength !== end - start) {
      failedReads++;
      throw fail(what, `got ${got.body.byteLength} bytes, expected ${end - start}`);
    }
    const out: Uint8Array[] = [];
    for (let b = first; b <= last; b++) {
      const [s, e] = blockRange(b);
      // A copy: the cache must not pin the whole response buffer.
      const bytes = got.body.slice(s - start, e - start);
      const h = createSha256();
      h.update(bytes);
      if (h.digest() !== layout.blocks[b]) {
        failedReads++;
        throw fail(what, `block ${b} does not match its digest in the manifest`);
      }
      out.push(bytes);
    }
    return out;
  }

  async function blocks(first: number, last: number, signal?: AbortSignal): Promise<Uint8Array[]> {
    const result: Array<Uint8Array | Promise<Uint8Array>> = [];
    // Runs of blocks neither cached nor in flight are fetched with one GET each.
    let runStart = -1;
    const flush = (endBlock: number) => {
      if (runStart < 0) return;
      const a = runStart;
      const p = fetchBlocks(a, endBlock, signal);
      for (let b = a; b <= endBlock; b++) {
        const one = p.then((all) => {
          remember(b, all[b - a]);
          return all[b - a];
        });
        one.catch(() => {});
        inflight.set(b, one);
        void one.finally(() => inflight.delete(b)).catch(() => {});
        result[b - first] = one;
      }
      runStart = -1;
    };
    for (let b = first; b <= last; b++) {
      const hit = cache.get(b);
      if (hit) {
        blockHits++;
        cache.delete(b);
        cache.set(b, hit);
        flush(b - 1);
        result[b - first] = hit;
        continue;
      }
      const pending = inflight.get(b);
      if (pending) {
        flush(b - 1);
        result[b - first] = pending;
        continue;
      }
      if (runStart < 0) runStart = b;
    }
    flush(last);
    return Promise.all(result);
  }

  const read: TextRangeReader = async (start, end, signal) => {
    if (full) return full.subarray(start, end);
    // Only a fill that failed is restarted here (after a pause); a first fill starts from fill().
    if (fillWanted && !filling && fillFailedAt > -Infinity && now() - fillFailedAt >= FILL_RETRY_MS) startFill();
    if (end <= start) return new Uint8Array(0);
    const first = Math.floor(start / blockBytes);
    const last = Math.floor((end - 1) / blockBytes);
    const parts = await blocks(first, last, signal);
    onFirstRead?.();
    if (parts.length === 1) {
      const base = first * blockBytes;
      return parts[0].subarray(start - base, end - base);
    }
    const out = new Uint8Array(end - start);
    let at = 0;
    for (let i = 0; i < parts.length; i++) {
      const [bs, be] = blockRange(first + i);
      const s = Math.max(start, bs) - bs;
      const e = Math.min(end, be) - bs;
      out.set(parts[i].subarray(s, e), at);
      at += e - s;
    }
    return out;
  };

  async function runFill(signal?: AbortSignal): Promise<void> {
    const partBlocks = Math.max(1, Math.floor((opts.fillPartBytes ?? 8 * 1024 * 1024) / blockBytes));
    if (signal?.aborted) {
      fillWanted = false;
      return;
    }
    const buf = opts.allocate ? opts.allocate(layout.text_bytes) : new Uint8Array(layout.text_bytes);
    const total = layout.blocks.length;
    for (let b = 0; b < total; b += partBlocks) {
      if (signal?.aborted) {
        fillWanted = false; // the snapshot was swapped out or the loader closed: never again
        return;
      }
      const last = Math.min(total - 1, b + partBlocks - 1);
      const parts = await fetchBlocks(b, last, signal);
      for (let i = 0; i < parts.length; i++) buf.set(parts[i], blockRange(b + i)[0]);
    }
    full = buf.subarray(0, layout.text_bytes);
    cache.clear();
    cachedBytes = 0;
  }
  function startFill(): void {
    const t0 = now();
    filling = runFill(fillSignal)
      .then(
        () => {
          if (full)
            log("info", "passage texts in memory", { version: opts.version, bytes: layout.text_bytes, ms: now() - t0 });
        },
        (e) => {
          fillFailedAt = now();
          log("warn", "passage text fill failed; texts are read by range until a later retry", {
            version: opts.version,
            error: (e as Error)?.message ?? String(e),
          });
        },
      )
      .finally(() => {
        filling = null;
      });
  }

  return {
    read,
    fill(signal?: AbortSignal, when: { afterFirstRead?: boolean; maxWaitMs?: number } = {}): Promise<void> {
      fillWanted = true;
      fillSignal = signal;
      if (full || filling) return filling ?? Promise.resolve();
      if (!when.afterFirstRead) {
        startFill();
        return filling ?? Promise.resolve();
      }
      // The first query's own reads go first; the download starts when they are served (or after
      // maxWaitMs without a query), so it does not compete with the first answer.
      return new Promise<void>((resolve) => {
        const go = () => {
          clearTimeout(timer);
          onFirstRead = undefined;
          if (!filling && !full) startFill();
          (filling ?? Promise.resolve()).then(resolve);
        };
        const timer = setTimeout(go, when.maxWaitMs ?? 1000);
        timer.unref?.();
        onFirstRead = go;
      });
    },
    stats: () => ({
      texts: full ? "memory" : filling ? "filling" : "lazy",
      cached_bytes: full ? layout.text_bytes : cachedBytes,
      block_reads: blockReads,
      block_hits: blockHits,
      failed_reads: failedReads,
    }),
  };
}
