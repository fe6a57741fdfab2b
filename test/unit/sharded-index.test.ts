// Index shards without processes: the exact k-way merge, shards loaded in-process (real faiss),
// the fan-out index's handling of slow, failing and lying shards, the shard service's version
// cache, and the manifest rules for index_shards.
import { describe, expect, it } from "vitest";
import { buildFaissIndex, faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { buildSnapshot, effectiveIndexShards, shardRanges } from "../../shared/core/build.ts";
import { DomainError, ShardUnavailableError } from "../../shared/core/errors.ts";
import { createIndexShardService, parseShardSearchRequest } from "../../shared/core/index-shard-service.ts";
import type { IndexShardClient, ShardSearchRequest, VectorIndex } from "../../shared/core/ports.ts";
import {
  createFanoutIndex,
  fanoutIndexOpener,
  mergeTopK,
  ShardedVectorIndex,
} from "../../shared/core/sharded-index.ts";
import { newSnapshotVersion, parseManifest } from "../../shared/core/snapshot.ts";
import type { LoadedIndexShard } from "../../shared/core/snapshot-loader.ts";
import { clusteredVectors, row } from "../../scripts/bench/vectors.ts";

const D = 16;
const N = 403;
const flat = clusteredVectors({ n: N, d: D, seed: 5, clusters: 9 });
const queries = clusteredVectors({ n: 12, d: D, seed: 77, clusters: 3 });

async function flatOf(from: number, to: number): Promise<VectorIndex> {
  return buildFaissIndex({ dimensions: D, type: "flat" }, [flat.slice(from * D, to * D)]);
}

/** A client that answers from in-process shard indexes, with per-shard faults. */
function client(
  shards: VectorIndex[],
  ranges: Array<{ offset: number; count: number }>,
  faults: Record<number, "hang" | "fail" | "lie" | "refuse"> = {},
): IndexShardClient & { calls: ShardSearchRequest[] } {
  const calls: ShardSearchRequest[] = [];
  return {
    calls,
    describe: () => ({ kind: "http", targets: [] }),
    async search(req, opts) {
      calls.push(req);
      const fault = faults[req.shard];
      if (fault === "hang")
        return new Promise((_, reject) => opts.signal?.addEventListener("abort", () => reject(opts.signal?.reason)));
      if (fault === "fail") throw new ShardUnavailableError("shard function failed: out of memory");
      if (fault === "refuse") throw new DomainError("snapshot_invalid", 502, "no such version");
      const r = shards[req.shard].search(req.vector, req.k);
      const ordinals = r.ordinals.map((o) => o + ranges[req.shard].offset);
      if (fault === "lie") ordinals[0] = ranges[req.shard].offset + ranges[req.shard].count + 5;
      return { ordinals, scores: r.scores, version: req.version };
    },
    async warm() {},
  };
}

describe("mergeTopK", () => {
  it("merges best-first parts by score, ties to the lower ordinal, stops at k", () => {
    const m = mergeTopK(
      [
        { ordinals: [7, 2], scores: [0.9, 0.5] },
        { ordinals: [10, 3, 11], scores: [0.9, 0.7, 0.1] },
        { ordinals: [], scores: [] },
      ],
      4,
    );
    expect(m).toEqual({ ordinals: [7, 10, 3, 2], scores: [0.9, 0.9, 0.7, 0.5] });
    expect(mergeTopK([{ ordinals: [1], scores: [1] }], 5).ordinals).toEqual([1]);
  });
});

describe("ShardedVectorIndex (SEARCH_SHARDS=local)", () => {
  it("uneven shards of a flat index answer exactly as one index", async () => {
    const one = await flatOf(0, N);
    const cuts = [0, 100, 101, 290, N];
    const parts = await Promise.all(cuts.slice(1).map((to, i) => flatOf(cuts[i], to)));
    const sharded = new ShardedVectorIndex(parts.map((index, i) => ({ index, offset: cuts[i] })));
    expect(sharded.count).toBe(N);
    for (let q = 0; q < 12; q++) {
      for (const k of [1, 7, 50, N]) {
        const want = one.search(row(queries, D, q), k);
        const got = sharded.search(row(queries, D, q), k);
        expect(got.ordinals).toEqual(want.ordinals);
        expect(got.scores).toEqual(want.scores);
      }
    }
  });

  it("refuses shards that do not follow each other or disagree on dimensions", async () => {
    const a = await flatOf(0, 10);
    expect(
      () =>
        new ShardedVectorIndex([
          { index: a, offset: 0 },
          { index: a, offset: 11 },
        ]),
    ).toThrow(/starts at ordinal 11, expected 10/);
    const b = await buildFaissIndex({ dimensions: 8, type: "flat" }, [new Float32Array(8 * 4)]);
    expect(
      () =>
        new ShardedVectorIndex([
          { index: a, offset: 0 },
          { index: b, offset: 10 },
        ]),
    ).toThrow(/8 dimensions/);
  });
});

describe("createFanoutIndex", () => {
  const version = newSnapshotVersion(new Date("2026-01-01T00:00:00Z"));
  const ranges = shardRanges(N, 4);
  const setup = async (faults: Parameters<typeof client>[2] = {}) => {
    const shards = await Promise.all(ranges.map((r) => flatOf(r.offset, r.offset + r.count)));
    const c = client(shards, ranges, faults);
    return { c, index: createFanoutIndex({ version, dimensions: D, shards: ranges, client: c, timeoutMs: 50 }) };
  };

  it("all shards answering: the exact top-k, each shard asked for at most its size", async () => {
    const one = await flatOf(0, N);
    const { c, index } = await setup();
    const q = row(queries, D, 3);
    const got = await index.searchShards(q, 150);
    expect(got.missing).toEqual([]);
    expect(got.ordinals).toEqual(one.search(q, 150).ordinals);
    expect(c.calls.map((x) => [x.shard, x.k])).toEqual([
      [0, 101],
      [1, 101],
      [2, 101],
      [3, 100],
    ]);
  });

  it("a hung shard times out, a failing one is unavailable, a lying one invalid: the rest is exact", async () => {
    const one = await flatOf(0, N);
    const { index } = await setup({ 0: "hang", 1: "fail", 3: "lie" });
    const q = row(queries, D, 4);
    const got = await index.searchShards(q, 20);
    expect(got.missing.map((m) => [m.shard, m.code])).toEqual([
      [0, "timeout"],
      [1, "unavailable"],
      [3, "invalid"],
    ]);
    expect(got.missing[0].message).toBe("timed out after 50 ms");
    expect(got.missing[2].message).toMatch(/outside its range/);
    const inShard2 = (o: number) => o >= ranges[2].offset && o < ranges[2].offset + ranges[2].count;
    expect(got.ordinals).toEqual(one.search(q, N).ordinals.filter(inShard2).slice(0, 20));
  });

  it("the opener rejects a version a shard refuses, and goes live when shards are only slow", async () => {
    const manifest = {
      version,
      embedder: { kind: "hashing", model: "m", dimensions: D, normalized: true },
      counts: { passages: N, documents: N },
      files: {},
      index_shards: ranges.map((r, i) => ({ file: `index-${i}.faiss`, ...r })),
    } as never;
    const shards = await Promise.all(ranges.map((r) => flatOf(r.offset, r.offset + r.count)));
    const refusing = {
      ...client(shards, ranges),
      warm: async () => Promise.reject(new DomainError("snapshot_invalid", 502, "gone")),
    };
    await expect(fanoutIndexOpener({ client: refusing, timeoutMs: 50, loadTimeoutMs: 50 })(manifest)).rejects.toThrow(
      /refused it: gone/,
    );
    const logs: unknown[] = [];
    const slow = {
      ...client(shards, ranges),
      warm: async (req: { shard: number }) => {
        if (req.shard === 1) throw new ShardUnavailableError("timed out", { timeout: true });
      },
    };
    const index = await fanoutIndexOpener({
      client: slow,
      timeoutMs: 50,
      loadTimeoutMs: 50,
      log: (...a) => logs.push(a),
    })(manifest);
    expect(index.count).toBe(N);
    expect(JSON.stringify(logs)).toMatch(/"shard":1,"code":"timeout"/);
  });
});

describe("index shard service", () => {
  const versions = [1, 2, 3].map((day) => newSnapshotVersion(new Date(Date.UTC(2026, 0, day))));
  const v = (day: number) => versions[day - 1];
  it("loads a version once, keeps the last two, refuses other shards and bad requests", async () => {
    const loads: string[] = [];
    const index = await flatOf(100, 200);
    const service = createIndexShardService({
      shardId: 1,
      loadShard: async (version, shard): Promise<LoadedIndexShard> => {
        loads.push(version);
        return {
          version,
          shard,
          manifest: {} as never,
          range: { file: "index-1.faiss", offset: 100, count: 100 },
          index,
        };
      },
    });
    const q = Array.from(row(queries, D, 0));
    const [a, b] = await Promise.all([
      service.search(parseShardSearchRequest({ version: v(1), shard: 1, vector: q, k: 5 })),
      service.search(parseShardSearchRequest({ version: v(1), shard: 1, vector: q, k: 5 })),
    ]);
    expect(loads).toEqual([v(1)]);
    expect(a).toEqual(b);
    expect(a.ordinals.every((o) => o >= 100 && o < 200)).toBe(true);
    await service.search(parseShardSearchRequest({ version: v(2), shard: 1, vector: q, k: 0 }));
    await service.search(parseShardSearchRequest({ version: v(3), shard: 1, vector: q, k: 0 }));
    await service.search(parseShardSearchRequest({ version: v(2), shard: 1, vector: q, k: 1 }));
    await service.search(parseShardSearchRequest({ version: v(1), shard: 1, vector: q, k: 1 }));
    expect(loads).toEqual([v(1), v(2), v(3), v(1)]);
    expect(service.status().loaded.map((l) => l.version)).toEqual([v(2), v(1)]);
    await expect(service.search(parseShardSearchRequest({ version: v(1), shard: 0, vector: q, k: 1 }))).rejects.toThrow(
      /serves shard 1, not 0/,
    );
    expect(() => parseShardSearchRequest({ version: "x", shard: 0, vector: q, k: 1 })).toThrow(/`version`/);
    expect(() => parseShardSearchRequest({ version: v(1), shard: 0, vector: [], k: 1 })).toThrow(/`vector`/);
    expect(() => parseShardSearchRequest({ version: v(1), shard: 0, vector: q, k: -1 })).toThrow(/`k`/);
  });

  it("a shard evicted while it loads answers its caller but is not kept", async () => {
    const index = await flatOf(0, 10);
    const gates = new Map<string, () => void>();
    const service = createIndexShardService({
      keepVersions: 2,
      loadShard: (version, shard) =>
        new Promise((resolve) =>
          gates.set(version, () =>
            resolve({
              version,
              shard,
              manifest: {} as never,
              range: { file: "index.faiss", offset: 0, count: 10 },
              index,
            }),
          ),
        ),
    });
    const q = Array.from(row(queries, D, 0));
    const asks = [1, 2, 3].map((d) =>
      service.search(parseShardSearchRequest({ version: v(d), shard: 0, vector: q, k: 2 })),
    );
    for (const d of [2, 3, 1]) gates.get(v(d))!();
    const answers = await Promise.all(asks);
    expect(answers.map((a) => a.version)).toEqual([v(1), v(2), v(3)]);
    expect(
      service
        .status()
        .loaded.map((l) => l.version)
        .sort(),
    ).toEqual([v(2), v(3)].sort());
    expect(service.status().loading).toEqual([]);
  });

  it("a failed load is not cached: the next request tries again", async () => {
    let n = 0;
    const index = await flatOf(0, 10);
    const service = createIndexShardService({
      loadShard: async (version, shard) => {
        if (n++ === 0) throw new Error("store down");
        return { version, shard, manifest: {} as never, range: { file: "index.faiss", offset: 0, count: 10 }, index };
      },
    });
    const req = parseShardSearchRequest({ version: v(1), shard: 0, vector: Array.from(row(queries, D, 0)), k: 3 });
    await expect(service.search(req)).rejects.toThrow(/store down/);
    expect((await service.search(req)).ordinals).toHaveLength(3);
  });
});

describe("index_shards in the manifest", () => {
  /** A real INDEX_SHARDS=2 manifest of 10 passages. */
  const base = async () => {
    const built = await buildSnapshot({
      passages: Array.from({ length: 10 }, (_, i) => ({
        id: `d${i}#0`,
        docId: `d${i}`,
        text: `t${i}`,
        start: 0,
        end: 2,
      })),
      vectors: Array.from({ length: 10 }, (_, i) => row(flat, D, i)),
      embedder: { kind: "hashing", model: "m", dimensions: D, normalized: true },
      indexType: "flat",
      indexBuilder: faissIndexBuilder,
      indexShards: 2,
      sparse: false,
    });
    return JSON.parse(JSON.stringify(built.manifest));
  };
  it("accepts contiguous shards covering every passage and names what is wrong otherwise", async () => {
    const good = await base();
    expect(parseManifest(good).index_shards).toEqual([
      { file: "index-0.faiss", offset: 0, count: 5 },
      { file: "index-1.faiss", offset: 5, count: 5 },
    ]);
    const [a, b] = good.index_shards;
    expect(() => parseManifest({ ...good, index_shards: [a, { ...b, offset: 6 }] })).toThrow(
      /starts at ordinal 6, expected 5/,
    );
    expect(() => parseManifest({ ...good, counts: { ...good.counts, passages: 11 } })).toThrow(
      /hold 10 vectors, the manifest counts 11/,
    );
    expect(() => parseManifest({ ...good, index_shards: [a, { ...b, file: "index-9.faiss" }] })).toThrow(
      /does not list/,
    );
    expect(() => parseManifest({ ...good, index_shards: [a, { ...b, file: a.file }] })).toThrow(/share/);
    // A manifest with neither index_shards nor index.faiss has no dense index at all.
    const { index_shards: _, ...none } = good;
    expect(() => parseManifest(none)).toThrow(/lists no index.faiss/);
  });

  it("never more shards than passages; near-equal contiguous ranges", () => {
    expect(effectiveIndexShards(4, 3)).toBe(3);
    expect(effectiveIndexShards(undefined, 0)).toBe(1);
    expect(() => effectiveIndexShards(0, 10)).toThrow(/1\.\.256/);
    expect(shardRanges(10, 3)).toEqual([
      { offset: 0, count: 4 },
      { offset: 4, count: 3 },
      { offset: 7, count: 3 },
    ]);
  });
});
