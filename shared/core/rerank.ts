// The rerank use case: validate a request, score (query, document) pairs with a cross-encoder,
// and answer in the shape Cohere Rerank / Infinity / TEI clients understand. Transport-free:
// the model is a port, errors are DomainErrors, timings come from an injected clock.
import { ValidationError } from "./errors.ts";
import { type Clock, systemClock } from "./ports.ts";
import { type ScoreCache, scoreKeys } from "./score-cache.ts";
import type { LongDocumentStrategy, RerankRequest, RerankResponse, RerankResult, TermStatistics } from "./types.ts";

export interface PairScoreOptions {
  /** Per-request cap on a document's tokens (before the model's own pair limit). */
  maxTokensPerDoc?: number;
  strategy: LongDocumentStrategy;
  /** The index's BM25 statistics of the query terms (lexical scorer only; models ignore them). */
  termStatistics?: TermStatistics;
}

/** What scoring a batch of documents against one query yields. */
export interface PairScores {
  /** One raw logit per document, in input order (chunked documents: their best chunk). */
  logits: Float32Array;
  /** Model inputs actually scored (more than documents when chunking). */
  pairs: number;
  /** Real (unpadded) tokens fed to the model. */
  tokens: number;
  /** Documents that were cut to fit (truncate strategy) — counted, never rejected. */
  truncated: number;
  tokenizeMs: number;
  inferenceMs: number;
}

export interface ModelDescription {
  model: string;
  provider: string;
  /** Scores carry no meaning (generated fixture weights). */
  fixture?: boolean;
  /** Numeric precision of the model that scored ("int8", "fp32"); absent for non-model scorers. */
  precision?: string;
}

/** A cross-encoder as the core sees it (shared/adapters/cross-encoder.ts implements it). */
export interface PairScorer {
  describe(): ModelDescription;
  scorePairs(query: string, documents: string[], opts: PairScoreOptions): Promise<PairScores>;
}

export interface RerankLimits {
  /** Most documents per request (Cohere recommends ≤ 1000). */
  maxDocuments: number;
  /** Longest accepted query, in characters. */
  maxQueryChars?: number;
}

export const DEFAULT_RERANK_LIMITS: RerankLimits = { maxDocuments: 1000 };

const STRATEGIES: readonly LongDocumentStrategy[] = ["truncate", "chunk"];

export function sigmoid(x: number): number {
  // Split by sign so large |x| neither overflows exp nor loses precision.
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Checks a request from any transport (Lambda event, parsed HTTP body) and returns it typed.
 * Every failure is a ValidationError whose message names the offending field.
 */
export function validateRerankRequest(input: unknown, limits: RerankLimits = DEFAULT_RERANK_LIMITS): RerankRequest {
  if (!isObject(input)) throw new ValidationError("request body must be a JSON object with `query` and `documents`");
  const {
    query,
    documents,
    top_n,
    return_documents,
    raw_scores,
    max_tokens_per_doc,
    long_document_strategy,
    term_statistics,
  } = input;

  if (typeof query !== "string") throw new ValidationError("`query` must be a string", { field: "query" });
  if (query.trim() === "") throw new ValidationError("`query` must not be empty", { field: "query" });
  if (limits.maxQueryChars !== undefined && query.length > limits.maxQueryChars) {
    throw new ValidationError(`\`query\` is ${query.length} characters long; the limit is ${limits.maxQueryChars}`, {
      field: "query",
    });
  }

  if (!Array.isArray(documents))
    throw new ValidationError("`documents` must be an array of strings or {text} objects", { field: "documents" });
  if (documents.length === 0) throw new ValidationError("`documents` must not be empty", { field: "documents" });
  if (documents.length > limits.maxDocuments) {
    throw new ValidationError(`\`documents\` has ${documents.length} entries; the limit is ${limits.maxDocuments}`, {
      field: "documents",
    });
  }
  documents.forEach((d, i) => {
    if (typeof d === "string") return;
    const field = `documents[${i}]`;
    if (!isObject(d))
      throw new ValidationError(`\`${field}\` must be a string or an object with a string \`text\``, { field });
    if (typeof d.text !== "string")
      throw new ValidationError(`\`${field}.text\` must be a string`, { field: `${field}.text` });
    if (d.id !== undefined && typeof d.id !== "string") {
      throw new ValidationError(`\`${field}.id\` must be a string`, { field: `${field}.id` });
    }
    if (d.metadata !== undefined && !isObject(d.metadata)) {
      throw new ValidationError(`\`${field}.metadata\` must be an object`, { field: `${field}.metadata` });
    }
  });

  if (top_n !== undefined && top_n !== null) {
    if (typeof top_n !== "number" || !Number.isInteger(top_n) || top_n < 1 || top_n > limits.maxDocuments) {
      throw new ValidationError(
        `\`top_n\` must be an integer between 1 and ${limits.maxDocuments}, got ${JSON.stringify(top_n)}`,
        {
          field: "top_n",
        },
      );
    }
  }
  for (const [name, v] of [
    ["return_documents", return_documents],
    ["raw_scores", raw_scores],
  ] as const) {
    if (v !== undefined && v !== null && typeof v !== "boolean")
      throw new ValidationError(`\`${name}\` must be a boolean`, { field: name });
  }
  if (max_tokens_per_doc !== undefined && max_tokens_per_doc !== null) {
    if (typeof max_tokens_per_doc !== "number" || !Number.isInteger(max_tokens_per_doc) || max_tokens_per_doc < 1) {
      throw new ValidationError(
        `\`max_tokens_per_doc\` must be a positive integer, got ${JSON.stringify(max_tokens_per_doc)}`,
        {
          field: "max_tokens_per_doc",
        },
      );
    }
  }
  if (
    long_document_strategy !== undefined &&
    long_document_strategy !== null &&
    !STRATEGIES.includes(long_document_strategy as LongDocumentStrategy)
  ) {
    throw new ValidationError(
      `\`long_document_strategy\` must be one of ${STRATEGIES.join(", ")}, got ${JSON.stringify(long_document_strategy)}`,
      {
        field: "long_document_strategy",
      },
    );
  }

  const stats =
    term_statistics === undefined || term_statistics === null ? undefined : checkTermStatistics(term_statistics);

  return {
    query,
    documents: documents as RerankRequest["documents"],
    ...(stats ? { term_statistics: stats } : {}),
    top_n: (top_n ?? undefined) as number | undefined,
    return_documents: (return_documents ?? undefined) as boolean | undefined,
    raw_scores: (raw_scores ?? undefined) as boolean | undefined,
    max_tokens_per_doc: (max_tokens_per_doc ?? undefined) as number | undefined,
    long_document_strategy: (long_document_strategy ?? undefined) as LongDocumentStrategy | undefined,
  };
}

function checkTermStatistics(v: unknown): TermStatistics {
  const field = "term_statistics";
  const fail = (why: string) => new ValidationError(`\`${field}\` ${why}`, { field });
  if (!isObject(v)) throw fail("must be an object {documents, average_length, document_frequencies}");
  const { documents, average_length, document_frequencies } = v;
  if (typeof documents !== "number" || !Number.isInteger(documents) || documents < 0)
    throw fail("`documents` must be a non-negative integer");
  if (typeof average_length !== "number" || !Number.isFinite(average_length) || average_length < 0)
    throw fail("`average_length` must be a non-negative number");
  if (!isObject(document_frequencies)) throw fail("`document_frequencies` must be an object of term → count");
  for (const [term, df] of Object.entries(document_frequencies)) {
    if (typeof df !== "number" || !Number.isInteger(df) || df < 0 || df > documents)
      throw fail(`\`document_frequencies.${term}\` must be an integer between 0 and documents (${documents})`);
  }
  return { documents, average_length, document_frequencies: document_frequencies as Record<string, number> };
}

/** Scores from a warm instance's cache (shared/core/score-cache.ts). */
export interface RerankCacheOption {
  cache: ScoreCache;
  /**
   * Identity of the scorer's weights and settings (model, ONNX file, pair length): part of every
   * key, so another model or precision never reads these entries.
   */
  scorer: string;
}

export interface RerankOptions {
  /** Look each (query, document) up first and score only the misses. */
  cache?: RerankCacheOption;
}

/** Scores every document against the query and returns them best first. */
export async function rerank(
  request: unknown,
  model: PairScorer,
  limits: RerankLimits = DEFAULT_RERANK_LIMITS,
  clock: Clock = systemClock,
  options: RerankOptions = {},
): Promise<RerankResponse> {
  const started = clock.now();
  const req = validateRerankRequest(request, limits);
  const texts = req.documents.map((d) => (typeof d === "string" ? d : d.text));
  const scoreOpts: PairScoreOptions = {
    maxTokensPerDoc: req.max_tokens_per_doc,
    strategy: req.long_document_strategy ?? "truncate",
    termStatistics: req.term_statistics,
  };
  const { scores, cache } = options.cache
    ? await scoreThroughCache(model, req.query, texts, scoreOpts, options.cache)
    : { scores: await scoreAll(model, req.query, texts, scoreOpts), cache: undefined };

  const results: RerankResult[] = texts.map((_, index) => {
    const logit = scores.logits[index];
    const doc = req.documents[index];
    const result: RerankResult = { index, relevance_score: req.raw_scores ? logit : sigmoid(logit), logit };
    if (typeof doc !== "string" && doc.id !== undefined) result.id = doc.id;
    if (req.return_documents) result.document = doc;
    return result;
  });
  // Rank by logit (sigmoid saturates to equal 1.0 for large logits); ties keep input order.
  results.sort((a, b) => b.logit - a.logit || a.index - b.index);

  const description = model.describe();
  return {
    results: results.slice(0, Math.min(req.top_n ?? results.length, results.length)),
    meta: {
      model: description.model,
      provider: description.provider,
      pairs: scores.pairs,
      tokens: scores.tokens,
      truncated: scores.truncated,
      timings: {
        tokenize_ms: round(scores.tokenizeMs),
        inference_ms: round(scores.inferenceMs),
        total_ms: round(clock.now() - started),
      },
      ...(description.precision ? { precision: description.precision } : {}),
      ...(cache ? { cache } : {}),
      ...(description.fixture ? { fixture: true } : {}),
    },
  };
}

async function scoreAll(
  model: PairScorer,
  query: string,
  texts: string[],
  opts: PairScoreOptions,
): Promise<PairScores> {
  const scores = await model.scorePairs(query, texts, opts);
  if (scores.logits.length !== texts.length) {
    throw new Error(`model returned ${scores.logits.length} scores for ${texts.length} documents`);
  }
  return scores;
}

/**
 * Cached logits where the cache has them; the rest scored in one call (in input order) and stored.
 * Pairs, tokens, truncated and the timings then describe only what the model scored.
 */
async function scoreThroughCache(
  model: PairScorer,
  query: string,
  texts: string[],
  opts: PairScoreOptions,
  { cache, scorer }: RerankCacheOption,
): Promise<{ scores: PairScores; cache: { hits: number; misses: number } }> {
  const keys = scoreKeys({ scorer, query, options: opts }, texts);
  const logits = new Float32Array(texts.length);
  const missing: number[] = [];
  keys.forEach((key, i) => {
    const hit = cache.get(key);
    if (hit === undefined) missing.push(i);
    else logits[i] = hit;
  });
  const hits = texts.length - missing.length;
  if (missing.length === 0) {
    return {
      scores: { logits, pairs: 0, tokens: 0, truncated: 0, tokenizeMs: 0, inferenceMs: 0 },
      cache: { hits, misses: 0 },
    };
  }
  const fresh = await scoreAll(
    model,
    query,
    missing.map((i) => texts[i]),
    opts,
  );
  missing.forEach((i, j) => {
    logits[i] = fresh.logits[j];
    cache.set(keys[i], fresh.logits[j]);
  });
  return { scores: { ...fresh, logits }, cache: { hits, misses: missing.length } };
}

const round = (ms: number) => Math.round(ms * 100) / 100;
