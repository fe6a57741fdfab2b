// Reader of BEIR-layout test collections: corpus.jsonl ({_id, title, text}), queries.jsonl
// ({_id, text}) and qrels.tsv (header line, then query-id TAB corpus-id TAB score). Files are
// streamed line by line; malformed input fails with the file and line number.
//
// Empty documents (no title, no text; Cranfield 471 and 995) are kept: they count in the corpus
// size, can be judged, produce no passage for the first stage and no term for BM25, so no
// configuration can retrieve them.
import { createReadStream, existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { ValidationError } from "../../shared/core/errors.ts";
import type { Judgments } from "../../shared/core/metrics.ts";

export interface BeirDocument {
  id: string;
  title: string;
  text: string;
}

export interface BeirQuery {
  id: string;
  text: string;
}

export interface BeirDataset {
  name: string;
  dir: string;
  corpus: BeirDocument[];
  queries: BeirQuery[];
  /** query id → (document id → graded relevance). */
  qrels: Map<string, Judgments>;
}

/** The text that is indexed for a document: title and body, as BEIR's retrievers concatenate them. */
export function documentText(doc: BeirDocument): string {
  if (!doc.title) return doc.text;
  if (!doc.text) return doc.title;
  return `${doc.title}\n\n${doc.text}`;
}

async function* lines(file: string): AsyncGenerator<{ line: string; n: number }> {
  if (!existsSync(file)) throw new ValidationError(`missing dataset file ${file}`);
  const rl = createInterface({
    input: createReadStream(file, { encoding: "utf8" }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line.trim() !== "") yield { line, n };
  }
}

function parseJsonLine(file: string, n: number, line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new ValidationError(`${file}:${n}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new ValidationError(`${file}:${n}: expected a JSON object`);
  return value as Record<string, unknown>;
}

function idOf(file: string, n: number, row: Record<string, unknown>): string {
  const id = row._id;
  if (typeof id === "string" && id !== "") return id;
  if (typeof id === "number" && Number.isFinite(id)) return String(id);
  throw new ValidationError(`${file}:${n}: "_id" must be a non-empty string`);
}

function optionalString(file: string, n: number, row: Record<string, unknown>, field: string): string {
  const v = row[field];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new ValidationError(`${file}:${n}: "${field}" must be a string`);
  return v;
}

export async function* readCorpus(file: string): AsyncGenerator<BeirDocument> {
  const seen = new Set<string>();
  for await (const { line, n } of lines(file)) {
    const row = parseJsonLine(file, n, line);
    const id = idOf(file, n, row);
    if (seen.has(id)) throw new ValidationError(`${file}:${n}: duplicate document id "${id}"`);
    seen.add(id);
    yield { id, title: optionalString(file, n, row, "title"), text: optionalString(file, n, row, "text") };
  }
}

export async function* readQueries(file: string): AsyncGenerator<BeirQuery> {
  const seen = new Set<string>();
  for await (const { line, n } of lines(file)) {
    const row = parseJsonLine(file, n, line);
    const id = idOf(file, n, row);
    if (seen.has(id)) throw new ValidationError(`${file}:${n}: duplicate query id "${id}"`);
    seen.add(id);
    yield { id, text: optionalString(file, n, row, "text") };
  }
}

/** qrels.tsv: an optional header line (first field "query-id"), then integer-graded judgments. */
export async function readQrels(file: string): Promise<Map<string, Judgments>> {
  const qrels = new Map<string, Map<string, number>>();
  for await (const { line, n } of lines(file)) {
    const fields = line.split("\t").map((f) => f.trim());
    if (n === 1 && fields[0] === "query-id") continue;
    if (fields.length !== 3)
      throw new ValidationError(`${file}:${n}: expected 3 tab-separated fields, got ${fields.length}`);
    const [qid, docId, raw] = fields;
    const grade = Number(raw);
    if (!qid || !docId || raw === "" || !Number.isInteger(grade))
      throw new ValidationError(`${file}:${n}: bad judgment "${line}"`);
    let judgments = qrels.get(qid);
    if (!judgments) qrels.set(qid, (judgments = new Map()));
    // trec_eval refuses a repeated (query, document) pair; so do we.
    if (judgments.has(docId))
      throw new ValidationError(`${file}:${n}: duplicate judgment for query "${qid}", document "${docId}"`);
    judgments.set(docId, grade);
  }
  return qrels;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The judgments file: qrels.tsv, or BEIR's usual qrels/test.tsv. */
function qrelsFile(dir: string): string {
  const flat = path.join(dir, "qrels.tsv");
  const beir = path.join(dir, "qrels", "test.tsv");
  return !existsSync(flat) && existsSync(beir) ? beir : flat;
}

/**
 * Reads a whole dataset folder. Judgments of a query that queries.jsonl lacks are dropped (it
 * cannot be run); judgments of a document that corpus.jsonl lacks are kept (they still count as
 * relevant documents, as trec_eval counts them). Both are reported in `warnings`.
 */
export async function loadDataset(dir: string): Promise<BeirDataset & { warnings: string[] }> {
  const abs = path.resolve(dir);
  if (!existsSync(abs)) throw new ValidationError(`dataset folder ${abs} does not exist`);
  const [corpus, queries, qrels] = await Promise.all([
    collect(readCorpus(path.join(abs, "corpus.jsonl"))),
    collect(readQueries(path.join(abs, "queries.jsonl"))),
    readQrels(qrelsFile(abs)),
  ]);
  const warnings: string[] = [];
  const docIds = new Set(corpus.map((d) => d.id));
  const queryIds = new Set(queries.map((q) => q.id));
  let unknownDocs = 0;
  for (const [qid, judgments] of qrels) {
    if (!queryIds.has(qid)) {
      qrels.delete(qid);
      warnings.push(`qrels judge query "${qid}", which queries.jsonl lacks: dropped`);
      continue;
    }
    for (const docId of judgments.keys()) if (!docIds.has(docId)) unknownDocs++;
  }
  if (unknownDocs)
    warnings.push(
      `${unknownDocs} judgment(s) name documents absent from corpus.jsonl (kept: they count as unretrieved)`,
    );
  return { name: path.basename(abs), dir: abs, corpus, queries, qrels, warnings };
}
