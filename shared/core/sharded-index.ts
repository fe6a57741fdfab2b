// Dense search over a snapshot published as N index shards (manifest `index_shards`: contiguous
// ordinal ranges, shard i's label j = ordinal offset + j). Pure: the shard indexes, or the client
// that reaches shard functions, are injected.
//
// - ShardedVectorIndex: every shard loaded in this process; search() asks each for its top-k and
//   merges them. Inner products of one embedder are comparable across shards, and each shard's
//   top-k contains every passage of the global top-k that it holds, so the merge is exact: for an
//   exact (flat) index the result equals the single index's, ties broken by the lower ordinal as
//   the flat scan's own top-k does (shared/core/top-k.ts).
// - createFanoutIndex: the shards live in other processes (SEARCH_SHARDS=lambda|http); one query
//   asks all of them in parallel within SHARD_TIMEOUT_MS and merges what came back. A shard that
//   times out, fails or answers nonsense is left out and named in `missing`: the result is then
//   the exact top-k of the shards that answered, never an error.
import { DomainError, ShardUnavailableError, SnapshotInvalidError, ValidationError } from "./errors.ts";
import type {
  FanoutSearchResult,
  FanoutVectorIndex,
  IndexShardClient,
  MissingShard,
  SnapshotManifest,
  VectorIndex,
  VectorSearchResult,
} from "./ports.ts";
import { indexShardsOf } from "./snapshot.ts";
import { TimeLimitError, withTimeLimit } from "./time-limit.ts";

/** A shard's ordinal range (IndexShard in snapshot.ts, without its file). */
export interface ShardRange {
  offset: number;
  count: number;
}

/**
 * The best k of several best-first results with disjoint ordinals: score descending, ties by the
 * lower ordinal. A k-way merge of the heads (each part is already in that order).
 */
export function mergeTopK(parts: readonly VectorSearchResult[], k: number): VectorSearchResult {
  const ordinals: number[] = [];
  const scores: number[] = [];
  const pos = new Array<number>(parts.length).fill(0);
  while (ordinals.length < k) {
    let best = -1;
    for (let p = 0; p < parts.length; p++) {
      const i = pos[p];
      if (i >= parts[p].ordinals.length) continue;
      if (best < 0) {
        best = p;
        continue;
      }
      const s = parts[p].scores[i];
      const b = parts[best].scores[pos[best]];
      if (s > b || (s === b && parts[p].ordinals[i] < parts[best].ordinals[pos[best]])) best = p;
    }
    if (best < 0) break;
    ordinals.push(parts[best].ordinals[pos[best]]);
    scores.push(parts[best].scores[pos[best]]);
    pos[best]++;
  }
  return { ordinals, scores };
}

/** A shard's result with its labels turned into global ordinals (label j = ordinal offset + j). */
export function toGlobalOrdinals(found: VectorSearchResult, offset: number): VectorSearchResult {
  const ordinals: number[] = [];
  const scores: number[] = [];
  for (let i = 0; i < found.ordinals.length; i++) {
    // Approximate indexes pad with -1 when they find fewer than k.
    if (found.ordinals[i] < 0) continue;
    ordinals.push(found.ordinals[i] + offset);
    scores.push(found.scores[i]);
  }
  return { ordinals, scores };
}

/** Ranges must start at 0 and follow each other (what parseManifest checks for index_shards). */
function checkRanges(ranges: readonly ShardRange[]): number {
  if (ranges.length === 0) throw new ValidationError("a sharded index needs at least one shard");
  let next = 0;
  for (const [i, r] of ranges.entries()) {
    if (r.offset !== next) throw new ValidationError(`shard ${i} starts at ordinal ${r.offset}, expected ${next}`);
    next += r.count;
  }
  return next;
}

/** All shards of a snapshot in this process, searched as one index. */
export class ShardedVectorIndex implements VectorIndex {
  readonly dimensions: number;
  readonly count: number;
  readonly params?: Record<string, string | number>;
  readonly shards: ReadonlyArray<{ index: VectorIndex; offset: number }>;

  constructor(shards: ReadonlyArray<{ index: VectorIndex; offset: number }>) {
    this.count = checkRanges(shards.map((s) => ({ offset: s.offset, count: s.index.count })));
    this.dimensions = shards[0].index.dimensions;
    for (const [i, s] of shards.entries()) {
      if (s.index.dimensions !== this.dimensions) {
        throw new ValidationError(`shard ${i} has ${s.index.dimensions} dimensions, shard 0 ${this.dimensions}`);
      }
    }
    this.shards = shards;
    const first = shards[0].index.params;
    this.params = first ? { ...first, shards: shards.length } : { shards: shards.length };
  }

  search(query: Float32Array, k: number): VectorSearchResult {
    const parts: VectorSearchResult[] = [];
    for (const { index, offset } of this.shards) {
      const kk = Math.min(k, index.count);
      if (kk <= 0) continue;
      parts.push(toGlobalOrdinals(index.search(query, kk), offset));
    }
    return mergeTopK(parts, k);
  }
}

export interface FanoutIndexOptions {
  version: string;
  dimensions: number;
  shards: readonly ShardRange[];
  client: IndexShardClient;
  /** SHARD_TIMEOUT_MS: how long one query waits for a shard. */
  timeoutMs: number;
  params?: Record<string, string | number>;
}

/** A shard answered, but not with a result of the request it was sent. */
class BadShardAnswer extends Error {}

/** What went wrong with one shard, as the response and the logs say it. */
export function describeShardFailure(shard: number, e: unknown, timeoutMs: number): MissingShard {
  if (e instanceof TimeLimitError || (e instanceof ShardUnavailableError && e.timeout))
    return { shard, code: "timeout", message: `timed out after ${timeoutMs} ms` };
  if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError"))
    return { shard, code: "timeout", message: `timed out after ${timeoutMs} ms` };
  if (e instanceof BadShardAnswer) return { shard, code: "invalid", message: e.message };
  if (e instanceof DomainError && (e.code === "snapshot_invalid" || e.code === "invalid_request"))
    return { shard, code: "invalid", message: e.message };
  return { shard, code: "unavailable", message: e instanceof Error ? e.message : String(e) };
}

/** An answer must be best-first, finite, of this version, and inside the shard's ordinal range. */
function checkAnswer(
  range: ShardRange,
  version: string,
  k: number,
  got: { ordinals: unknown; scores: unknown; version: unknown },
): VectorSearchResult {
  const bad = (why: string) => new BadShardAnswer(`malformed answer: ${why}`);
  if (got.version !== version) throw bad(`it searched version ${String(got.version)}, not ${version}`);
  const { ordinals, scores } = got;
  if (!Array.isArray(ordinals) || !Array.isArray(scores) || ordinals.length !== scores.length)
    throw bad("ordinals and scores are not arrays of one length");
  if (ordinals.length > k) throw bad(`${ordinals.length} results for k = ${k}`);
  for (let i = 0; i < ordinals.length; i++) {
    const o = ordinals[i];
    const s = scores[i];
    if (!Number.isInteger(o) || o < range.offset || o >= range.offset + range.count)
      throw bad(`ordinal ${String(o)} is outside its range [${range.offset}, ${range.offset + range.count})`);
    if (typeof s !== "number" || !Number.isFinite(s)) throw bad(`score ${String(s)} is not a finite number`);
    if (i > 0 && s > scores[i - 1]) throw bad("results are not best first");
  }
  return { ordinals: ordinals as number[], scores: scores as number[] };
}

export interface FanoutIndex extends FanoutVectorIndex {
  /**
   * Asks every shard to load this version (a k = 0 search) within `timeoutMs`, all at once, so
   * the first queries after a swap do not wait for shard loads. Returns the shards that did not.
   */
  warm(opts: { timeoutMs: number; signal?: AbortSignal }): Promise<MissingShard[]>;
}

/** A snapshot's dense index whose shards are searched by shard functions or workers. */
export function createFanoutIndex(opts: FanoutIndexOptions): FanoutIndex {
  const count = checkRanges(opts.shards);
  const { version, client, timeoutMs } = opts;
  const shards = opts.shards.map((s) => ({ offset: s.offset, count: s.count }));
  return {
    dimensions: opts.dimensions,
    count,
    params: { ...(opts.params ?? {}), shards: shards.length, fanout: client.describe().kind },
    search(): VectorSearchResult {
      throw new Error("internal: a fan-out index is searched with searchShards()");
    },
    async searchShards(query, k, callOpts = {}): Promise<FanoutSearchResult> {
      if (query.length !== opts.dimensions)
        throw new ValidationError(`query vector has ${query.length} dimensions, the index has ${opts.dimensions}`);
      const missing: MissingShard[] = [];
      const parts = await Promise.all(
        shards.map(async (range, shard): Promise<VectorSearchResult | null> => {
          const kk = Math.min(k, range.count);
          if (kk <= 0) return { ordinals: [], scores: [] };
          try {
            const got = await withTimeLimit(
              timeoutMs,
              (signal) => client.search({ version, shard, vector: query, k: kk }, { timeoutMs, signal }),
              callOpts.signal,
            );
            return checkAnswer(range, version, kk, got);
          } catch (e) {
            if (callOpts.signal?.aborted) throw callOpts.signal.reason ?? e;
            missing.push(describeShardFailure(shard, e, timeoutMs));
            return null;
          }
        }),
      );
      missing.sort((a, b) => a.shard - b.shard);
      const merged = mergeTopK(
        parts.filter((p): p is VectorSearchResult => p !== null),
        k,
      );
      return { ...merged, shards: shards.length, missing };
    },
    async warm(warmOpts): Promise<MissingShard[]> {
      const failed: MissingShard[] = [];
      await Promise.all(
        shards.map(async (range, shard) => {
          if (range.count === 0) return;
          try {
            await withTimeLimit(
              warmOpts.timeoutMs,
              (signal) => client.warm({ version, shard }, { timeoutMs: warmOpts.timeoutMs, signal }),
              warmOpts.signal,
            );
          } catch (e) {
            failed.push(describeShardFailure(shard, e, warmOpts.timeoutMs));
          }
        }),
      );
      return failed.sort((a, b) => a.shard - b.shard);
    },
  };
}

export interface FanoutOpenerOptions {
  client: IndexShardClient;
  /** SHARD_TIMEOUT_MS. */
  timeoutMs: number;
  /** SHARD_LOAD_TIMEOUT_MS: how long a new version waits for its shards to load it. */
  loadTimeoutMs: number;
  log?: (level: "info" | "warn", msg: string, data?: Record<string, unknown>) => void;
}

/**
 * The snapshot loader's openRemoteIndex for SEARCH_SHARDS=lambda|http: a fan-out index over the
 * manifest's shards, after asking every shard to load the version. A shard that refuses the
 * version (it is not there, or the shard serves another one) rejects it like a corrupt file; a
 * shard that is slow or down does not hold it back: the shard keeps loading on its side and
 * answers later queries, and until then those queries say it is missing (200 with a warning).
 */
export function fanoutIndexOpener(opts: FanoutOpenerOptions) {
  return async (manifest: SnapshotManifest, signal?: AbortSignal): Promise<FanoutIndex> => {
    const shards = indexShardsOf(manifest);
    const index = createFanoutIndex({
      version: manifest.version,
      dimensions: manifest.embedder.dimensions,
      shards,
      client: opts.client,
      timeoutMs: opts.timeoutMs,
      params: manifest.index_params,
    });
    const failed = await index.warm({ timeoutMs: opts.loadTimeoutMs, signal });
    const invalid = failed.find((f) => f.code === "invalid");
    if (invalid) {
      throw new SnapshotInvalidError(
        `snapshot ${manifest.version}: shard ${invalid.shard} refused it: ${invalid.message}`,
      );
    }
    if (failed.length > 0) {
      opts.log?.("warn", "index shards not ready for the new snapshot; their passages are missing until they are", {
        version: manifest.version,
        missing: failed,
      });
    }
    return index;
  };
}
