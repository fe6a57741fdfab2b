// The shard function's core (functions/shard/*): answers a fan-out search over one dense index file
// of a snapshot. The search function names the snapshot version in every request, so a shard never
// reads the pointer itself: one query is answered by one version on every shard, and a shard that
// holds another version loads the asked one first (a k = 0 request does only that, ahead of the
// first query after a swap). The last `keepVersions` loaded shards stay in memory, so queries of
// the outgoing version still answer while the search functions swap.
import { z } from "zod";
import { ValidationError } from "./errors.ts";
import type { ShardSearchRequest, ShardSearchResponse } from "./ports.ts";
import { toGlobalOrdinals } from "./sharded-index.ts";
import type { LoadedIndexShard, LogFn } from "./snapshot-loader.ts";
import { isSnapshotVersion } from "./snapshot.ts";

/** Largest k one shard request may ask for (the search side never asks more than its pool). */
export const MAX_SHARD_K = 10_000;

const requestSchema = z.object({
  version: z.string().refine(isSnapshotVersion, "is not a snapshot version"),
  shard: z.number().int().nonnegative(),
  vector: z.array(z.number().refine(Number.isFinite, "must be finite")).min(1).max(65_536),
  k: z.number().int().min(0).max(MAX_SHARD_K),
});

/** A shard request from the wire (JSON: the vector as an array of numbers). */
export function parseShardSearchRequest(raw: unknown): ShardSearchRequest {
  const parsed = requestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.join(".") || "body";
    throw new ValidationError(`\`${field}\`: ${issue.message}`, { field });
  }
  const { version, shard, vector, k } = parsed.data;
  return { version, shard, vector: Float32Array.from(vector), k };
}

/** The wire form of a request (what the shard clients send). */
export function shardRequestBody(req: ShardSearchRequest): Record<string, unknown> {
  return { version: req.version, shard: req.shard, vector: Array.from(req.vector), k: req.k };
}

export interface IndexShardServiceOptions {
  /** Loads one shard of one version (snapshot-loader.ts loadIndexShard, bound to a store). */
  loadShard(version: string, shard: number): Promise<LoadedIndexShard>;
  /** SHARD_ID: the one shard this instance serves; unset = any it is asked for. */
  shardId?: number;
  /** Loaded shards kept in memory (default 2: the live version and the one before it). */
  keepVersions?: number;
  log?: LogFn;
}

export interface IndexShardStatus {
  shard_id: number | null;
  loaded: Array<{ version: string; shard: number; vectors: number; offset: number }>;
  loading: string[];
}

export interface IndexShardService {
  search(req: ShardSearchRequest): Promise<ShardSearchResponse>;
  status(): IndexShardStatus;
}

export function createIndexShardService(opts: IndexShardServiceOptions): IndexShardService {
  const keep = Math.max(1, opts.keepVersions ?? 2);
  const log: LogFn = opts.log ?? (() => {});
  // Insertion order = least recently used first; a failed load is dropped so the next call retries.
  const cache = new Map<string, Promise<LoadedIndexShard>>();
  const ready = new Map<string, LoadedIndexShard>();

  const load = (version: string, shard: number): Promise<LoadedIndexShard> => {
    const key = `${version}/${shard}`;
    const hit = cache.get(key);
    if (hit) {
      cache.delete(key);
      cache.set(key, hit);
      return hit;
    }
    const started = Date.now();
    const p = opts.loadShard(version, shard).then(
      (loaded) => {
        // Evicted while it loaded (newer versions asked for meanwhile): answer this call, keep nothing.
        if (cache.get(key) === p) ready.set(key, loaded);
        log("info", "index shard loaded", {
          version,
          shard,
          vectors: loaded.index.count,
          load_ms: Date.now() - started,
        });
        return loaded;
      },
      (e) => {
        if (cache.get(key) === p) cache.delete(key);
        throw e;
      },
    );
    cache.set(key, p);
    while (cache.size > keep) {
      const oldest = cache.keys().next().value as string;
      cache.delete(oldest);
      ready.delete(oldest);
    }
    return p;
  };

  return {
    async search(req) {
      if (opts.shardId !== undefined && req.shard !== opts.shardId) {
        throw new ValidationError(`this shard function serves shard ${opts.shardId}, not ${req.shard}`, {
          field: "shard",
        });
      }
      const { index, range } = await load(req.version, req.shard);
      if (req.k === 0) return { ordinals: [], scores: [], version: req.version };
      if (req.vector.length !== index.dimensions) {
        throw new ValidationError(`\`vector\` has ${req.vector.length} dimensions, the index ${index.dimensions}`, {
          field: "vector",
        });
      }
      const found = toGlobalOrdinals(index.search(req.vector, Math.min(req.k, index.count)), range.offset);
      return { ...found, version: req.version };
    },
    status() {
      const loaded = [...ready.values()].map((l) => ({
        version: l.version,
        shard: l.shard,
        vectors: l.index.count,
        offset: l.range.offset,
      }));
      return {
        shard_id: opts.shardId ?? null,
        loaded,
        loading: [...cache.keys()].filter((k) => !ready.has(k)),
      };
    },
  };
}
