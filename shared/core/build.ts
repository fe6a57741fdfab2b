// The one way a snapshot is built (CLI, eval, reindex function): passages + vectors (or an
// embedding function) → index (through an injected builder, so the core never loads faiss) +
// passage store + manifest. Publishing is separate (publish.ts).
import { ValidationError } from "./errors.ts";
import type { SnapshotFileEntry, SnapshotManifest } from "./ports.ts";
import {
  describePassageStore,
  encodePassageStore,
  INDEX_FILE,
  indexShardFile,
  MAX_INDEX_SHARDS,
  newSnapshotVersion,
  PASSAGES_FILE,
  SINGLE_INDEX_FORMAT_VERSION,
  SNAPSHOT_FORMAT_VERSION,
  SPARSE_FILE,
  sha256Hex,
} from "./snapshot.ts";
import type { AnalyzerOptions, Bm25Params } from "./analyzer.ts";
import { SparseIndexBuilder } from "./sparse-index.ts";
import type { EmbedderIdentity, Passage } from "./types.ts";

/** What an index builder returns: enough to serialise it and describe it in the manifest. */
export interface BuiltIndex {
  readonly count: number;
  readonly dimensions: number;
  /** Concrete index type ("flat", "hnsw", ...), after "auto" was resolved. */
  readonly type: string;
  /** Factory string and search parameters, recorded as manifest.index_params. */
  readonly params?: Record<string, string | number>;
  toBuffer(): Uint8Array;
}

/** Builds an index from row-major batches; the faiss one is `faissIndexBuilder` in shared/adapters/faiss-index.ts. */
export type IndexBuilder<I extends BuiltIndex = BuiltIndex> = (
  opts: { dimensions: number; type: string; count: number; params?: Record<string, number> },
  batches: AsyncIterable<Float32Array>,
) => Promise<I>;

export interface BuildSnapshotInput<I extends BuiltIndex = BuiltIndex> {
  passages: readonly Passage[];
  /** One vector per passage, in passage order. Give either this or `embed`. */
  vectors?: readonly Float32Array[];
  /** Embeds passage texts in batches while the index is built, so all vectors never sit in memory at once. */
  embed?: (texts: string[]) => Promise<Float32Array[]>;
  /** Passages per embed() call (default 256). */
  embedBatchSize?: number;
  embedder: EmbedderIdentity;
  corpusStats?: unknown;
  /** "auto" or a concrete type; the builder resolves "auto" by count. */
  indexType: string;
  /** Builder parameters (INDEX_PARAMS: nlist, nprobe, efSearch, ...); unset ones follow the count. */
  indexParams?: Record<string, number>;
  /**
   * The BM25 index over the passages (sparse.bin), built by default; `false` publishes a dense-only
   * snapshot. Parameters and analyzer default to Anserini's BM25 and the Lucene English analyzer.
   */
  sparse?: boolean | { params?: Bm25Params; analyzer?: AnalyzerOptions };
  sources?: SnapshotManifest["sources"];
  report?: SnapshotManifest["report"];
  indexBuilder: IndexBuilder<I>;
  /**
   * INDEX_SHARDS: cut the dense vectors into this many index files (contiguous ordinal ranges,
   * index-<i>.faiss, manifest `index_shards`), for a search function that loads them all or fans
   * queries out to shard functions. Default 1: one index.faiss, as before. Never more shards than
   * passages (effectiveIndexShards).
   */
  indexShards?: number;
  /** Defaults to a fresh time-sortable version. */
  version?: string;
  now?: Date;
  /** Called with passages indexed so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface BuiltSnapshot<I extends BuiltIndex = BuiltIndex> {
  manifest: SnapshotManifest;
  files: Record<string, Uint8Array>;
  /** The in-memory index just built (the CLI and eval search it without a reload); shard 0 when sharded. */
  index: I;
  /** Every shard's index, in shard order (one entry when unsharded). */
  shards: I[];
}

/**
 * How many index files a snapshot of `passages` gets for INDEX_SHARDS = `requested`: never more
 * than passages (an empty shard has nothing to search), at least 1. The reindex compares a live
 * snapshot's shard count with this to decide whether a changed INDEX_SHARDS needs a rebuild.
 */
export function effectiveIndexShards(requested: number | undefined, passages: number): number {
  const n = requested ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > MAX_INDEX_SHARDS)
    throw new ValidationError(`indexShards must be an integer within 1..${MAX_INDEX_SHARDS}, got ${n}`);
  return Math.max(1, Math.min(n, passages));
}

/** Index files of a manifest (1 for an unsharded snapshot). */
export function manifestIndexShards(manifest: SnapshotManifest): number {
  return manifest.index_shards?.length ?? 1;
}

/** Contiguous near-equal ordinal ranges; the first `total % n` shards hold one more. */
export function shardRanges(total: number, n: number): Array<{ offset: number; count: number }> {
  const base = Math.floor(total / n);
  const extra = total % n;
  const out: Array<{ offset: number; count: number }> = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const count = base + (i < extra ? 1 : 0);
    out.push({ offset, count });
    offset += count;
  }
  return out;
}

/** Rows per batch handed to the index builder. */
const ROWS_PER_BATCH = 2048;

function checkVector(v: Float32Array, i: number, identity: EmbedderIdentity): void {
  if (!(v instanceof Float32Array)) throw new ValidationError(`vector ${i} is not a Float32Array`);
  if (v.length !== identity.dimensions) {
    throw new ValidationError(`vector ${i} has ${v.length} dimensions, the embedder declares ${identity.dimensions}`);
  }
  let norm = 0;
  for (let j = 0; j < v.length; j++) norm += v[j] * v[j];
  if (!Number.isFinite(norm)) throw new ValidationError(`vector ${i} has non-finite values`);
  // Inner product is cosine only on unit vectors: catch an embedder that forgot to normalise.
  if (identity.normalized && norm > 0 && Math.abs(Math.sqrt(norm) - 1) > 1e-3) {
    throw new ValidationError(
      `vector ${i} has norm ${Math.sqrt(norm).toFixed(4)}, but the embedder declares normalized vectors`,
    );
  }
}

/** Vectors of passages [start, end) in row-major batches (the whole corpus by default). */
async function* vectorBatches(
  input: BuildSnapshotInput<BuiltIndex>,
  start = 0,
  end = input.passages.length,
): AsyncGenerator<Float32Array> {
  const { passages, embedder } = input;
  const d = embedder.dimensions;
  const total = passages.length;
  const packInto = (vs: readonly Float32Array[], offset: number) => {
    const batch = new Float32Array(vs.length * d);
    vs.forEach((v, j) => {
      checkVector(v, offset + j, embedder);
      batch.set(v, j * d);
    });
    return batch;
  };
  if (input.vectors) {
    for (let i = start; i < end; i += ROWS_PER_BATCH) {
      const vs = input.vectors.slice(i, Math.min(end, i + ROWS_PER_BATCH));
      yield packInto(vs, i);
      input.onProgress?.(Math.min(total, i + vs.length), total);
    }
    return;
  }
  const size = Math.max(1, input.embedBatchSize ?? 256);
  for (let i = start; i < end; i += size) {
    const texts = passages.slice(i, Math.min(end, i + size)).map((p) => p.text);
    const vs = await input.embed!(texts);
    if (vs.length !== texts.length)
      throw new ValidationError(`embed() returned ${vs.length} vectors for ${texts.length} texts`);
    yield packInto(vs, i);
    input.onProgress?.(i + texts.length, total);
  }
}

export async function buildSnapshot<I extends BuiltIndex>(input: BuildSnapshotInput<I>): Promise<BuiltSnapshot<I>> {
  const { passages, embedder } = input;
  if (!input.vectors === !input.embed)
    throw new ValidationError("buildSnapshot needs exactly one of `vectors` or `embed`");
  if (input.vectors && input.vectors.length !== passages.length) {
    throw new ValidationError(`${input.vectors.length} vectors for ${passages.length} passages`);
  }
  if (!Number.isInteger(embedder.dimensions) || embedder.dimensions <= 0) {
    throw new ValidationError(`embedder dimensions must be a positive integer, got ${embedder.dimensions}`);
  }
  const seen = new Set<string>();
  for (const p of passages) {
    if (seen.has(p.id)) throw new ValidationError(`duplicate passage id "${p.id}"`);
    seen.add(p.id);
  }

  const shardCount = effectiveIndexShards(input.indexShards, passages.length);
  const ranges = shardRanges(passages.length, shardCount);
  const shards: I[] = [];
  const files: Record<string, Uint8Array> = {};
  let indexShards: SnapshotManifest["index_shards"];
  if (shardCount === 1) {
    const index = await input.indexBuilder(
      { dimensions: embedder.dimensions, type: input.indexType, count: passages.length, params: input.indexParams },
      vectorBatches(input as BuildSnapshotInput<BuiltIndex>),
    );
    if (index.count !== passages.length) {
      throw new ValidationError(`the index holds ${index.count} vectors for ${passages.length} passages`);
    }
    shards.push(index);
    files[INDEX_FILE] = index.toBuffer();
  } else {
    indexShards = [];
    // One after the other, through the same builder, so embed() still sees the passages in order.
    // "auto" resolves on the first (largest) shard; the others get that same concrete type, so
    // the manifest's one index_type describes every file.
    let type = input.indexType;
    for (const [i, r] of ranges.entries()) {
      const shard = await input.indexBuilder(
        { dimensions: embedder.dimensions, type, count: r.count, params: input.indexParams },
        vectorBatches(input as BuildSnapshotInput<BuiltIndex>, r.offset, r.offset + r.count),
      );
      if (shard.count !== r.count) {
        throw new ValidationError(`index shard ${i} holds ${shard.count} vectors for ${r.count} passages`);
      }
      if (i === 0) type = shard.type;
      else if (shard.type !== type) {
        throw new ValidationError(`index shard ${i} was built as ${shard.type}, shard 0 as ${type}`);
      }
      shards.push(shard);
      const file = indexShardFile(i);
      files[file] = shard.toBuffer();
      indexShards.push({ file, offset: r.offset, count: r.count });
    }
  }
  const index = shards[0];
  files[PASSAGES_FILE] = encodePassageStore(passages);
  let sparseInfo: SnapshotManifest["sparse"];
  if (input.sparse !== false) {
    const opts = typeof input.sparse === "object" ? input.sparse : {};
    const builder = new SparseIndexBuilder(opts);
    for (const p of passages) builder.add(p.text);
    const bytes = builder.finish();
    files[SPARSE_FILE] = bytes;
    sparseInfo = builder.info(SPARSE_FILE, bytes.byteLength);
  }
  const entries: Record<string, SnapshotFileEntry> = {};
  for (const [name, bytes] of Object.entries(files)) {
    entries[name] = { key: name, bytes: bytes.byteLength, sha256: sha256Hex(bytes) };
  }
  const passageLayout = describePassageStore(files[PASSAGES_FILE]);
  const now = input.now ?? new Date();
  const manifest: SnapshotManifest = {
    format_version: indexShards ? SNAPSHOT_FORMAT_VERSION : SINGLE_INDEX_FORMAT_VERSION,
    version: input.version ?? newSnapshotVersion(now),
    created_at: now.toISOString(),
    embedder: { ...embedder },
    metric: "inner_product",
    index_type: index.type,
    ...(index.params ? { index_params: { ...index.params } } : {}),
    counts: { documents: new Set(passages.map((p) => p.docId)).size, passages: passages.length },
    files: entries,
    ...(indexShards ? { index_shards: indexShards } : {}),
    ...(sparseInfo ? { sparse: sparseInfo } : {}),
    ...(passageLayout ? { passages: passageLayout } : {}),
    ...(input.corpusStats !== undefined ? { corpus_stats: input.corpusStats } : {}),
    ...(input.sources ? { sources: input.sources } : {}),
    ...(input.report ? { report: input.report } : {}),
  };
  return { manifest, files, index, shards };
}
