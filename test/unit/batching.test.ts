import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { padRows, paddedTokens, planBatches, runInBatches } from "../../shared/core/batching.ts";

describe("planBatches", () => {
  it("sorts by length and cuts by padded-token budget", () => {
    const batches = planBatches([10, 50, 20, 40, 30], 100);
    expect(batches).toEqual([
      { indices: [1, 3], padTo: 50 },
      { indices: [4, 2, 0], padTo: 30 },
    ]);
    expect(paddedTokens(batches)).toBe(190);
  });

  it("gives an over-budget sequence a batch of its own", () => {
    expect(planBatches([500, 10, 10], 64)).toEqual([
      { indices: [0], padTo: 500 },
      { indices: [1, 2], padTo: 10 },
    ]);
  });

  it("caps rows per batch when asked", () => {
    expect(planBatches([5, 5, 5, 5, 5], 1000, 2).map((b) => b.indices)).toEqual([[0, 1], [2, 3], [4]]);
  });

  it("rejects a budget below one token", () => {
    expect(() => planBatches([1], 0)).toThrow(/budgetTokens/);
  });

  it("property: every input appears once, budgets hold, each batch pads to its own longest", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 600 }), { maxLength: 200 }),
        fc.integer({ min: 1, max: 20_000 }),
        (lengths, budget) => {
          const batches = planBatches(lengths, budget);
          const seen = batches.flatMap((b) => b.indices).sort((a, b) => a - b);
          expect(seen).toEqual(lengths.map((_, i) => i));
          for (const b of batches) {
            expect(b.padTo).toBe(Math.max(...b.indices.map((i) => lengths[i])));
            if (b.indices.length > 1) expect(b.padTo * b.indices.length).toBeLessThanOrEqual(budget);
            else if (b.padTo > budget) expect(b.indices.length).toBe(1);
          }
        },
      ),
    );
  });

  it("property: more budget never needs more batches", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 100 }),
        fc.integer({ min: 1, max: 5000 }),
        (lengths, budget) => {
          expect(planBatches(lengths, budget * 2).length).toBeLessThanOrEqual(planBatches(lengths, budget).length);
        },
      ),
    );
  });
});

describe("runInBatches", () => {
  it("property: results come back in input order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 100 }),
        fc.integer({ min: 1, max: 4000 }),
        async (lengths, budget) => {
          // Each result identifies the row it was computed from (its length and padded width).
          const out = await runInBatches(lengths, budget, (b) =>
            b.indices.map((i) => ({ i, len: lengths[i], padTo: b.padTo })),
          );
          expect(out.map((r) => r.i)).toEqual(lengths.map((_, i) => i));
          for (const r of out) expect(r.padTo).toBeGreaterThanOrEqual(r.len);
        },
      ),
    );
  });

  it("rejects a batch runner that returns the wrong number of results", async () => {
    await expect(runInBatches([3, 3], 100, () => [1])).rejects.toThrow(/1 results for a batch of 2/);
  });
});

describe("padRows", () => {
  it("pads each row to the batch width", () => {
    const rows = [[1, 2, 3], [4], [5, 6]];
    expect(Array.from(padRows(rows, [0, 2], 3, 0, (n) => new Int32Array(n)))).toEqual([1, 2, 3, 5, 6, 0]);
    expect(Array.from(padRows(rows, [1], 2, 9, (n) => new BigInt64Array(n)))).toEqual([4n, 9n]);
  });

  it("refuses rows wider than the batch", () => {
    expect(() => padRows([[1, 2, 3]], [0], 2, 0, (n) => new Int32Array(n))).toThrow(/more than padTo/);
  });
});
