// BM25 scores worked out by hand on a four-document corpus (arithmetic in the comments).
import { describe, expect, it } from "vitest";
import { ANSERINI_BM25, analyze, Bm25Index, LUCENE_ENGLISH_STOP_WORDS } from "../../shared/core/bm25.ts";
import { ValidationError } from "../../shared/core/errors.ts";

describe("analyze", () => {
  it("lowercases, splits on non-alphanumerics, drops possessives and stop words, Porter-stems", () => {
    expect(analyze("The Boundary-Layers of F-86 wings' flows, John's")).toEqual([
      "boundari",
      "layer",
      "f",
      "86",
      "wing",
      "flow",
      "john",
    ]);
  });

  it("can keep stop words and skip stemming", () => {
    expect(analyze("The flows", { stopWords: false, stem: false })).toEqual(["the", "flows"]);
  });

  it("uses Lucene's 33 English stop words", () => {
    expect(LUCENE_ENGLISH_STOP_WORDS.size).toBe(33);
    expect(analyze("it is not such a thing")).toEqual(["thing"]);
  });
});

describe("Bm25Index (k1 = 0.9, b = 0.4)", () => {
  // terms: d1 = wing flow flow (|d| 3), d2 = wing shock (2), d3 = boundari layer (2; "the" is a stop
  // word), d4 = empty (kept, never matches, not counted in N or avgdl).
  // N = 3, avgdl = (3 + 2 + 2) / 3 = 2.333333
  const index = Bm25Index.build([
    { id: "d1", text: "wing flow flow" },
    { id: "d2", text: "wing shock" },
    { id: "d3", text: "the boundary layer" },
    { id: "d4", text: "" },
  ]);

  it("counts documents and lengths", () => {
    expect(index.params).toEqual(ANSERINI_BM25);
    expect(index.size).toBe(4);
    expect(index.documentCount).toBe(3);
    expect(index.averageLength).toBeCloseTo(7 / 3, 12);
  });

  it("scores a one-term query", () => {
    // idf(flow) = ln(1 + (3 − 1 + 0.5) / (1 + 0.5)) = ln(2.666667) = 0.980829
    // d1: tf 2, norm = 0.9 · (1 − 0.4 + 0.4 · 3 / 2.333333) = 0.9 · 1.114286 = 1.002857
    //     0.980829 · 2 · 1.9 / (2 + 1.002857) = 0.980829 · 1.265461 = 1.241202
    const hits = index.search("flow", 10);
    expect(hits.map((h) => h.id)).toEqual(["d1"]);
    expect(hits[0].score).toBeCloseTo(1.241202, 5);
  });

  it("sums term contributions", () => {
    // idf(wing) = ln(1 + (3 − 2 + 0.5) / (2 + 0.5)) = ln(1.6) = 0.470004
    // d1: 1.241202 + 0.470004 · 1.9 / (1 + 1.002857) = 1.241202 + 0.445867 = 1.687068
    // d2: norm = 0.9 · (0.6 + 0.4 · 2 / 2.333333) = 0.848571; 0.470004 · 1.9 / 1.848571 = 0.483079
    const hits = index.search("Wing flows", 10);
    expect(hits.map((h) => h.id)).toEqual(["d1", "d2"]);
    expect(hits[0].score).toBeCloseTo(1.687068, 5);
    expect(hits[1].score).toBeCloseTo(0.483079, 5);
  });

  it("weights a repeated query term by its count", () => {
    // "shock shock": idf(shock) = ln(1 + 2.5 / 1.5) = 0.980829; d2: 2 · 0.980829 · 1.9 / 1.848571 = 2 · 0.980829 · 1.027821 = 2.016233
    expect(index.search("shock shock", 10)[0].score).toBeCloseTo(2.016233, 5);
  });

  it("returns nothing for stop words or unknown terms, and cuts at k", () => {
    expect(index.search("the of", 10)).toEqual([]);
    expect(index.search("supersonic", 10)).toEqual([]);
    // "wing": d2 (0.483079, shorter) beats d1 (0.445867), see above
    expect(index.search("wing", 1).map((h) => h.id)).toEqual(["d2"]);
  });

  it("breaks score ties by id descending, as trec_eval does", () => {
    const twins = Bm25Index.build([
      { id: "a", text: "delta wing" },
      { id: "c", text: "delta wing" },
      { id: "b", text: "delta wing" },
    ]);
    expect(twins.search("delta", 10).map((h) => h.id)).toEqual(["c", "b", "a"]);
  });

  it("accepts Robertson's parameters and rejects invalid ones", () => {
    const robertson = Bm25Index.build([{ id: "x", text: "flow" }], { params: { k1: 1.2, b: 0.75 } });
    // N = 1, df = 1: idf = ln(1 + 0.5 / 1.5) = 0.287682; |d| = avgdl → norm = k1 = 1.2
    // 0.287682 · 2.2 / 2.2 = 0.287682
    expect(robertson.search("flow", 1)[0].score).toBeCloseTo(0.287682, 5);
    expect(() => new Bm25Index({ params: { k1: 1, b: 2 } })).toThrow(ValidationError);
    expect(() => index.search("flow", 0)).toThrow(ValidationError);
  });
});
