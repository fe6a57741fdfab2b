// Turns corpus objects (JSONL/NDJSON, JSON, Markdown, plain text) into SourceDocuments.
// Pure: bodies arrive as bytes, strings or async byte streams; reading files or S3 is the adapters' job.
// Bad rows never abort a build: each one is reported through onSkip (with its line number) and skipped.
import type { Metadata, SourceDocument } from "./types.ts";

export interface SkippedInput {
  key: string;
  /** 1-based line number for JSONL rows. */
  line?: number;
  reason: string;
}

export interface ParseOptions {
  onSkip?: (skip: SkippedInput) => void;
  /** Prepended to every document id (e.g. to keep ids of different corpora apart). */
  idPrefix?: string;
  /** Removed from the front of `key` to form the id of Markdown/text documents (e.g. "corpus/"). */
  corpusPrefix?: string;
}

export type CorpusBody = AsyncIterable<Uint8Array> | Uint8Array | string;

export type CorpusFormat = "jsonl" | "json" | "markdown" | "text";

const FORMATS: Record<string, CorpusFormat> = {
  jsonl: "jsonl",
  ndjson: "jsonl",
  json: "json",
  md: "markdown",
  markdown: "markdown",
  txt: "text",
};

/** The parser a key maps to by its extension (case-insensitive), or null when unsupported. */
export function corpusFormat(key: string): CorpusFormat | null {
  const base = key.slice(key.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  if (dot <= 0) return null;
  return FORMATS[base.slice(dot + 1).toLowerCase()] ?? null;
}

/**
 * Documents of one corpus object, chosen by the key's extension. JSONL is read line by line and
 * never held as one string. Within one object a repeated id keeps its last occurrence (the earlier
 * ones are reported as skipped), so re-uploading a corrected row at the end of a file works.
 */
export async function* parseCorpusObject(
  key: string,
  body: CorpusBody,
  opts: ParseOptions = {},
): AsyncGenerator<SourceDocument> {
  const skip = (reason: string, line?: number) =>
    opts.onSkip?.(line === undefined ? { key, reason } : { key, line, reason });
  const format = corpusFormat(key);
  switch (format) {
    case "jsonl":
      yield* parseJsonLines(key, body, opts, skip);
      return;
    case "json":
      yield* parseJsonDocument(key, body, opts, skip);
      return;
    case "markdown":
    case "text": {
      const doc = await parseWholeText(key, body, format, opts, skip);
      if (doc) yield doc;
      return;
    }
    default: {
      const base = key.slice(key.lastIndexOf("/") + 1);
      const ext = base.lastIndexOf(".") > 0 ? base.slice(base.lastIndexOf(".")) : "(no extension)";
      skip(`unsupported file type ${ext}; expected .jsonl, .ndjson, .json, .md, .markdown or .txt`);
    }
  }
}

// ---------- JSON rows ----------

type RowResult = { doc: SourceDocument } | { error: string };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates one row: `{id, text, source?, metadata?}` or a BEIR row `{_id, title?, text, metadata?}`. */
export function rowToDocument(row: unknown, key: string, idPrefix = ""): RowResult {
  if (!isPlainObject(row)) return { error: "expected a JSON object" };
  const rawId = row.id !== undefined ? row.id : row._id;
  if (rawId === undefined || rawId === null) return { error: 'missing "id" (or BEIR "_id")' };
  if (typeof rawId !== "string") return { error: `"id" must be a string, got ${typeof rawId}` };
  if (rawId.trim() === "") return { error: '"id" is empty' };
  if (row.text !== undefined && typeof row.text !== "string")
    return { error: `"text" must be a string, got ${typeof row.text}` };
  if (row.title !== undefined && row.title !== null && typeof row.title !== "string")
    return { error: '"title" must be a string' };
  if (row.source !== undefined && row.source !== null && typeof row.source !== "string")
    return { error: '"source" must be a string' };
  if (row.metadata !== undefined && row.metadata !== null && !isPlainObject(row.metadata))
    return { error: '"metadata" must be an object' };

  const body = (row.text as string | undefined) ?? "";
  const title = typeof row.title === "string" ? row.title.trim() : "";
  // BEIR rows carry the title separately; retrieval and reranking both benefit from seeing it.
  const text = title && body.trim() ? `${title}\n\n${body}` : title || body;
  if (text.trim() === "") return { error: 'missing or empty "text"' };

  const metadata: Metadata = { ...((row.metadata as Metadata | undefined) ?? {}) };
  if (title && metadata.title === undefined) metadata.title = title;
  const doc: SourceDocument = { id: idPrefix + rawId, text, source: (row.source as string | undefined) ?? key };
  if (Object.keys(metadata).length > 0) doc.metadata = metadata;
  return { doc };
}

const newline = 0x0a;

/** Lines of a byte stream as [lineNumber, bytes]; `\n` never occurs inside a multi-byte UTF-8 sequence. */
async function* byteLines(body: CorpusBody): AsyncGenerator<[number, Uint8Array]> {
  let pending: Uint8Array[] = [];
  let lineNo = 0;
  const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
    typeof body === "string" ? [new TextEncoder().encode(body)] : body instanceof Uint8Array ? [body] : body;
  for await (const chunk of chunks) {
    let from = 0;
    for (let nl = chunk.indexOf(newline); nl !== -1; nl = chunk.indexOf(newline, from)) {
      const piece = chunk.subarray(from, nl);
      yield [++lineNo, pending.length ? concat([...pending, piece]) : piece];
      pending = [];
      from = nl + 1;
    }
    if (from < chunk.length) pending.push(chunk.subarray(from));
  }
  if (pending.length) yield [++lineNo, concat(pending)];
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// fatal: a broken byte sequence is reported instead of silently becoming U+FFFD; the decoder drops a leading BOM.
const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** A stream is read once; to keep only the last occurrence of each id we replay its bytes from memory. */
async function* spool(body: CorpusBody, into: Uint8Array[]): AsyncGenerator<Uint8Array> {
  const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
    typeof body === "string" ? [new TextEncoder().encode(body)] : body instanceof Uint8Array ? [body] : body;
  const isStream = typeof body !== "string" && !(body instanceof Uint8Array);
  for await (const chunk of chunks) {
    // Copy streamed chunks: some streams reuse their buffers.
    const own = isStream ? chunk.slice() : chunk;
    into.push(own);
    yield own;
  }
}

function parseLine(bytes: Uint8Array, key: string, idPrefix: string): RowResult | null {
  const line = decodeUtf8(bytes);
  if (line === null) return { error: "line is not valid UTF-8" };
  const trimmed = line.trim();
  if (trimmed === "") return null;
  let row: unknown;
  try {
    row = JSON.parse(trimmed);
  } catch (e) {
    return { error: `malformed JSON: ${(e as Error).message}` };
  }
  return rowToDocument(row, key, idPrefix);
}

async function* parseJsonLines(
  key: string,
  body: CorpusBody,
  opts: ParseOptions,
  skip: (reason: string, line?: number) => void,
): AsyncGenerator<SourceDocument> {
  const idPrefix = opts.idPrefix ?? "";
  // Pass 1 validates every line (reporting skips) and finds the last line of each id.
  // Pass 2 replays the spooled bytes and yields each document at its last line; only ids and
  // line numbers stay in memory between the passes, never all parsed documents.
  const spooled: Uint8Array[] = [];
  const lastLine = new Map<string, number>();
  let rows = 0;
  for await (const [lineNo, bytes] of byteLines(spool(body, spooled))) {
    const r = parseLine(bytes, key, idPrefix);
    if (r === null) continue;
    rows++;
    if ("error" in r) {
      skip(r.error, lineNo);
      continue;
    }
    const prev = lastLine.get(r.doc.id);
    if (prev !== undefined) skip(`duplicate id "${r.doc.id}": replaced by line ${lineNo}`, prev);
    lastLine.set(r.doc.id, lineNo);
  }
  if (rows === 0) return skip("empty file");
  for await (const [lineNo, bytes] of byteLines(spooledIterable(spooled))) {
    const r = parseLine(bytes, key, idPrefix);
    if (r !== null && "doc" in r && lastLine.get(r.doc.id) === lineNo) yield r.doc;
  }
}

async function* spooledIterable(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* chunks;
}

async function readAll(body: CorpusBody): Promise<Uint8Array> {
  if (typeof body === "string") return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  const parts: Uint8Array[] = [];
  for await (const chunk of body) parts.push(chunk.slice());
  return concat(parts.length ? parts : [new Uint8Array(0)]);
}

async function* parseJsonDocument(
  key: string,
  body: CorpusBody,
  opts: ParseOptions,
  skip: (reason: string, line?: number) => void,
): AsyncGenerator<SourceDocument> {
  const text = decodeUtf8(await readAll(body));
  if (text === null) return skip("file is not valid UTF-8");
  if (text.trim() === "") return skip("empty file");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return skip(`malformed JSON: ${(e as Error).message}`);
  }
  const rows = Array.isArray(parsed) ? parsed : [parsed];
  const byId = new Map<string, { doc: SourceDocument; item: number }>();
  rows.forEach((row, i) => {
    const r = rowToDocument(row, key, opts.idPrefix ?? "");
    if ("error" in r) {
      skip(`item ${i}: ${r.error}`);
      return;
    }
    const prev = byId.get(r.doc.id);
    if (prev) {
      skip(`item ${prev.item}: duplicate id "${r.doc.id}": replaced by item ${i}`);
      byId.delete(r.doc.id); // re-insert so the kept document sits at its last position
    }
    byId.set(r.doc.id, { doc: r.doc, item: i });
  });
  for (const { doc } of byId.values()) yield doc;
}

// ---------- Markdown and plain text ----------

/** Text of the first level-1 ATX heading (`# Title`) outside fenced code blocks, if any. */
export function markdownTitle(text: string): string | undefined {
  let fence: string | null = null;
  for (const line of text.split("\n")) {
    const f = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (fence === null) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
      continue;
    }
    if (fence !== null) continue;
    const h = /^\s{0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (h?.[1].trim()) return h[1].trim();
  }
  return undefined;
}

async function parseWholeText(
  key: string,
  body: CorpusBody,
  format: "markdown" | "text",
  opts: ParseOptions,
  skip: (reason: string) => void,
): Promise<SourceDocument | null> {
  const decoded = decodeUtf8(await readAll(body));
  if (decoded === null) {
    skip("file is not valid UTF-8");
    return null;
  }
  // Offsets of passages refer to this normalised text, so CRLF files chunk like LF files.
  const text = decoded.replace(/\r\n?/g, "\n");
  if (text.trim() === "") {
    skip("empty file");
    return null;
  }
  const prefix = opts.corpusPrefix ?? "";
  const relative = prefix && key.startsWith(prefix) ? key.slice(prefix.length) : key;
  const doc: SourceDocument = { id: (opts.idPrefix ?? "") + relative, text, source: key };
  const title = format === "markdown" ? markdownTitle(text) : undefined;
  if (title) doc.metadata = { title };
  return doc;
}
