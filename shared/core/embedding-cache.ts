// Embedding cache in the object store, so a reindex re-embeds only passages it has not seen.
//
// Entries are keyed by (embedder identity, sha256 of the passage text). They are stored grouped
// by corpus object: one binary "bundle" per (identity, corpus object key) holding the vectors of
// that object's current passages and their text hashes. That keeps the store at one cache object
// per corpus file (not one per passage) and a reindex at one GET per file plus one PUT per changed
// file. Changing a few rows of a large JSONL re-embeds only those rows' passages; stale entries
// are dropped when the bundle is rewritten. Bundles are never trusted blindly: a bundle for
// another identity, a truncated or malformed one reads as empty (a cache miss), never as vectors.
//
// Layout: `${cachePrefix}v1/${identitySlug}/${sha256(corpusKey)}.vec`
// Bundle (little-endian):
//   "TSEC" | u32 format | u32 dimensions | u32 count | u32 identityBytes | identity JSON (space-padded to 4)
//   | count × 32-byte sha256 | count × dimensions × f32
import { createHash } from "node:crypto";
import { ValidationError } from "./errors.ts";
import { sameIdentity } from "./embedding.ts";
import type { Embedder, ObjectStore } from "./ports.ts";
import type { LogFn } from "./snapshot-loader.ts";
import type { EmbedderIdentity } from "./types.ts";

export const EMBED_CACHE_FORMAT = 1;
const MAGIC = [0x54, 0x53, 0x45, 0x43]; // "TSEC"
const HEADER_BYTES = 20;
const HASH_BYTES = 32;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // Bundles are written with the host's Float32Array layout; every platform Node targets here is little-endian.
  throw new Error("embedding-cache: big-endian hosts are not supported");
}

/** sha256 (hex) of a passage text: the cache key of its vector. */
export function textSha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Readable and unique folder name for an embedder identity, e.g. `hashing-hashing-v1-uni-bi-1024d-1a2b3c4d5e`. */
export function identitySlug(identity: EmbedderIdentity): string {
  const canonical = JSON.stringify([
    identity.kind,
    identity.model,
    identity.dimensions,
    identity.normalized,
    identity.pooling ?? null,
  ]);
  const model = identity.model
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60);
  return `${identity.kind}-${model}-${identity.dimensions}d-${textSha256(canonical).slice(0, 10)}`;
}

/** Folder of one identity's bundles. */
export function cacheNamespace(cachePrefix: string, identity: EmbedderIdentity): string {
  return `${cachePrefix}v${EMBED_CACHE_FORMAT}/${identitySlug(identity)}/`;
}

/** Bundle key of a corpus object (its key is hashed: corpus keys may hold characters unfit for every store). */
export function cacheBundleKey(cachePrefix: string, identity: EmbedderIdentity, corpusKey: string): string {
  return `${cacheNamespace(cachePrefix, identity)}${textSha256(corpusKey)}.vec`;
}

// ---------- bundle encoding ----------

function hexToBytes(hex: string, into: Uint8Array, at: number): void {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new ValidationError(`not a sha256 hex digest: "${hex}"`);
  for (let i = 0; i < HASH_BYTES; i++) into[at + i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
}

function bytesToHex(bytes: Uint8Array, at: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + at, HASH_BYTES).toString("hex");
}

/** Serialises hash → vector entries of one identity. */
export function encodeVectorBundle(
  identity: EmbedderIdentity,
  entries: Iterable<readonly [string, Float32Array]>,
): Uint8Array {
  const list = [...entries];
  const d = identity.dimensions;
  const idJson = new TextEncoder().encode(JSON.stringify(identity));
  const idBytes = Math.ceil(idJson.length / 4) * 4;
  const hashesAt = HEADER_BYTES + idBytes;
  const vectorsAt = hashesAt + list.length * HASH_BYTES;
  const out = new Uint8Array(vectorsAt + list.length * d * 4);
  out.set(MAGIC, 0);
  const view = new DataView(out.buffer);
  view.setUint32(4, EMBED_CACHE_FORMAT, true);
  view.setUint32(8, d, true);
  view.setUint32(12, list.length, true);
  view.setUint32(16, idBytes, true);
  out.fill(0x20, HEADER_BYTES, hashesAt);
  out.set(idJson, HEADER_BYTES);
  // vectorsAt is a multiple of 4, so this view is aligned.
  const floats = new Float32Array(out.buffer, vectorsAt, list.length * d);
  list.forEach(([hash, v], i) => {
    if (v.length !== d) throw new ValidationError(`cache entry ${hash} has ${v.length} dimensions, expected ${d}`);
    hexToBytes(hash, out, hashesAt + i * HASH_BYTES);
    floats.set(v, i * d);
  });
  return out;
}

/**
 * Reads a bundle written for `identity`: hash → vector (views into one Float32Array).
 * Throws ValidationError when the bytes are not such a bundle.
 */
export function decodeVectorBundle(bytes: Uint8Array, identity: EmbedderIdentity): Map<string, Float32Array> {
  if (bytes.length < HEADER_BYTES || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new ValidationError("not an embedding cache bundle (bad magic)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint32(4, true);
  if (format !== EMBED_CACHE_FORMAT)
    throw new ValidationError(`embedding cache bundle format ${format} is not supported`);
  const d = view.getUint32(8, true);
  const count = view.getUint32(12, true);
  const idBytes = view.getUint32(16, true);
  const hashesAt = HEADER_BYTES + idBytes;
  const vectorsAt = hashesAt + count * HASH_BYTES;
  if (idBytes % 4 !== 0 || bytes.length !== vectorsAt + count * d * 4) {
    throw new ValidationError(`embedding cache bundle is ${bytes.length} bytes, its header describes a different size`);
  }
  let stored: EmbedderIdentity;
  try {
    stored = JSON.parse(new TextDecoder().decode(bytes.subarray(HEADER_BYTES, hashesAt))) as EmbedderIdentity;
  } catch {
    throw new ValidationError("embedding cache bundle has an unreadable identity");
  }
  if (d !== identity.dimensions || !stored || !sameIdentity(stored, identity)) {
    throw new ValidationError("embedding cache bundle was written for another embedder");
  }
  // Copy out of the (possibly unaligned) download buffer once; entries are views of this copy.
  const floats = new Float32Array(count * d);
  new Uint8Array(floats.buffer).set(bytes.subarray(vectorsAt));
  const out = new Map<string, Float32Array>();
  for (let i = 0; i < count; i++) {
    out.set(bytesToHex(bytes, hashesAt + i * HASH_BYTES), floats.subarray(i * d, (i + 1) * d));
  }
  return out;
}

// ---------- cache over an object store ----------

export interface EmbeddingCache {
  readonly identity: EmbedderIdentity;
  /** Cached vectors of a corpus object's passages (hash → vector); empty when none or unreadable. */
  load(corpusKey: string): Promise<Map<string, Float32Array>>;
  /** Replaces the corpus object's bundle with these entries. */
  save(corpusKey: string, entries: Map<string, Float32Array>): Promise<void>;
  /** Deletes bundles of corpus objects not in `liveCorpusKeys`; returns the deleted keys. */
  prune(liveCorpusKeys: Iterable<string>): Promise<string[]>;
}

export interface EmbeddingCacheOptions {
  store: ObjectStore;
  /** EMBED_CACHE_PREFIX, e.g. "cache/embeddings/". */
  prefix: string;
  identity: EmbedderIdentity;
  log?: LogFn;
}

export function createEmbeddingCache(opts: EmbeddingCacheOptions): EmbeddingCache {
  const { store, prefix, identity } = opts;
  const log: LogFn = opts.log ?? (() => {});
  const keyOf = (corpusKey: string) => cacheBundleKey(prefix, identity, corpusKey);
  return {
    identity,
    async load(corpusKey) {
      const key = keyOf(corpusKey);
      const got = await store.get(key);
      if (!got) return new Map();
      try {
        return decodeVectorBundle(got.body, identity);
      } catch (e) {
        // A bad bundle only costs re-embedding; it is overwritten by the next save.
        log("warn", "embedding cache bundle ignored", { key, corpus_key: corpusKey, error: (e as Error).message });
        return new Map();
      }
    },
    async save(corpusKey, entries) {
      await store.put(keyOf(corpusKey), encodeVectorBundle(identity, entries), {
        contentType: "application/octet-stream",
      });
    },
    async prune(liveCorpusKeys) {
      const keep = new Set([...liveCorpusKeys].map(keyOf));
      const doomed: string[] = [];
      for await (const o of store.list(cacheNamespace(prefix, identity))) if (!keep.has(o.key)) doomed.push(o.key);
      for (const key of doomed) await store.delete(key);
      return doomed;
    },
  };
}

// ---------- embedding through the cache ----------

export interface EmbedThroughCacheInput {
  cache: EmbeddingCache;
  corpusKey: string;
  /** Passage texts of the corpus object, in order. */
  texts: readonly string[];
  /** textSha256 of each text, when the caller already has them. */
  hashes?: readonly string[];
  /** The embedder, or a factory called only when something must be embedded. */
  embedder: Embedder | (() => Promise<Embedder>);
  /** Texts per embedDocuments call (default 128). */
  batchSize?: number;
  /** Called before each embedding call; throw to stop (e.g. near the function's deadline). */
  beforeBatch?: () => void;
  /** Called with the number of texts embedded so far. */
  onEmbedded?: (done: number, total: number) => void;
  log?: LogFn;
}

export interface EmbedThroughCacheResult {
  /** hash → vector for every text. */
  vectors: Map<string, Float32Array>;
  /** Texts sent to the embedder (each distinct missing text once). */
  embedded: number;
  /** Texts whose vector came from the stored bundle. */
  cached: number;
  /** Whether the bundle was (re)written. */
  saved: boolean;
}

async function resolveEmbedder(e: Embedder | (() => Promise<Embedder>)): Promise<Embedder> {
  return typeof e === "function" ? e() : e;
}

/**
 * Vectors for a corpus object's passages: cached ones from its bundle, the rest embedded in batches and
 * written back. When embedding stops halfway (embedder down, deadline), what was embedded is still
 * saved (best effort) before the error propagates, so the next attempt resumes from there.
 */
export async function embedThroughCache(input: EmbedThroughCacheInput): Promise<EmbedThroughCacheResult> {
  const { cache, corpusKey, texts } = input;
  const log: LogFn = input.log ?? (() => {});
  const d = cache.identity.dimensions;
  const hashes = input.hashes ?? texts.map(textSha256);
  if (hashes.length !== texts.length) throw new ValidationError(`${hashes.length} hashes for ${texts.length} texts`);

  const stored = await cache.load(corpusKey);
  const vectors = new Map<string, Float32Array>();
  const missing: Array<{ hash: string; text: string }> = [];
  const queued = new Set<string>();
  let cached = 0;
  hashes.forEach((h, i) => {
    const v = stored.get(h);
    if (v) {
      vectors.set(h, v);
      cached++;
    } else if (!queued.has(h)) {
      queued.add(h);
      missing.push({ hash: h, text: texts[i] });
    }
  });
  // Rewrite when something new is added or stale entries (passages no longer in the object) are held.
  const wanted = new Set(hashes);
  const stale = [...stored.keys()].some((h) => !wanted.has(h));
  let embedded = 0;
  const current = () => {
    const out = new Map<string, Float32Array>();
    for (const h of hashes) {
      const v = vectors.get(h);
      if (v) out.set(h, v);
    }
    return out;
  };

  if (missing.length > 0) {
    const size = Math.max(1, input.batchSize ?? 128);
    try {
      const embedder = await resolveEmbedder(input.embedder);
      for (let i = 0; i < missing.length; i += size) {
        input.beforeBatch?.();
        const batch = missing.slice(i, i + size);
        const out = await embedder.embedDocuments(batch.map((m) => m.text));
        if (out.length !== batch.length) {
          throw new ValidationError(`the embedder returned ${out.length} vectors for ${batch.length} texts`);
        }
        out.forEach((v, j) => {
          if (!(v instanceof Float32Array) || v.length !== d) {
            throw new ValidationError(`the embedder returned a vector of ${v?.length} dimensions, expected ${d}`);
          }
          vectors.set(batch[j].hash, v);
        });
        embedded += batch.length;
        input.onEmbedded?.(embedded, missing.length);
      }
    } catch (e) {
      if (embedded > 0) {
        await cache
          .save(corpusKey, current())
          .catch((se) =>
            log("warn", "could not save partial embeddings", { corpus_key: corpusKey, error: (se as Error).message }),
          );
        log("info", "partial embeddings saved to the cache", { corpus_key: corpusKey, embedded, of: missing.length });
      }
      throw e;
    }
  }

  let saved = false;
  if (embedded > 0 || stale) {
    await cache.save(corpusKey, current());
    saved = true;
  }
  return { vectors, embedded, cached, saved };
}
