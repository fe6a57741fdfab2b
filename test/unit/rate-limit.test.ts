import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createRateLimiter } from "../../shared/core/rate-limit.ts";

function setup(rps = 2, burst = 4, maxBuckets?: number) {
  const clock = {
    t: 0,
    now() {
      return this.t;
    },
  };
  const limiter = createRateLimiter({ defaults: { rps, burst }, clock, maxBuckets });
  return { clock, limiter };
}

describe("token bucket rate limiter", () => {
  it("allows a burst, then refuses with the seconds until the next token", () => {
    const { clock, limiter } = setup(2, 4);
    for (let i = 0; i < 4; i++) expect(limiter.take("k").allowed).toBe(true);
    const refused = limiter.take("k");
    expect(refused).toEqual({ allowed: false, retryAfterS: 1, remaining: 0 });
    clock.t = 500; // half a second at 2 rps refills one token
    expect(limiter.take("k")).toEqual({ allowed: true, remaining: 0 });
    expect(limiter.take("k").allowed).toBe(false);
  });

  it("rounds Retry-After up to whole seconds for slow rates", () => {
    const { limiter } = setup(0.1, 1);
    expect(limiter.take("k").allowed).toBe(true);
    expect(limiter.take("k")).toMatchObject({ allowed: false, retryAfterS: 10 });
  });

  it("keeps keys apart and lets a key's own rate override the defaults", () => {
    const { limiter } = setup(1, 1);
    expect(limiter.take("a").allowed).toBe(true);
    expect(limiter.take("a").allowed).toBe(false);
    expect(limiter.take("b").allowed).toBe(true);
    const own = { rps: 10, burst: 5 };
    for (let i = 0; i < 5; i++) expect(limiter.take("c", own).allowed).toBe(true);
    expect(limiter.take("c", own).allowed).toBe(false);
  });

  it("applies a changed limit without refunding spent tokens", () => {
    const { limiter } = setup(1, 10);
    for (let i = 0; i < 9; i++) limiter.take("k");
    // Lowering the burst caps what is left; raising it later does not hand out a fresh burst.
    expect(limiter.take("k", { rps: 1, burst: 2 })).toEqual({ allowed: true, remaining: 0 });
    expect(limiter.take("k", { rps: 1, burst: 50 }).allowed).toBe(false);
  });

  it("never allows more than burst + rps × elapsed in any window of requests", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.5, max: 50, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 120 }),
        (rps, burst, gaps) => {
          const { clock, limiter } = setup(rps, burst);
          const allowedAt: number[] = [];
          for (const gap of gaps) {
            clock.t += gap;
            if (limiter.take("k", { rps, burst }).allowed) allowedAt.push(clock.t);
          }
          for (let i = 0; i < allowedAt.length; i++) {
            for (let j = i; j < allowedAt.length; j++) {
              if (j - i + 1 > burst + (rps * (allowedAt[j] - allowedAt[i])) / 1000 + 1e-9) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("admits every request that arrives at or below the sustained rate", () => {
    const { clock, limiter } = setup(4, 1);
    for (let i = 0; i < 100; i++) {
      expect(limiter.take("k").allowed).toBe(true);
      clock.t += 250;
    }
  });

  it("holds at most maxBuckets, evicting idle (full) buckets before a less recently used active one", () => {
    const { clock, limiter } = setup(0.1, 2, 3);
    limiter.take("busy");
    limiter.take("busy"); // empty; the least recently used bucket from here on
    limiter.take("idle1");
    limiter.take("idle2");
    clock.t = 10_000; // the idle buckets are full again; "busy" has one token back
    limiter.take("new");
    expect(limiter.size()).toBe(3);
    // Plain LRU would have dropped "busy" and handed it a fresh burst of two.
    expect(limiter.take("busy").allowed).toBe(true);
    expect(limiter.take("busy").allowed).toBe(false);
    for (let i = 0; i < 1000; i++) limiter.take(`flood-${i}`);
    expect(limiter.size()).toBe(3);
  });
});
