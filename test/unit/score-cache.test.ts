import { describe, expect, it } from "vitest";
import { createLexicalReranker } from "../../shared/adapters/local-reranker.ts";
import { createLexicalScorer } from "../../shared/core/lexical-scorer.ts";
import { type PairScorer, type RerankOptions, rerank } from "../../shared/core/rerank.ts";
import {
  ByteLru,
  createScoreCache,
  SCORE_ENTRY_BYTES,
  type ScoreCache,
  scoreKeys,
} from "../../shared/core/score-cache.ts";

describe("ByteLru", () => {
  it("evicts the least recently used entries once the byte budget is exceeded", () => {
    const lru = new ByteLru<number>(30, () => 10);
    lru.set("a", 1);
    lru.set("b", 2);
    lru.set("c", 3);
    expect(lru.bytes).toBe(30);
    expect(lru.get("a")).toBe(1); // a becomes the most recent
    lru.set("d", 4); // evicts b, the least recently used
    expect(lru.keys()).toEqual(["c", "a", "d"]);
    expect(lru.has("b")).toBe(false);
    expect(lru.bytes).toBe(30);
  });

  it("counts each entry's own size, replaces in place and never keeps what does not fit", () => {
    const lru = new ByteLru<string>(10, (k, v) => k.length + v.length);
    lru.set("k", "12"); // 3 bytes
    lru.set("k", "1234"); // replaced: 5 bytes
    expect(lru.size).toBe(1);
    expect(lru.bytes).toBe(5);
    lru.set("j", "123"); // 4 bytes: 9 in all
    lru.set("i", "1"); // 2 bytes: 11 > 10, k goes
    expect(lru.keys()).toEqual(["j", "i"]);
    lru.set("huge", "1234567890"); // larger than the budget: not stored, nothing evicted for it
    expect(lru.keys()).toEqual(["j", "i"]);
    expect(lru.bytes).toBe(6);
    lru.clear();
    expect(lru.size).toBe(0);
    expect(lru.bytes).toBe(0);
  });

  it("stores nothing with a zero budget", () => {
    const lru = new ByteLru<number>(0, () => 1);
    lru.set("a", 1);
    expect(lru.get("a")).toBeUndefined();
  });
});

describe("createScoreCache", () => {
  it("is disabled at 0 MB and bounded by its MiB budget otherwise", () => {
    expect(createScoreCache(0)).toBeNull();
    const cache = createScoreCache(1)!;
    const fits = Math.floor((1024 * 1024) / SCORE_ENTRY_BYTES);
    for (let i = 0; i < fits + 100; i++) cache.set(`k${i}`, i);
    expect(cache.stats()).toMatchObject({ entries: fits, maxBytes: 1024 * 1024 });
    expect(cache.get("k0")).toBeUndefined();
    expect(cache.get(`k${fits + 99}`)).toBe(fits + 99);
  });
});

describe("scoreKeys", () => {
  const base = { scorer: "m", query: "q", options: { strategy: "truncate" as const } };
  it("differ by every part of the context and by the text, not by term order in the statistics", () => {
    const [k] = scoreKeys(base, ["t"]);
    expect(scoreKeys(base, ["t"])[0]).toBe(k);
    expect(scoreKeys({ ...base, scorer: "m2" }, ["t"])[0]).not.toBe(k);
    expect(scoreKeys({ ...base, query: "q2" }, ["t"])[0]).not.toBe(k);
    expect(scoreKeys({ ...base, options: { strategy: "chunk" } }, ["t"])[0]).not.toBe(k);
    expect(scoreKeys({ ...base, options: { strategy: "truncate", maxTokensPerDoc: 8 } }, ["t"])[0]).not.toBe(k);
    expect(scoreKeys(base, ["t2"])[0]).not.toBe(k);
    // A query that swallows the start of the text must not collide with the split elsewhere.
    expect(scoreKeys({ ...base, query: "qt" }, [""])[0]).not.toBe(scoreKeys(base, ["t"])[0]);
    const stats = (df: Record<string, number>) => ({
      ...base,
      options: {
        strategy: "truncate" as const,
        termStatistics: { documents: 9, average_length: 3, document_frequencies: df },
      },
    });
    expect(scoreKeys(stats({ a: 1, b: 2 }), ["t"])[0]).toBe(scoreKeys(stats({ b: 2, a: 1 }), ["t"])[0]);
    expect(scoreKeys(stats({ a: 1, b: 2 }), ["t"])[0]).not.toBe(scoreKeys(stats({ a: 1, b: 3 }), ["t"])[0]);
    expect(scoreKeys(stats({ a: 1 }), ["t"])[0]).not.toBe(k);
  });
});

/** Scores a document by its length and the query's; records every document it scored. */
function countingScorer() {
  const scored: string[][] = [];
  const scorer: PairScorer & { scored: string[][] } = {
    scored,
    describe: () => ({ model: "counting", provider: "test" }),
    async scorePairs(query, documents) {
      scored.push([...documents]);
      return {
        logits: Float32Array.from(documents, (d) => Math.sin(d.length * 7 + query.length) * 3.3),
        pairs: documents.length,
        tokens: documents.join(" ").length,
        truncated: 0,
        tokenizeMs: 1,
        inferenceMs: 2,
      };
    },
  };
  return scorer;
}

const docs = ["alpha", "beta beta", "gamma gamma gamma", "delta"];
const withCache = (cache: ScoreCache, scorer = "counting@fp32"): RerankOptions => ({ cache: { cache, scorer } });

describe("rerank through the score cache", () => {
  it("answers a repeated request from the cache with identical results", async () => {
    const model = countingScorer();
    const cache = createScoreCache(1)!;
    const req = { query: "greek letters", documents: docs };
    const uncached = await rerank(req, countingScorer());
    const first = await rerank(req, model, undefined, undefined, withCache(cache));
    const second = await rerank(req, model, undefined, undefined, withCache(cache));
    expect(first.results).toEqual(uncached.results);
    expect(second.results).toEqual(first.results);
    expect(first.meta.cache).toEqual({ hits: 0, misses: 4 });
    expect(second.meta.cache).toEqual({ hits: 4, misses: 0 });
    expect(second.meta).toMatchObject({ pairs: 0, tokens: 0, timings: { tokenize_ms: 0, inference_ms: 0 } });
    expect(model.scored).toHaveLength(1); // the second request never reached the model
    expect(uncached.meta.cache).toBeUndefined();
  });

  it("scores only the misses of a partly overlapping request, in one call, and merges in input order", async () => {
    const model = countingScorer();
    const cache = createScoreCache(1)!;
    await rerank({ query: "q", documents: docs.slice(0, 2) }, model, undefined, undefined, withCache(cache));
    const req = { query: "q", documents: [docs[2], docs[0], docs[3], docs[1]] };
    const res = await rerank(req, model, undefined, undefined, withCache(cache));
    expect(model.scored).toEqual([docs.slice(0, 2), [docs[2], docs[3]]]);
    expect(res.meta.cache).toEqual({ hits: 2, misses: 2 });
    expect(res.meta.pairs).toBe(2);
    expect(res.results).toEqual((await rerank(req, countingScorer())).results);
  });

  it("misses for another scorer identity, other truncation settings, another query or another text under the same id", async () => {
    const model = countingScorer();
    const cache = createScoreCache(1)!;
    const req = { query: "q", documents: [{ id: "p1", text: "first version" }] };
    await rerank(req, model, undefined, undefined, withCache(cache, "counting@fp32"));
    const again = (r: unknown, scorer = "counting@fp32") =>
      rerank(r, model, undefined, undefined, withCache(cache, scorer)).then((x) => x.meta.cache);
    expect(await again(req)).toEqual({ hits: 1, misses: 0 });
    expect(await again(req, "counting@int8")).toEqual({ hits: 0, misses: 1 });
    expect(await again({ ...req, max_tokens_per_doc: 16 })).toEqual({ hits: 0, misses: 1 });
    expect(await again({ ...req, long_document_strategy: "chunk" })).toEqual({ hits: 0, misses: 1 });
    expect(await again({ ...req, query: "q2" })).toEqual({ hits: 0, misses: 1 });
    // A snapshot swap changed the passage behind the same id.
    expect(await again({ query: "q", documents: [{ id: "p1", text: "second version" }] })).toEqual({
      hits: 0,
      misses: 1,
    });
  });

  it("gives the lexical scorer the same scores with and without the cache", async () => {
    const stats = { documents: 100, average_length: 4, document_frequencies: { cat: 10, mat: 3 } };
    const req = { query: "cat mat", documents: ["the cat sat", "cat on the mat", "dogs"], term_statistics: stats };
    const cache = createScoreCache(1)!;
    const plain = await rerank(req, createLexicalScorer());
    await rerank(req, createLexicalScorer(), undefined, undefined, withCache(cache, "lexical"));
    const cached = await rerank(req, createLexicalScorer(), undefined, undefined, withCache(cache, "lexical"));
    expect(cached.meta.cache).toEqual({ hits: 3, misses: 0 });
    expect(cached.results).toEqual(plain.results);
  });
});

describe("lexical reranker cache wiring", () => {
  const cfg = { rerankerMaxDocuments: 100, rerankerProvider: "auto" as const };
  const stats = { documents: 100, average_length: 4, document_frequencies: { cat: 10 } };

  it("caches requests carrying term statistics when RERANKER_CACHE_MB > 0", async () => {
    const reranker = createLexicalReranker({ ...cfg, rerankerCacheMb: 1 });
    const req = { query: "cat", documents: ["a cat", "no"], term_statistics: stats };
    expect((await reranker.rerank(req)).meta.cache).toEqual({ hits: 0, misses: 2 });
    expect((await reranker.rerank(req)).meta.cache).toEqual({ hits: 2, misses: 0 });
    expect(reranker.status().cache?.entries).toBe(2);
  });

  it("does not cache batch-dependent scores (no term statistics) nor when the cache is off", async () => {
    const reranker = createLexicalReranker({ ...cfg, rerankerCacheMb: 1 });
    const req = { query: "cat", documents: ["a cat", "no"] };
    await reranker.rerank(req);
    expect((await reranker.rerank(req)).meta.cache).toBeUndefined();
    const off = createLexicalReranker({ ...cfg, rerankerCacheMb: 0 });
    expect((await off.rerank({ ...req, term_statistics: stats })).meta.cache).toBeUndefined();
    expect(off.status().cache).toBeUndefined();
  });
});
