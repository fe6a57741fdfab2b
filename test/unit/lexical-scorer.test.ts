// The weight-free lexical reranker: each feature responds to the evidence it names, BM25 agrees
// with the sparse index when given its statistics, and the port answers like the cross-encoder's.
import { describe, expect, it } from "vitest";
import { createLexicalReranker } from "../../shared/adapters/local-reranker.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import { createLexicalScorer, LEXICAL_MODEL, lexicalFeatures } from "../../shared/core/lexical-scorer.ts";
import { rerank } from "../../shared/core/rerank.ts";
import { openSparseIndex, SparseIndexBuilder } from "../../shared/core/sparse-index.ts";

const CFG = { rerankerMaxDocuments: 100, rerankerProvider: "auto" as const };

describe("lexical features", () => {
  it("exact phrase and ordered bigrams score only when the words are adjacent and in order", () => {
    const [phrase, reversed, apart] = lexicalFeatures("snapshot pointer", [
      "the snapshot pointer moves last",
      "the pointer of the snapshot moves last",
      "a snapshot is written; later, much later, a pointer moves",
    ]);
    expect(phrase.phrase).toBe(1);
    expect(phrase.bigram).toBe(1);
    expect(reversed.phrase).toBe(0);
    expect(reversed.bigram).toBe(0);
    expect(apart.phrase).toBe(0);
    // All three hold both terms: coverage cannot tell them apart, proximity can.
    expect(phrase.coverage).toBeCloseTo(1, 12);
    expect(apart.coverage).toBeCloseTo(1, 12);
    expect(phrase.proximity).toBe(1);
    expect(reversed.proximity).toBeGreaterThan(apart.proximity);
    expect(phrase.pairs).toBeGreaterThan(apart.pairs);
  });

  it("coverage weighs the rare query terms more than the common ones", () => {
    const docs = ["cats and dogs", "cats only", "dogs only", "dogs again", "dogs everywhere"];
    const [both, rare, common] = lexicalFeatures("cats dogs", docs.slice(0, 3));
    expect(both.coverage).toBeCloseTo(1, 12);
    expect(rare.coverage + common.coverage).toBeCloseTo(1, 12);
    // With the index's statistics "cats" (in 2 of 5 passages) is rarer than "dogs" (in 4 of 5).
    const builder = new SparseIndexBuilder();
    for (const d of docs) builder.add(d);
    const index = openSparseIndex(builder.finish());
    const [, rareS, commonS] = lexicalFeatures("cats dogs", docs.slice(0, 3), {
      stats: index.termStatistics("cats dogs"),
    });
    expect(rareS.coverage).toBeGreaterThan(commonS.coverage);
  });

  it("a match in the lead (title line) and an early match count more than a late one", () => {
    const [title, body] = lexicalFeatures("axolotl regeneration", [
      "Axolotl regeneration\n\nThe salamander regrows limbs.",
      "Salamanders\n\nMany animals regrow parts; the axolotl regeneration of limbs is the best known case.",
    ]);
    expect(title.lead).toBeCloseTo(1, 12);
    expect(body.lead).toBe(0);
    expect(title.position).toBeGreaterThan(body.position);
  });

  it("with the index's term statistics, the BM25 feature orders and scales as the sparse index scores", () => {
    const docs = [
      "index snapshots are published by writing files then flipping a pointer",
      "the pointer file names the live snapshot",
      "cold starts load the snapshot from the bucket",
      "reranking reorders candidates",
      "snapshots snapshots snapshots everywhere in this long passage about many other things too",
    ];
    const builder = new SparseIndexBuilder();
    for (const d of docs) builder.add(d);
    const index = openSparseIndex(builder.finish());
    const query = "how are index snapshots published";
    const hits = index.search(query, docs.length);
    const features = lexicalFeatures(query, docs, { stats: index.termStatistics(query) });
    const ratio = features[hits.ordinals[0]].bm25 / hits.scores[0];
    for (const [i, ordinal] of hits.ordinals.entries())
      expect(features[ordinal].bm25 / hits.scores[i]).toBeCloseTo(ratio, 9);
    expect(features[3].bm25).toBe(0);
  });

  it("gives every feature 0 for a passage without query terms, and handles one-term and empty queries", () => {
    const [none] = lexicalFeatures("quokka", ["nothing relevant here"]);
    expect(Object.values(none).every((v) => v === 0)).toBe(true);
    const [one] = lexicalFeatures("quokka", ["a quokka smiles"]);
    expect(one.coverage).toBeCloseTo(1, 12);
    expect(one.phrase).toBe(0);
    expect(one.proximity).toBe(0);
    const [stop] = lexicalFeatures("the of and", ["the of and"]);
    expect(Object.values(stop).every((v) => v === 0)).toBe(true);
  });
});

describe("lexical reranker", () => {
  const docs = [
    "Reranking costs time per pair, so only a few candidates are reranked.",
    "How are index snapshots published? Files first, then the pointer flips.",
    "Snapshots of the index are kept for rollback; publishing them is atomic.",
  ];

  it("ranks the passage that answers the query first and is deterministic", async () => {
    const scorer = createLexicalScorer();
    const a = await scorer.scorePairs("how are index snapshots published", docs, { strategy: "truncate" });
    const b = await scorer.scorePairs("how are index snapshots published", docs, { strategy: "truncate" });
    expect([...a.logits]).toEqual([...b.logits]);
    const best = [...a.logits].indexOf(Math.max(...a.logits));
    expect(best).toBe(1);
    expect(a.pairs).toBe(3);
  });

  it("answers through the reranker port like the cross-encoder: same fields, meta names it, no fixture flag", async () => {
    const reranker = createLexicalReranker(CFG);
    expect((await reranker.warm()).model).toBe(LEXICAL_MODEL);
    expect(reranker.status()).toMatchObject({ warm: true, model: LEXICAL_MODEL, fixture: false });
    const res = await reranker.rerank({
      query: "how are index snapshots published",
      documents: [docs[0], { id: "d1", text: docs[1] }, docs[2]],
      top_n: 2,
      return_documents: true,
    });
    expect(res.results.map((r) => r.index)).toEqual([1, 2]);
    expect(res.results[0]).toMatchObject({ id: "d1", document: { id: "d1", text: docs[1] } });
    for (const r of res.results) {
      expect(r.relevance_score).toBeGreaterThan(0);
      expect(r.relevance_score).toBeLessThan(1);
    }
    expect(res.meta).toMatchObject({ model: LEXICAL_MODEL, provider: "lexical", pairs: 3 });
    expect(res.meta.fixture).toBeUndefined();
    expect(reranker.describe()).toMatchObject({ kind: "in-process", model: LEXICAL_MODEL, fixture: false });
  });

  it("uses term_statistics from the request, and rejects malformed ones with a clear error", async () => {
    const scorer = createLexicalScorer();
    const stats = { documents: 1000, average_length: 12, document_frequencies: { snapshot: 3, publish: 900 } };
    const withStats = await rerank(
      { query: "snapshots published", documents: ["a snapshot", "published"], term_statistics: stats },
      scorer,
    );
    // "snapshot" is rare in the index, "publish" common: the snapshot passage wins.
    expect(withStats.results[0].index).toBe(0);
    const flipped = { ...stats, document_frequencies: { snapshot: 900, publish: 3 } };
    const other = await rerank(
      { query: "snapshots published", documents: ["a snapshot", "published"], term_statistics: flipped },
      scorer,
    );
    expect(other.results[0].index).toBe(1);
    for (const bad of [
      "nope",
      { documents: -1, average_length: 1, document_frequencies: {} },
      { documents: 10, average_length: 1, document_frequencies: { a: 11 } },
      { documents: 10, average_length: "x", document_frequencies: {} },
    ]) {
      await expect(rerank({ query: "q", documents: ["d"], term_statistics: bad }, scorer)).rejects.toThrow(
        ValidationError,
      );
    }
    await expect(
      rerank({ query: "q", documents: ["d"], term_statistics: { documents: 1, average_length: 1 } }, scorer),
    ).rejects.toThrow(/term_statistics/);
  });
});
