// Token-bucket rate limiting per API key, in memory. Pure: the clock is injected.
//
// Each warm instance keeps its own buckets, so on Lambda the limit a key sees is per instance (a key
// spread over N concurrent instances gets up to N times the rate). That is the trade-off of not adding a
// shared counter store on the request path; API Gateway throttling bounds the total.
import type { Clock } from "./ports.ts";
import type { RateLimitSpec } from "./api-keys.ts";

export type RateDecision = { allowed: true; remaining: number } | { allowed: false; retryAfterS: number; remaining: 0 };

export interface RateLimiter {
  /** Takes `cost` tokens from the key's bucket, or says how long to wait (whole seconds, at least 1). */
  take(keyId: string, rate?: RateLimitSpec, cost?: number): RateDecision;
  /** Buckets held now (for tests and metrics). */
  size(): number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
  rps: number;
  burst: number;
}

export interface RateLimiterOptions {
  /** Used when a key record carries no rate of its own (RATE_LIMIT_RPS / RATE_LIMIT_BURST). */
  defaults: RateLimitSpec;
  clock: Clock;
  /** Upper bound on buckets held; the least recently used bucket goes first. */
  maxBuckets?: number;
}

export function createRateLimiter(opts: RateLimiterOptions): RateLimiter {
  const maxBuckets = opts.maxBuckets ?? 10_000;
  // Map iteration order is insertion order; re-inserting on every use keeps it least-recently-used first.
  const buckets = new Map<string, Bucket>();

  function refill(b: Bucket, now: number) {
    const elapsedS = Math.max(0, now - b.updatedMs) / 1000;
    b.tokens = Math.min(b.burst, b.tokens + elapsedS * b.rps);
    b.updatedMs = now;
  }

  // A bucket that has been idle long enough to refill completely is indistinguishable from a new one,
  // so dropping it changes nothing; sweep those first, then fall back to plain LRU eviction.
  function evict(now: number) {
    for (const [id, b] of buckets) {
      if (buckets.size < maxBuckets) return;
      if (b.tokens + ((now - b.updatedMs) / 1000) * b.rps >= b.burst) buckets.delete(id);
    }
    while (buckets.size >= maxBuckets) {
      const oldest = buckets.keys().next().value as string;
      buckets.delete(oldest);
    }
  }

  return {
    take(keyId, rate, cost = 1) {
      const { rps, burst } = rate ?? opts.defaults;
      const now = opts.clock.now();
      let b = buckets.get(keyId);
      if (b) {
        buckets.delete(keyId);
        // A changed limit (key record edited) applies from now on, without refunding spent tokens.
        if (b.rps !== rps || b.burst !== burst) {
          refill(b, now);
          b = { tokens: Math.min(b.tokens, burst), updatedMs: now, rps, burst };
        } else {
          refill(b, now);
        }
      } else {
        if (buckets.size >= maxBuckets) evict(now);
        b = { tokens: burst, updatedMs: now, rps, burst };
      }
      buckets.set(keyId, b);
      if (b.tokens >= cost) {
        b.tokens -= cost;
        return { allowed: true, remaining: Math.floor(b.tokens) };
      }
      const waitS = (cost - b.tokens) / rps;
      return { allowed: false, retryAfterS: Math.max(1, Math.ceil(waitS)), remaining: 0 };
    },
    size: () => buckets.size,
  };
}
