// In-memory cache of reranker scores, one per warm instance, so repeated and paginated queries
// skip the model. A byte-budgeted LRU (RERANKER_CACHE_MB) of logits keyed by a sha256 of
// (scorer identity, scoring settings, query, passage text). The key holds the passage's content,
// never only its id: a snapshot swap that changes a passage's text, a model change (another file,
// precision or pair length) or other truncation settings all miss instead of serving a stale score.
import { createHash, type Hash } from "node:crypto";
import type { PairScoreOptions } from "./rerank.ts";

/** A least-recently-used map bounded by an estimate of the bytes its entries hold. */
export class ByteLru<V> {
  readonly #map = new Map<string, { value: V; bytes: number }>();
  #bytes = 0;

  /**
   * @param maxBytes budget; 0 stores nothing.
   * @param sizeOf estimated bytes of one entry (key and value, Map overhead included).
   */
  constructor(
    readonly maxBytes: number,
    private readonly sizeOf: (key: string, value: V) => number,
  ) {}

  get size(): number {
    return this.#map.size;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The value, marked most recently used; undefined when absent. */
  get(key: string): V | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    // Map iterates in insertion order: re-inserting moves the entry to the young end.
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.value;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  /** Stores the value as most recently used, evicting the least recently used past the budget. */
  set(key: string, value: V): void {
    const bytes = this.sizeOf(key, value);
    this.delete(key);
    if (bytes > this.maxBytes) return;
    this.#map.set(key, { value, bytes });
    this.#bytes += bytes;
    for (const [oldest, e] of this.#map) {
      if (this.#bytes <= this.maxBytes) break;
      this.#map.delete(oldest);
      this.#bytes -= e.bytes;
    }
  }

  delete(key: string): boolean {
    const e = this.#map.get(key);
    if (!e) return false;
    this.#map.delete(key);
    this.#bytes -= e.bytes;
    return true;
  }

  clear(): void {
    this.#map.clear();
    this.#bytes = 0;
  }

  /** Keys from least to most recently used. */
  keys(): string[] {
    return [...this.#map.keys()];
  }
}

/**
 * Estimated bytes of one score entry: the 44-character base64 key (two bytes a character, plus the
 * string header), the boxed entry object and its share of the Map's hash table.
 */
export const SCORE_ENTRY_BYTES = 44 * 2 + 24 + 40 + 48;

export interface ScoreCacheStats {
  entries: number;
  bytes: number;
  maxBytes: number;
}

/** Logits keyed by scoreKeys(); bounded by bytes. */
export interface ScoreCache {
  get(key: string): number | undefined;
  set(key: string, logit: number): void;
  stats(): ScoreCacheStats;
  clear(): void;
}

/** A score cache of at most `megabytes` MiB (RERANKER_CACHE_MB); null when 0 (disabled). */
export function createScoreCache(megabytes: number): ScoreCache | null {
  if (!(megabytes > 0)) return null;
  const lru = new ByteLru<number>(Math.floor(megabytes * 1024 * 1024), () => SCORE_ENTRY_BYTES);
  return {
    get: (key) => lru.get(key),
    set: (key, logit) => lru.set(key, logit),
    stats: () => ({ entries: lru.size, bytes: lru.bytes, maxBytes: lru.maxBytes }),
    clear: () => lru.clear(),
  };
}

/** What keys one request's scores: everything but the passage text. */
export interface ScoreKeyContext {
  /**
   * Identity of the scorer: model name, ONNX file (so int8 and fp32 never share entries), pair
   * length limit; for the lexical scorer its name and weights.
   */
  scorer: string;
  query: string;
  options: PairScoreOptions;
}

function sortedEntries(o: Record<string, number>): Array<[string, number]> {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Cache key of each text (base64 sha256). The context is JSON-encoded once (self-delimiting, so
 * context + text is unambiguous) and its hash state copied per text.
 */
export function scoreKeys(ctx: ScoreKeyContext, texts: readonly string[]): string[] {
  const o = ctx.options;
  const stats = o.termStatistics
    ? [
        o.termStatistics.documents,
        o.termStatistics.average_length,
        sortedEntries(o.termStatistics.document_frequencies),
      ]
    : null;
  const prefix = JSON.stringify(["score-v1", ctx.scorer, o.maxTokensPerDoc ?? null, o.strategy, stats, ctx.query]);
  const base: Hash = createHash("sha256").update(prefix, "utf8");
  return texts.map((t) => base.copy().update(t, "utf8").digest("base64"));
}
