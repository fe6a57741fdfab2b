// Metric values worked out by hand (arithmetic in the comments), following trec_eval's conventions.
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../shared/core/errors.ts";
import {
  averagePrecisionAt,
  evaluateRun,
  metricSpec,
  ndcgAt,
  rankDocuments,
  recallAt,
  reciprocalRankAt,
} from "../../shared/core/metrics.ts";

// d5 is judged relevant (grade 2) but never retrieved; d3 is judged non-relevant (grade 0).
const graded = new Map([
  ["d1", 3],
  ["d2", 2],
  ["d3", 0],
  ["d4", 1],
  ["d5", 2],
]);
const ranking = ["d2", "d3", "d1", "d4"];

describe("nDCG (linear gain = grade, log2 discount, ideal from all judged documents)", () => {
  it("graded relevance at 10", () => {
    // DCG  = 2/log2(2) + 0 + 3/log2(4) + 1/log2(5) = 2 + 1.5 + 0.430677 = 3.930677
    // IDCG = grades 3,2,2,1 (d5 counts though unretrieved) = 3/1 + 2/log2(3) + 2/log2(4) + 1/log2(5)
    //      = 3 + 1.261860 + 1 + 0.430677 = 5.692537
    // nDCG = 3.930677 / 5.692537 = 0.690497
    expect(ndcgAt(ranking, graded, 10)).toBeCloseTo(0.690497, 5);
  });

  it("cuts both DCG and the ideal at k", () => {
    // DCG@2 = 2/1 + 0 = 2;  IDCG@2 = 3/1 + 2/log2(3) = 4.261860;  2 / 4.261860 = 0.469279
    expect(ndcgAt(ranking, graded, 2)).toBeCloseTo(0.469279, 5);
  });

  it("is 1 for the ideal order and 0 when nothing relevant is retrieved", () => {
    expect(ndcgAt(["d1", "d2", "d5", "d4"], graded, 10)).toBeCloseTo(1, 12);
    expect(ndcgAt(["d3", "zz"], graded, 10)).toBe(0);
  });
});

describe("AP, RR and recall (relevant = grade >= 1; R = 4: d1, d2, d4, d5)", () => {
  it("average precision divides by all relevant documents, not by those retrieved", () => {
    // relevant at ranks 1, 3, 4: precisions 1/1, 2/3, 3/4 → (1 + 0.666667 + 0.75) / 4 = 0.604167
    expect(averagePrecisionAt(ranking, graded, 100)).toBeCloseTo(0.604167, 5);
    // at 3: (1 + 2/3) / 4 = 0.416667
    expect(averagePrecisionAt(ranking, graded, 3)).toBeCloseTo(0.416667, 5);
  });

  it("reciprocal rank of the first relevant document within k", () => {
    expect(reciprocalRankAt(ranking, graded, 10)).toBe(1);
    // d3 (grade 0) and an unjudged id come first, d4 (grade 1) at rank 3 → 1/3; cut at 2 → 0
    expect(reciprocalRankAt(["d3", "x", "d4"], graded, 10)).toBeCloseTo(1 / 3, 12);
    expect(reciprocalRankAt(["d3", "x", "d4"], graded, 2)).toBe(0);
  });

  it("recall counts relevant documents within k", () => {
    expect(recallAt(ranking, graded, 3)).toBe(0.5); // d2, d1 of 4
    expect(recallAt(ranking, graded, 10)).toBe(0.75); // d2, d1, d4 of 4
  });
});

describe("k larger than the ranking: missing positions are non-relevant", () => {
  const judgments = new Map([
    ["a", 1],
    ["b", 1],
  ]);
  const short = ["x", "a"];
  it.each([2, 100, 1000])("k = %i", (k) => {
    // DCG = 1/log2(3) = 0.630930; IDCG = 1 + 1/log2(3) = 1.630930; nDCG = 0.386853
    expect(ndcgAt(short, judgments, k)).toBeCloseTo(0.386853, 5);
    // AP = (1/2) / 2 = 0.25; RR = 1/2; recall = 1/2
    expect(averagePrecisionAt(short, judgments, k)).toBe(0.25);
    expect(reciprocalRankAt(short, judgments, k)).toBe(0.5);
    expect(recallAt(short, judgments, k)).toBe(0.5);
  });
  it("an empty ranking scores 0", () => {
    expect(ndcgAt([], judgments, 10)).toBe(0);
    expect(recallAt([], judgments, 10)).toBe(0);
  });
});

describe("ties: score descending, then document id descending (trec_eval comp_sim_docno)", () => {
  it("orders equal scores by id descending", () => {
    const order = rankDocuments([
      { id: "a", score: 0.5 },
      { id: "b", score: 0.9 },
      { id: "c", score: 0.5 },
      { id: "d", score: 0.5 },
    ]);
    expect(order).toEqual(["b", "d", "c", "a"]);
  });

  it("compares ids as strings (strcmp), not as numbers", () => {
    // "9" > "100" > "10" byte-wise, so with equal scores "10" comes last.
    const order = rankDocuments([
      { id: "10", score: 1 },
      { id: "9", score: 1 },
      { id: "100", score: 1 },
    ]);
    expect(order).toEqual(["9", "100", "10"]);
    // the tie-break decides the metric: the only relevant document "10" lands at rank 3 → RR 1/3
    expect(reciprocalRankAt(order, new Map([["10", 1]]), 10)).toBeCloseTo(1 / 3, 12);
  });

  it("ignores input order, so equal inputs give equal rankings", () => {
    const docs = [
      { id: "p", score: 0.1 },
      { id: "q", score: 0.1 },
      { id: "r", score: 0.2 },
    ];
    expect(rankDocuments(docs)).toEqual(rankDocuments([...docs].reverse()));
  });
});

describe("duplicates", () => {
  it("rankDocuments merges repeated ids keeping the best score", () => {
    // a's passages score 0.2 and 0.9; b 0.5 → a (0.9), b (0.5)
    const order = rankDocuments([
      { id: "a", score: 0.2 },
      { id: "b", score: 0.5 },
      { id: "a", score: 0.9 },
    ]);
    expect(order).toEqual(["a", "b"]);
  });

  it("metric functions reject a ranking that repeats a document, as trec_eval does", () => {
    const j = new Map([["a", 1]]);
    expect(() => ndcgAt(["a", "a"], j, 10)).toThrow(ValidationError);
    expect(() => recallAt(["a", "b", "a"], j, 10)).toThrow(/repeats document "a"/);
  });

  it("rejects NaN scores and bad cut-offs", () => {
    expect(() => rankDocuments([{ id: "a", score: Number.NaN }])).toThrow(ValidationError);
    expect(() => ndcgAt(["a"], new Map(), 0)).toThrow(ValidationError);
    expect(() => metricSpec("map", 2.5)).toThrow(ValidationError);
  });
});

describe("queries without relevant documents and unjudged queries", () => {
  it("a query judged only non-relevant scores 0 on every metric", () => {
    const j = new Map([
      ["a", 0],
      ["b", 0],
    ]);
    const specs = ["ndcg", "mrr", "map", "recall"] as const;
    for (const m of specs)
      expect(
        evaluateRun(new Map([["q", ["a", "b"]]]), new Map([["q", j]]), [metricSpec(m, 10)]).mean[`${m}_at_10`],
      ).toBe(0);
  });

  it("averages over judged queries: zero-relevant and missing runs count as 0, unjudged are skipped", () => {
    const qrels = new Map<string, Map<string, number>>([
      ["q1", new Map([["a", 1]])], // retrieved at rank 1 → 1
      ["q2", new Map([["a", 0]])], // no relevant document → 0, counted
      ["q4", new Map([["b", 1]])], // no ranking given → 0, counted
    ]);
    const run = new Map([
      ["q1", ["a"]],
      ["q2", ["a"]],
      ["q3", ["a"]], // not in qrels → skipped
    ]);
    const ev = evaluateRun(run, qrels, [metricSpec("ndcg", 10), metricSpec("recall", 100)]);
    // (1 + 0 + 0) / 3 = 0.333333
    expect(ev.mean.ndcg_at_10).toBeCloseTo(1 / 3, 12);
    expect(ev.mean.recall_at_100).toBeCloseTo(1 / 3, 12);
    expect(ev.evaluated).toBe(3);
    expect(ev.withoutRelevant).toEqual(["q2"]);
    expect(ev.skippedUnjudged).toEqual(["q3"]);
    expect(ev.missingRuns).toEqual(["q4"]);
    expect(ev.perQuery.get("q1")).toEqual({ ndcg_at_10: 1, recall_at_100: 1 });
  });

  it("evaluates a metric named twice only once", () => {
    // recall@100 requested as Recall@100 and as Recall@candidates with candidates = 100: 1 of 2 found
    const ev = evaluateRun(
      new Map([["q", ["a"]]]),
      new Map([
        [
          "q",
          new Map([
            ["a", 1],
            ["b", 1],
          ]),
        ],
      ]),
      [metricSpec("recall", 100), metricSpec("recall", 100)],
    );
    expect(ev.mean).toEqual({ recall_at_100: 0.5 });
  });
});
