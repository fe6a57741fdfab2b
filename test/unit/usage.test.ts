import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PreconditionFailedError, ValidationError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { countsFor, createUsageMeter, readUsage, zeroCounts } from "../../shared/core/usage.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";

const KEY_A = "aaaaaaaaaaaaaaaa";
const KEY_B = "bbbbbbbbbbbbbbbb";
const PREFIX = "auth/usage/";
const DAY1 = Date.UTC(2025, 5, 30, 23, 59, 0);
const DAY2 = Date.UTC(2025, 6, 1, 0, 0, 30);

let root: string;
let store: ObjectStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "usage-"));
  store = createFsStore(root);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const noSleep = () => Promise.resolve();

describe("countsFor", () => {
  it("counts every request, bills consumption only on success, and counts 5xx as errors", () => {
    const obs = { queries: 1, rerankPairs: 20, embeddingTokens: 7, degraded: true };
    expect(countsFor(obs, 200)).toEqual({
      requests: 1,
      queries: 1,
      rerank_pairs: 20,
      embedding_tokens: 7,
      degraded: 1,
    });
    expect(countsFor(obs, 400)).toEqual({ requests: 1 });
    expect(countsFor(obs, 503)).toEqual({ requests: 1, errors: 1 });
    expect(countsFor(undefined, 200)).toEqual({ requests: 1 });
  });
});

describe("usage meter", () => {
  it("aggregates in memory, writes one object per key per UTC day, and reads back ranges", async () => {
    let now = DAY1;
    const meter = createUsageMeter({ store, prefix: PREFIX, writerId: "w1", now: () => now, flushIntervalMs: 10_000 });
    meter.record(KEY_A, { requests: 1, queries: 1, rerank_pairs: 20 });
    meter.record(KEY_A, { requests: 1, queries: 1, rerank_pairs: 10, embedding_tokens: 5 });
    meter.record(KEY_B, { requests: 1, queries: 1 });
    now = DAY2;
    meter.record(KEY_A, { requests: 1, degraded: 1 });
    expect(meter.unflushed(KEY_A)).toMatchObject({ requests: 3, queries: 2, rerank_pairs: 30, degraded: 1 });

    const r = await meter.flush();
    expect(r).toMatchObject({ written: 3, failed: 0 });
    expect(meter.unflushed(KEY_A)).toEqual(zeroCounts());

    const a = await readUsage(store, PREFIX, KEY_A, "2025-06-01", "2025-07-31");
    expect(a.days.map((d) => d.date)).toEqual(["2025-06-30", "2025-07-01"]);
    expect(a.totals).toEqual({
      requests: 3,
      queries: 2,
      rerank_pairs: 30,
      embedding_tokens: 5,
      degraded: 1,
      errors: 0,
    });
    const aDay1 = await readUsage(store, PREFIX, KEY_A, "2025-06-30", "2025-06-30");
    expect(aDay1.totals.requests).toBe(2);
    const b = await readUsage(store, PREFIX, KEY_B, "2025-06-30", "2025-07-01");
    expect(b.totals).toMatchObject({ requests: 1, queries: 1, rerank_pairs: 0 });
  });

  it("flushes from maybeFlush only when the interval has passed and something is pending", async () => {
    let now = DAY1;
    const meter = createUsageMeter({ store, prefix: PREFIX, writerId: "w1", now: () => now, flushIntervalMs: 10_000 });
    expect(await meter.maybeFlush()).toBeNull();
    meter.record(KEY_A, { requests: 1 });
    now += 9_999;
    expect(await meter.maybeFlush()).toBeNull();
    now += 1;
    expect(await meter.maybeFlush()).toMatchObject({ written: 1 });
    now += 20_000;
    expect(await meter.maybeFlush()).toBeNull();
  });

  it("loses no counts when many instances flush the same day object at once (real compare-and-swap)", async () => {
    const writers = 6;
    const rounds = 5;
    // The first get of every writer in a round waits until all have read: every round starts with all
    // writers holding the same ETag, so all but one must lose the conditional write and retry.
    let waiting: Array<() => void> = [];
    let barrierOpen = false;
    const racing: ObjectStore = {
      ...store,
      async get(key, opts) {
        const got = await store.get(key, opts);
        if (!barrierOpen) {
          await new Promise<void>((release) => {
            waiting.push(release);
            if (waiting.length === writers) {
              barrierOpen = true;
              for (const r of waiting) r();
              waiting = [];
            }
          });
        }
        return got;
      },
    };
    const meters = Array.from({ length: writers }, (_, i) =>
      createUsageMeter({
        store: racing,
        prefix: PREFIX,
        writerId: `w${i}`,
        now: () => DAY1,
        flushIntervalMs: 0,
        sleep: noSleep,
      }),
    );
    let conflicts = 0;
    for (let round = 0; round < rounds; round++) {
      meters.forEach((m, i) => {
        m.record(KEY_A, { requests: i + 1, queries: 1, rerank_pairs: 10 });
      });
      barrierOpen = false;
      const results = await Promise.all(meters.map((m) => m.flush()));
      for (const r of results) {
        expect(r.failed).toBe(0);
        conflicts += r.conflicts;
      }
    }
    expect(conflicts).toBeGreaterThanOrEqual(rounds * (writers - 1));
    const report = await readUsage(store, PREFIX, KEY_A, "2025-06-30", "2025-06-30");
    expect(report.totals.requests).toBe(rounds * ((writers * (writers + 1)) / 2));
    expect(report.totals.queries).toBe(rounds * writers);
    expect(report.totals.rerank_pairs).toBe(rounds * writers * 10);
  });

  it("does not count twice when a write lands but its response is lost", async () => {
    let failNextPutAfterWriting = true;
    const flaky: ObjectStore = {
      ...store,
      async put(key, body, opts) {
        const res = await store.put(key, body, opts);
        if (failNextPutAfterWriting) {
          failNextPutAfterWriting = false;
          throw new Error("socket hang up");
        }
        return res;
      },
    };
    const meter = createUsageMeter({
      store: flaky,
      prefix: PREFIX,
      writerId: "w1",
      now: () => DAY1,
      flushIntervalMs: 0,
      sleep: noSleep,
    });
    meter.record(KEY_A, { requests: 2, queries: 2 });
    const first = await meter.flush();
    expect(first).toMatchObject({ written: 0, failed: 1 });
    expect(first.errors[0]).toMatch(/socket hang up/);
    expect(meter.unflushed(KEY_A).queries).toBe(2);
    meter.record(KEY_A, { requests: 1, queries: 1 });
    const second = await meter.flush();
    expect(second).toMatchObject({ written: 1, failed: 0 });
    const report = await readUsage(store, PREFIX, KEY_A, "2025-06-30", "2025-06-30");
    expect(report.totals).toMatchObject({ requests: 3, queries: 3 });
    expect(meter.unflushed(KEY_A)).toEqual(zeroCounts());
  });

  it("keeps counts in memory while the store is down and writes them all when it is back", async () => {
    let down = true;
    const outage: ObjectStore = {
      ...store,
      get: (key, opts) => (down ? Promise.reject(new Error("ECONNREFUSED")) : store.get(key, opts)),
    };
    const meter = createUsageMeter({
      store: outage,
      prefix: PREFIX,
      writerId: "w1",
      now: () => DAY1,
      flushIntervalMs: 0,
      sleep: noSleep,
    });
    for (let i = 0; i < 5; i++) {
      meter.record(KEY_A, { requests: 1, embedding_tokens: 100 });
      expect(await meter.flush()).toMatchObject({ written: 0, failed: 1 });
    }
    expect(meter.unflushed(KEY_A)).toMatchObject({ requests: 5, embedding_tokens: 500 });
    down = false;
    expect(await meter.flush()).toMatchObject({ written: 1, failed: 0 });
    const report = await readUsage(store, PREFIX, KEY_A, "2025-06-30", "2025-06-30");
    expect(report.totals).toMatchObject({ requests: 5, embedding_tokens: 500 });
  });

  it("gives up after maxAttempts conflicts and keeps the counts for the next flush", async () => {
    let contested = true;
    const hostile: ObjectStore = {
      ...store,
      put: (key, body, opts) =>
        contested ? Promise.reject(new PreconditionFailedError("lost")) : store.put(key, body, opts),
    };
    const meter = createUsageMeter({
      store: hostile,
      prefix: PREFIX,
      writerId: "w1",
      now: () => DAY1,
      flushIntervalMs: 0,
      maxAttempts: 3,
      sleep: noSleep,
    });
    meter.record(KEY_A, { queries: 4 });
    const r = await meter.flush();
    expect(r).toMatchObject({ written: 0, failed: 1, conflicts: 3 });
    contested = false;
    expect(await meter.flush()).toMatchObject({ written: 1 });
    expect((await readUsage(store, PREFIX, KEY_A, "2025-06-30", "2025-06-30")).totals.queries).toBe(4);
  });

  it("serialises concurrent flush() calls of one meter", async () => {
    const meter = createUsageMeter({ store, prefix: PREFIX, writerId: "w1", now: () => DAY1, flushIntervalMs: 0 });
    meter.record(KEY_A, { queries: 1 });
    const p1 = meter.flush();
    meter.record(KEY_A, { queries: 1 });
    const p2 = meter.flush();
    const [r1, r2] = await Promise.all([p1, p2]);
    expect(r1.conflicts + r2.conflicts).toBe(0);
    expect((await readUsage(store, PREFIX, KEY_A, "2025-06-30", "2025-06-30")).totals.queries).toBe(2);
  });

  it("rejects bad key ids, dates and ranges with clear errors", async () => {
    const meter = createUsageMeter({ store, prefix: PREFIX, writerId: "w1", flushIntervalMs: 0 });
    expect(() => meter.record("../etc", { queries: 1 })).toThrow(ValidationError);
    expect(() => createUsageMeter({ store, prefix: PREFIX, writerId: "a/b", flushIntervalMs: 0 })).toThrow(
      ValidationError,
    );
    await expect(readUsage(store, PREFIX, KEY_A, "2025-02-30", "2025-03-01")).rejects.toThrow(/calendar date/);
    await expect(readUsage(store, PREFIX, KEY_A, "yesterday", "2025-03-01")).rejects.toThrow(/from must be/);
    await expect(readUsage(store, PREFIX, KEY_A, "2025-03-02", "2025-03-01")).rejects.toThrow(/must not be after/);
    await expect(readUsage(store, PREFIX, KEY_A, "2023-01-01", "2025-03-01")).rejects.toThrow(/366 days/);
    await expect(readUsage(store, PREFIX, "nope", "2025-03-01", "2025-03-01")).rejects.toBeInstanceOf(ValidationError);
    expect((await readUsage(store, PREFIX, KEY_A, "2025-03-01", "2025-03-01")).days).toEqual([]);
  });
});
