// The weight-free second stage: a reranker that reads the query and each candidate together and
// scores lexical evidence a bi-encoder (or a bag-of-words first stage) cannot see:
//   bm25       BM25 of the passage with the index's own statistics (term_statistics from the
//              search function's sparse index; estimated from the sent documents without them),
//              divided by its maximum for the query so it lies in [0, 1] whatever the query length
//   coverage   idf-weighted share of the distinct query terms the passage holds
//   bigram     idf-weighted share of the query's adjacent term pairs found adjacent, in order
//   phrase     1 when the whole analysed query occurs as one run (queries of ≥ 2 terms)
//   proximity  how tightly the matched terms sit: (matched − 1) / (minimum covering span − 1)
//   position   how early the first query term occurs: 1 / log2(2 + position)
// Terms come from the analyzer of the sparse index (stop words out, Porter stems), so "snapshots
// are published" and "publishing a snapshot" meet. The logit is a weighted sum of the features,
// offset so a passage with every feature at half strength sits near 0.
//
// The features and weights were chosen on Cranfield and ADI only (scripts/eval/tune-lexical.ts;
// docs/EVAL.md). Deterministic: same query and passages, same scores. Per pair the work is one
// analyzer pass over the passage plus arrays sized by the query's terms.
import { ANSERINI_BM25, type AnalyzerOptions, analyze, type Bm25Params } from "./analyzer.ts";
import type { ModelDescription, PairScoreOptions, PairScorer, PairScores } from "./rerank.ts";
import type { TermStatistics } from "./types.ts";

export const LEXICAL_MODEL = "lexical-v1";
/** meta.provider of its answers: the search core's default fusion keys on it. */
export const LEXICAL_PROVIDER = "lexical";

export interface LexicalWeights {
  bm25: number;
  coverage: number;
  bigram: number;
  phrase: number;
  proximity: number;
  position: number;
  pairs: number;
  lead: number;
}

/** Chosen on Cranfield and ADI (see the file comment). */
export const DEFAULT_LEXICAL_WEIGHTS: LexicalWeights = {
  bm25: 1,
  coverage: 0.75,
  bigram: 0.5,
  phrase: 0.1,
  proximity: 0.05,
  position: 0.1,
  pairs: 0.2,
  lead: 1,
};

export interface LexicalFeatures extends LexicalWeights {}

export interface LexicalScorerOptions {
  analyzer?: AnalyzerOptions;
  params?: Bm25Params;
  weights?: Partial<LexicalWeights>;
  /** Name in `meta.model` (default lexical-v1). */
  name?: string;
}

/** The analysed query: distinct terms in first-occurrence order and the term sequence as slots. */
interface QueryPlan {
  terms: string[];
  /** The query's term sequence as slots into `terms` (repeats kept). */
  sequence: number[];
  slotOf: Map<string, number>;
}

function planQuery(query: string, analyzer: AnalyzerOptions): QueryPlan {
  const slotOf = new Map<string, number>();
  const terms: string[] = [];
  const sequence: number[] = [];
  for (const t of analyze(query, analyzer)) {
    let s = slotOf.get(t);
    if (s === undefined) {
      s = terms.length;
      slotOf.set(t, s);
      terms.push(t);
    }
    sequence.push(s);
  }
  return { terms, sequence, slotOf };
}

/** A passage as the features see it: per query slot its term frequency, and every match's position. */
interface PassageMatches {
  length: number;
  /** Terms of the passage's lead (its first line when short, e.g. a title or heading). */
  leadLength: number;
  tf: Int32Array;
  /** Positions (in analysed terms) of query-term occurrences, ascending, and their slots. */
  positions: number[];
  slots: number[];
}

function matchPassage(text: string, plan: QueryPlan, analyzer: AnalyzerOptions): PassageMatches {
  const tf = new Int32Array(plan.terms.length);
  const positions: number[] = [];
  const slots: number[] = [];
  const terms = analyze(text, analyzer);
  const lineEnd = text.indexOf("\n");
  const leadLength =
    lineEnd > 0 && lineEnd <= MAX_LEAD_CHARS ? analyze(text.slice(0, lineEnd), analyzer).length : DEFAULT_LEAD_TERMS;
  for (let i = 0; i < terms.length; i++) {
    const s = plan.slotOf.get(terms[i]);
    if (s === undefined) continue;
    tf[s]++;
    positions.push(i);
    slots.push(s);
  }
  return { length: terms.length, leadLength, tf, positions, slots };
}

/** A first line up to this long is the passage's lead (a title, a heading); else its first terms are. */
const MAX_LEAD_CHARS = 240;
const DEFAULT_LEAD_TERMS = 12;
/** Neighbouring matches farther apart than this add nothing to the pair-proximity feature. */
const PAIR_WINDOW = 5;

/** Smallest window (in terms, inclusive) holding every slot that occurs at least once. */
function minimumCoveringSpan(m: PassageMatches, distinct: number): number {
  if (distinct <= 1) return distinct;
  const count = new Int32Array(m.tf.length);
  let have = 0;
  let best = Number.POSITIVE_INFINITY;
  let left = 0;
  for (let right = 0; right < m.positions.length; right++) {
    if (count[m.slots[right]]++ === 0) have++;
    while (have === distinct) {
      best = Math.min(best, m.positions[right] - m.positions[left] + 1);
      if (--count[m.slots[left]] === 0) have--;
      left++;
    }
  }
  return best;
}

/** Whether slot b occurs right after slot a somewhere in the passage. */
function adjacent(m: PassageMatches, a: number, b: number): boolean {
  for (let i = 0; i + 1 < m.positions.length; i++) {
    if (m.slots[i] === a && m.slots[i + 1] === b && m.positions[i + 1] === m.positions[i] + 1) return true;
  }
  return false;
}

/** Whether the query's whole term sequence occurs as one run. */
function containsPhrase(m: PassageMatches, sequence: readonly number[]): boolean {
  const n = sequence.length;
  for (let i = 0; i + n <= m.positions.length; i++) {
    let ok = true;
    for (let j = 0; j < n && ok; j++) {
      ok = m.slots[i + j] === sequence[j] && m.positions[i + j] === m.positions[i] + j;
    }
    if (ok) return true;
  }
  return false;
}

const idfOf = (documents: number, df: number) =>
  df <= 0 ? Math.log(1 + (documents + 0.5) / 0.5) : Math.log(1 + (documents - df + 0.5) / (df + 0.5));

/**
 * Features of each passage against one query. `stats` are the index's BM25 statistics; without
 * them document frequencies and the average length come from the passages themselves.
 */
export function lexicalFeatures(
  query: string,
  passages: readonly string[],
  opts: { analyzer?: AnalyzerOptions; params?: Bm25Params; stats?: TermStatistics } = {},
): LexicalFeatures[] {
  const analyzer = opts.analyzer ?? {};
  const { k1, b } = opts.params ?? ANSERINI_BM25;
  const plan = planQuery(query, analyzer);
  const matches = passages.map((p) => matchPassage(p, plan, analyzer));
  const q = plan.terms.length;

  // Corpus statistics: the index's when given, else the batch's (an estimate: every sent passage
  // was retrieved for these terms, so their idf comes out low, but the order between terms holds).
  let documents: number;
  let avgdl: number;
  const df = new Float64Array(q);
  if (opts.stats) {
    documents = opts.stats.documents;
    avgdl = opts.stats.average_length;
    plan.terms.forEach((t, s) => {
      df[s] = opts.stats!.document_frequencies[t] ?? 0;
    });
  } else {
    documents = matches.length;
    avgdl = matches.reduce((a, m) => a + m.length, 0) / Math.max(1, matches.length);
    for (const m of matches) for (let s = 0; s < q; s++) if (m.tf[s] > 0) df[s]++;
  }
  const idf = Array.from(df, (d) => idfOf(documents, d));
  const idfTotal = idf.reduce((a, v) => a + v, 0);
  const idfMean = q > 0 ? idfTotal / q : 0;
  // Query term frequency weights BM25 as the sparse index does (a repeated query term counts twice).
  const qtf = new Int32Array(q);
  for (const s of plan.sequence) qtf[s]++;
  let bm25Max = 0;
  for (let s = 0; s < q; s++) bm25Max += qtf[s] * idf[s] * (k1 + 1);
  const pairs: Array<[number, number, number]> = [];
  for (let i = 0; i + 1 < plan.sequence.length; i++) {
    const a = plan.sequence[i];
    const c = plan.sequence[i + 1];
    if (a !== c) pairs.push([a, c, (idf[a] + idf[c]) / 2]);
  }
  const pairTotal = pairs.reduce((acc, p) => acc + p[2], 0);

  return matches.map((m) => {
    let bm25 = 0;
    let covered = 0;
    let distinct = 0;
    const norm = avgdl > 0 ? k1 * (1 - b + (b * m.length) / avgdl) : k1;
    for (let s = 0; s < q; s++) {
      const tf = m.tf[s];
      if (tf === 0) continue;
      distinct++;
      covered += idf[s];
      bm25 += (qtf[s] * idf[s] * tf * (k1 + 1)) / (tf + norm);
    }
    let bigram = 0;
    if (pairTotal > 0 && distinct >= 2) {
      for (const [a, c, w] of pairs) if (m.tf[a] > 0 && m.tf[c] > 0 && adjacent(m, a, c)) bigram += w;
      bigram /= pairTotal;
    }
    const span = minimumCoveringSpan(m, distinct);
    // Pair proximity (after BM25TP, Rasolofo & Savoy 2003): neighbouring occurrences of two
    // different query terms add their mean idf over the squared distance; saturated into [0, 1).
    let pairAcc = 0;
    for (let i = 0; i + 1 < m.positions.length; i++) {
      const a = m.slots[i];
      const c = m.slots[i + 1];
      const dist = m.positions[i + 1] - m.positions[i];
      if (a !== c && dist <= PAIR_WINDOW) pairAcc += (idf[a] + idf[c]) / 2 / (dist * dist);
    }
    let leadCovered = 0;
    const seenLead = new Uint8Array(q);
    for (let i = 0; i < m.positions.length && m.positions[i] < m.leadLength; i++) {
      const sl = m.slots[i];
      if (!seenLead[sl]) {
        seenLead[sl] = 1;
        leadCovered += idf[sl];
      }
    }
    return {
      bm25: bm25Max > 0 ? bm25 / bm25Max : 0,
      coverage: idfTotal > 0 ? covered / idfTotal : 0,
      bigram,
      phrase: plan.sequence.length >= 2 && distinct >= 2 && containsPhrase(m, plan.sequence) ? 1 : 0,
      proximity: distinct >= 2 ? (distinct - 1) / (span - 1) : 0,
      position: m.positions.length > 0 ? 1 / Math.log2(2 + m.positions[0]) : 0,
      pairs: idfMean > 0 ? pairAcc / (pairAcc + idfMean) : 0,
      lead: idfTotal > 0 ? leadCovered / idfTotal : 0,
    };
  });
}

/** The weighted sum of the features, centred: every feature at 0.5 gives 0. */
export function combineFeatures(f: LexicalFeatures, w: LexicalWeights): number {
  let sum = 0;
  let half = 0;
  for (const key of Object.keys(w) as Array<keyof LexicalWeights>) {
    sum += w[key] * f[key];
    half += w[key] * 0.5;
  }
  // Scaled so the sigmoid of the logit spreads over (0, 1) rather than hugging 0.5.
  return 4 * (sum - half);
}

/** The lexical reranker behind the same port as the ONNX cross-encoder. */
export function createLexicalScorer(opts: LexicalScorerOptions = {}): PairScorer {
  const weights: LexicalWeights = { ...DEFAULT_LEXICAL_WEIGHTS, ...opts.weights };
  const description: ModelDescription = { model: opts.name ?? LEXICAL_MODEL, provider: LEXICAL_PROVIDER };
  return {
    describe: () => ({ ...description }),
    async scorePairs(query: string, documents: string[], o: PairScoreOptions): Promise<PairScores> {
      const started = performance.now();
      // max_tokens_per_doc counts whitespace words here (there is no model tokenizer); chunking
      // needs no special case: features look at the whole passage, so its best part is itself.
      const texts =
        o.maxTokensPerDoc === undefined
          ? documents
          : documents.map((d) => d.split(/\s+/).slice(0, o.maxTokensPerDoc).join(" "));
      const truncated = texts.filter((t, i) => t.length < documents[i].length).length;
      const features = lexicalFeatures(query, texts, {
        analyzer: opts.analyzer,
        params: opts.params,
        stats: o.termStatistics,
      });
      const logits = Float32Array.from(features, (f) => combineFeatures(f, weights));
      const ms = performance.now() - started;
      const tokens = texts.reduce((a, t) => a + t.split(/\s+/).filter(Boolean).length, 0);
      return { logits, pairs: documents.length, tokens, truncated, tokenizeMs: 0, inferenceMs: ms };
    },
  };
}
