// The sparse half of the first stage: a BM25 inverted index over the snapshot's passages, stored
// as one file (sparse.bin) beside index.faiss and read in place: looking up a term is a binary
// search over a sorted dictionary and a decode of that term's postings only; nothing is parsed
// when the file is opened beyond a header check and one pass over the length table.
//
// The same code serves the evaluation harness's BM25 baseline (Bm25Index in bm25.ts builds one of
// these in memory), so the service's sparse retrieval and the baseline cannot drift apart.
//
// Layout (little-endian; every section starts at a multiple of 4):
//   0   magic "TSBM", u32 format version (1)
//   8   u32 N passages, u32 T terms, u32 non-empty passages, u32 reserved
//   24  f64 total length (sum of passage lengths in terms)
//   32  lengths       N × u16   passage lengths in terms (saturating at 65535), padded to 4
//       term offsets  (T+1) × u32  byte offsets into the term bytes
//       post offsets  (T+1) × u32  byte offsets into the postings bytes
//       dfs           T × u32      passages holding the term
//       term bytes    UTF-8 terms, sorted by bytes (binary search), padded to 4
//       postings      per term: for each passage holding it, varint(ordinal gap) then varint(tf)
// Bytes per passage ≈ 2 (length) + ~2.3 per distinct term in the passage (gap < 128 and tf < 128
// take one byte each) + the dictionary, which grows with the vocabulary, not the passage count.
import {
  ANSERINI_BM25,
  type AnalyzerOptions,
  analyze,
  type Bm25Params,
  LUCENE_ENGLISH_STOP_WORDS,
} from "./analyzer.ts";
import { SnapshotInvalidError, ValidationError } from "./errors.ts";
import { topK } from "./top-k.ts";
import type { TermStatistics } from "./types.ts";

export const SPARSE_FORMAT = "bm25-v1";
const MAGIC = [0x54, 0x53, 0x42, 0x4d]; // "TSBM"
const VERSION = 1;
const HEADER = 32;
const MAX_LENGTH = 0xffff;

/** What the manifest records about a sparse index (manifest.sparse). */
export interface SparseIndexInfo {
  format: typeof SPARSE_FORMAT;
  /** Snapshot file name (manifest.files key). */
  file: string;
  /** The analyzer the passages were indexed with; queries must be analysed the same way. */
  analyzer: AnalyzerDescription;
  params: Bm25Params;
  passages: number;
  /** Passages with at least one term (BM25's N). */
  documents: number;
  average_length: number;
  terms: number;
  bytes: number;
}

/** The analyzer of shared/core/bm25.ts, described for the manifest. */
export interface AnalyzerDescription {
  name: "lucene-english";
  tokenizer: "unicode-letters-digits";
  lowercase: true;
  possessive: true;
  stop_words: "lucene-english-33" | "none";
  stemmer: "porter" | "none";
}

export function describeAnalyzer(opts: AnalyzerOptions = {}): AnalyzerDescription {
  if (opts.stopWords instanceof Set && opts.stopWords !== LUCENE_ENGLISH_STOP_WORDS) {
    throw new ValidationError("a sparse index records its analyzer by name: custom stop-word lists are not supported");
  }
  return {
    name: "lucene-english",
    tokenizer: "unicode-letters-digits",
    lowercase: true,
    possessive: true,
    stop_words: opts.stopWords === false ? "none" : "lucene-english-33",
    stemmer: opts.stem === false ? "none" : "porter",
  };
}

/** The analyzer options a recorded description stands for; throws for one this build does not know. */
export function analyzerFromDescription(d: AnalyzerDescription): AnalyzerOptions {
  const known =
    d?.name === "lucene-english" &&
    d.tokenizer === "unicode-letters-digits" &&
    d.lowercase === true &&
    d.possessive === true &&
    (d.stop_words === "lucene-english-33" || d.stop_words === "none") &&
    (d.stemmer === "porter" || d.stemmer === "none");
  if (!known) throw new SnapshotInvalidError(`sparse index: unknown analyzer ${JSON.stringify(d)}`);
  return { stopWords: d.stop_words === "none" ? false : undefined, stem: d.stemmer === "porter" };
}

export type { TermStatistics };

export interface SparseSearchResult {
  ordinals: number[];
  scores: number[];
  /** Passages that matched at least one query term (before k and the filter). */
  matched: number;
}

export interface SparseIndex {
  readonly count: number;
  readonly params: Bm25Params;
  readonly analyzer: AnalyzerOptions;
  readonly documentCount: number;
  readonly averageLength: number;
  readonly termCount: number;
  readonly byteLength: number;
  /** Lucene's BM25 idf of an analysed term (0 for a term no passage holds). */
  idf(term: string): number;
  /** Passages holding an analysed term. */
  documentFrequency(term: string): number;
  /**
   * Best k passages matching at least one query term, by BM25 descending, ties by lower ordinal.
   * With `accept`, only passages it accepts are returned (still up to k).
   */
  search(query: string, k: number, accept?: (ordinal: number) => boolean): SparseSearchResult;
  termStatistics(query: string): TermStatistics;
}

// ---------- building ----------

class ByteSink {
  // Most terms are rare: start small (one per term) and double as postings grow.
  buf: Uint8Array;
  length = 0;
  constructor(initial = 16) {
    this.buf = new Uint8Array(initial);
  }
  private ensure(extra: number) {
    if (this.length + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  varint(v: number) {
    this.ensure(5);
    while (v >= 0x80) {
      this.buf[this.length++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.length++] = v;
  }
  bytes(b: Uint8Array) {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
}

interface BuildPosting {
  last: number;
  df: number;
  sink: ByteSink;
}

const pad4 = (n: number) => (n + 3) & ~3;

/** Adds passages one at a time (ordinal = call order) and writes the file. */
export class SparseIndexBuilder {
  readonly params: Bm25Params;
  readonly analyzer: AnalyzerOptions;
  private readonly lengths: number[] = [];
  private readonly postings = new Map<string, BuildPosting>();
  private totalLength = 0;
  private nonEmpty = 0;

  constructor(opts: { params?: Bm25Params; analyzer?: AnalyzerOptions } = {}) {
    this.params = opts.params ?? ANSERINI_BM25;
    const { k1, b } = this.params;
    if (!(k1 >= 0) || !(b >= 0 && b <= 1))
      throw new ValidationError(`BM25 needs k1 >= 0 and 0 <= b <= 1, got k1=${k1}, b=${b}`);
    this.analyzer = opts.analyzer ?? {};
    describeAnalyzer(this.analyzer);
  }

  get count(): number {
    return this.lengths.length;
  }

  add(text: string): void {
    const ordinal = this.lengths.length;
    const terms = analyze(text, this.analyzer);
    this.lengths.push(Math.min(terms.length, MAX_LENGTH));
    if (terms.length === 0) return;
    this.nonEmpty++;
    this.totalLength += Math.min(terms.length, MAX_LENGTH);
    const tf = new Map<string, number>();
    for (const t of terms) tf.set(t, (tf.get(t) ?? 0) + 1);
    for (const [term, n] of tf) {
      let p = this.postings.get(term);
      if (!p) this.postings.set(term, (p = { last: -1, df: 0, sink: new ByteSink() }));
      p.sink.varint(ordinal - p.last);
      p.sink.varint(n);
      p.last = ordinal;
      p.df++;
    }
  }

  /** The file bytes; the builder can keep adding afterwards. */
  finish(): Uint8Array {
    const enc = new TextEncoder();
    const terms = [...this.postings.keys()].map((t) => ({ t, bytes: enc.encode(t) }));
    terms.sort((a, b) => compareBytes(a.bytes, b.bytes));
    const n = this.lengths.length;
    const nTerms = terms.length;
    const termBytes = terms.reduce((a, x) => a + x.bytes.length, 0);
    let postBytes = 0;
    for (const { t } of terms) postBytes += this.postings.get(t)!.sink.length;
    if (postBytes > 0xffffffff || termBytes > 0xffffffff) {
      throw new ValidationError(`sparse index too large for format ${SPARSE_FORMAT} (${postBytes} bytes of postings)`);
    }
    const lengthsAt = HEADER;
    const termOffAt = lengthsAt + pad4(2 * n);
    const postOffAt = termOffAt + 4 * (nTerms + 1);
    const dfAt = postOffAt + 4 * (nTerms + 1);
    const termsAt = dfAt + 4 * nTerms;
    const postingsAt = termsAt + pad4(termBytes);
    const out = new Uint8Array(postingsAt + postBytes);
    const view = new DataView(out.buffer);
    out.set(MAGIC, 0);
    view.setUint32(4, VERSION, true);
    view.setUint32(8, n, true);
    view.setUint32(12, nTerms, true);
    view.setUint32(16, this.nonEmpty, true);
    view.setFloat64(24, this.totalLength, true);
    for (let i = 0; i < n; i++) view.setUint16(lengthsAt + 2 * i, this.lengths[i], true);
    let tOff = 0;
    let pOff = 0;
    terms.forEach(({ t, bytes }, i) => {
      const p = this.postings.get(t)!;
      view.setUint32(termOffAt + 4 * i, tOff, true);
      view.setUint32(postOffAt + 4 * i, pOff, true);
      view.setUint32(dfAt + 4 * i, p.df, true);
      out.set(bytes, termsAt + tOff);
      out.set(p.sink.buf.subarray(0, p.sink.length), postingsAt + pOff);
      tOff += bytes.length;
      pOff += p.sink.length;
    });
    view.setUint32(termOffAt + 4 * nTerms, tOff, true);
    view.setUint32(postOffAt + 4 * nTerms, pOff, true);
    return out;
  }

  /** What the manifest records about the file `finish()` returned. */
  info(file: string, bytes: number): SparseIndexInfo {
    return {
      format: SPARSE_FORMAT,
      file,
      analyzer: describeAnalyzer(this.analyzer),
      params: { ...this.params },
      passages: this.lengths.length,
      documents: this.nonEmpty,
      average_length: this.nonEmpty ? this.totalLength / this.nonEmpty : 0,
      terms: this.postings.size,
      bytes,
    };
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// ---------- reading ----------

export interface OpenSparseOptions {
  params?: Bm25Params;
  analyzer?: AnalyzerOptions;
}

/** Opens sparse.bin in place (the bytes are not copied). Throws SnapshotInvalidError on a bad file. */
export function openSparseIndex(bytes: Uint8Array, opts: OpenSparseOptions = {}): SparseIndex {
  const bad = (why: string) => new SnapshotInvalidError(`sparse index is invalid: ${why}`);
  if (bytes.byteLength < HEADER) throw bad(`only ${bytes.byteLength} bytes`);
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) throw bad("bad magic (not a sparse index)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== VERSION) throw bad(`unsupported version ${version}`);
  const n = view.getUint32(8, true);
  const nTerms = view.getUint32(12, true);
  const nonEmpty = view.getUint32(16, true);
  const totalLength = view.getFloat64(24, true);
  const lengthsAt = HEADER;
  const termOffAt = lengthsAt + pad4(2 * n);
  const postOffAt = termOffAt + 4 * (nTerms + 1);
  const dfAt = postOffAt + 4 * (nTerms + 1);
  const termsAt = dfAt + 4 * nTerms;
  if (termsAt > bytes.byteLength)
    throw bad(`tables for ${n} passages and ${nTerms} terms overrun ${bytes.byteLength} bytes`);
  const u32 = (at: number) => view.getUint32(at, true);
  const termBytes = u32(termOffAt + 4 * nTerms);
  const postingsAt = termsAt + pad4(termBytes);
  const postBytes = u32(postOffAt + 4 * nTerms);
  if (postingsAt + postBytes !== bytes.byteLength)
    throw bad(`sections end at ${postingsAt + postBytes}, the file has ${bytes.byteLength} bytes`);
  if (nonEmpty > n || !(totalLength >= 0)) throw bad("header counts are inconsistent");

  const params = opts.params ?? ANSERINI_BM25;
  const analyzer = opts.analyzer ?? {};
  const { k1, b } = params;
  const avgdl = nonEmpty ? totalLength / nonEmpty : 0;
  // BM25's length normalisation per passage, k1·(1 − b + b·|d|/avgdl), computed once.
  const norms = new Float64Array(n);
  let lengthSum = 0;
  let nonEmptySeen = 0;
  for (let i = 0; i < n; i++) {
    const len = view.getUint16(lengthsAt + 2 * i, true);
    lengthSum += len;
    if (len > 0) nonEmptySeen++;
    norms[i] = avgdl > 0 ? k1 * (1 - b + (b * len) / avgdl) : k1;
  }
  if (lengthSum !== totalLength || nonEmptySeen !== nonEmpty) throw bad("the length table does not match the header");
  const encoder = new TextEncoder();
  const termAt = (i: number) => bytes.subarray(termsAt + u32(termOffAt + 4 * i), termsAt + u32(termOffAt + 4 * i + 4));

  /** Dictionary slot of an analysed term, or -1. */
  const find = (term: string): number => {
    const key = encoder.encode(term);
    let lo = 0;
    let hi = nTerms - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareBytes(termAt(mid), key);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  };
  const dfOf = (slot: number) => (slot < 0 ? 0 : u32(dfAt + 4 * slot));
  const idfOfDf = (df: number) => (df === 0 ? 0 : Math.log(1 + (nonEmpty - df + 0.5) / (df + 0.5)));

  // Scratch reused by every search (search is synchronous, so one query at a time uses it).
  const acc = new Float64Array(n);
  const touched = new Int32Array(n);
  const touchedScores = new Float64Array(n);

  const queryTerms = (query: string): Map<string, number> => {
    const qtf = new Map<string, number>();
    for (const t of analyze(query, analyzer)) qtf.set(t, (qtf.get(t) ?? 0) + 1);
    return qtf;
  };

  return {
    count: n,
    params,
    analyzer,
    documentCount: nonEmpty,
    averageLength: avgdl,
    termCount: nTerms,
    byteLength: bytes.byteLength,
    idf: (term) => idfOfDf(dfOf(find(term))),
    documentFrequency: (term) => dfOf(find(term)),

    search(query, k, accept) {
      if (!Number.isInteger(k) || k < 1) throw new ValidationError(`k must be a positive integer, got ${k}`);
      let matched = 0;
      try {
        for (const [term, count] of queryTerms(query)) {
          const slot = find(term);
          if (slot < 0) continue;
          // idf > 0 for every df ≤ N, and tf ≥ 1: a touched accumulator is never 0 again.
          const weight = count * idfOfDf(dfOf(slot));
          let pos = postingsAt + u32(postOffAt + 4 * slot);
          const end = postingsAt + u32(postOffAt + 4 * slot + 4);
          if (end > bytes.byteLength || pos > end) throw bad(`postings of term ${slot} overrun the file`);
          let ordinal = -1;
          while (pos < end) {
            let gap = 0;
            let shift = 0;
            let byte: number;
            do {
              byte = bytes[pos++];
              gap |= (byte & 0x7f) << shift;
              shift += 7;
            } while (byte & 0x80);
            let tf = 0;
            shift = 0;
            do {
              byte = bytes[pos++];
              tf |= (byte & 0x7f) << shift;
              shift += 7;
            } while (byte & 0x80);
            ordinal += gap;
            if (ordinal >= n || gap === 0 || tf === 0 || pos > end) {
              throw bad(`postings of term ${slot} are corrupt (passage ${ordinal} of ${n}, tf ${tf})`);
            }
            if (acc[ordinal] === 0) touched[matched++] = ordinal;
            acc[ordinal] += (weight * tf * (k1 + 1)) / (tf + norms[ordinal]);
          }
        }
        let m = 0;
        let i = 0;
        try {
          for (; i < matched; i++) {
            const o = touched[i];
            const score = acc[o];
            acc[o] = 0;
            if (accept && !accept(o)) continue;
            touched[m] = o;
            touchedScores[m++] = score;
          }
        } finally {
          // A filter that threw half way leaves the rest of the accumulator to clear.
          for (let j = i; j < matched; j++) acc[touched[j]] = 0;
        }
        matched = 0;
        const best = topK(touchedScores, k, touched, m);
        return { ordinals: best.ordinals, scores: best.scores, matched: i };
      } finally {
        // A corrupt posting list throws before the accumulator was read out: clear what it touched.
        for (let j = 0; j < matched; j++) acc[touched[j]] = 0;
      }
    },

    termStatistics(query) {
      const document_frequencies: Record<string, number> = {};
      for (const term of queryTerms(query).keys()) document_frequencies[term] = dfOf(find(term));
      return { documents: nonEmpty, average_length: avgdl, document_frequencies };
    },
  };
}

/** Decodes a term of the dictionary (tests and tools). */
export function sparseTerms(index: Uint8Array): string[] {
  const view = new DataView(index.buffer, index.byteOffset, index.byteLength);
  const n = view.getUint32(8, true);
  const nTerms = view.getUint32(12, true);
  const termOffAt = HEADER + pad4(2 * n);
  const termsAt = termOffAt + 8 * (nTerms + 1) + 4 * nTerms;
  const dec = new TextDecoder();
  return Array.from({ length: nTerms }, (_, i) =>
    dec.decode(
      index.subarray(
        termsAt + view.getUint32(termOffAt + 4 * i, true),
        termsAt + view.getUint32(termOffAt + 4 * i + 4, true),
      ),
    ),
  );
}
