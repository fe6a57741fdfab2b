// Per-key usage metering: counters add up in memory and are flushed to the object store as one JSON
// object per key per UTC day (`<prefix><keyId>/<YYYY-MM-DD>.json`).
//
// Many instances write the same day object, so a flush is a read-modify-write guarded by the store's
// compare-and-swap (ifMatch on the ETag read, ifNoneMatch "*" when creating), retried with jittered backoff
// when another writer wins. Each instance is a writer with a random id and numbers its flushes; the day
// object remembers the last flush number applied per writer, so a flush retried after an ambiguous failure
// (the write landed but the response was lost) is not counted twice. Counts that cannot be written stay
// in memory for the next flush. What a crashed instance had not flushed yet is lost: at most
// USAGE_FLUSH_S seconds of its traffic.
import { PreconditionFailedError, ValidationError } from "./errors.ts";
import type { ObjectStore } from "./ports.ts";
import { isKeyId } from "./api-keys.ts";

export const USAGE_COUNTERS = [
  "requests",
  "queries",
  "rerank_pairs",
  "embedding_tokens",
  "degraded",
  "errors",
] as const;
export type UsageCounter = (typeof USAGE_COUNTERS)[number];
export type UsageCounts = Record<UsageCounter, number>;

/** Per-stage latency of one request, measured by the core and emitted by the observability adapter. */
export interface StageTimings {
  embed_ms?: number;
  search_ms?: number;
  sparse_ms?: number;
  texts_ms?: number;
  rerank_ms?: number;
  total_ms?: number;
}

/** What one request consumed; the search/rerank routes fill it in, metering and metrics read it. */
export interface RequestObservation {
  /** Billable search queries answered (1 for a search). */
  queries?: number;
  /** (query, document) pairs scored by the cross-encoder. */
  rerankPairs?: number;
  /** Tokens the embedding provider processed for this request. */
  embeddingTokens?: number;
  /** First-stage results returned because reranking failed or ran out of time. */
  degraded?: boolean;
  /** Embedding-cache hits. */
  cacheHits?: number;
  /** Reranker score-cache hits: documents whose score came from the cache (RERANKER_CACHE_MB). */
  rerankCacheHits?: number;
  /** Reranker score-cache misses: documents the model scored with the cache consulted. */
  rerankCacheMisses?: number;
  /** Fan-out search: index shards that did not answer (their passages are missing). */
  shardsMissing?: number;
  timings?: StageTimings;
}

export function zeroCounts(): UsageCounts {
  return { requests: 0, queries: 0, rerank_pairs: 0, embedding_tokens: 0, degraded: 0, errors: 0 };
}

function addInto(target: UsageCounts, delta: Partial<UsageCounts>): UsageCounts {
  for (const c of USAGE_COUNTERS) {
    const v = delta[c];
    if (typeof v === "number" && Number.isFinite(v) && v > 0) target[c] += v;
  }
  return target;
}

/**
 * Counters for one authenticated request. Every request counts in `requests`; consumption (queries,
 * pairs, tokens, degraded) counts only when the answer was a success, so failed calls are never billed.
 */
export function countsFor(obs: RequestObservation | undefined, status: number): Partial<UsageCounts> {
  const counts: Partial<UsageCounts> = { requests: 1 };
  if (status >= 500) counts.errors = 1;
  if (status >= 400 || !obs) return counts;
  if (obs.queries) counts.queries = obs.queries;
  if (obs.rerankPairs) counts.rerank_pairs = obs.rerankPairs;
  if (obs.embeddingTokens) counts.embedding_tokens = obs.embeddingTokens;
  if (obs.degraded) counts.degraded = 1;
  return counts;
}

export function utcDay(wallMs: number): string {
  return new Date(wallMs).toISOString().slice(0, 10);
}

export function usageObjectKey(prefix: string, keyId: string, day: string): string {
  return `${prefix}${keyId}/${day}.json`;
}

interface UsageDayDoc {
  key_id: string;
  date: string;
  counts: UsageCounts;
  /** writer id → number of the last flush from that writer included in `counts`. */
  writers: Record<string, number>;
  updated_at: string;
}

function parseDayDoc(body: Uint8Array, key: string): UsageDayDoc {
  let json: Partial<UsageDayDoc>;
  try {
    json = JSON.parse(new TextDecoder().decode(body));
  } catch (e) {
    throw new Error(`usage object ${key} is not valid JSON`, { cause: e });
  }
  if (!json || typeof json !== "object" || typeof json.counts !== "object" || typeof json.writers !== "object") {
    throw new Error(`usage object ${key} has an unexpected shape`);
  }
  return {
    key_id: String(json.key_id),
    date: String(json.date),
    counts: addInto(zeroCounts(), json.counts ?? {}),
    writers: { ...json.writers },
    updated_at: String(json.updated_at),
  };
}

export interface FlushResult {
  /** Day objects written. */
  written: number;
  /** Day objects that could not be written; their counts stay queued. */
  failed: number;
  /** Conditional writes that lost a race and were retried. */
  conflicts: number;
  errors: string[];
}

export interface UsageMeterOptions {
  store: ObjectStore;
  /** USAGE_PREFIX, ending in "/". */
  prefix: string;
  /** Unique per instance (random); identifies this writer's flushes in the day objects. */
  writerId: string;
  /** Wall-clock ms (days are UTC calendar days). */
  now?: () => number;
  /** maybeFlush() writes when this long has passed since the last flush (USAGE_FLUSH_S × 1000). */
  flushIntervalMs: number;
  /** Conditional-write attempts per day object and flush. */
  maxAttempts?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface UsageMeter {
  record(keyId: string, counts: Partial<UsageCounts>): void;
  /** Writes everything recorded so far; concurrent calls are serialised and each covers what preceded it. */
  flush(): Promise<FlushResult>;
  /** flush() when the interval has passed and something is pending; otherwise null. */
  maybeFlush(): Promise<FlushResult | null>;
  /** Counts recorded for a key but not yet written. */
  unflushed(keyId: string): UsageCounts;
}

interface QueuedEntry {
  seq: number;
  counts: UsageCounts;
  /** A write carrying this entry was sent; if it failed ambiguously the entry must not be merged. */
  attempted: boolean;
}

interface DocQueue {
  keyId: string;
  day: string;
  entries: QueuedEntry[];
}

export function createUsageMeter(opts: UsageMeterOptions): UsageMeter {
  const now = opts.now ?? Date.now;
  const maxAttempts = opts.maxAttempts ?? 8;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = opts.random ?? Math.random;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(opts.writerId))
    throw new ValidationError("writerId must be 1-64 URL-safe characters");

  let current = new Map<string, { keyId: string; day: string; counts: UsageCounts }>();
  const queued = new Map<string, DocQueue>();
  let seq = 0;
  let lastFlushAt = now();
  let chain: Promise<unknown> = Promise.resolve();

  function seal() {
    if (current.size === 0) return;
    seq += 1;
    for (const [objectKey, c] of current) {
      let q = queued.get(objectKey);
      if (!q) queued.set(objectKey, (q = { keyId: c.keyId, day: c.day, entries: [] }));
      const last = q.entries.at(-1);
      // Entries never sent can be merged (keeps memory bounded while the store is down).
      if (last && !last.attempted) {
        addInto(last.counts, c.counts);
        last.seq = seq;
      } else {
        q.entries.push({ seq, counts: c.counts, attempted: false });
      }
    }
    current = new Map();
  }

  async function writeDoc(objectKey: string, q: DocQueue, result: FlushResult): Promise<void> {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const got = await opts.store.get(objectKey);
      const doc: UsageDayDoc = got
        ? parseDayDoc(got.body, objectKey)
        : { key_id: q.keyId, date: q.day, counts: zeroCounts(), writers: {}, updated_at: "" };
      const applied = doc.writers[opts.writerId] ?? 0;
      const pending = q.entries.filter((e) => e.seq > applied);
      if (pending.length === 0) {
        q.entries = [];
        return;
      }
      const maxSeq = Math.max(...pending.map((e) => e.seq));
      for (const e of pending) addInto(doc.counts, e.counts);
      doc.writers[opts.writerId] = maxSeq;
      doc.updated_at = new Date(now()).toISOString();
      for (const e of pending) e.attempted = true;
      try {
        await opts.store.put(objectKey, JSON.stringify(doc), {
          contentType: "application/json",
          ...(got ? { ifMatch: got.etag } : { ifNoneMatch: "*" as const }),
        });
        q.entries = q.entries.filter((e) => e.seq > maxSeq);
        result.written += 1;
        return;
      } catch (e) {
        if (!(e instanceof PreconditionFailedError)) throw e;
        result.conflicts += 1;
        // Lost the race: another writer updated the object. Re-read after a jittered backoff.
        await sleep(Math.min(1000, 10 * 2 ** attempt) * (0.5 + random()));
      }
    }
    throw new Error(`usage object ${objectKey}: still conflicting after ${maxAttempts} attempts`);
  }

  async function doFlush(): Promise<FlushResult> {
    seal();
    lastFlushAt = now();
    const result: FlushResult = { written: 0, failed: 0, conflicts: 0, errors: [] };
    const work = [...queued.entries()];
    // A few day objects at a time: bounded concurrency against the store.
    const workers = Array.from({ length: Math.min(4, work.length) }, async () => {
      for (let item = work.shift(); item; item = work.shift()) {
        const [objectKey, q] = item;
        try {
          await writeDoc(objectKey, q, result);
          if (q.entries.length === 0) queued.delete(objectKey);
        } catch (e) {
          result.failed += 1;
          result.errors.push(e instanceof Error ? e.message : String(e));
        }
      }
    });
    await Promise.all(workers);
    return result;
  }

  function flush(): Promise<FlushResult> {
    const run = chain.then(doFlush, doFlush);
    chain = run.catch(() => undefined);
    return run;
  }

  return {
    record(keyId, counts) {
      if (!isKeyId(keyId)) throw new ValidationError("usage is recorded per API key id");
      const day = utcDay(now());
      const objectKey = usageObjectKey(opts.prefix, keyId, day);
      let c = current.get(objectKey);
      if (!c) current.set(objectKey, (c = { keyId, day, counts: zeroCounts() }));
      addInto(c.counts, counts);
    },
    flush,
    maybeFlush() {
      if (current.size === 0 && queued.size === 0) return Promise.resolve(null);
      if (now() - lastFlushAt < opts.flushIntervalMs) return Promise.resolve(null);
      return flush();
    },
    unflushed(keyId) {
      const total = zeroCounts();
      for (const c of current.values()) if (c.keyId === keyId) addInto(total, c.counts);
      for (const q of queued.values()) if (q.keyId === keyId) for (const e of q.entries) addInto(total, e.counts);
      return total;
    },
  };
}

const DAY_PATTERN = /^\d{4}-\d{2}-\d{2}$/;
const MAX_RANGE_DAYS = 366;

function parseDay(name: string, s: string): number {
  const ms = Date.parse(`${s}T00:00:00Z`);
  if (!DAY_PATTERN.test(s) || !Number.isFinite(ms) || utcDay(ms) !== s) {
    throw new ValidationError(`${name} must be a calendar date YYYY-MM-DD, got "${s}"`);
  }
  return ms;
}

export interface UsageReport {
  key_id: string;
  from: string;
  to: string;
  totals: UsageCounts;
  days: Array<{ date: string; counts: UsageCounts }>;
}

/** Sums a key's stored day objects for the UTC days from..to (inclusive, at most 366 days). */
export async function readUsage(
  store: ObjectStore,
  prefix: string,
  keyId: string,
  from: string,
  to: string,
): Promise<UsageReport> {
  if (!isKeyId(keyId)) throw new ValidationError("Unknown key id format");
  const fromMs = parseDay("from", from);
  const toMs = parseDay("to", to);
  if (fromMs > toMs) throw new ValidationError(`from (${from}) must not be after to (${to})`);
  if ((toMs - fromMs) / 86_400_000 + 1 > MAX_RANGE_DAYS)
    throw new ValidationError(`A usage range spans at most ${MAX_RANGE_DAYS} days`);

  const keyPrefix = `${prefix}${keyId}/`;
  const wanted: string[] = [];
  for await (const info of store.list(keyPrefix)) {
    const day = info.key.slice(keyPrefix.length).replace(/\.json$/, "");
    if (DAY_PATTERN.test(day) && day >= from && day <= to) wanted.push(day);
  }
  wanted.sort();
  const days: UsageReport["days"] = [];
  const totals = zeroCounts();
  for (const day of wanted) {
    const key = usageObjectKey(prefix, keyId, day);
    const got = await store.get(key);
    if (!got) continue;
    const doc = parseDayDoc(got.body, key);
    days.push({ date: day, counts: doc.counts });
    addInto(totals, doc.counts);
  }
  return { key_id: keyId, from, to, totals, days };
}
