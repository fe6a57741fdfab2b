// The classic lexical baseline every evaluation table is compared against: Okapi BM25. Parameters
// default to Anserini/Pyserini's (k1 = 0.9, b = 0.4), the values behind the BM25 baselines published
// for BEIR and MS MARCO by that toolkit. Text analysis: shared/core/analyzer.ts.
//
// Scoring: score(d, q) = Σ_t qtf(t) · idf(t) · tf·(k1 + 1) / (tf + k1·(1 − b + b·|d|/avgdl)),
// idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5)) (Lucene's, never negative). Repeated query terms
// count qtf times (Anserini's bag-of-words query). The (k1 + 1) factor, which Lucene ≥ 8 drops,
// changes no ranking. Lucene stores |d| lossily in one byte; we keep exact lengths (up to 65535
// terms), so scores are close to, not bit-identical with, Lucene's. N and avgdl count documents
// with ≥ 1 token (Lucene's per-field docCount): an empty document is kept but can never match.
import type { AnalyzerOptions, Bm25Params } from "./analyzer.ts";
import { ValidationError } from "./errors.ts";
import { compareTrecEval, type ScoredDocument } from "./metrics.ts";
import { openSparseIndex, type SparseIndex, SparseIndexBuilder } from "./sparse-index.ts";

export {
  ANSERINI_BM25,
  type AnalyzerOptions,
  analyze,
  type Bm25Params,
  LUCENE_ENGLISH_STOP_WORDS,
} from "./analyzer.ts";

export interface Bm25Document {
  id: string;
  text: string;
}

export interface Bm25Options {
  params?: Bm25Params;
  analyzer?: AnalyzerOptions;
}

/**
 * BM25 over documents with string ids, for the evaluation harness. It is the snapshot's sparse index
 * (sparse-index.ts) built in memory, so the baseline and the service's sparse retrieval share one
 * scorer; results are put in trec_eval's order (score descending, ties by id descending).
 */
export class Bm25Index {
  readonly params: Bm25Params;
  private readonly ids: string[] = [];
  private readonly builder: SparseIndexBuilder;
  private reader: SparseIndex | null = null;

  constructor(opts: Bm25Options = {}) {
    this.builder = new SparseIndexBuilder(opts);
    this.params = this.builder.params;
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
    return this.index().documentCount;
  }

  get averageLength(): number {
    return this.index().averageLength;
  }

  add(doc: Bm25Document): void {
    this.ids.push(doc.id);
    this.builder.add(doc.text);
    this.reader = null;
  }

  private index(): SparseIndex {
    this.reader ??= openSparseIndex(this.builder.finish(), { params: this.params, analyzer: this.builder.analyzer });
    return this.reader;
  }

  /** Lucene's BM25 idf of an analysed term (0 for a term no document holds). */
  idf(term: string): number {
    return this.index().idf(term);
  }

  /**
   * Best k documents matching at least one query term, by score descending, ties by id descending
   * (trec_eval's order). Fewer when fewer documents match.
   */
  search(query: string, k: number): ScoredDocument[] {
    if (!Number.isInteger(k) || k < 1) throw new ValidationError(`k must be a positive integer, got ${k}`);
    const index = this.index();
    // Every match, so the cut at k follows trec_eval's tie order rather than the index's.
    const hits = index.search(query, Math.max(1, index.count));
    return hits.ordinals
      .map((o, i) => ({ id: this.ids[o], score: hits.scores[i] }))
      .sort(compareTrecEval)
      .slice(0, k);
  }
}
