// The text analyzer of every lexical feature (BM25 baseline, the snapshot's sparse index, the
// weight-free reranker), close to Lucene's EnglishAnalyzer, which Anserini uses by default:
//   1. lowercase; drop a trailing possessive "'s" (EnglishPossessiveFilter);
//   2. tokens = maximal runs of Unicode letters and digits (simpler than Lucene's UAX#29
//      StandardTokenizer: "3,520" gives two tokens, "f-86" gives "f" and "86");
//   3. remove Lucene's 33 English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET);
//   4. Porter (1980) stemming, as Lucene's PorterStemFilter, via the `stemmer` package.
import { stemmer } from "stemmer";

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

// Porter stemming is the analyzer's main cost and a corpus repeats its words: a bounded memo
// (cleared when full) makes indexing and per-query reranking several times cheaper.
const STEM_MEMO_LIMIT = 200_000;
const stemMemo = new Map<string, string>();

export function stem(token: string): string {
  let s = stemMemo.get(token);
  if (s === undefined) {
    s = stemmer(token);
    if (stemMemo.size >= STEM_MEMO_LIMIT) stemMemo.clear();
    stemMemo.set(token, s);
  }
  return s;
}

/** Index terms of a text, in order (repeats kept). */
export function analyze(text: string, opts: AnalyzerOptions = {}): string[] {
  const stop = opts.stopWords === false ? null : (opts.stopWords ?? LUCENE_ENGLISH_STOP_WORDS);
  const stemming = opts.stem ?? true;
  const out: string[] = [];
  for (const [token] of text.toLowerCase().replace(POSSESSIVE, "").matchAll(TOKEN)) {
    if (stop?.has(token)) continue;
    out.push(stemming ? stem(token) : token);
  }
  return out;
}
