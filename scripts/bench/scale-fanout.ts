// Dense search latency over one index vs the same vectors cut into 2/4 index shards (INDEX_SHARDS),
// searched two ways: every shard file loaded in this process (SEARCH_SHARDS=local) and fanned out
// to shard worker processes over loopback HTTP (SEARCH_SHARDS=http, functions/shard/server.ts, the
// local stand-in for shard Lambdas). The queries are interleaved across the setups so drift hits
// all of them alike; every fan-out answer is checked against the single index's (exact merge).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeFaissSnapshotIndex, faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createHttpShardClient } from "../../shared/adapters/shard-clients.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { publishSnapshot, readPointer } from "../../shared/core/publish.ts";
import { createFanoutIndex, type FanoutIndex } from "../../shared/core/sharded-index.ts";
import { indexShardsOf, newSnapshotVersion } from "../../shared/core/snapshot.ts";
import { loadSnapshot } from "../../shared/core/snapshot-loader.ts";
import type { Passage } from "../../shared/core/types.ts";
import { type ShardWorkers, startShardWorkers } from "../local/shard-workers.ts";
import { stats } from "./harness.ts";
import { clusteredVectors, row } from "./vectors.ts";

export interface FanoutOptions {
  n: number;
  dimensions: number;
  shards: number[];
  queries: number;
  /** Candidates asked of the dense side per query (the search function's default pool is 50). */
  k?: number;
  log?: (s: string) => void;
}

const round = (x: number, digits = 2) => Number(x.toFixed(digits));

export async function measureFanout(opts: FanoutOptions): Promise<Record<string, number>> {
  const { n, dimensions: d } = opts;
  const k = opts.k ?? 50;
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), "scale-fanout-"));
  const store = createFsStore(dir);
  const workers: ShardWorkers[] = [];
  try {
    const flat = clusteredVectors({ n, d, seed: 11, clusters: Math.max(8, Math.round(n / 500)) });
    const vectors = Array.from({ length: n }, (_, i) => row(flat, d, i));
    const passages: Passage[] = vectors.map((_, i) => ({
      id: `p${i}#0`,
      docId: `p${i}`,
      text: `passage ${i}`,
      start: 0,
      end: 10,
    }));
    const identity = { kind: "hashing" as const, model: "synthetic", dimensions: d, normalized: true };
    const version = newSnapshotVersion(new Date());
    const prefixOf = (s: number) => `index-${s}/`;
    for (const s of [1, ...opts.shards]) {
      log(`fanout: building ${n}×${d} flat as ${s} shard(s)`);
      const built = await buildSnapshot({
        passages,
        vectors,
        embedder: identity,
        indexType: "flat",
        indexBuilder: faissIndexBuilder,
        indexShards: s,
        sparse: false,
        version,
      });
      await publishSnapshot(store, { indexPrefix: prefixOf(s), manifest: built.manifest, files: built.files });
    }
    const load = async (s: number) => {
      const pointer = (await readPointer(store, prefixOf(s)))?.pointer;
      if (!pointer) throw new Error(`no pointer under ${prefixOf(s)}`);
      return loadSnapshot(store, prefixOf(s), pointer, { decodeIndex: decodeFaissSnapshotIndex });
    };
    const single = (await load(1)).index;
    const local = new Map<number, Awaited<ReturnType<typeof load>>>();
    for (const s of opts.shards) local.set(s, await load(s));

    const fanout = new Map<number, FanoutIndex>();
    for (const s of opts.shards) {
      const started = await startShardWorkers({
        shards: s,
        env: { ...process.env, STORE_KIND: "fs", STORE_DIR: dir, INDEX_PREFIX: prefixOf(s) },
      });
      workers.push(started);
      const urls = started.urls;
      const index = createFanoutIndex({
        version,
        dimensions: d,
        shards: indexShardsOf(local.get(s)!.manifest),
        client: createHttpShardClient({ urls }),
        timeoutMs: 10_000,
      });
      const missing = await index.warm({ timeoutMs: 120_000 });
      if (missing.length) throw new Error(`shards did not load: ${JSON.stringify(missing)}`);
      fanout.set(s, index);
    }

    const qs = clusteredVectors({ n: opts.queries + 10, d, seed: 99, clusters: 8 });
    const samples = new Map<string, number[]>();
    const add = (name: string, ms: number) => {
      const a = samples.get(name) ?? [];
      a.push(ms);
      samples.set(name, a);
    };
    let exact = 0;
    let compared = 0;
    for (let qi = 0; qi < opts.queries + 10; qi++) {
      const q = row(qs, d, qi);
      const warm = qi < 10;
      let t = performance.now();
      const want = single.search(q, k);
      if (!warm) add("single", performance.now() - t);
      for (const s of opts.shards) {
        t = performance.now();
        const a = local.get(s)!.index.search(q, k);
        if (!warm) add(`local_${s}`, performance.now() - t);
        t = performance.now();
        const b = await fanout.get(s)!.searchShards(q, k);
        if (!warm) add(`http_${s}`, performance.now() - t);
        if (!warm) {
          compared += 2;
          const same = (x: { ordinals: number[] }) => x.ordinals.join() === want.ordinals.join();
          exact += (same(a) ? 1 : 0) + (same(b) && b.missing.length === 0 ? 1 : 0);
        }
      }
    }
    const out: Record<string, number> = { n, dimensions: d, k, queries: opts.queries };
    const p50 = (name: string) => stats(samples.get(name)!).p50;
    out.single_p50_ms = round(p50("single"), 3);
    for (const s of opts.shards) {
      out[`local_${s}_p50_ms`] = round(p50(`local_${s}`), 3);
      out[`http_${s}_p50_ms`] = round(p50(`http_${s}`), 3);
      out[`http_${s}_p99_ms`] = round(stats(samples.get(`http_${s}`)!).p99, 3);
      out[`local_${s}_ratio_vs_single`] = round(p50(`local_${s}`) / p50("single"));
      out[`http_${s}_ratio_vs_single`] = round(p50(`http_${s}`) / p50("single"));
    }
    out.exact_share = round(exact / Math.max(1, compared), 4);
    return out;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}
