// The sharded reindex (shared/core/sharded-reindex.ts) on real parts: the filesystem store (a real
// compare-and-swap for the pointer) or s3rver, the hashing embedder, real faiss. The workflow runs
// through the deployed state machine definition (createInProcessStarter), so the retries and the
// Map's failure handling tested here are the ones Step Functions applies.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { faissIndexFromBuffer } from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import type { Embedder, ObjectStore } from "../../shared/core/ports.ts";
import { readPointer } from "../../shared/core/publish.ts";
import { reindexCorpus } from "../../shared/core/reindex.ts";
import {
  coordinateShardedReindex,
  createInProcessStarter,
  cutShards,
  type MergeResult,
  readPlan,
  type ShardedReindexOptions,
} from "../../shared/core/sharded-reindex.ts";
import { INDEX_FILE, PASSAGES_FILE, SPARSE_FILE, snapshotFileKey } from "../../shared/core/snapshot.ts";
import { ExecutionFailedError } from "../../shared/core/state-machine.ts";
import { sharedDataDir } from "../helpers/fixtures.ts";
import { captureLog, countingEmbedder, doc, jsonl, liveSnapshot, reindexOptions } from "../helpers/reindex.ts";
import { startLocalS3 } from "../helpers/s3rver.ts";

const roots: string[] = [];
function fsStore(): ObjectStore {
  const root = mkdtempSync(join(tmpdir(), "sharded-"));
  roots.push(root);
  return createFsStore(root);
}
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const noSleep = async () => {};

function shardedOptions(store: ObjectStore, embedder: Embedder, over: Partial<ShardedReindexOptions> = {}) {
  return {
    ...reindexOptions(store, embedder),
    // Small shards so a test corpus spans several.
    sharding: { maxShardBytes: 4_000, maxShardPassages: 1_000_000 },
    ...over,
  } as ShardedReindexOptions;
}

/** The files of the live snapshot, by name. */
async function liveFiles(store: ObjectStore): Promise<Record<string, Uint8Array>> {
  const view = (await liveSnapshot(store))!;
  const out: Record<string, Uint8Array> = {};
  for (const name of [INDEX_FILE, PASSAGES_FILE, SPARSE_FILE]) {
    out[name] = (await store.get(snapshotFileKey("index/", view.version, name)))!.body;
  }
  return out;
}

/** Top-10 ordinals and scores of each query vector against a published index.faiss. */
function topK(indexBytes: Uint8Array, queries: Float32Array[]) {
  const index = faissIndexFromBuffer(indexBytes);
  return queries.map((q) => index.search(q, 10));
}

/** Uploads the same corpus into two stores, builds one single and one sharded, and compares them. */
async function compareBuilds(objects: Array<[string, string]>, queryTexts: string[]) {
  const single = fsStore();
  const sharded = fsStore();
  for (const [key, body] of objects) {
    await single.put(key, body);
    await sharded.put(key, body);
  }
  const embedder = countingEmbedder();
  await reindexCorpus(reindexOptions(single, embedder));
  const opts = shardedOptions(sharded, countingEmbedder());
  const coordinated = await coordinateShardedReindex(opts, createInProcessStarter(opts, { sleep: noSleep }));
  expect(coordinated.status).toBe("started");
  expect(coordinated.shards).toBeGreaterThanOrEqual(4);
  const merged = coordinated.output as MergeResult;
  expect(merged.status).toBe("published");

  const a = (await liveSnapshot(single))!;
  const b = (await liveSnapshot(sharded))!;
  expect(b.passageIds).toEqual(a.passageIds);
  expect(b.passageTexts).toEqual(a.passageTexts);
  expect(b.manifest.counts).toEqual(a.manifest.counts);
  expect(b.manifest.corpus_stats).toEqual(a.manifest.corpus_stats);
  expect(b.manifest.sources).toEqual(a.manifest.sources);
  expect(b.manifest.report).toEqual(a.manifest.report);
  expect(b.manifest.sparse).toEqual(a.manifest.sparse);
  expect(b.manifest.build?.sharded).toMatchObject({ shards: coordinated.shards, reused: 0 });
  const fa = await liveFiles(single);
  const fb = await liveFiles(sharded);
  expect(Buffer.from(fb[PASSAGES_FILE]).equals(Buffer.from(fa[PASSAGES_FILE]))).toBe(true);
  expect(Buffer.from(fb[SPARSE_FILE]).equals(Buffer.from(fa[SPARSE_FILE]))).toBe(true);
  const queries = await Promise.all(queryTexts.map((t) => embedder.embedQuery(t)));
  expect(topK(fb[INDEX_FILE], queries)).toEqual(topK(fa[INDEX_FILE], queries));
  return { single, sharded, coordinated, merged };
}

describe("sharded reindex", () => {
  it("cuts contiguous shards by bytes and estimated passages", () => {
    const chunking = { max_tokens: 100, overlap: 0 }; // ~400 bytes a passage
    const sizes = [100, 100, 100, 500, 50].map((size) => ({ size }));
    expect(cutShards(sizes, { maxShardBytes: 250, maxShardPassages: 100 }, chunking)).toEqual([
      { start: 0, end: 2, bytes: 200, estimated_passages: 1 },
      { start: 2, end: 3, bytes: 100, estimated_passages: 1 },
      { start: 3, end: 4, bytes: 500, estimated_passages: 2 }, // alone over the limit: its own shard
      { start: 4, end: 5, bytes: 50, estimated_passages: 1 },
    ]);
    expect(cutShards(sizes, { maxShardBytes: 1e9, maxShardPassages: 2 }, chunking).map((c) => c.end)).toEqual([4, 5]);
    expect(cutShards([], { maxShardBytes: 1, maxShardPassages: 1 }, chunking)).toEqual([]);
  });

  it("publishes the same snapshot as a single build (synthetic corpus with duplicates and bad input)", async () => {
    const objects: Array<[string, string]> = [];
    for (let f = 0; f < 10; f++) {
      const rows = Array.from({ length: 6 }, (_, i) => doc(`d${f}-${i}`, ["river", "comet", "harbor"][i % 3], 4));
      // Document ids repeated across files (and so across shards): the first file in key order wins.
      if (f % 3 === 2) rows.push(doc(`d${f - 2}-1`, "glacier", 2));
      objects.push([`corpus/part-${String(f).padStart(2, "0")}.jsonl`, `${jsonl(rows)}{not json\n`]);
    }
    objects.push(["corpus/notes/readme.md", "# Notes\n\nA harbor note about the comet station.\n"]);
    objects.push(["corpus/image.png", "binary"]);
    const { merged } = await compareBuilds(objects, ["river station", "comet report section", "harbor glacier"]);
    expect(merged.skipped.some((s) => s.reason.includes("duplicate id"))).toBe(true);
    expect(merged.skipped.some((s) => s.key === "corpus/image.png")).toBe(true);
  });

  const data = sharedDataDir();
  it.skipIf(!data)(
    "publishes the same snapshot as a single build of Cranfield (8 files)",
    async () => {
      if (!data) return console.warn("../shared/data is absent: skipping the Cranfield sharded build");
      const lines = readFileSync(join(data, "cranfield", "corpus.jsonl"), "utf8")
        .trim()
        .split("\n");
      const per = Math.ceil(lines.length / 8);
      const objects: Array<[string, string]> = [];
      for (let f = 0; f < 8; f++) {
        objects.push([`corpus/cranfield-${f}.jsonl`, `${lines.slice(f * per, (f + 1) * per).join("\n")}\n`]);
      }
      const queries = readFileSync(join(data, "cranfield", "queries.jsonl"), "utf8")
        .trim()
        .split("\n")
        .slice(0, 20)
        .map((l) => (JSON.parse(l) as { text: string }).text);
      const { coordinated } = await compareBuilds(objects, queries);
      expect(coordinated.shards).toBe(8); // each file is over the 4 KB shard limit on its own
    },
    60_000,
  );

  describe("failures and re-runs", () => {
    let store: ObjectStore;
    beforeEach(async () => {
      store = fsStore();
      for (let f = 0; f < 6; f++) {
        const rows = Array.from({ length: 8 }, (_, i) => doc(`f${f}-${i}`, ["meadow", "orbit"][i % 2], 4));
        await store.put(`corpus/f${f}.jsonl`, jsonl(rows));
      }
    });

    it("a shard that fails on every attempt leaves the pointer; the next run redoes only that shard", async () => {
      // Publish a first snapshot, then change one file: one shard must be rebuilt.
      const first = shardedOptions(store, countingEmbedder());
      await coordinateShardedReindex(first, createInProcessStarter(first, { sleep: noSleep }));
      const before = await readPointer(store, "index/");
      await store.put("corpus/f3.jsonl", jsonl([doc("f3-new", "aurora", 4), doc("f3-0", "aurora", 3)]));

      const failing = countingEmbedder();
      failing.failAfter = 0; // the changed shard has new texts to embed; the others are reused
      const { log, lines } = captureLog();
      const opts = shardedOptions(store, failing, { log });
      const starter = createInProcessStarter(opts, { sleep: noSleep, workflow: { shardAttempts: 2 } });
      const err = await coordinateShardedReindex(opts, starter).catch((e) => e);
      expect(err).toBeInstanceOf(ExecutionFailedError);
      expect((err as ExecutionFailedError).state).toBe("BuildShard");
      expect(lines.filter((l) => l.msg === "shard built")).toHaveLength(0);
      expect((await readPointer(store, "index/"))!.etag).toBe(before!.etag); // nothing published
      expect([...starter.executions.values()]).toEqual(["FAILED"]);

      // The embedder recovers; a duplicate event for the same state starts the next execution name.
      const healthy = countingEmbedder();
      const rerun = captureLog();
      const again = shardedOptions(store, healthy, { log: rerun.log });
      const result = await coordinateShardedReindex(
        again,
        createInProcessStarter(again, { sleep: noSleep, executions: starter.executions }),
      );
      expect(result.status).toBe("started");
      expect(result.execution).toMatch(/-1$/);
      expect(result.reused).toBe(result.shards - 1);
      const built = rerun.lines.filter((l) => l.msg === "shard built");
      expect(built).toHaveLength(1);
      expect(healthy.embeddedTexts.every((t) => t.includes("aurora"))).toBe(true);
      expect((result.output as MergeResult).status).toBe("published");
      expect((await liveSnapshot(store))!.docIds).toContain("f3-new");
    });

    it("retries a shard that fails once, then publishes", async () => {
      const flaky = countingEmbedder();
      let failures = 1;
      const embedder: Embedder = {
        ...flaky,
        identity: flaky.identity,
        usage: () => flaky.usage(),
        embedQuery: (t) => flaky.embedQuery(t),
        embedDocuments: async (texts) => {
          if (failures-- > 0) throw new Error("transient (test)");
          return flaky.embedDocuments(texts);
        },
      };
      const opts = shardedOptions(store, embedder);
      const result = await coordinateShardedReindex(opts, createInProcessStarter(opts, { sleep: noSleep }));
      expect((result.output as MergeResult).status).toBe("published");
      expect((await liveSnapshot(store))!.docIds).toHaveLength(48);
    });

    it("duplicate start events run one execution; an unchanged corpus starts nothing", async () => {
      const embedder = countingEmbedder();
      const opts = shardedOptions(store, embedder);
      const starter = createInProcessStarter(opts, { sleep: noSleep });
      const [a, b] = await Promise.all([
        coordinateShardedReindex(opts, starter),
        coordinateShardedReindex(opts, starter),
      ]);
      expect([a.status, b.status].sort()).toEqual(["running", "started"]);
      expect(a.build_id).toBe(b.build_id);
      expect(starter.executions.size).toBe(1);
      const texts = embedder.embeddedTexts.length;
      const plan = await readPlan(store, a.plan_key!);
      expect(plan.listing).toHaveLength(6);
      const third = await coordinateShardedReindex(opts, starter);
      expect(third.status).toBe("unchanged");
      expect(embedder.embeddedTexts.length).toBe(texts);
    });

    it("a merge that loses the pointer flip re-plans from a fresh listing", async () => {
      const opts = shardedOptions(store, countingEmbedder());
      const starter = createInProcessStarter(opts, { sleep: noSleep });
      // Plan against the empty pointer, but let a single run publish before the merge flips.
      const racing = {
        start: async (name: string, input: { plan_key: string; shards: number[] }) => {
          await reindexCorpus(reindexOptions(store, countingEmbedder()));
          await store.put("corpus/late.jsonl", jsonl([doc("late-1", "zenith", 3)]));
          return starter.start(name, input);
        },
      };
      const result = await coordinateShardedReindex(opts, racing);
      const merged = result.output as MergeResult;
      expect(merged.status).toBe("replanned");
      expect(merged.replanned?.status).toBe("started");
      // The replanned build includes the late file and was built from the newest listing.
      const view = (await liveSnapshot(store))!;
      expect(view.docIds).toContain("late-1");
      expect(view.manifest.build?.sharded?.build_id).toBe(merged.replanned?.build_id);
    });
  });

  it("runs against an S3-protocol server (s3rver)", async () => {
    const s3 = await startLocalS3();
    try {
      const store = createS3Store({
        bucket: s3.bucket,
        endpoint: s3.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: s3.credentials,
      });
      for (let f = 0; f < 5; f++) {
        await store.put(
          `corpus/s${f}.jsonl`,
          jsonl(Array.from({ length: 6 }, (_, i) => doc(`s${f}-${i}`, "delta", 4))),
        );
      }
      const opts = shardedOptions(store, countingEmbedder());
      const result = await coordinateShardedReindex(opts, createInProcessStarter(opts, { sleep: noSleep }));
      expect((result.output as MergeResult).status).toBe("published");
      expect((await liveSnapshot(store))!.docIds).toHaveLength(30);
    } finally {
      await s3.close();
    }
  });
});

describe("reindex function in REINDEX_MODE=sharded", () => {
  it("the S3-event handler coordinates and (in-process) publishes; task events are validated", async () => {
    const { createReindexHandler, createReindexService, parseShardTask, parseMergeTask } = await import(
      "../../functions/runtime/reindex-deps.ts"
    );
    const { loadConfig } = await import("../../shared/core/config.ts");
    const s3 = await startLocalS3();
    try {
      const { localS3Env } = await import("../helpers/s3rver.ts");
      const cfg = loadConfig({
        ...localS3Env(s3),
        REINDEX_MODE: "sharded",
        EMBEDDER: "hashing",
        REINDEX_SHARD_PASSAGES: "10",
        CHUNK_TOKENS: "48",
        CHUNK_OVERLAP: "8",
      });
      const store = createS3Store({
        bucket: s3.bucket,
        endpoint: s3.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: s3.credentials,
      });
      const service = createReindexService(cfg, { log: () => {}, store });
      for (let f = 0; f < 3; f++) {
        await service.store.put(
          `corpus/h${f}.jsonl`,
          jsonl(Array.from({ length: 6 }, (_, i) => doc(`h${f}-${i}`, "reef", 4))),
        );
      }
      const handler = createReindexHandler(async () => service);
      const event = { Records: [{ eventName: "ObjectCreated:Put", s3: { object: { key: "corpus/h0.jsonl" } } }] };
      const summary = await handler(event);
      expect(summary.status).toBe("published");
      expect(summary.documents).toBe(18);
      expect((await liveSnapshot(service.store))!.manifest.build?.sharded?.shards).toBeGreaterThan(1);
      expect((await handler(event)).status).toBe("unchanged");
      expect(() => parseShardTask({ plan_key: "p", shard: -1 })).toThrow(/shard task needs/);
      expect(() => parseShardTask(null)).toThrow(/shard task needs/);
      expect(parseShardTask({ plan_key: "p", shard: 2 })).toEqual({ plan_key: "p", shard: 2 });
      expect(() => parseMergeTask({ plan_key: 3 })).toThrow(/merge task needs/);
      await expect(service.shard({ plan_key: "index/builds/nope/plan.json", shard: 0 })).rejects.toThrow(
        /no build plan/,
      );
    } finally {
      await s3.close();
    }
  });
});
