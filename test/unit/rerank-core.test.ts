import { describe, expect, it } from "vitest";
import { ValidationError } from "../../shared/core/errors.ts";
import type { Clock } from "../../shared/core/ports.ts";
import {
  type PairScoreOptions,
  type PairScorer,
  rerank,
  sigmoid,
  validateRerankRequest,
} from "../../shared/core/rerank.ts";

/** Scores a document by how many query words it contains minus a length penalty; records its calls. */
function wordOverlapScorer(opts: { fixture?: boolean; truncateAbove?: number } = {}) {
  const calls: Array<{ query: string; documents: string[]; opts: PairScoreOptions }> = [];
  const scorer: PairScorer & { calls: typeof calls } = {
    calls,
    describe: () => ({ model: "word-overlap", provider: "test", fixture: opts.fixture }),
    async scorePairs(query, documents, o) {
      calls.push({ query, documents, opts: o });
      const words = new Set(query.toLowerCase().split(/\s+/));
      const logits = Float32Array.from(documents, (d) => {
        const toks = d.toLowerCase().split(/\s+/).filter(Boolean);
        return toks.filter((t) => words.has(t)).length - toks.length / 100;
      });
      const truncated = opts.truncateAbove ? documents.filter((d) => d.length > opts.truncateAbove!).length : 0;
      return {
        logits,
        pairs: documents.length,
        tokens: documents.join(" ").length,
        truncated,
        tokenizeMs: 1.234,
        inferenceMs: 5.678,
      };
    },
  };
  return scorer;
}

const docs = ["the cat sat", "a dog barked at the cat on the mat", "nothing relevant here", "cat mat"];

describe("rerank", () => {
  it("sorts by score, maps indexes back to the input, and applies the sigmoid", async () => {
    const res = await rerank({ query: "cat on mat", documents: docs }, wordOverlapScorer());
    expect(res.results.map((r) => r.index)).toEqual([1, 3, 0, 2]);
    for (const r of res.results) {
      expect(r.relevance_score).toBeCloseTo(sigmoid(r.logit), 12);
      expect(r.document).toBeUndefined();
    }
    expect(res.results[0].logit).toBeCloseTo(3 - 9 / 100, 5);
    expect(res.meta).toMatchObject({ model: "word-overlap", provider: "test", pairs: 4, truncated: 0 });
    expect(res.meta.fixture).toBeUndefined();
  });

  it("returns raw logits as relevance_score when raw_scores is set", async () => {
    const res = await rerank({ query: "cat", documents: docs, raw_scores: true }, wordOverlapScorer());
    for (const r of res.results) expect(r.relevance_score).toBe(r.logit);
  });

  it("honours top_n and clamps it to the number of documents", async () => {
    const scorer = wordOverlapScorer();
    expect((await rerank({ query: "cat", documents: docs, top_n: 2 }, scorer)).results.map((r) => r.index)).toEqual([
      3, 0,
    ]);
    expect((await rerank({ query: "cat", documents: docs, top_n: 50 }, scorer)).results).toHaveLength(4);
  });

  it("passes ids and metadata through untouched and returns documents on request", async () => {
    const meta = { source: "x.md", nested: { page: 3 } };
    const documents = [{ id: "a", text: "cat", metadata: meta }, "dog", { text: "cat cat" }];
    const res = await rerank({ query: "cat", documents, return_documents: true }, wordOverlapScorer());
    const byIndex = Object.fromEntries(res.results.map((r) => [r.index, r]));
    expect(byIndex[0].id).toBe("a");
    expect(byIndex[0].document).toBe(documents[0]);
    expect((byIndex[0].document as { metadata: unknown }).metadata).toBe(meta);
    expect(byIndex[1].document).toBe("dog");
    expect(byIndex[1].id).toBeUndefined();
    expect(byIndex[2].id).toBeUndefined();
  });

  it("forwards long-document options to the model and reports its truncation count", async () => {
    const scorer = wordOverlapScorer({ truncateAbove: 10 });
    const res = await rerank(
      { query: "cat", documents: docs, max_tokens_per_doc: 7, long_document_strategy: "chunk" },
      scorer,
    );
    expect(scorer.calls[0].opts).toEqual({ maxTokensPerDoc: 7, strategy: "chunk" });
    expect(res.meta.truncated).toBe(3);
    await rerank({ query: "cat", documents: docs }, scorer);
    expect(scorer.calls[1].opts).toEqual({ maxTokensPerDoc: undefined, strategy: "truncate" });
  });

  it("keeps input order among equal scores", async () => {
    const res = await rerank({ query: "zebra", documents: ["a b", "c d", "e f"] }, wordOverlapScorer());
    expect(res.results.map((r) => r.index)).toEqual([0, 1, 2]);
  });

  it("ranks by logit even where the sigmoid saturates", async () => {
    const scorer: PairScorer = {
      describe: () => ({ model: "m", provider: "p" }),
      scorePairs: async (_q, d) => ({
        logits: Float32Array.from([40, 45, 50].slice(0, d.length)),
        pairs: d.length,
        tokens: 0,
        truncated: 0,
        tokenizeMs: 0,
        inferenceMs: 0,
      }),
    };
    const res = await rerank({ query: "q", documents: ["a", "b", "c"] }, scorer);
    expect(res.results.map((r) => r.index)).toEqual([2, 1, 0]);
    expect(res.results[0].relevance_score).toBe(1);
  });

  it("flags fixture models and reports timings from the injected clock", async () => {
    let t = 100;
    const clock: Clock = { now: () => (t += 10) };
    const res = await rerank(
      { query: "cat", documents: docs },
      wordOverlapScorer({ fixture: true }),
      { maxDocuments: 10 },
      clock,
    );
    expect(res.meta.fixture).toBe(true);
    expect(res.meta.timings).toEqual({ tokenize_ms: 1.23, inference_ms: 5.68, total_ms: 10 });
  });

  it("rejects a model that returns the wrong number of scores", async () => {
    const broken: PairScorer = {
      describe: () => ({ model: "m", provider: "p" }),
      scorePairs: async () => ({
        logits: new Float32Array(1),
        pairs: 1,
        tokens: 1,
        truncated: 0,
        tokenizeMs: 0,
        inferenceMs: 0,
      }),
    };
    await expect(rerank({ query: "q", documents: ["a", "b"] }, broken)).rejects.toThrow(/1 scores for 2 documents/);
  });
});

describe("validateRerankRequest", () => {
  const limits = { maxDocuments: 3, maxQueryChars: 20 };
  const bad: Array<[string, unknown, RegExp, string | undefined]> = [
    ["not an object", "cat", /JSON object/, undefined],
    ["an array body", [1], /JSON object/, undefined],
    ["missing query", { documents: ["a"] }, /`query` must be a string/, "query"],
    ["non-string query", { query: 5, documents: ["a"] }, /`query` must be a string/, "query"],
    ["empty query", { query: "", documents: ["a"] }, /`query` must not be empty/, "query"],
    ["blank query", { query: "  \n", documents: ["a"] }, /`query` must not be empty/, "query"],
    ["query too long", { query: "x".repeat(21), documents: ["a"] }, /21 characters long; the limit is 20/, "query"],
    ["missing documents", { query: "q" }, /`documents` must be an array/, "documents"],
    ["documents not an array", { query: "q", documents: "a" }, /`documents` must be an array/, "documents"],
    ["no documents", { query: "q", documents: [] }, /`documents` must not be empty/, "documents"],
    ["too many documents", { query: "q", documents: ["a", "b", "c", "d"] }, /4 entries; the limit is 3/, "documents"],
    [
      "number document",
      { query: "q", documents: ["a", 7] },
      /`documents\[1\]` must be a string or an object/,
      "documents[1]",
    ],
    [
      "null document",
      { query: "q", documents: [null] },
      /`documents\[0\]` must be a string or an object/,
      "documents[0]",
    ],
    [
      "object without text",
      { query: "q", documents: [{ id: "x" }] },
      /`documents\[0\].text` must be a string/,
      "documents[0].text",
    ],
    [
      "object with non-string text",
      { query: "q", documents: [{ text: 3 }] },
      /`documents\[0\].text` must be a string/,
      "documents[0].text",
    ],
    [
      "non-string id",
      { query: "q", documents: [{ id: 1, text: "a" }] },
      /`documents\[0\].id` must be a string/,
      "documents[0].id",
    ],
    [
      "non-object metadata",
      { query: "q", documents: [{ text: "a", metadata: "m" }] },
      /metadata` must be an object/,
      "documents[0].metadata",
    ],
    [
      "top_n zero",
      { query: "q", documents: ["a"], top_n: 0 },
      /`top_n` must be an integer between 1 and 3, got 0/,
      "top_n",
    ],
    ["top_n negative", { query: "q", documents: ["a"], top_n: -1 }, /`top_n`/, "top_n"],
    ["top_n fractional", { query: "q", documents: ["a"], top_n: 1.5 }, /`top_n`/, "top_n"],
    ["top_n above the limit", { query: "q", documents: ["a"], top_n: 4 }, /`top_n`/, "top_n"],
    ["top_n string", { query: "q", documents: ["a"], top_n: "2" }, /`top_n`/, "top_n"],
    [
      "return_documents string",
      { query: "q", documents: ["a"], return_documents: "yes" },
      /`return_documents` must be a boolean/,
      "return_documents",
    ],
    [
      "raw_scores number",
      { query: "q", documents: ["a"], raw_scores: 1 },
      /`raw_scores` must be a boolean/,
      "raw_scores",
    ],
    [
      "max_tokens_per_doc zero",
      { query: "q", documents: ["a"], max_tokens_per_doc: 0 },
      /`max_tokens_per_doc` must be a positive integer/,
      "max_tokens_per_doc",
    ],
    [
      "unknown strategy",
      { query: "q", documents: ["a"], long_document_strategy: "drop" },
      /`long_document_strategy` must be one of truncate, chunk/,
      "long_document_strategy",
    ],
  ];
  it.each(bad)("rejects %s", (_name, input, pattern, field) => {
    let caught: unknown;
    try {
      validateRerankRequest(input, limits);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    const err = caught as ValidationError;
    expect(err.message).toMatch(pattern);
    expect(err.status).toBe(400);
    expect(err.details?.field).toBe(field);
  });

  it("defaults the document limit to 1000", () => {
    expect(() => validateRerankRequest({ query: "q", documents: Array(1000).fill("a") })).not.toThrow();
    expect(() => validateRerankRequest({ query: "q", documents: Array(1001).fill("a") })).toThrow(/limit is 1000/);
  });

  it("accepts nulls for optional fields and empty document strings", () => {
    const req = validateRerankRequest(
      { query: "q", documents: ["", { text: "" }], top_n: null, raw_scores: null },
      limits,
    );
    expect(req.top_n).toBeUndefined();
    expect(req.documents).toHaveLength(2);
  });
});
