// The classic lexical baseline every evaluation table is compared against: Okapi BM25 over an
// in-memory inverted index. Parameters default to Anserini/Pyserini's (k1 = 0.9, b = 0.4), the
// values behind the BM25 baselines published for BEIR and MS MARCO by that toolkit.
//
// Analyzer (close to Lucene's EnglishAnalyzer, which Anserini uses by default):
//   1. lowercase; drop a trailing possessive "'s" (EnglishPossessiveFilter);
//   2. tokens = maximal runs of Unicode letters and digits (simpler than Lucene's UAX#29
//      StandardTokenizer: "3,520" gives two tokens, "f-86" gives "f" and "86");
//   3. remove Lucene's 33 English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET);
//   4. Porter (1980) stemming, as Lucene's PorterStemFilter, via the `stemmer` package.
//
// Scoring: score(d, q) = Σ_t qtf(t) · idf(t) · tf·(k1 + 1) / (tf + k1·(1 − b + b·|d|/avgdl)),
// idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5)) (Lucene's, never negative). Repeated query terms
// count qtf times (Anserini's bag-of-words query). The (k1 + 1) factor, which Lucene ≥ 8 drops,
// changes no ranking. Lucene stores |d| lossily in one byte; we keep exact lengths, so scores are
// close to, not bit-identical with, Lucene's. N and avgdl count documents with ≥ 1 token
// (Lucene's per-field docCount): an empty document is kept but can never match.
import { stemmer } from "stemmer";
import { ValidationError } from "./errors.ts";
import { compareTrecEval, type ScoredDocument } from "./metrics.ts";

export interface Bm25Params {
  k1: number;
  b: number;
}

/** Anserini/Pyserini defaults. Robertson's textbook values are { k1: 1.2, b: 0.75 }. */
export const ANSERINI_BM25: Bm25Params = { k1: 0.9, b: 0.4 };

/** Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET. */
export const LUCENE_ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set(
  "a an and are as at be but by for if in into is it no not of on or such that the their then there these they this to was will with".split(
    " ",
  ),
);

export interface AnalyzerOptions {
  /** Words removed before stemming; `false` keeps every token. Default: Lucene's English list. */
  stopWords?: ReadonlySet<string> | false;
  /** Porter stemming (default true). */
  stem?: boolean;
}

const TOKEN = /[\p{L}\p{N}]+/gu;
const POSSESSIVE = /['’]s\b/gu;

/** Index terms of a text, in order (repeats kept). */
export function analyze(text: string, opts: AnalyzerOptions = {}): string[] {
  const stop = opts.stopWords === false ? null : (opts.stopWords ?? LUCENE_ENGLISH_STOP_WORDS);
  const stem = opts.stem ?? true;
  const out: string[] = [];
  for (const [token] of text.toLowerCase().replace(POSSESSIVE, "").matchAll(TOKEN)) {
    if (stop?.has(token)) continue;
    out.push(stem ? stemmer(token) : token);
  }
  return out;
}

export interface Bm25Document {
  id: string;
  text: string;
}

interface Posting {
  docs: number[];
  tfs: number[];
}

export interface Bm25Options {
  params?: Bm25Params;
  analyzer?: AnalyzerOptions;
}

export class Bm25Index {
  readonly params: Bm25Params;
  private readonly analyzer: AnalyzerOptions;
  private readonly ids: string[] = [];
  private readonly lengths: number[] = [];
  private readonly postings = new Map<string, Posting>();
  private totalLength = 0;
  private nonEmpty = 0;

  constructor(opts: Bm25Options = {}) {
    this.params = opts.params ?? ANSERINI_BM25;
    const { k1, b } = this.params;
    if (!(k1 >= 0) || !(b >= 0 && b <= 1))
      throw new ValidationError(`BM25 needs k1 >= 0 and 0 <= b <= 1, got k1=${k1}, b=${b}`);
    this.analyzer = opts.analyzer ?? {};
  }

  static build(docs: Iterable<Bm25Document>, opts: Bm25Options = {}): Bm25Index {
    const index = new Bm25Index(opts);
    for (const d of docs) index.add(d);
    return index;
  }

  /** Number of documents added (empty ones included). */
  get size(): number {
    return this.ids.length;
  }

  /** Documents with at least one token: BM25's N. */
  get documentCount(): number {
    return this.nonEmpty;
  }

  get averageLength(): number {
    return this.nonEmpty ? this.totalLength / this.nonEmpty : 0;
  }

  add(doc: Bm25Document): void {
    const ordinal = this.ids.length;
    this.ids.push(doc.id);
    const terms = analyze(doc.text, this.analyzer);
    this.lengths.push(terms.length);
    if (terms.length === 0) return;
    this.nonEmpty++;
    this.totalLength += terms.length;
    const tf = new Map<string, number>();
    for (const t of terms) tf.set(t, (tf.get(t) ?? 0) + 1);
    for (const [term, n] of tf) {
      let p = this.postings.get(term);
      if (!p) this.postings.set(term, (p = { docs: [], tfs: [] }));
      p.docs.push(ordinal);
      p.tfs.push(n);
    }
  }

  /** Lucene's BM25 idf of an analysed term (0 for a term no document holds). */
  idf(term: string): number {
    const df = this.postings.get(term)?.docs.length ?? 0;
    if (df === 0) return 0;
    return Math.log(1 + (this.nonEmpty - df + 0.5) / (df + 0.5));
  }

  /**
   * Best k documents matching at least one query term, by score descending, ties by id descending
   * (trec_eval's order). Fewer when fewer documents match.
   */
  search(query: string, k: number): ScoredDocument[] {
    if (!Number.isInteger(k) || k < 1) throw new ValidationError(`k must be a positive integer, got ${k}`);
    const qtf = new Map<string, number>();
    for (const t of analyze(query, this.analyzer)) qtf.set(t, (qtf.get(t) ?? 0) + 1);
    const { k1, b } = this.params;
    const avgdl = this.averageLength;
    const scores = new Map<number, number>();
    for (const [term, count] of qtf) {
      const p = this.postings.get(term);
      if (!p) continue;
      const weight = count * this.idf(term);
      for (let i = 0; i < p.docs.length; i++) {
        const d = p.docs[i];
        const tf = p.tfs[i];
        const norm = k1 * (1 - b + (b * this.lengths[d]) / avgdl);
        scores.set(d, (scores.get(d) ?? 0) + (weight * tf * (k1 + 1)) / (tf + norm));
      }
    }
    return [...scores]
      .map(([d, score]) => ({ id: this.ids[d], score }))
      .sort(compareTrecEval)
      .slice(0, k);
  }
}
