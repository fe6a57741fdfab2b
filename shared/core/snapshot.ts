// Snapshot format: a versioned prefix `${indexPrefix}v/${version}/` holding index.faiss, a
// passage store and manifest.json, plus a small pointer `${indexPrefix}LATEST.json` naming the
// live version (written last, conditionally, by publish.ts). Pure: no SDKs, no native addons.
import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { SnapshotInvalidError, ValidationError } from "./errors.ts";
import type { PassageStore, SnapshotManifest } from "./ports.ts";
import type { Passage } from "./types.ts";

export const SNAPSHOT_FORMAT_VERSION = 1;
export const INDEX_FILE = "index.faiss";
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
  kind: z.enum(["openai", "onnx", "hashing"]),
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
  for (const name of [INDEX_FILE, PASSAGES_FILE]) {
    if (!m.files[name]) throw new SnapshotInvalidError(`manifest.json lists no ${name}`);
  }
  if (m.sparse && !m.files[m.sparse.file]) {
    throw new SnapshotInvalidError(`manifest.json describes a sparse index in ${m.sparse.file} but lists no such file`);
  }
  if (m.embedder.dimensions <= 0) throw new SnapshotInvalidError("manifest.json: embedder.dimensions must be positive");
  return m;
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
// Layout (little-endian):
//   0  magic "TSPS" (4 bytes)
//   4  u32 format version (1)
//   8  u32 record count N
//   12 u32 reserved (0)
//   16 (N+1) × u64 byte offsets of each record, relative to the start of the records section
//   16 + 8(N+1)  records: UTF-8 JSON objects, one per passage, in ordinal order
// get(i) reads two offsets and decodes one record; nothing else is parsed.

const MAGIC = [0x54, 0x53, 0x50, 0x53]; // "TSPS"
const STORE_VERSION = 1;
const HEADER = 16;

interface StoredPassage {
  id: string;
  docId: string;
  text: string;
  source?: string;
  metadata?: Record<string, unknown>;
  start: number;
  end: number;
}

export function encodePassageStore(passages: readonly Passage[]): Uint8Array {
  const enc = new TextEncoder();
  const records: Uint8Array[] = new Array(passages.length);
  let total = 0;
  for (let i = 0; i < passages.length; i++) {
    const p = passages[i];
    const rec: StoredPassage = { id: p.id, docId: p.docId, text: p.text, start: p.start, end: p.end };
    if (p.source !== undefined) rec.source = p.source;
    if (p.metadata !== undefined) rec.metadata = p.metadata;
    records[i] = enc.encode(JSON.stringify(rec));
    total += records[i].byteLength;
  }
  const tableBytes = 8 * (passages.length + 1);
  const out = new Uint8Array(HEADER + tableBytes + total);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(MAGIC, 0);
  view.setUint32(4, STORE_VERSION, true);
  view.setUint32(8, passages.length, true);
  view.setUint32(12, 0, true);
  let offset = 0;
  let pos = HEADER + tableBytes;
  for (let i = 0; i < records.length; i++) {
    view.setBigUint64(HEADER + 8 * i, BigInt(offset), true);
    out.set(records[i], pos);
    pos += records[i].byteLength;
    offset += records[i].byteLength;
  }
  view.setBigUint64(HEADER + 8 * records.length, BigInt(offset), true);
  return out;
}

export function openPassageStore(bytes: Uint8Array): PassageStore {
  const bad = (why: string) => new SnapshotInvalidError(`passage store is invalid: ${why}`);
  if (bytes.byteLength < HEADER) throw bad(`only ${bytes.byteLength} bytes`);
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) throw bad("bad magic (not a passage store)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== STORE_VERSION) throw bad(`unsupported store version ${version}`);
  const count = view.getUint32(8, true);
  const recordsStart = HEADER + 8 * (count + 1);
  if (recordsStart > bytes.byteLength)
    throw bad(`offset table for ${count} records overruns ${bytes.byteLength} bytes`);
  const recordsBytes = bytes.byteLength - recordsStart;
  const offsetAt = (i: number) => Number(view.getBigUint64(HEADER + 8 * i, true));
  if (offsetAt(0) !== 0 || offsetAt(count) !== recordsBytes)
    throw bad("offset table does not span the records section");
  const decoder = new TextDecoder("utf-8", { fatal: true });

  return {
    count,
    get(ordinal: number): Passage {
      if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
        throw new ValidationError(`passage ordinal ${ordinal} is out of range [0, ${count})`);
      }
      const start = offsetAt(ordinal);
      const end = offsetAt(ordinal + 1);
      if (end < start || end > recordsBytes) throw bad(`record ${ordinal} has offsets [${start}, ${end})`);
      let rec: StoredPassage;
      try {
        rec = JSON.parse(decoder.decode(bytes.subarray(recordsStart + start, recordsStart + end)));
      } catch (e) {
        throw bad(`record ${ordinal} does not decode: ${(e as Error).message}`);
      }
      const p: Passage = { id: rec.id, docId: rec.docId, text: rec.text, start: rec.start, end: rec.end };
      if (rec.source !== undefined) p.source = rec.source;
      if (rec.metadata !== undefined) p.metadata = rec.metadata;
      return p;
    },
  };
}
