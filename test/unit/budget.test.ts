import { describe, expect, it } from "vitest";
import {
  createRerankCostTracker,
  fanoutGroups,
  DEFAULT_COST_PRIOR,
  estimatePairTokens,
  estimateTokens,
  initialEstimate,
  planRerank,
  predictRerankMs,
  type RerankCostEstimate,
  updateEstimate,
} from "../../shared/core/budget.ts";

const obs1 = { pairs: 10, estimatedTokens: 1000, wallMs: 60, tokens: 1200, serverMs: 50 };
const obs2 = { pairs: 10, estimatedTokens: 1000, wallMs: 30, tokens: 1200, serverMs: 26 };

describe("cost estimate", () => {
  it("before any observation takes the larger of the token and pair models of the prior", () => {
    const est = initialEstimate();
    expect(est).toMatchObject({ ...DEFAULT_COST_PRIOR, observations: 0, tokenObservations: 0 });
    // tokens: 10 + 0.05·1·200 = 20;  pairs: 10 + 12·2 = 34 → 34
    expect(predictRerankMs(est, [100, 100])).toBeCloseTo(34, 12);
    expect(predictRerankMs(est, [])).toBe(0);
  });

  it("honours a configured prior", () => {
    const est = initialEstimate({ msPerToken: 1, msPerPair: 0, overheadMs: 0 });
    // tokens: 0 + 1·1·30 = 30;  pairs: 0 → 30
    expect(predictRerankMs(est, [10, 20])).toBe(30);
  });

  it("the first observation replaces the prior (weight 1/1)", () => {
    const est = updateEstimate(initialEstimate(), obs1);
    // model time 50 ms (server), overhead 60 − 50 = 10 ms
    // msPerPair 50/10 = 5; msPerToken 50/1200; tokenRatio 1200/1000 = 1.2
    expect(est.observations).toBe(1);
    expect(est.tokenObservations).toBe(1);
    expect(est.msPerPair).toBeCloseTo(5, 12);
    expect(est.overheadMs).toBeCloseTo(10, 12);
    expect(est.msPerToken).toBeCloseTo(50 / 1200, 12);
    expect(est.tokenRatio).toBeCloseTo(1.2, 12);
    // token model now: 10 + (50/1200)·1.2·200 = 10 + 10 = 20
    expect(predictRerankMs(est, [100, 100])).toBeCloseTo(20, 12);
  });

  it("the second observation is averaged with weight 1/2, later ones with alpha", () => {
    const est = updateEstimate(updateEstimate(initialEstimate(), obs1), obs2);
    // msPerPair 5 + ½(2.6 − 5) = 3.8; overhead 10 + ½(4 − 10) = 7; msPerToken ½(50 + 26)/1200 = 38/1200
    expect(est.msPerPair).toBeCloseTo(3.8, 12);
    expect(est.overheadMs).toBeCloseTo(7, 12);
    expect(est.msPerToken).toBeCloseTo(38 / 1200, 12);
    expect(est.tokenRatio).toBeCloseTo(1.2, 12);

    let e = initialEstimate();
    for (let i = 0; i < 5; i++) e = updateEstimate(e, obs1); // 5 equal observations → values of obs1
    e = updateEstimate(e, { ...obs1, serverMs: 30, wallMs: 40 }, { alpha: 0.2 }); // 6th: weight max(0.2, 1/6) = 0.2
    // msPerPair 5 + 0.2·(3 − 5) = 4.6
    expect(e.msPerPair).toBeCloseTo(4.6, 12);
  });

  it("limits how far one observation can raise a quantity (a cold start does not poison the estimate)", () => {
    const est = updateEstimate(initialEstimate(), {
      pairs: 10,
      estimatedTokens: 1000,
      wallMs: 3050,
      serverMs: 50,
      tokens: 1000,
    });
    // overhead observation 3000 ms is clipped to 4 × prior 10 ms = 40 ms
    expect(est.overheadMs).toBe(40);
    const custom = updateEstimate(
      initialEstimate(),
      { pairs: 10, estimatedTokens: 1000, wallMs: 3050, serverMs: 50 },
      { maxGrowth: 2 },
    );
    expect(custom.overheadMs).toBe(20);
  });

  it("without server timings all wall time is model time and the overhead keeps its value", () => {
    const est = updateEstimate(initialEstimate(), { pairs: 4, estimatedTokens: 400, wallMs: 40 });
    expect(est.overheadMs).toBe(DEFAULT_COST_PRIOR.overheadMs);
    expect(est.msPerPair).toBeCloseTo(10, 12); // 40 / 4
    // no token counts → the pair model is used: 10 + 10·3 = 40
    expect(est.tokenObservations).toBe(0);
    expect(predictRerankMs(est, [1, 1, 1])).toBeCloseTo(40, 12);
  });

  it("ignores observations without pairs or with a negative time", () => {
    const est = initialEstimate();
    expect(updateEstimate(est, { pairs: 0, estimatedTokens: 0, wallMs: 10 })).toBe(est);
    expect(updateEstimate(est, { pairs: 2, estimatedTokens: 0, wallMs: -1 })).toBe(est);
  });

  it("a tracker holds the running estimate", () => {
    const t = createRerankCostTracker({ prior: { overheadMs: 3 } });
    expect(t.current().overheadMs).toBe(3);
    t.observe(obs1);
    expect(t.current().observations).toBe(1);
    // overhead observation 10 is within 4 × 3 = 12 → taken as is
    expect(t.current().overheadMs).toBeCloseTo(10, 12);
  });
});

describe("token estimates", () => {
  it("counts words and punctuation, with extra pieces for long words", () => {
    expect(estimateTokens("Hello, world!")).toBe(4);
    // 20 letters: 1 + ceil((20 − 6)/6) = 4
    expect(estimateTokens("internationalization")).toBe(4);
    expect(estimateTokens("")).toBe(0);
  });
  it("adds the three special tokens of a pair and caps at the model limit", () => {
    expect(estimatePairTokens(3, "a b")).toBe(8); // 3 + 2 + 3
    expect(estimatePairTokens(3, "word ".repeat(100), 16)).toBe(16);
  });
});

describe("planRerank", () => {
  // 10 ms per call + 0.1 ms per token; each candidate of 100 tokens adds 10 ms
  const est: RerankCostEstimate = {
    msPerToken: 0.1,
    tokenRatio: 1,
    overheadMs: 10,
    msPerPair: 0,
    tokenObservations: 1,
    observations: 1,
  };
  const tokens = Array.from({ length: 10 }, () => 100);

  it("reranks everything when there is no budget", () => {
    const p = planRerank({ elapsedMs: 1e6, candidateTokens: tokens, estimate: est, minCandidates: 4 });
    expect(p).toMatchObject({ count: 10, reason: "no_budget", remainingMs: null });
    expect(p.predictedAllMs).toBeCloseTo(110, 9); // 10 + 10·10
  });

  it("reranks everything when it fits", () => {
    // remaining 200 − 50 − 0 = 150 ≥ 110
    const p = planRerank({
      budgetMs: 200,
      elapsedMs: 50,
      reserveMs: 0,
      candidateTokens: tokens,
      estimate: est,
      minCandidates: 4,
    });
    expect(p).toMatchObject({ count: 10, reason: "within_budget", remainingMs: 150 });
  });

  it("reranks the best prefix that fits", () => {
    // remaining 100 − 40 = 60 → 10 + 10n ≤ 60 → n = 5
    const p = planRerank({
      budgetMs: 100,
      elapsedMs: 40,
      reserveMs: 0,
      candidateTokens: tokens,
      estimate: est,
      minCandidates: 4,
    });
    expect(p.count).toBe(5);
    expect(p.reason).toBe("partial");
    expect(p.predictedMs).toBeCloseTo(60, 9);
    expect(p.remainingMs).toBe(60);
    // default reserve of 1 ms: 101 − 40 − 1 = 60 → still 5
    expect(
      planRerank({ budgetMs: 101, elapsedMs: 40, candidateTokens: tokens, estimate: est, minCandidates: 4 }).count,
    ).toBe(5);
  });

  it("skips when fewer than minCandidates fit, or nothing is left", () => {
    // remaining 25 → only n = 1 (20 ms) fits, below minCandidates 4
    const p = planRerank({
      budgetMs: 50,
      elapsedMs: 25,
      reserveMs: 0,
      candidateTokens: tokens,
      estimate: est,
      minCandidates: 4,
    });
    expect(p).toMatchObject({ count: 0, reason: "over_budget", predictedMs: 0 });
    const late = planRerank({ budgetMs: 30, elapsedMs: 40, candidateTokens: tokens, estimate: est, minCandidates: 1 });
    expect(late).toMatchObject({ count: 0, reason: "over_budget" });
    expect(late.remainingMs).toBeLessThan(0);
  });

  it("clamps minCandidates to the candidates there are", () => {
    // two candidates, remaining 25: one fits (20 ms) but minCandidates clamps to 2 → skip
    expect(
      planRerank({
        budgetMs: 25,
        elapsedMs: 0,
        reserveMs: 0,
        candidateTokens: [100, 100],
        estimate: est,
        minCandidates: 4,
      }).count,
    ).toBe(0);
    // remaining 30: both fit
    expect(
      planRerank({
        budgetMs: 30,
        elapsedMs: 0,
        reserveMs: 0,
        candidateTokens: [100, 100],
        estimate: est,
        minCandidates: 4,
      }).reason,
    ).toBe("within_budget");
  });
});

describe("fan-out groups", () => {
  it("balances tokens across at most `fanout` groups of at least `pairsPerCall` pairs", () => {
    const tokens = [100, 90, 80, 70, 60, 50, 40, 30];
    const groups = fanoutGroups(tokens, 3, 2);
    expect(groups).toHaveLength(3);
    expect(groups.flat().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const sums = groups.map((g) => g.reduce((a, i) => a + tokens[i], 0));
    expect(Math.max(...sums) - Math.min(...sums)).toBeLessThanOrEqual(40);
    expect(fanoutGroups(tokens, 8, 4)).toHaveLength(2);
    expect(fanoutGroups(tokens, 1, 1)).toEqual([[0, 1, 2, 3, 4, 5, 6, 7]]);
    expect(fanoutGroups([5], 4, 1)).toEqual([[0]]);
  });

  it("plans with the fan-out: parallel calls fit more candidates in the same budget", () => {
    const est = { ...initialEstimate(), observations: 5, msPerPair: 10, overheadMs: 5 };
    const tokens = Array.from({ length: 20 }, () => 100);
    const serial = planRerank({
      budgetMs: 120,
      elapsedMs: 0,
      candidateTokens: tokens,
      estimate: est,
      minCandidates: 2,
    });
    const parallel = planRerank({
      budgetMs: 120,
      elapsedMs: 0,
      candidateTokens: tokens,
      estimate: est,
      minCandidates: 2,
      fanout: 4,
      pairsPerCall: 2,
    });
    expect(parallel.count).toBeGreaterThan(serial.count);
    expect(parallel.predictedAllMs).toBeLessThan(serial.predictedAllMs);
  });
});
