// The lazily read passage store (shared/core/passage-texts.ts + openLazyPassageStore) against an
// in-memory object store that can fail, change, or count its ranged GETs.
import { describe, expect, it } from "vitest";
import { createTextBlockReader } from "../../shared/core/passage-texts.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import {
  describePassageStore,
  encodePassageStore,
  openLazyPassageStore,
  openPassageStore,
  type PassageLayout,
} from "../../shared/core/snapshot.ts";
import type { Passage } from "../../shared/core/types.ts";

const passages: Passage[] = Array.from({ length: 3000 }, (_, i) => ({
  id: `d${i % 97}#${i}`,
  docId: `d${i % 97}`,
  text: `passage ${i}: ${"é lorem ipsum ".repeat(1 + (i % 7))}`,
  source: `kb/${i % 5}.md`,
  metadata: { n: i },
  start: 0,
  end: 10 + i,
}));
const bytes = encodePassageStore(passages);
const layout = describePassageStore(bytes, 4096) as PassageLayout;

function memoryStore(opts: { failFirst?: number; etag?: () => string; body?: Uint8Array } = {}) {
  let failures = opts.failFirst ?? 0;
  const ranges: Array<[number, number]> = [];
  const store = {
    async get(_key: string, o?: { range?: [number, number] }) {
      const body = opts.body ?? bytes;
      const [a, b] = o?.range ?? [0, body.byteLength - 1];
      ranges.push([a, b]);
      if (failures > 0) {
        failures--;
        throw new Error("socket hang up");
      }
      return { body: body.slice(a, b + 1), etag: opts.etag?.() ?? '"v1"' };
    },
  } as unknown as ObjectStore;
  return { store, ranges };
}

function lazyStore(store: ObjectStore, cacheBytes = 1 << 20) {
  const reader = createTextBlockReader({ store, key: "p.bin", layout, etag: '"v1"', version: "v", cacheBytes });
  return {
    reader,
    passages: openLazyPassageStore(bytes.slice(0, layout.head_bytes), layout, reader.read, reader.stats),
  };
}

describe("lazily read passage store", () => {
  it("answers info() from the head and load() with the same passages as the whole store", async () => {
    const whole = openPassageStore(bytes);
    const { passages: lazy } = lazyStore(memoryStore().store);
    const { text: _t, ...info } = passages[1234];
    expect(lazy.info?.(1234)).toEqual(info);
    const pick = [2999, 0, 1500, 0, 7];
    expect(await lazy.load?.(pick)).toEqual(pick.map((o) => whole.get(o)));
    expect(() => lazy.get(3)).toThrow(/reads texts lazily; use load\(\)/);
    await expect(lazy.load?.([3000])).rejects.toThrow(/out of range/);
  });

  it("reads each block once while it is cached, and evicts past the byte limit", async () => {
    const { store, ranges } = memoryStore();
    const { passages: lazy, reader } = lazyStore(store, 2 * 4096);
    await lazy.load?.([10, 11, 12]);
    const after = ranges.length;
    await lazy.load?.([10, 12]);
    expect(ranges.length).toBe(after);
    expect(reader.stats().block_hits).toBeGreaterThan(0);
    await lazy.load?.([2999]);
    await lazy.load?.([1500]);
    await lazy.load?.([10]);
    expect(ranges.length).toBeGreaterThan(after + 2); // block of 10 was evicted and read again
    expect(reader.stats().cached_bytes).toBeLessThanOrEqual(2 * 4096);
  });

  it("retries one failed GET; a second failure fails the request with a retryable 503", async () => {
    const once = lazyStore(memoryStore({ failFirst: 1 }).store).passages;
    expect((await once.load?.([5]))?.[0].text).toBe(passages[5].text);
    const twice = lazyStore(memoryStore({ failFirst: 2 }).store).passages;
    const err = await twice.load?.([5]).catch((e) => e);
    expect(err).toMatchObject({ code: "store_unavailable", status: 503, retryAfterS: 5 });
    expect(err.message).toMatch(/passage texts \(bytes \d+–\d+ of passages\.bin\) could not be read: socket hang up/);
    // The store itself is fine afterwards.
    expect((await twice.load?.([5]))?.[0].text).toBe(passages[5].text);
  });

  it("refuses blocks of an object that changed since the head was read", async () => {
    const { passages: lazy } = lazyStore(memoryStore({ etag: () => '"v2"' }).store);
    await expect(lazy.load?.([1])).rejects.toThrow(/changed since the snapshot was loaded/);
  });

  it("fill() brings the whole text section into memory; reads then need no GET", async () => {
    const { store, ranges } = memoryStore();
    const { passages: lazy, reader } = lazyStore(store);
    await reader.fill();
    expect(reader.stats()).toMatchObject({ texts: "memory", cached_bytes: layout.text_bytes });
    const n = ranges.length;
    const all = Array.from({ length: passages.length }, (_, i) => i);
    expect(await lazy.load?.(all)).toEqual(passages);
    expect(ranges.length).toBe(n);
  });

  it("a fill deferred to the first read starts only once a read was served", async () => {
    const { store, ranges } = memoryStore();
    const { passages: lazy, reader } = lazyStore(store);
    const filled = reader.fill(undefined, { afterFirstRead: true, maxWaitMs: 60_000 });
    await new Promise((r) => setTimeout(r, 20));
    expect(ranges).toEqual([]);
    expect(reader.stats().texts).toBe("lazy");
    await lazy.load?.([7]);
    // The first GET was the query's own block, not a part of the download.
    expect(ranges[0][1] - ranges[0][0] + 1).toBeLessThanOrEqual(layout.block_bytes);
    await filled;
    expect(reader.stats().texts).toBe("memory");
    expect(ranges.length).toBeGreaterThan(1);
  });

  it("an aborted fill stops and is not restarted by later reads", async () => {
    const { store, ranges } = memoryStore();
    const { passages: lazy, reader } = lazyStore(store, 0);
    const ac = new AbortController();
    ac.abort();
    await reader.fill(ac.signal);
    expect(ranges).toEqual([]);
    await lazy.load?.([1]);
    await lazy.load?.([2]);
    expect(reader.stats().texts).toBe("lazy");
    expect(ranges.length).toBe(2); // just the two reads
  });

  it("a fill that fails leaves range reads working", async () => {
    const { store } = memoryStore({ failFirst: 2 });
    const { passages: lazy, reader } = lazyStore(store);
    await reader.fill();
    expect(reader.stats().texts).toBe("lazy");
    expect((await lazy.load?.([42]))?.[0]).toEqual(passages[42]);
  });
});
