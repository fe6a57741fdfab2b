// API key records in the object store: one JSON object per key id under API_KEYS_PREFIX, hashes only.
//
// Lookups are cached in memory for `cacheTtlMs` (API_KEY_CACHE_TTL_S), unknown ids included, so a request
// costs no store read in the common case. Consequence: a revoked key keeps working on an instance that
// cached it for at most that TTL (the CLI says so). When the store cannot be reached, a cached record is
// kept for another TTL rather than failing every request (stale-if-error); with nothing cached, the
// store's error (503) propagates.
import { randomBytes } from "node:crypto";
import {
  type ApiKeyRecord,
  type KeyCheck,
  type NewApiKey,
  type RandomBytes,
  type RateLimitSpec,
  checkApiKey,
  generateApiKey,
  isKeyId,
  parseApiKey,
  parseKeyRecord,
} from "../core/api-keys.ts";
import { DomainError, PreconditionFailedError, ValidationError } from "../core/errors.ts";
import { type Clock, type ObjectStore, systemClock } from "../core/ports.ts";

export interface KeyStore {
  /** Stores a new key's record; the returned plaintext `key` exists nowhere else. */
  create(input: { name: string; rate?: RateLimitSpec }): Promise<NewApiKey>;
  /** Marks a key revoked (idempotent); throws a 404 DomainError for an unknown id. */
  revoke(keyId: string): Promise<ApiKeyRecord>;
  /** Every record, oldest first (hashes only). */
  list(): Promise<ApiKeyRecord[]>;
  /** Straight from the store, bypassing the cache. */
  get(keyId: string): Promise<ApiKeyRecord | null>;
  /** Checks a presented key through the cache. */
  verify(presented: string): Promise<KeyCheck>;
  /** Drops cached lookups (all, or one id). */
  invalidate(keyId?: string): void;
}

export interface KeyStoreOptions {
  store: ObjectStore;
  /** API_KEYS_PREFIX, ending in "/". */
  prefix: string;
  /** API_KEY_CACHE_TTL_S × 1000; 0 disables caching. */
  cacheTtlMs: number;
  /** Monotonic clock for cache expiry. */
  clock?: Clock;
  /** Wall clock for created_at / revoked_at. */
  now?: () => number;
  rng?: RandomBytes;
  /** Upper bound on cached lookups (unknown ids are cached too, so probing cannot grow memory). */
  maxCached?: number;
  /** Told about store failures that were answered from a stale cache entry. */
  onStaleServe?: (keyId: string, error: unknown) => void;
}

interface CacheEntry {
  record: ApiKeyRecord | null;
  expiresAt: number;
}

export function createKeyStore(opts: KeyStoreOptions): KeyStore {
  const clock = opts.clock ?? systemClock;
  const now = opts.now ?? Date.now;
  const rng = opts.rng ?? ((n: number) => new Uint8Array(randomBytes(n)));
  const maxCached = opts.maxCached ?? 10_000;
  const cache = new Map<string, CacheEntry>();
  const inflight = new Map<string, Promise<ApiKeyRecord | null>>();
  const objectKey = (keyId: string) => `${opts.prefix}${keyId}.json`;

  async function read(keyId: string): Promise<{ record: ApiKeyRecord; etag: string } | null> {
    const got = await opts.store.get(objectKey(keyId));
    if (!got) return null;
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(got.body));
    } catch {
      throw new ValidationError(`API key record ${keyId} is not valid JSON`);
    }
    return { record: parseKeyRecord(json), etag: got.etag };
  }

  function remember(keyId: string, record: ApiKeyRecord | null) {
    if (opts.cacheTtlMs <= 0) return;
    cache.delete(keyId);
    while (cache.size >= maxCached) cache.delete(cache.keys().next().value as string);
    cache.set(keyId, { record, expiresAt: clock.now() + opts.cacheTtlMs });
  }

  async function lookup(keyId: string): Promise<ApiKeyRecord | null> {
    const hit = cache.get(keyId);
    if (hit && hit.expiresAt > clock.now()) return hit.record;
    const pending = inflight.get(keyId);
    if (pending) return pending;
    const p = (async () => {
      try {
        const found = await read(keyId);
        remember(keyId, found?.record ?? null);
        return found?.record ?? null;
      } catch (e) {
        if (e instanceof ValidationError) {
          // A corrupt record never authenticates.
          remember(keyId, null);
          return null;
        }
        if (hit) {
          opts.onStaleServe?.(keyId, e);
          remember(keyId, hit.record);
          return hit.record;
        }
        throw e;
      } finally {
        inflight.delete(keyId);
      }
    })();
    inflight.set(keyId, p);
    return p;
  }

  return {
    async create(input) {
      for (let attempt = 0; attempt < 3; attempt++) {
        const made = generateApiKey({ name: input.name, rng, now: now(), rate: input.rate });
        try {
          await opts.store.put(objectKey(made.record.key_id), JSON.stringify(made.record, null, 2), {
            contentType: "application/json",
            ifNoneMatch: "*",
          });
          return made;
        } catch (e) {
          // A 64-bit id collision: draw again.
          if (!(e instanceof PreconditionFailedError)) throw e;
        }
      }
      throw new DomainError("conflict", 409, "Could not allocate a unique key id");
    },

    async revoke(keyId) {
      if (!isKeyId(keyId)) throw new ValidationError(`"${keyId}" is not a key id (16 hex characters)`);
      for (let attempt = 0; attempt < 5; attempt++) {
        const found = await read(keyId);
        if (!found) throw new DomainError("not_found", 404, `No API key with id ${keyId}`);
        if (found.record.revoked_at) return found.record;
        const revoked: ApiKeyRecord = { ...found.record, revoked_at: new Date(now()).toISOString() };
        try {
          await opts.store.put(objectKey(keyId), JSON.stringify(revoked, null, 2), {
            contentType: "application/json",
            ifMatch: found.etag,
          });
          cache.delete(keyId);
          return revoked;
        } catch (e) {
          if (!(e instanceof PreconditionFailedError)) throw e;
        }
      }
      throw new DomainError("conflict", 409, `Key ${keyId} kept changing while being revoked; try again`);
    },

    async list() {
      const records: ApiKeyRecord[] = [];
      for await (const info of opts.store.list(opts.prefix)) {
        const id = info.key.slice(opts.prefix.length).replace(/\.json$/, "");
        if (!isKeyId(id)) continue;
        const found = await read(id).catch(() => null);
        if (found) records.push(found.record);
      }
      return records.sort((a, b) => a.created_at.localeCompare(b.created_at));
    },

    async get(keyId) {
      if (!isKeyId(keyId)) return null;
      return (await read(keyId))?.record ?? null;
    },

    async verify(presented) {
      const parsed = parseApiKey(presented);
      if (!parsed) return { ok: false, reason: "malformed" };
      return checkApiKey(parsed, await lookup(parsed.keyId));
    },

    invalidate(keyId) {
      if (keyId === undefined) cache.clear();
      else cache.delete(keyId);
    },
  };
}
