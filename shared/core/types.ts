// Plain data shapes shared by every stage. No SDKs, no native addons.

export type Metadata = Record<string, unknown>;

/** A source document as users provide it (JSONL/JSON rows, Markdown or text files). */
export interface SourceDocument {
  id: string;
  text: string;
  source?: string;
  metadata?: Metadata;
}

/** A model-sized piece of a document; the unit that is embedded, indexed and reranked. */
export interface Passage {
  /** Stable passage id: `${docId}#${chunkIndex}`. */
  id: string;
  docId: string;
  text: string;
  source?: string;
  metadata?: Metadata;
  /** Character offsets of this passage in the document text (UTF-16 code units, end exclusive). */
  start: number;
  end: number;
}

/**
 * The embedder families. "use-lite+hashing" is USE-lite's vectors joined with the hashing embedder's,
 * so an inner product sums a trained model's similarity and a lexical one (shared/core/embedding.ts).
 */
export const EMBEDDER_KINDS = ["openai", "onnx", "use-lite", "use-lite+hashing", "hashing"] as const;
export type EmbedderKind = (typeof EMBEDDER_KINDS)[number];

/** What produced the vectors of a snapshot; a query embedder must match it exactly. */
export interface EmbedderIdentity {
  kind: EmbedderKind;
  model: string;
  dimensions: number;
  normalized: boolean;
  pooling?: "mean" | "cls";
}

export interface RerankDocumentInput {
  id?: string;
  text: string;
  metadata?: Metadata;
}

export type LongDocumentStrategy = "truncate" | "chunk";

export interface RerankRequest {
  query: string;
  documents: Array<string | RerankDocumentInput>;
  top_n?: number;
  return_documents?: boolean;
  raw_scores?: boolean;
  max_tokens_per_doc?: number;
  long_document_strategy?: LongDocumentStrategy;
  /**
   * BM25 statistics of the query terms over the whole index (the search function sends them
   * from its sparse index); the lexical reranker scores BM25 with them, model rerankers ignore
   * them. Without them the lexical reranker estimates them from the documents it was sent.
   */
  term_statistics?: TermStatistics;
}

/** BM25 corpus statistics of a query's terms. */
export interface TermStatistics {
  /** Passages with at least one term (BM25's N). */
  documents: number;
  average_length: number;
  /** Analysed query term → passages holding it (0 for terms no passage holds). */
  document_frequencies: Record<string, number>;
}

export interface RerankResult {
  /** Index into the request's `documents`. */
  index: number;
  /** sigmoid(logit) in [0,1]; the raw logit when `raw_scores` is true. */
  relevance_score: number;
  logit: number;
  /** The document's `id` when it was given as an object (passed through untouched). */
  id?: string;
  document?: string | RerankDocumentInput;
}

export interface RerankResponse {
  results: RerankResult[];
  meta: {
    model: string;
    provider: string;
    pairs: number;
    tokens: number;
    truncated: number;
    timings: { tokenize_ms: number; inference_ms: number; total_ms: number };
    /**
     * Score cache (RERANKER_CACHE_MB) lookups of this call, when one was consulted: documents whose
     * score came from the cache and documents the model scored. pairs, tokens, truncated and the
     * timings count only the misses.
     */
    cache?: { hits: number; misses: number };
    /** Set when the model's scores carry no meaning (generated fixture weights). */
    fixture?: boolean;
    /** The model's numeric precision ("int8" for a dynamic-int8 graph, "fp32"). */
    precision?: string;
  };
}

export type FusionMode = "rerank" | "linear" | "rrf";

export interface StageScore {
  score: number;
  rank: number;
}

export interface SearchHit {
  id: string;
  doc_id: string;
  text: string;
  source?: string;
  metadata?: Metadata;
  score: number;
  /** First-stage score and rank: the fused ones in hybrid mode, else the one side's. */
  retrieval: StageScore;
  /** Vector-index score and rank; null when the passage did not come from the dense side. */
  dense: StageScore | null;
  /** BM25 score and rank; null when the passage did not come from the sparse side. */
  sparse: StageScore | null;
  rerank: StageScore | null;
}
