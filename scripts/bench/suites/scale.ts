// Beyond one function (issue #17), three measurements in one run:
// - build: a full reindex of N passages (default 200K) as one run vs the sharded build (the deployed
//   state machine definition run in-process: shard workers as concurrent calls in this one process),
//   then the rebuild after one changed file, where the sharded build reuses every other shard.
// - fanout: dense search over one index vs 2/4 shards loaded in-process vs fan-out to shard worker
//   processes over loopback HTTP (scripts/bench/scale-fanout.ts, where present).
// - ann: IVF-PQ + SQ8 refine vs Flat at 1M×384 (recall@20, latency, bytes, resident memory), with
//   10M×384 projected from the measured per-vector figures (scripts/bench/scale-ann.ts).
// `--only build,ann` picks sections. The in-process map runs on this machine's cores; on AWS each
// shard is its own Lambda, so the sharded wall time there is ~ the slowest shard plus the merge.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { corpusStatsBuilder } from "../../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../../shared/adapters/fs-store.ts";
import { createHashingEmbedder } from "../../../shared/adapters/hash-embedder.ts";
import type { ObjectStore } from "../../../shared/core/ports.ts";
import { type ReindexOptions, reindexCorpus } from "../../../shared/core/reindex.ts";
import {
  coordinateShardedReindex,
  createInProcessStarter,
  type MergeResult,
  type ShardedReindexOptions,
} from "../../../shared/core/sharded-reindex.ts";
import { type Figure, figure, type Suite } from "../harness.ts";
import { mulberry32 } from "../vectors.ts";

const WORDS = (
  "river mountain glacier harbor meadow canyon volcano desert forest island lagoon prairie tundra reef delta " +
  "plateau comet nebula quasar pulsar galaxy orbit eclipse meteor asteroid crater aurora zenith horizon equinox " +
  "solstice turbine engine wing pressure boundary layer flow shock heat transfer"
).split(" ");

/** `files` JSONL objects holding `passages` one-passage documents in total (seeded). */
async function writeCorpus(store: ObjectStore, passages: number, files: number): Promise<void> {
  const rand = mulberry32(17);
  const per = Math.ceil(passages / files);
  for (let f = 0; f < files; f++) {
    const rows: string[] = [];
    for (let i = 0; i < per && f * per + i < passages; i++) {
      const words = Array.from({ length: 24 }, () => WORDS[Math.floor(rand() * WORDS.length)]);
      rows.push(JSON.stringify({ id: `p${f}-${i}`, text: words.join(" ") }));
    }
    await store.put(`corpus/part-${String(f).padStart(4, "0")}.jsonl`, `${rows.join("\n")}\n`);
  }
}

function options(store: ObjectStore, dims: number): ShardedReindexOptions {
  return {
    store,
    corpusPrefix: "corpus/",
    indexPrefix: "index/",
    cachePrefix: "cache/embeddings/",
    embedder: createHashingEmbedder({ dimensions: dims }),
    indexBuilder: faissIndexBuilder,
    indexType: "flat",
    chunking: { maxTokens: 64, overlap: 0 },
    corpusStats: corpusStatsBuilder,
    keepSnapshots: 2,
  } satisfies ReindexOptions;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

async function buildSection(quick: boolean, log: (s: string) => void) {
  const passages = quick ? 10_000 : 200_000;
  const files = quick ? 20 : 200;
  const dims = 384;
  const shardPassages = Math.ceil(passages / 8);
  const roots = [mkdtempSync(join(tmpdir(), "scale-single-")), mkdtempSync(join(tmpdir(), "scale-sharded-"))];
  try {
    const [single, sharded] = roots.map((r) => createFsStore(r));
    log(`build: writing ${passages} passages in ${files} files twice`);
    await writeCorpus(single, passages, files);
    await writeCorpus(sharded, passages, files);
    const s = options(single, dims);
    const [, singleMs] = await timed(() => reindexCorpus(s));
    log(`build: single ${Math.round(singleMs)} ms`);
    const o: ShardedReindexOptions = {
      ...options(sharded, dims),
      // ~4 bytes a token: the estimate the coordinator uses; 8 shards of the corpus.
      sharding: { maxShardBytes: 1e12, maxShardPassages: shardPassages },
    };
    const starter = () => createInProcessStarter(o, { workflow: { maxConcurrency: Math.max(1, cpus().length) } });
    const [first, shardedMs] = await timed(() => coordinateShardedReindex(o, starter()));
    log(`build: sharded ${Math.round(shardedMs)} ms (${first.shards} shards)`);
    // One changed file: a single run re-reads every object on a cold instance (no read cache here);
    // the sharded build reuses every other shard.
    const changed = "corpus/part-0003.jsonl";
    const edit = async (store: ObjectStore) => {
      const body = new TextDecoder().decode((await store.get(changed))!.body);
      await store.put(changed, body.replace("river", "estuary"));
    };
    await edit(single);
    await edit(sharded);
    const [, singleRebuildMs] = await timed(() => reindexCorpus(options(single, dims)));
    const [again, shardedRebuildMs] = await timed(() => coordinateShardedReindex(o, starter()));
    const merged = again.output as MergeResult;
    return {
      passages,
      files,
      shards: first.shards,
      single_build_ms: Math.round(singleMs),
      sharded_build_ms: Math.round(shardedMs),
      sharded_vs_single_build: Number((shardedMs / singleMs).toFixed(3)),
      single_rebuild_one_file_ms: Math.round(singleRebuildMs),
      sharded_rebuild_one_file_ms: Math.round(shardedRebuildMs),
      sharded_vs_single_rebuild: Number((shardedRebuildMs / singleRebuildMs).toFixed(3)),
      rebuild_reused_shards: merged.reused,
      rebuild_status: merged.status,
    };
  } finally {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  }
}

export const suite: Suite = {
  name: "scale",
  description: "sharded build vs single, fan-out search over shards, IVF-PQ+refine at 1M×384 (with a 10M projection)",
  async run(ctx) {
    const only =
      ctx.args
        .find((a) => a.startsWith("--only="))
        ?.slice(7)
        .split(",") ?? (ctx.args.includes("--only") ? ctx.args[ctx.args.indexOf("--only") + 1]?.split(",") : undefined);
    const want = (s: string) => !only || only.includes(s);
    const figures: Figure[] = [];
    const summary: Record<string, number | string | boolean | null> = {};
    const notes: string[] = [];

    if (want("build")) {
      const b = await buildSection(ctx.quick, ctx.log);
      for (const [k, v] of Object.entries(b)) summary[`build_${k}`] = v;
      figures.push(
        figure(`full build, ${b.passages} passages: single run`, b.single_build_ms, "ms"),
        figure(`full build: sharded (${b.shards} shards, in-process map)`, b.sharded_build_ms, "ms"),
        figure("full build: sharded ÷ single", b.sharded_vs_single_build, "×"),
        figure(
          "rebuild after one changed file: sharded ÷ single",
          b.sharded_vs_single_rebuild,
          "×",
          undefined,
          `${b.rebuild_reused_shards} of ${b.shards} shards reused`,
        ),
      );
      notes.push(
        "build: hashing embedder (384 dims), Flat index, fs store in /tmp; the in-process map shares this machine's cores, so the full-build ratio measures the sharded path's overhead, not Lambda parallelism.",
      );
    }

    const fanoutModule = new URL("../scale-fanout.ts", import.meta.url);
    if (want("fanout") && existsSync(fanoutModule)) {
      const { measureFanout } = await import(fanoutModule.href);
      const f = (await measureFanout({
        n: ctx.quick ? 20_000 : 200_000,
        dimensions: 384,
        shards: [2, 4],
        queries: ctx.quick ? 50 : 200,
        log: ctx.log,
      })) as Record<string, number>;
      for (const [k, v] of Object.entries(f)) summary[`fanout_${k}`] = v;
      for (const [k, v] of Object.entries(f))
        if (k.endsWith("p50_ms") || k.includes("ratio"))
          figures.push(figure(`fan-out ${k}`, v, k.endsWith("ms") ? "ms" : "×"));
      figures.push(figure("fan-out answers equal to the single index's top-k", f.exact_share, ""));
      notes.push(
        `fanout: ${f.n}×${f.dimensions} Flat, k = ${f.k}, dense search only; local = every shard file in this process (SEARCH_SHARDS=local), http = shard worker processes on loopback (the local stand-in for shard Lambdas; on ${cpus().length} cores the workers share the CPU, so fan-out cannot run the shards in parallel here).`,
      );
    }

    if (want("ann")) {
      const { measureAnnAtScale } = await import("../scale-ann.ts");
      const n = ctx.quick ? 50_000 : 1_000_000;
      const a = await measureAnnAtScale({ n, dimensions: 384, queries: ctx.quick ? 100 : 500, log: ctx.log });
      for (const [k, v] of Object.entries(a)) summary[`ann_${k}`] = v;
      const recall = Number(a.recall_at_20);
      const ratio = Number(a.loaded_rss_ratio_vs_flat);
      const bytesRatio = Number(a.bytes_ratio_vs_flat);
      figures.push(
        figure(`ivfpq-refine recall@20 at ${n}×384`, recall, "", { text: "≥ 0.9", met: recall >= 0.9 }),
        figure("ivfpq-refine bytes ÷ flat", bytesRatio, "×", { text: "≤ 0.3", met: bytesRatio <= 0.3 }),
        figure("ivfpq-refine resident memory ÷ flat", ratio, "×", { text: "≤ 0.3", met: ratio <= 0.3 }),
        figure("ivfpq-refine p50 ÷ flat p50", Number(a.p50_ratio_vs_flat), "×"),
      );
      // Projection (not measured): bytes scale with the per-vector figure measured above.
      const perVector = Number(a.ann_bytes_per_vector);
      const tenM = (perVector * 10_000_000) / 1024 ** 3;
      summary.projected_10m_ann_gib = Number(tenM.toFixed(2));
      summary.projected_10m_flat_gib = Number(((1536 * 10_000_000) / 1024 ** 3).toFixed(2));
      notes.push(
        `ann: projection, not measured: 10M×384 needs ~${tenM.toFixed(1)} GiB as ivfpq-refine (${perVector} B/vector measured at ${n}) against ${summary.projected_10m_flat_gib} GiB Flat; one search function (10 GB) holds it.`,
      );
    }
    return { suite: "scale", figures, summary, notes };
  },
};
