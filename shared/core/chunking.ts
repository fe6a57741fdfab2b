// Splits documents into passages that fit a model's token window, with overlap between neighbours.
// Token positions come from a TokenSpanner (character offsets of tokens): the approximate spanner
// below needs no vocabulary; the HF tokenizer adapter gives exact WordPiece/BPE offsets.
import { ValidationError } from "./errors.ts";
import type { Passage, SourceDocument } from "./types.ts";

export interface TokenSpanner {
  /** [start, end) UTF-16 offsets of each token of `text`, in order and non-overlapping. */
  spans(text: string): Array<[number, number]>;
}

// Letters/digits form words; CJK ideographs are one token each (as BERT tokenizers split them);
// any other non-space character (punctuation, symbols, emoji) is a token of its own.
const TOKEN_RE = /\p{Ideographic}|(?:(?!\p{Ideographic})[\p{L}\p{M}\p{N}])+|[^\s\p{L}\p{M}\p{N}]/gu;
const SHORT_WORD = 6;
const PIECE = 4;

/**
 * A cheap stand-in for subword counts: words of up to 6 characters are one token, longer words are
 * cut into 4-character pieces, punctuation is separate. It errs on the side of more tokens, so windows
 * sized with it fit a cross-encoder: on Cranfield it counts 1.33x the MiniLM WordPiece tokens in total
 * and at least 1.07x for every document (7-character words would bring the minimum down to 1.03x);
 * no Cranfield window of 64+ approximate tokens overflows WordPiece, but windows of 16-48 occasionally
 * do (runs of short words WordPiece splits, like "a51j04"). Where the exact count matters, chunk with
 * the model's own tokenizer (hf-tokenizer's `spans`).
 */
export const approximateSpanner: TokenSpanner = {
  spans(text: string): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const m of text.matchAll(TOKEN_RE)) {
      const start = m.index;
      const word = m[0];
      if (word.length <= SHORT_WORD) {
        out.push([start, start + word.length]);
        continue;
      }
      // Cut on code points so surrogate pairs (e.g. mathematical letters) stay whole.
      let pieceStart = start;
      let chars = 0;
      let at = start;
      for (const ch of word) {
        if (chars === PIECE) {
          out.push([pieceStart, at]);
          pieceStart = at;
          chars = 0;
        }
        at += ch.length;
        chars++;
      }
      out.push([pieceStart, at]);
    }
    return out;
  },
};

export interface ChunkOptions {
  /** Most tokens per passage (under `spanner`). */
  maxTokens: number;
  /** Tokens shared by neighbouring passages at most; must be smaller than maxTokens. */
  overlap: number;
  spanner?: TokenSpanner;
}

/** How good a place to end a passage the gap after a token is (higher is better). */
const Cut = {
  None: 0, // inside a word (a sub-word piece follows directly)
  Space: 1,
  Sentence: 2,
  Paragraph: 3,
} as const;
type Cut = (typeof Cut)[keyof typeof Cut];

/** A sentence/paragraph end should not leave passages much shorter than the window. */
const MIN_FILL_FOR_SENTENCE = 0.6;

/**
 * Passages of `doc`, each at most `maxTokens` tokens, consecutive ones sharing at most `overlap`
 * tokens, together covering every token. A passage ends preferably at a paragraph or sentence end in
 * the last 40% of the window, else at whitespace, and only splits a word when a single word is longer
 * than the window. `doc.text.slice(p.start, p.end) === p.text` for every passage.
 * A passage is re-tokenised on its own when it starts or ends inside a word and shrunk until it fits;
 * only a passage of a single document token can still re-tokenise into more (windows of 1-2 tokens).
 */
export function chunkDocument(doc: SourceDocument, opts: ChunkOptions): Passage[] {
  const { maxTokens, overlap } = opts;
  if (!Number.isInteger(maxTokens) || maxTokens < 1)
    throw new ValidationError(`maxTokens must be a positive integer, got ${maxTokens}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= maxTokens) {
    throw new ValidationError(
      `overlap must be an integer in [0, maxTokens), got ${overlap} with maxTokens ${maxTokens}`,
    );
  }
  const spanner = opts.spanner ?? approximateSpanner;
  const text = doc.text;
  const spans = spanner.spans(text);
  const n = spans.length;
  if (n === 0) return [];

  // cut[i] rates the boundary between token i-1 and token i (cut[0] and cut[n] are document edges).
  const cut = new Uint8Array(n + 1);
  cut[0] = Cut.Paragraph;
  cut[n] = Cut.Paragraph;
  for (let i = 1; i < n; i++) cut[i] = rateGap(text, spans[i - 1], spans[i][0]);

  const ranges: Array<[number, number]> = [];
  // Windows only move forward: each ends past the previous end, so the loop terminates.
  let s = 0;
  let minEnd = 1;
  for (;;) {
    let e = n - s <= maxTokens ? n : chooseEnd(cut, s, maxTokens, minEnd);
    // Re-tokenising a slice that starts or ends inside a word can give more tokens than the
    // document-level spans (WordPiece "##" pieces); shrink until the slice itself fits.
    if (cut[s] === Cut.None || cut[e] === Cut.None) {
      while (spanner.spans(text.slice(spans[s][0], spans[e - 1][1])).length > maxTokens) {
        if (e > minEnd && e - s > 1) e--;
        else if (s < e - 1) s++;
        else break;
      }
    }
    ranges.push([s, e]);
    if (e >= n) break;
    s = nextStart(cut, s, e, overlap, maxTokens);
    minEnd = e + 1;
  }

  return ranges.map(([a, b], i) => {
    const start = spans[a][0];
    const end = spans[b - 1][1];
    const p: Passage = { id: `${doc.id}#${i}`, docId: doc.id, text: text.slice(start, end), start, end };
    if (doc.source !== undefined) p.source = doc.source;
    if (doc.metadata !== undefined) p.metadata = doc.metadata;
    return p;
  });
}

function rateGap(text: string, prev: [number, number], nextStart: number): Cut {
  if (prev[1] === nextStart) return Cut.None;
  const gap = text.slice(prev[1], nextStart);
  if (/\n[^\S\n]*\n/.test(gap)) return Cut.Paragraph;
  if (gap.includes("\n")) return Cut.Sentence; // line ends: headings, list items
  if (/\s/.test(gap)) {
    const last = text.slice(prev[0], prev[1]);
    return /^[.!?。！？…]$/.test(last) || /[.!?]["')\]]?$/.test(last) ? Cut.Sentence : Cut.Space;
  }
  return Cut.None;
}

/** End (exclusive token index) of the window starting at s, past minEnd - 1, when more than maxTokens tokens remain. */
function chooseEnd(cut: Uint8Array, s: number, maxTokens: number, minEnd: number): number {
  const hi = s + maxTokens;
  const lo = Math.max(minEnd, s + Math.ceil(maxTokens * MIN_FILL_FOR_SENTENCE));
  let best = -1;
  let bestRate: Cut = Cut.None;
  for (let e = hi; e >= lo; e--) {
    if (cut[e] > bestRate) {
      best = e;
      bestRate = cut[e] as Cut;
      if (bestRate === Cut.Paragraph) break;
    }
  }
  if (bestRate >= Cut.Sentence) return best;
  for (let e = hi; e >= minEnd; e--) if (cut[e] >= Cut.Space) return e;
  return hi; // one word longer than the window: split it
}

/**
 * Start of the window after one ending at e: as much overlap as allowed, beginning at a sentence start
 * when the overlap holds one, else at a word start; no overlap rather than one starting inside a word.
 * Overlap is given up where keeping it would force the next window to end inside a word.
 */
function nextStart(cut: Uint8Array, s: number, e: number, overlap: number, maxTokens: number): number {
  const lo = Math.max(s + 1, e - overlap);
  let start = -1;
  for (let i = lo; i < e && start < 0; i++) if (cut[i] >= Cut.Sentence) start = i;
  for (let i = lo; i < e && start < 0; i++) if (cut[i] !== Cut.None) start = i;
  if (start < 0) start = overlap > 0 && cut[e] === Cut.None ? lo : e;

  let boundary = e + 1; // first place after e where a window may end between words (cut[n] always qualifies)
  while (cut[boundary] === Cut.None) boundary++;
  if (boundary <= start + maxTokens || boundary > e + maxTokens) return start;
  // The boundary is reachable only with less overlap: start as late as needed, at a word start if possible.
  const latest = boundary - maxTokens;
  for (let i = latest; i < e; i++) if (cut[i] !== Cut.None) return i;
  return cut[e] !== Cut.None ? e : latest;
}

/** Passages of many documents, numbered per document. */
export function chunkDocuments(docs: Iterable<SourceDocument>, opts: ChunkOptions): Passage[] {
  const out: Passage[] = [];
  for (const d of docs) for (const p of chunkDocument(d, opts)) out.push(p);
  return out;
}
