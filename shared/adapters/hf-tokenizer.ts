// Tokenizer adapter over @huggingface/tokenizers (pure JS, reads a Hugging Face tokenizer.json:
// WordPiece, Unigram, BPE). Adds what the library leaves out and the reranker needs: pair
// encoding with our truncation rule (keep the query, cut the passage first), single-text
// encoding with a length limit, token counts, character offsets of tokens (for the chunker) and
// model-sized document windows for the `chunk` long-document strategy.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { ValidationError } from "../core/errors.ts";

export interface Encoding {
  ids: number[];
  typeIds: number[];
  attentionMask: number[];
  /** Some content tokens were dropped to fit the length limit. */
  truncated: boolean;
}

export interface PairEncoding extends Encoding {
  /** Query tokens kept (special tokens excluded). */
  queryTokens: number;
  /** Document tokens before truncation (special tokens excluded). */
  docTokens: number;
  /** Document tokens kept. */
  docTokensKept: number;
}

export interface PairEncodeOptions {
  /** Whole pair in tokens, special tokens included. Default: the model's limit. */
  maxLength?: number;
  /** Cap on the document's own tokens, applied before the length limit (Cohere's max_tokens_per_doc). */
  maxTokensPerDoc?: number;
}

export interface DocWindow {
  /** The window's text: a slice of the document, cut at token (word where possible) boundaries. */
  text: string;
  /** UTF-16 offsets of the window in the document, end exclusive. */
  start: number;
  end: number;
  /** Document tokens in the window. */
  tokens: number;
}

export interface ChunkDocOptions extends PairEncodeOptions {
  /** Tokens shared by neighbouring windows. Default: a quarter of a window, at most 32. */
  overlapTokens?: number;
  /** Stop after this many windows. Default: no limit. */
  maxChunks?: number;
}

export interface PairTokenizer {
  /** Longest sequence the model accepts (tokenizer_config model_max_length, config position table). */
  readonly modelMaxLength: number;
  readonly padId: number;
  /** Special tokens a pair adds ([CLS] A [SEP] B [SEP] = 3; <s> A </s></s> B </s> = 4). */
  readonly pairOverhead: number;
  /** Special tokens a single text adds. */
  readonly singleOverhead: number;
  /** Content token strings, no special tokens added. */
  tokenize(text: string): string[];
  /** Content token ids, no special tokens added. */
  tokenIds(text: string): number[];
  /** One text with special tokens, cut to `maxLength` (default: the model's limit). */
  encode(text: string, opts?: { maxLength?: number }): Encoding;
  /** Query + document with the model's pair template; truncation keeps the query and cuts the document first. */
  encodePair(query: string, doc: string, opts?: PairEncodeOptions): PairEncoding;
  /** Content tokens of `text` (no special tokens). */
  countTokens(text: string): number;
  /** [start, end) UTF-16 offsets of each content token, in order and non-overlapping (a chunking TokenSpanner). */
  spans(text: string): Array<[number, number]>;
  /** Document windows that each fit a pair with `query` without cutting the document. */
  chunkDoc(query: string, doc: string, opts?: ChunkDocOptions): DocWindow[];
}

export interface TokenizerSource {
  /** Parsed tokenizer.json. */
  tokenizer: Record<string, unknown>;
  /** Parsed tokenizer_config.json ({} when absent). */
  tokenizerConfig?: Record<string, unknown>;
  /** Parsed config.json of the model (for max_position_embeddings, pad_token_id, model_type). */
  modelConfig?: Record<string, unknown>;
}

/** Reads tokenizer.json (required), tokenizer_config.json and config.json (optional) from a model folder. */
export async function loadTokenizer(dir: string): Promise<PairTokenizer> {
  const file = path.join(dir, "tokenizer.json");
  if (!existsSync(file))
    throw new Error(`no tokenizer.json in ${dir}: a model folder needs one (Hugging Face fast-tokenizer format)`);
  const readJson = async (name: string): Promise<Record<string, unknown> | undefined> => {
    const p = path.join(dir, name);
    if (!existsSync(p)) return undefined;
    try {
      return JSON.parse(await readFile(p, "utf8"));
    } catch (e) {
      throw new Error(`${p} is not valid JSON: ${(e as Error).message}`);
    }
  };
  const [tokenizer, tokenizerConfig, modelConfig] = await Promise.all([
    readJson("tokenizer.json"),
    readJson("tokenizer_config.json"),
    readJson("config.json"),
  ]);
  return createPairTokenizer({ tokenizer: tokenizer!, tokenizerConfig, modelConfig });
}

const HUGE = 1_000_000; // tokenizer_config's "no limit" sentinel is 1e30

/** The model's sequence limit: the smaller of model_max_length and the usable position rows. */
export function modelMaxLengthOf(
  tokenizerConfig: Record<string, unknown> = {},
  modelConfig: Record<string, unknown> = {},
): number {
  const limits: number[] = [];
  const mml = tokenizerConfig.model_max_length;
  if (typeof mml === "number" && mml > 0 && mml < HUGE) limits.push(Math.floor(mml));
  const mpe = modelConfig.max_position_embeddings;
  if (typeof mpe === "number" && mpe > 0) {
    // RoBERTa-family position ids start at padding_idx + 1, so that many rows are never usable.
    const type = String(modelConfig.model_type ?? "");
    const offset = /roberta|camembert/.test(type) ? Number(modelConfig.pad_token_id ?? 1) + 1 : 0;
    limits.push(mpe - offset);
  }
  return limits.length ? Math.min(...limits) : 512;
}

// Lone surrogates become U+FFFD (same length, so offsets stay valid); the library's regexes run in
// `u` mode and must never see half a code point.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, "\uFFFD");
}

const WHITESPACE = /\s/;
// Characters after which a new word starts: whitespace and punctuation (BERT splits on both).
const BOUNDARY = /[\s\p{P}!-/:-@[-`{-~\u2581]/u;

export function createPairTokenizer(src: TokenizerSource): PairTokenizer {
  const tokenizerConfig = src.tokenizerConfig ?? {};
  const modelConfig = src.modelConfig ?? {};
  // The library expects these keys; truncation/padding stored in the file (all-MiniLM-L6-v2 carries
  // fixed 128 padding) are dropped: length limits are ours to apply, per call.
  const json: Record<string, unknown> = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    added_tokens: [],
    ...src.tokenizer,
  };
  json.truncation = null;
  json.padding = null;
  const tok = new Tokenizer(json, tokenizerConfig);
  const model = tok.model!;
  const modelJson = (src.tokenizer.model ?? {}) as { type?: string; continuing_subword_prefix?: string };
  const subwordPrefix = modelJson.type === "WordPiece" ? (modelJson.continuing_subword_prefix ?? "##") : null;
  const preTok = (src.tokenizer.pre_tokenizer ?? null) as {
    type?: string;
    replacement?: string;
    pretokenizers?: Array<{ type?: string; replacement?: string }>;
  } | null;
  const metaspace = preTok?.type === "Metaspace" ? preTok : preTok?.pretokenizers?.find((p) => p.type === "Metaspace");
  const metaspaceChar = metaspace ? (metaspace.replacement ?? "\u2581") : null;
  const addedTokens = new Set(((src.tokenizer.added_tokens ?? []) as Array<{ content: string }>).map((t) => t.content));
  // Same lookup order as Tokenizer.encode(): added tokens (incl. normalised forms), vocabulary, unk.
  const addedMap = (tok as unknown as { added_tokens_map?: Map<string, { id: number }> }).added_tokens_map;
  const unkId = model.unk_token_id ?? 0;
  const toId = (t: string): number => addedMap?.get(t)?.id ?? model.tokens_to_ids.get(t) ?? unkId;
  const unkToken = model.unk_token;

  const postProcess = (a: string[], b: string[] | null): { tokens: string[]; typeIds: number[] } => {
    if (!tok.post_processor)
      return { tokens: b ? [...a, ...b] : [...a], typeIds: [...a.map(() => 0), ...(b ?? []).map(() => 1)] };
    const out = tok.post_processor(a, b, true) as { tokens: string[]; token_type_ids?: number[] };
    const types = out.token_type_ids ?? [];
    return { tokens: out.tokens, typeIds: out.tokens.map((_: string, i: number) => types[i] ?? 0) };
  };
  const pairOverhead = postProcess([], []).tokens.length;
  const singleOverhead = postProcess([], null).tokens.length;
  const modelMaxLength = modelMaxLengthOf(tokenizerConfig, modelConfig);
  const padToken =
    typeof tokenizerConfig.pad_token === "string"
      ? tokenizerConfig.pad_token
      : (tokenizerConfig.pad_token as { content?: string } | undefined)?.content;
  const padId =
    (padToken !== undefined ? model.tokens_to_ids.get(padToken) : undefined) ??
    (typeof modelConfig.pad_token_id === "number" ? modelConfig.pad_token_id : 0);

  const tokenize = (text: string): string[] => tok.tokenize(wellFormed(text));
  // A reranker call pairs one query with many documents: keep the last query's tokens.
  let lastQuery: string | null = null;
  let lastQueryTokens: string[] = [];
  const queryTokens = (q: string) => {
    if (q !== lastQuery) {
      lastQueryTokens = tokenize(q);
      lastQuery = q;
    }
    return lastQueryTokens;
  };

  const checkMaxLength = (maxLength: number | undefined, overhead: number, minContent: number): number => {
    const m = maxLength ?? modelMaxLength;
    if (!Number.isInteger(m) || m < overhead + minContent)
      throw new ValidationError(
        `max length ${m} is too small: it must be an integer of at least ${overhead + minContent} (special tokens take ${overhead})`,
      );
    if (m > modelMaxLength)
      throw new ValidationError(`max length ${m} exceeds the model's limit of ${modelMaxLength} tokens`);
    return m;
  };

  /** How many query and document tokens a pair keeps (budget = content tokens that fit). */
  const plan = (q: number, d: number, budget: number): [number, number] => {
    if (q + d <= budget) return [q, d];
    const queryShare = Math.ceil(budget / 2); // a long query keeps at most half when the document is long too
    const qKeep = Math.min(q, Math.max(budget - d, queryShare));
    return [qKeep, Math.min(d, budget - qKeep)];
  };

  const encodeTokens = (tokens: string[], typeIds: number[], truncated: boolean): Encoding => ({
    ids: tokens.map(toId),
    typeIds,
    attentionMask: tokens.map(() => 1),
    truncated,
  });

  const self: PairTokenizer = {
    modelMaxLength,
    padId,
    pairOverhead,
    singleOverhead,
    tokenize,
    tokenIds: (text) => tokenize(text).map(toId),
    countTokens: (text) => tokenize(text).length,

    encode(text, opts = {}) {
      const maxLength = checkMaxLength(opts.maxLength, singleOverhead, 1);
      const all = tokenize(text);
      const kept = all.slice(0, maxLength - singleOverhead);
      const { tokens, typeIds } = postProcess(kept, null);
      return encodeTokens(tokens, typeIds, kept.length < all.length);
    },

    encodePair(query, doc, opts = {}) {
      const maxLength = checkMaxLength(opts.maxLength, pairOverhead, 2);
      const cap = opts.maxTokensPerDoc;
      if (cap !== undefined && (!Number.isInteger(cap) || cap < 1))
        throw new ValidationError(`max_tokens_per_doc must be a positive integer, got ${cap}`);
      const q = queryTokens(query);
      const d = tokenize(doc);
      const dCapped = cap !== undefined ? Math.min(d.length, cap) : d.length;
      const [qKeep, dKeep] = plan(q.length, dCapped, maxLength - pairOverhead);
      const { tokens, typeIds } = postProcess(q.slice(0, qKeep), d.slice(0, dKeep));
      return {
        ...encodeTokens(tokens, typeIds, qKeep < q.length || dKeep < d.length),
        queryTokens: qKeep,
        docTokens: d.length,
        docTokensKept: dKeep,
      };
    },

    spans(text) {
      return tokenSpans(wellFormed(text), tokenize(text), {
        normalize: (s) => (tok.normalizer ? tok.normalizer(s) : s),
        subwordPrefix,
        metaspaceChar,
        unkToken,
        addedTokens,
      });
    },

    chunkDoc(query, doc, opts = {}) {
      const maxLength = checkMaxLength(opts.maxLength, pairOverhead, 2);
      const budget = maxLength - pairOverhead;
      const [qKeep] = plan(queryTokens(query).length, Number.MAX_SAFE_INTEGER, budget);
      const room = budget - qKeep;
      let spans = self.spans(doc);
      if (opts.maxTokensPerDoc !== undefined) spans = spans.slice(0, Math.max(1, opts.maxTokensPerDoc));
      if (spans.length <= room) {
        const end = spans.length ? spans[spans.length - 1][1] : doc.length;
        return [
          {
            text: opts.maxTokensPerDoc !== undefined ? doc.slice(0, end) : doc,
            start: 0,
            end: opts.maxTokensPerDoc !== undefined ? end : doc.length,
            tokens: spans.length,
          },
        ];
      }
      const overlap = Math.max(0, Math.min(opts.overlapTokens ?? Math.min(32, Math.floor(room / 4)), room - 1));
      // A cut between tokens with a gap (whitespace) between them keeps each side's tokenisation intact.
      const wordStart = (j: number) => j > 0 && j < spans.length && spans[j][0] > spans[j - 1][1];
      const windows: DocWindow[] = [];
      let start = 0;
      while (start < spans.length && (opts.maxChunks === undefined || windows.length < opts.maxChunks)) {
        let end = Math.min(start + room, spans.length);
        if (end < spans.length) {
          for (let j = end; j > start + Math.floor(room / 2); j--) {
            if (wordStart(j)) {
              end = j;
              break;
            }
          }
        }
        const s = spans[start][0];
        const e = spans[end - 1][1];
        windows.push({ text: doc.slice(s, e), start: s, end: e, tokens: end - start });
        if (end === spans.length) break;
        let next = Math.max(start + 1, end - overlap);
        for (let j = next; j < end; j++) {
          if (wordStart(j)) {
            next = j;
            break;
          }
        }
        start = next;
      }
      return windows;
    },
  };
  return self;
}

interface SpanContext {
  normalize: (s: string) => string;
  subwordPrefix: string | null;
  metaspaceChar: string | null;
  unkToken: string | undefined;
  addedTokens: Set<string>;
}

/**
 * Character offsets of `tokens` (the library's output for `text`) in `text`. The library gives no
 * offsets, so each code point is normalised on its own (lowercasing, accent stripping...) into a
 * normalised string that remembers where every character came from, and the tokens' surface forms
 * are matched against it in order. Tokens that cannot be matched ([UNK], characters the normaliser
 * rewrote) share the stretch up to the next matched token. Exact for BERT-style lowercase WordPiece
 * on ordinary text; approximate but always ordered and in bounds otherwise.
 */
export function tokenSpans(text: string, tokens: string[], ctx: SpanContext): Array<[number, number]> {
  const out: Array<[number, number]> = new Array(tokens.length);
  if (tokens.length === 0) return [];
  const cache = new Map<string, string>();
  const origStart: number[] = [];
  const origEnd: number[] = [];
  let norm = "";
  for (let i = 0; i < text.length; ) {
    const cp = text.codePointAt(i)!;
    const len = cp > 0xffff ? 2 : 1;
    const ch = text.slice(i, i + len);
    let n = cache.get(ch);
    if (n === undefined) {
      try {
        n = ctx.normalize(ch);
      } catch {
        n = ch;
      }
      cache.set(ch, n);
    }
    for (let k = 0; k < n.length; k++) {
      origStart.push(i);
      origEnd.push(i + len);
    }
    norm += n;
    i += len;
  }
  const N = norm.length;
  const startOf = (p: number) => (p < N ? origStart[p] : text.length);
  const endOf = (p: number) => (p > 0 ? origEnd[p - 1] : 0); // end offset of normalised range ending before p
  const skipWs = (p: number) => {
    while (p < N && (WHITESPACE.test(norm[p]) || norm[p] === ctx.metaspaceChar)) p++;
    return p;
  };
  const surface = (t: string): string | null => {
    if (t === ctx.unkToken) return null;
    let s = t;
    if (ctx.subwordPrefix && s.startsWith(ctx.subwordPrefix) && s.length > ctx.subwordPrefix.length)
      s = s.slice(ctx.subwordPrefix.length);
    if (ctx.metaspaceChar) s = s.split(ctx.metaspaceChar).join(" ").trimStart();
    return s;
  };
  const matchesAt = (s: string, p: number, caseless: boolean) => {
    if (p + s.length > N) return false;
    const here = norm.slice(p, p + s.length);
    if (here === s) return true;
    if (s.includes(" ")) return false;
    return caseless && here.toLowerCase() === s.toLowerCase();
  };

  let p = 0;
  let pending: number[] = [];
  const flush = (from: number, to: number) => {
    if (!pending.length) return;
    const a = skipWs(from);
    let b = Math.max(a, to);
    while (b > a && WHITESPACE.test(norm[b - 1])) b--;
    const n = pending.length;
    pending.forEach((ti, k) => {
      const s = a + Math.floor(((b - a) * k) / n);
      const e = a + Math.floor(((b - a) * (k + 1)) / n);
      out[ti] = e > s ? [startOf(s), endOf(e)] : [startOf(s), startOf(s)];
    });
    pending = [];
  };

  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const s = surface(t);
    if (s === null) {
      pending.push(i);
      continue;
    }
    const at = skipWs(p);
    if (s === "") {
      // A bare word-boundary marker (Metaspace "▁"): zero width where the next word starts.
      if (pending.length) pending.push(i);
      else out[i] = [startOf(at), startOf(at)];
      continue;
    }
    let q = -1;
    if (matchesAt(s, at, ctx.addedTokens.has(t))) q = at;
    else {
      // Something unmatched precedes this token ([UNK] or rewritten characters): look ahead, and
      // for a word-initial token only at a word start, so "∰abc abc" gives [UNK]="∰abc".
      const startsWord = ctx.metaspaceChar
        ? t.startsWith(ctx.metaspaceChar)
        : !(ctx.subwordPrefix && t.startsWith(ctx.subwordPrefix));
      const limit = Math.min(N, at + 4096);
      for (let f = norm.indexOf(s, at + 1); f >= 0 && f < limit; f = norm.indexOf(s, f + 1)) {
        if (!startsWord || BOUNDARY.test(norm[f - 1]) || (!ctx.metaspaceChar && BOUNDARY.test(s[0]))) {
          q = f;
          break;
        }
      }
    }
    if (q < 0) {
      pending.push(i);
      continue;
    }
    flush(p, q);
    out[i] = [startOf(q), endOf(q + s.length)];
    p = q + s.length;
  }
  flush(p, N);

  // Guarantee the TokenSpanner contract (ordered, non-overlapping, in bounds) whatever happened above.
  let prevEnd = 0;
  for (let i = 0; i < out.length; i++) {
    const [s0, e0] = out[i] ?? [prevEnd, prevEnd];
    const s = Math.min(Math.max(s0, prevEnd), text.length);
    const e = Math.min(Math.max(e0, s), text.length);
    out[i] = [s, e];
    prevEnd = e;
  }
  return out;
}
