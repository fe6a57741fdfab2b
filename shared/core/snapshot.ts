// Snapshot format: a versioned prefix `${indexPrefix}v/${version}/` holding index.faiss, a
// passage store and manifest.json, plus a small pointer `${indexPrefix}LATEST.json` naming the
// live version (written last, conditionally, by publish.ts). Pure: no SDKs, no native addons.
import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { SnapshotInvalidError, ValidationError } from "./errors.ts";
import type { PassageInfo, PassageStore, SnapshotManifest } from "./ports.ts";
import { EMBEDDER_KINDS, type Passage } from "./types.ts";

/**
 * The newest manifest format this build reads (and writes for sharded snapshots).
 * 2: the passage store in layout v2 with its `passages` manifest entry (texts read by range).
 * 3: the dense vectors in `index_shards` (index-<i>.faiss) instead of one index.faiss.
 * A search function of an older format refuses a newer manifest with a clear message and keeps
 * serving the snapshot it has (rollbacks stay safe); this build reads 1, 2 and 3.
 */
export const SNAPSHOT_FORMAT_VERSION = 3;
/** What an unsharded snapshot is written as: byte-identical to the builds before index shards. */
export const SINGLE_INDEX_FORMAT_VERSION = 2;
export const INDEX_FILE = "index.faiss";
/** Most index shards one snapshot may have (INDEX_SHARDS). */
export const MAX_INDEX_SHARDS = 256;

/** File name of dense index shard i of a sharded snapshot. */
export function indexShardFile(i: number): string {
  return `index-${i}.faiss`;
}
export const PASSAGES_FILE = "passages.bin";
export const MANIFEST_FILE = "manifest.json";
export const POINTER_FILE = "LATEST.json";
/** BM25 inverted index over the passages (shared/core/sparse-index.ts); optional: older snapshots lack it. */
export const SPARSE_FILE = "sparse.bin";

// ---------- keys and versions ----------

/** `20261125T190000Z-3f9a1c`: sorts by creation time (UTC, second resolution), then a random tie-break. */
export function newSnapshotVersion(at: Date = new Date(), random: string = randomBytes(3).toString("hex")): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
  return `${stamp}-${random}`;
}

const VERSION_RE = /^\d{8}T\d{6}Z-[0-9a-z]{1,32}$/;

export function isSnapshotVersion(v: string): boolean {
  return VERSION_RE.test(v);
}

/** Newest first: the time stamp leads, so a plain string comparison orders versions by time. */
export function compareVersionsDesc(a: string, b: string): number {
  return a < b ? 1 : a > b ? -1 : 0;
}

export function snapshotPrefix(indexPrefix: string, version: string): string {
  return `${indexPrefix}v/${version}/`;
}

export function snapshotFileKey(indexPrefix: string, version: string, name: string): string {
  return `${snapshotPrefix(indexPrefix, version)}${name}`;
}

export function pointerKey(indexPrefix: string): string {
  return `${indexPrefix}${POINTER_FILE}`;
}

/** Version named by a key under `${indexPrefix}v/`, or null. */
export function versionOfKey(indexPrefix: string, key: string): string | null {
  const base = `${indexPrefix}v/`;
  if (!key.startsWith(base)) return null;
  const v = key.slice(base.length).split("/")[0];
  return isSnapshotVersion(v) ? v : null;
}

// ---------- hashing ----------

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Incremental sha256 for streamed or ranged downloads. */
export function createSha256(): { update(chunk: Uint8Array): void; digest(): string } {
  const h = createHash("sha256");
  return {
    update: (chunk) => {
      h.update(chunk);
    },
    digest: () => h.digest("hex"),
  };
}

// ---------- manifest ----------

const identitySchema = z.object({
  kind: z.enum(EMBEDDER_KINDS),
  model: z.string().min(1),
  dimensions: z.number().int().positive(),
  normalized: z.boolean(),
  pooling: z.enum(["mean", "cls"]).optional(),
});

const fileEntrySchema = z.object({
  key: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "expected a lowercase hex sha256"),
});

// Later format versions may add fields: a loose object keeps them rather than dropping them.
export const manifestSchema = z.looseObject({
  format_version: z.number().int().positive(),
  version: z.string().regex(VERSION_RE, "expected a snapshot version like 20261125T190000Z-3f9a1c"),
  created_at: z.iso.datetime({ offset: true }),
  embedder: identitySchema,
  metric: z.literal("inner_product"),
  index_type: z.string().min(1),
  index_params: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
  counts: z.object({ documents: z.number().int().nonnegative(), passages: z.number().int().nonnegative() }),
  files: z.record(z.string(), fileEntrySchema),
  corpus_stats: z.unknown().optional(),
  sources: z.array(z.object({ key: z.string(), etag: z.string() })).optional(),
  sparse: z
    .object({
      format: z.literal("bm25-v1"),
      file: z.string().min(1),
      analyzer: z.looseObject({ name: z.string() }),
      params: z.object({ k1: z.number().nonnegative(), b: z.number().min(0).max(1) }),
      passages: z.number().int().nonnegative(),
      documents: z.number().int().nonnegative(),
      average_length: z.number().nonnegative(),
      terms: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
    })
    .optional(),
  passages: z
    .object({
      format: z.literal("tsps-v2"),
      head_bytes: z.number().int().positive(),
      head_sha256: z.string().regex(/^[0-9a-f]{64}$/),
      text_bytes: z.number().int().nonnegative(),
      block_bytes: z.number().int().positive(),
      blocks: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
    })
    .optional(),
  index_shards: z
    .array(
      z.object({
        file: z.string().min(1),
        offset: z.number().int().nonnegative(),
        count: z.number().int().nonnegative(),
      }),
    )
    .min(1)
    .max(MAX_INDEX_SHARDS)
    .optional(),
  report: z
    .object({
      skipped: z.array(z.object({ key: z.string(), line: z.number().int().optional(), reason: z.string() })),
    })
    .optional(),
});

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
}

/** Parses and validates manifest.json (bytes, text or an already parsed value). */
export function parseManifest(input: Uint8Array | string | unknown): SnapshotManifest {
  let value: unknown = input;
  if (input instanceof Uint8Array || typeof input === "string") {
    const text = typeof input === "string" ? input : new TextDecoder().decode(input);
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new SnapshotInvalidError(`manifest.json is not JSON: ${(e as Error).message}`);
    }
  }
  const parsed = manifestSchema.safeParse(value);
  if (!parsed.success) throw new SnapshotInvalidError(`manifest.json is invalid: ${describeIssues(parsed.error)}`);
  const m = parsed.data as SnapshotManifest;
  if (m.format_version > SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotInvalidError(
      `manifest.json has format_version ${m.format_version}; this build reads up to ${SNAPSHOT_FORMAT_VERSION}`,
    );
  }
  if (m.index_shards) checkIndexShards(m);
  else if (!m.files[INDEX_FILE]) throw new SnapshotInvalidError(`manifest.json lists no ${INDEX_FILE}`);
  if (!m.files[PASSAGES_FILE]) throw new SnapshotInvalidError(`manifest.json lists no ${PASSAGES_FILE}`);
  if (m.sparse && !m.files[m.sparse.file]) {
    throw new SnapshotInvalidError(`manifest.json describes a sparse index in ${m.sparse.file} but lists no such file`);
  }
  if (m.passages) {
    const { head_bytes, text_bytes, block_bytes, blocks } = m.passages;
    if (
      head_bytes + text_bytes !== m.files[PASSAGES_FILE].bytes ||
      blocks.length !== Math.ceil(text_bytes / block_bytes)
    ) {
      throw new SnapshotInvalidError(`manifest.json: the passages layout does not match ${PASSAGES_FILE}`);
    }
  }
  if (m.embedder.dimensions <= 0) throw new SnapshotInvalidError("manifest.json: embedder.dimensions must be positive");
  return m;
}

/** Contiguous ordinal ranges from 0 that cover every passage, each in a listed file. */
function checkIndexShards(m: SnapshotManifest): void {
  const shards = m.index_shards!;
  let next = 0;
  const files = new Set<string>();
  for (const [i, s] of shards.entries()) {
    if (!m.files[s.file])
      throw new SnapshotInvalidError(`manifest.json: index shard ${i} is in ${s.file}, which it does not list`);
    if (files.has(s.file))
      throw new SnapshotInvalidError(`manifest.json: index shards ${i} and another share ${s.file}`);
    files.add(s.file);
    if (s.offset !== next) {
      throw new SnapshotInvalidError(
        `manifest.json: index shard ${i} starts at ordinal ${s.offset}, expected ${next} (shards must be contiguous)`,
      );
    }
    next += s.count;
  }
  if (next !== m.counts.passages) {
    throw new SnapshotInvalidError(
      `manifest.json: the index shards hold ${next} vectors, the manifest counts ${m.counts.passages} passages`,
    );
  }
}

/** One dense index file of a snapshot and the ordinals it holds: its label j is ordinal offset + j. */
export interface IndexShard {
  file: string;
  offset: number;
  count: number;
}

/** The snapshot's dense index files; an unsharded snapshot is one shard (index.faiss, all ordinals). */
export function indexShardsOf(m: SnapshotManifest): IndexShard[] {
  return m.index_shards
    ? m.index_shards.map((s) => ({ ...s }))
    : [{ file: INDEX_FILE, offset: 0, count: m.counts.passages }];
}

/**
 * The manifest as one shard's index file sees it: that file as index.faiss and its count as the
 * passage count, so index decoders and sinks written for single-index snapshots (which size and
 * check themselves from those two fields) read a shard unchanged.
 */
export function shardManifestView(m: SnapshotManifest, shard: IndexShard): SnapshotManifest {
  if (!m.index_shards && shard.file === INDEX_FILE) return m;
  const entry = m.files[shard.file];
  if (!entry) throw new SnapshotInvalidError(`snapshot ${m.version} has no file "${shard.file}" in its manifest`);
  return { ...m, files: { ...m.files, [INDEX_FILE]: entry }, counts: { ...m.counts, passages: shard.count } };
}

/** Checks a downloaded file against its manifest entry (size, then sha256). */
export function verifySnapshotFile(name: string, bytes: Uint8Array, manifest: SnapshotManifest): void {
  const entry = manifest.files[name];
  if (!entry) throw new SnapshotInvalidError(`snapshot ${manifest.version} has no file "${name}" in its manifest`);
  verifyDigest(name, bytes.byteLength, sha256Hex(bytes), manifest);
}

/** Same check when the digest was computed while streaming. */
export function verifyDigest(name: string, bytes: number, sha256: string, manifest: SnapshotManifest): void {
  const entry = manifest.files[name];
  if (!entry) throw new SnapshotInvalidError(`snapshot ${manifest.version} has no file "${name}" in its manifest`);
  if (bytes !== entry.bytes) {
    throw new SnapshotInvalidError(
      `snapshot ${manifest.version}: ${name} has ${bytes} bytes, the manifest says ${entry.bytes}`,
    );
  }
  if (sha256 !== entry.sha256) {
    throw new SnapshotInvalidError(
      `snapshot ${manifest.version}: ${name} sha256 ${sha256} does not match the manifest (${entry.sha256})`,
    );
  }
}

// ---------- pointer ----------

export interface SnapshotPointer {
  version: string;
  manifest_key: string;
  created_at: string;
}

const pointerSchema = z.object({
  version: z.string().regex(VERSION_RE),
  manifest_key: z.string().min(1),
  created_at: z.iso.datetime({ offset: true }),
});

export function parsePointer(input: Uint8Array | string): SnapshotPointer {
  const text = typeof input === "string" ? input : new TextDecoder().decode(input);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new SnapshotInvalidError(`${POINTER_FILE} is not JSON: ${(e as Error).message}`);
  }
  const parsed = pointerSchema.safeParse(value);
  if (!parsed.success) throw new SnapshotInvalidError(`${POINTER_FILE} is invalid: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

// ---------- passage store ----------
//
// Layout v2 (written since the lazily read store; little-endian):
//   0  magic "TSPS" (4 bytes)
//   4  u32 format version (2)
//   8  u32 record count N
//   12 u32 reserved (0)
//   16 (N+1) × u64 offsets of the info records, relative to the info section
//   16 + 8(N+1)  (N+1) × u64 offsets of the texts, relative to the text section
//   16 + 16(N+1) info section: UTF-8 JSON objects without the text (id, document, source,
//                metadata, offsets), one per passage, in ordinal order
//   head_bytes   text section: the UTF-8 texts, in ordinal order
// Everything up to head_bytes is what filters and collapse need; the texts are only needed for
// the passages a query reranks or returns, so a lazily read store fetches the head at load and
// the texts by byte range (per-block digests in the manifest: `passages`).
// Layout v1 (older snapshots): the same header, one offset table, and JSON records with the text
// inside; it is always read whole.

const MAGIC = [0x54, 0x53, 0x50, 0x53]; // "TSPS"
const STORE_VERSION_V1 = 1;
const STORE_VERSION = 2;
const HEADER = 16;
/** Text bytes covered by one digest in the manifest: the unit of a ranged text read. */
export const PASSAGE_TEXT_BLOCK_BYTES = 64 * 1024;

/** Where a v2 store's texts start and the digests a ranged read verifies (manifest `passages`). */
export interface PassageLayout {
  format: "tsps-v2";
  /** Bytes before the text section: header, both offset tables and the info records. */
  head_bytes: number;
  head_sha256: string;
  text_bytes: number;
  block_bytes: number;
  /** sha256 of each block_bytes slice of the text section (the last one shorter). */
  blocks: string[];
}

interface StoredPassage {
  id: string;
  docId: string;
  text?: string;
  source?: string;
  metadata?: Record<string, unknown>;
  start: number;
  end: number;
}

export function encodePassageStore(passages: readonly Passage[]): Uint8Array {
  const enc = new TextEncoder();
  const infos: Uint8Array[] = new Array(passages.length);
  const texts: Uint8Array[] = new Array(passages.length);
  let infoBytes = 0;
  let textBytes = 0;
  for (let i = 0; i < passages.length; i++) {
    const p = passages[i];
    const rec: StoredPassage = { id: p.id, docId: p.docId, start: p.start, end: p.end };
    if (p.source !== undefined) rec.source = p.source;
    if (p.metadata !== undefined) rec.metadata = p.metadata;
    infos[i] = enc.encode(JSON.stringify(rec));
    texts[i] = enc.encode(p.text);
    infoBytes += infos[i].byteLength;
    textBytes += texts[i].byteLength;
  }
  const n = passages.length;
  const infoStart = HEADER + 16 * (n + 1);
  const textStart = infoStart + infoBytes;
  const out = new Uint8Array(textStart + textBytes);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(MAGIC, 0);
  view.setUint32(4, STORE_VERSION, true);
  view.setUint32(8, n, true);
  view.setUint32(12, 0, true);
  let infoOff = 0;
  let textOff = 0;
  for (let i = 0; i <= n; i++) {
    view.setBigUint64(HEADER + 8 * i, BigInt(infoOff), true);
    view.setBigUint64(HEADER + 8 * (n + 1) + 8 * i, BigInt(textOff), true);
    if (i === n) break;
    out.set(infos[i], infoStart + infoOff);
    out.set(texts[i], textStart + textOff);
    infoOff += infos[i].byteLength;
    textOff += texts[i].byteLength;
  }
  return out;
}

/** The manifest's `passages` entry of a v2 store (null for v1 bytes). */
export function describePassageStore(bytes: Uint8Array, blockBytes = PASSAGE_TEXT_BLOCK_BYTES): PassageLayout | null {
  const head = parseHead(bytes);
  if (head.version !== STORE_VERSION) return null;
  const blocks: string[] = [];
  for (let at = head.textStart; at < bytes.byteLength; at += blockBytes) {
    blocks.push(sha256Hex(bytes.subarray(at, Math.min(bytes.byteLength, at + blockBytes))));
  }
  return {
    format: "tsps-v2",
    head_bytes: head.textStart,
    head_sha256: sha256Hex(bytes.subarray(0, head.textStart)),
    text_bytes: bytes.byteLength - head.textStart,
    block_bytes: blockBytes,
    blocks,
  };
}

const badStore = (why: string) => new SnapshotInvalidError(`passage store is invalid: ${why}`);

interface StoreHead {
  version: number;
  count: number;
  view: DataView;
  bytes: Uint8Array;
  /** v1: records section start; v2: info section start. */
  infoStart: number;
  /** v2: text section start (= head_bytes); v1: -1. */
  textStart: number;
  infoOffset(i: number): number;
  textOffset(i: number): number;
}

/** Header and offset tables; `bytes` may be the head alone (v2) or the whole store. */
function parseHead(bytes: Uint8Array): StoreHead {
  if (bytes.byteLength < HEADER) throw badStore(`only ${bytes.byteLength} bytes`);
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) throw badStore("bad magic (not a passage store)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== STORE_VERSION && version !== STORE_VERSION_V1) throw badStore(`unsupported store version ${version}`);
  const count = view.getUint32(8, true);
  const tables = version === STORE_VERSION ? 2 : 1;
  const infoStart = HEADER + 8 * tables * (count + 1);
  if (infoStart > bytes.byteLength)
    throw badStore(`offset table for ${count} records overruns ${bytes.byteLength} bytes`);
  const infoOffset = (i: number) => Number(view.getBigUint64(HEADER + 8 * i, true));
  const textOffset = (i: number) => Number(view.getBigUint64(HEADER + 8 * (count + 1) + 8 * i, true));
  if (infoOffset(0) !== 0) throw badStore("offset table does not start at 0");
  const textStart = version === STORE_VERSION ? infoStart + infoOffset(count) : -1;
  if (version === STORE_VERSION && (textOffset(0) !== 0 || textStart > bytes.byteLength)) {
    throw badStore("offset tables do not fit the store");
  }
  return { version, count, view, bytes, infoStart, textStart, infoOffset, textOffset };
}

function decodeInfo(head: StoreHead, ordinal: number, decoder: TextDecoder): StoredPassage {
  const start = head.infoOffset(ordinal);
  const end = head.infoOffset(ordinal + 1);
  const limit = (head.version === STORE_VERSION ? head.textStart : head.bytes.byteLength) - head.infoStart;
  if (end < start || end > limit) throw badStore(`record ${ordinal} has offsets [${start}, ${end})`);
  try {
    return JSON.parse(decoder.decode(head.bytes.subarray(head.infoStart + start, head.infoStart + end)));
  } catch (e) {
    throw badStore(`record ${ordinal} does not decode: ${(e as Error).message}`);
  }
}

function toPassage(rec: StoredPassage, text: string): Passage {
  const p: Passage = { id: rec.id, docId: rec.docId, text, start: rec.start, end: rec.end };
  if (rec.source !== undefined) p.source = rec.source;
  if (rec.metadata !== undefined) p.metadata = rec.metadata;
  return p;
}

function checkOrdinal(ordinal: number, count: number): void {
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
    throw new ValidationError(`passage ordinal ${ordinal} is out of range [0, ${count})`);
  }
}

/** A store held whole in memory (v1 or v2). */
export function openPassageStore(bytes: Uint8Array): PassageStore {
  const head = parseHead(bytes);
  const { count } = head;
  if (head.version === STORE_VERSION_V1) {
    if (head.infoOffset(count) !== bytes.byteLength - head.infoStart)
      throw badStore("offset table does not span the records section");
  } else if (head.textOffset(count) !== bytes.byteLength - head.textStart) {
    throw badStore("text offsets do not span the text section");
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const textOf = (ordinal: number): string => {
    const start = head.textOffset(ordinal);
    const end = head.textOffset(ordinal + 1);
    if (end < start || head.textStart + end > bytes.byteLength)
      throw badStore(`text ${ordinal} has offsets [${start}, ${end})`);
    try {
      return decoder.decode(bytes.subarray(head.textStart + start, head.textStart + end));
    } catch (e) {
      throw badStore(`text ${ordinal} does not decode: ${(e as Error).message}`);
    }
  };
  return {
    count,
    get(ordinal: number): Passage {
      checkOrdinal(ordinal, count);
      const rec = decodeInfo(head, ordinal, decoder);
      return toPassage(rec, head.version === STORE_VERSION_V1 ? (rec.text ?? "") : textOf(ordinal));
    },
  };
}

/** Reads text bytes [start, end) of the text section (verified), for a lazily read store. */
export type TextRangeReader = (start: number, end: number, signal?: AbortSignal) => Promise<Uint8Array>;

/**
 * A v2 store of which only the head is in memory: info() answers at once; load() reads the texts
 * of the passages a request needs through `readText` (which verifies and caches blocks). A failed
 * read fails that load(), never the store.
 */
export function openLazyPassageStore(
  headBytes: Uint8Array,
  layout: PassageLayout,
  readText: TextRangeReader,
  describe: () => Record<string, unknown> = () => ({}),
): PassageStore {
  const head = parseHead(headBytes);
  if (head.version !== STORE_VERSION || head.textStart !== layout.head_bytes) {
    throw badStore("the head does not match the manifest's passages layout");
  }
  if (head.textOffset(head.count) !== layout.text_bytes) throw badStore("text offsets do not span the text section");
  const { count } = head;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const info = (ordinal: number): PassageInfo => {
    checkOrdinal(ordinal, count);
    const { text: _text, ...rec } = decodeInfo(head, ordinal, decoder);
    return rec;
  };
  return {
    count,
    info,
    get(ordinal: number): Passage {
      checkOrdinal(ordinal, count);
      throw new Error(`passage ${ordinal}: this store reads texts lazily; use load()`);
    },
    async load(ordinals: readonly number[], signal?: AbortSignal): Promise<Passage[]> {
      const wanted = [...new Set(ordinals)].sort((a, b) => a - b);
      for (const o of wanted) checkOrdinal(o, count);
      // Neighbouring texts are read as one range when they are at most a block apart.
      const ranges: Array<{ start: number; end: number; ordinals: number[] }> = [];
      for (const o of wanted) {
        const start = head.textOffset(o);
        const end = head.textOffset(o + 1);
        const last = ranges[ranges.length - 1];
        if (last && start - last.end <= layout.block_bytes) {
          last.end = Math.max(last.end, end);
          last.ordinals.push(o);
        } else ranges.push({ start, end, ordinals: [o] });
      }
      const texts = new Map<number, string>();
      await Promise.all(
        ranges.map(async (r) => {
          const bytes = await readText(r.start, r.end, signal);
          for (const o of r.ordinals) {
            const a = head.textOffset(o) - r.start;
            const b = head.textOffset(o + 1) - r.start;
            try {
              texts.set(o, decoder.decode(bytes.subarray(a, b)));
            } catch (e) {
              throw badStore(`text ${o} does not decode: ${(e as Error).message}`);
            }
          }
        }),
      );
      return ordinals.map((o) => toPassage(decodeInfo(head, o, decoder), texts.get(o) ?? ""));
    },
    describe,
  };
}

/** Passages with their texts from any store: load() where the store reads texts lazily, else get(). */
export async function readPassages(store: PassageStore, ordinals: readonly number[]): Promise<Passage[]> {
  return store.load ? store.load(ordinals) : ordinals.map((o) => store.get(o));
}
