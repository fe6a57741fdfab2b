import { describe, expect, it } from "vitest";
import { ValidationError } from "../../shared/core/errors.ts";
import { collapseByDocument, DEFAULT_ALPHA, fuseScores, minMax, rankScores } from "../../shared/core/fusion.ts";

// Four first-stage candidates; D was not reranked (e.g. cut by the latency budget).
//        retrieval score/rank   rerank score   rerank rank (among A, B, C)
//   A    0.9 / 1                0.2            3
//   B    0.8 / 2                0.9            1
//   C    0.5 / 3                0.6            2
//   D    0.4 / 4                —              —
const cands = () => [
  { id: "A", retrieval: { score: 0.9, rank: 1 }, rerank: { score: 0.2, rank: 3 } },
  { id: "B", retrieval: { score: 0.8, rank: 2 }, rerank: { score: 0.9, rank: 1 } },
  { id: "C", retrieval: { score: 0.5, rank: 3 }, rerank: { score: 0.6, rank: 2 } },
  { id: "D", retrieval: { score: 0.4, rank: 4 }, rerank: null },
];
const ids = (xs: Array<{ id: string }>) => xs.map((x) => x.id);
const scoreOf = (xs: Array<{ id: string; score: number }>, id: string) => xs.find((x) => x.id === id)!.score;

describe("minMax", () => {
  it("maps the range onto [0, 1]", () => {
    // (v - 1) / (3 - 1)
    expect(minMax([1, 2, 3])).toEqual([0, 0.5, 1]);
    expect(minMax([])).toEqual([]);
  });
  it("maps all-equal values (no spread) to 1", () => {
    expect(minMax([0.5, 0.5, 0.5])).toEqual([1, 1, 1]);
    expect(minMax([-2])).toEqual([1]);
  });
});

describe("rankScores", () => {
  it("ranks best score first, ties by first-stage rank", () => {
    // scores 0.2, 0.9, 0.6 → 0.9 is 1st, 0.6 2nd, 0.2 3rd
    expect(rankScores([0.2, 0.9, 0.6], [1, 2, 3])).toEqual([3, 1, 2]);
    // equal scores: first-stage rank 1 (second element) wins
    expect(rankScores([0.5, 0.5], [2, 1])).toEqual([2, 1]);
  });
});

describe("fuseScores", () => {
  it("rerank mode orders by cross-encoder score; unreranked candidates follow with their retrieval score", () => {
    const out = fuseScores(cands(), { mode: "rerank" });
    // B 0.9 > C 0.6 > A 0.2, then D (not reranked)
    expect(ids(out)).toEqual(["B", "C", "A", "D"]);
    expect(out.map((x) => x.score)).toEqual([0.9, 0.6, 0.2, 0.4]);
  });

  it("linear mode: alpha·minmax(rerank) + (1−alpha)·minmax(retrieval) over the reranked candidates", () => {
    const out = fuseScores(cands(), { mode: "linear", alpha: 0.7 });
    // minmax(rerank 0.2, 0.9, 0.6): span 0.7 → A 0, B 1, C 0.4/0.7 = 4/7
    // minmax(retrieval 0.9, 0.8, 0.5): span 0.4 → A 1, B 0.75, C 0
    // A = 0.7·0 + 0.3·1 = 0.3;  B = 0.7·1 + 0.3·0.75 = 0.925;  C = 0.7·4/7 + 0 = 0.4
    expect(ids(out)).toEqual(["B", "C", "A", "D"]);
    expect(scoreOf(out, "A")).toBeCloseTo(0.3, 12);
    expect(scoreOf(out, "B")).toBeCloseTo(0.925, 12);
    expect(scoreOf(out, "C")).toBeCloseTo(0.4, 12);
    expect(scoreOf(out, "D")).toBe(0.4); // retrieval score, listed after the reranked ones
  });

  it("linear mode with a low alpha lets retrieval dominate", () => {
    const out = fuseScores(cands(), { mode: "linear", alpha: 0.1 });
    // A = 0.1·0 + 0.9·1 = 0.9;  B = 0.1·1 + 0.9·0.75 = 0.775;  C = 0.1·4/7 ≈ 0.0571
    expect(ids(out)).toEqual(["A", "B", "C", "D"]);
    expect(scoreOf(out, "A")).toBeCloseTo(0.9, 12);
    expect(scoreOf(out, "B")).toBeCloseTo(0.775, 12);
    expect(scoreOf(out, "C")).toBeCloseTo(0.4 / 7, 12);
  });

  it("linear mode defaults alpha to DEFAULT_ALPHA", () => {
    expect(DEFAULT_ALPHA).toBe(0.7);
    expect(fuseScores(cands(), { mode: "linear" })).toEqual(fuseScores(cands(), { mode: "linear", alpha: 0.7 }));
  });

  it("linear mode with all-equal rerank scores falls back to retrieval order", () => {
    const xs = [
      { id: "P", retrieval: { score: 0.3, rank: 2 }, rerank: { score: 0.5, rank: 2 } },
      { id: "Q", retrieval: { score: 0.7, rank: 1 }, rerank: { score: 0.5, rank: 1 } },
    ];
    const out = fuseScores(xs, { mode: "linear", alpha: 0.7 });
    // minmax(rerank) = [1, 1]; minmax(retrieval 0.3, 0.7) = [0, 1]
    // P = 0.7·1 + 0.3·0 = 0.7;  Q = 0.7·1 + 0.3·1 = 1.0
    expect(ids(out)).toEqual(["Q", "P"]);
    expect(scoreOf(out, "P")).toBeCloseTo(0.7, 12);
    expect(scoreOf(out, "Q")).toBeCloseTo(1, 12);
  });

  it("rrf mode sums 1/(k + rank) over both stages", () => {
    const out = fuseScores(cands(), { mode: "rrf" });
    // A = 1/61 + 1/63 = 124/3843 ≈ 0.0322665
    // B = 1/62 + 1/61 = 123/3782 ≈ 0.0325225
    // C = 1/63 + 1/62 = 125/3906 ≈ 0.0320020
    expect(ids(out)).toEqual(["B", "A", "C", "D"]);
    expect(scoreOf(out, "A")).toBeCloseTo(124 / 3843, 14);
    expect(scoreOf(out, "B")).toBeCloseTo(123 / 3782, 14);
    expect(scoreOf(out, "C")).toBeCloseTo(125 / 3906, 14);
  });

  it("rrf mode honours a custom k", () => {
    const out = fuseScores(cands(), { mode: "rrf", rrfK: 1 });
    // A = 1/2 + 1/4 = 0.75;  B = 1/3 + 1/2 = 0.8333;  C = 1/4 + 1/3 = 0.5833
    expect(ids(out)).toEqual(["B", "A", "C", "D"]);
    expect(scoreOf(out, "A")).toBeCloseTo(0.75, 12);
    expect(scoreOf(out, "B")).toBeCloseTo(5 / 6, 12);
    expect(scoreOf(out, "C")).toBeCloseTo(7 / 12, 12);
  });

  it("breaks exact ties by first-stage rank, whatever the input order", () => {
    const x = { id: "X", retrieval: { score: 0.9, rank: 1 }, rerank: { score: 0.1, rank: 2 } };
    const y = { id: "Y", retrieval: { score: 0.7, rank: 2 }, rerank: { score: 0.8, rank: 1 } };
    // X = 0.5·0 + 0.5·1 = 0.5;  Y = 0.5·1 + 0.5·0 = 0.5 → tie, X has the better first-stage rank
    expect(ids(fuseScores([x, y], { mode: "linear", alpha: 0.5 }))).toEqual(["X", "Y"]);
    expect(ids(fuseScores([y, x], { mode: "linear", alpha: 0.5 }))).toEqual(["X", "Y"]);
    // rrf: X = 1/61 + 1/62 = Y → tie again
    expect(ids(fuseScores([y, x], { mode: "rrf" }))).toEqual(["X", "Y"]);
  });

  it("without any rerank score every mode keeps first-stage order and scores", () => {
    const xs = [
      { id: "b", retrieval: { score: 0.5, rank: 2 }, rerank: null },
      { id: "a", retrieval: { score: 0.6, rank: 1 }, rerank: null },
    ];
    for (const mode of ["rerank", "linear", "rrf"] as const) {
      const out = fuseScores(xs, { mode });
      expect(ids(out)).toEqual(["a", "b"]);
      expect(out.map((x) => x.score)).toEqual([0.6, 0.5]);
    }
  });

  it("does not mutate its input", () => {
    const xs = cands();
    const before = JSON.stringify(xs);
    fuseScores(xs, { mode: "linear" });
    expect(JSON.stringify(xs)).toBe(before);
  });

  it("rejects alpha outside [0, 1] and a non-positive rrf k", () => {
    expect(() => fuseScores(cands(), { mode: "linear", alpha: 1.5 })).toThrow(ValidationError);
    expect(() => fuseScores(cands(), { mode: "linear", alpha: Number.NaN })).toThrow(/alpha/);
    expect(() => fuseScores(cands(), { mode: "rrf", rrfK: 0 })).toThrow(/rrfK/);
  });
});

describe("collapseByDocument", () => {
  it("keeps the first (best) passage of each document, in order", () => {
    const xs = [
      { id: "a#0", doc: "a" },
      { id: "b#1", doc: "b" },
      { id: "a#3", doc: "a" },
      { id: "c#0", doc: "c" },
      { id: "b#0", doc: "b" },
    ];
    expect(ids(collapseByDocument(xs, (x) => x.doc))).toEqual(["a#0", "b#1", "c#0"]);
  });
});
