// Query fan-out over index shards, with the real parts: one corpus built twice into s3rver (one
// index.faiss, and INDEX_SHARDS=4 → index-0..3.faiss), four shard workers as child processes
// (functions/shard/server.ts, real HTTP, real faiss-node), and the search service as deployed
// (createSearchService) with SEARCH_SHARDS=http. A shard that never answers, or is not there at
// all, leaves partial results with a warning, never a 5xx.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { handler as shardLambdaHandler } from "../../functions/shard/handler.ts";
import { createSearchService, type SearchService } from "../../functions/runtime/search-deps.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { computeHashingStats, createHashingEmbedder, hashingIdentity } from "../../shared/adapters/hash-embedder.ts";
import { createLambdaShardClient } from "../../shared/adapters/shard-clients.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { loadConfig } from "../../shared/core/config.ts";
import type { ObjectStore, SnapshotManifest } from "../../shared/core/ports.ts";
import { publishSnapshot } from "../../shared/core/publish.ts";
import { createFanoutIndex } from "../../shared/core/sharded-index.ts";
import { indexShardsOf, newSnapshotVersion } from "../../shared/core/snapshot.ts";
import type { Passage } from "../../shared/core/types.ts";
import { type ShardWorkers, startShardWorkers } from "../../scripts/local/shard-workers.ts";
import { cleanEnv } from "../helpers/child.ts";
import { type LocalS3, localS3Env, startLocalS3 } from "../helpers/s3rver.ts";

const DIMS = 256;
const SHARDS = 4;

/** A seeded corpus of topical passages: words drawn from a few topics, so queries have real neighbours. */
function corpus(n: number): Passage[] {
  const topics = [
    "wing lift drag airfoil boundary layer flow separation",
    "heat transfer conduction convection plate temperature",
    "shock wave supersonic mach pressure nozzle",
    "turbulent jet mixing velocity profile",
    "panel flutter vibration structure load",
    "orbit satellite reentry vehicle ablation",
  ].map((t) => t.split(" "));
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const out: Passage[] = [];
  for (let i = 0; i < n; i++) {
    const topic = topics[Math.floor(rand() * topics.length)];
    const other = topics[Math.floor(rand() * topics.length)];
    const words = Array.from({ length: 12 }, () => (rand() < 0.8 ? topic : other)[Math.floor(rand() * 7)]);
    const text = `${words.join(" ")} study ${i}`;
    out.push({ id: `d${i}#0`, docId: `d${i}`, text, source: `corpus/d${i}.txt`, start: 0, end: text.length });
  }
  return out;
}

const QUERIES = [
  "boundary layer separation on a wing",
  "heat conduction in a flat plate",
  "supersonic nozzle shock",
  "turbulent jet velocity",
  "panel flutter",
  "satellite reentry ablation",
  "mach number pressure",
  "drag of an airfoil",
];

let s3: LocalS3;
let store: ObjectStore;
let version: string;
let manifest: SnapshotManifest;
let workers: ShardWorkers | undefined;
const urls: string[] = [];
let silent: Server;
let silentUrl: string;
const services: SearchService[] = [];

async function publish(prefix: string, passages: Passage[], indexShards: number): Promise<SnapshotManifest> {
  const stats = computeHashingStats(
    passages.map((p) => p.text),
    DIMS,
  );
  const embedder = createHashingEmbedder({ dimensions: DIMS });
  const built = await buildSnapshot({
    passages,
    embed: (texts) => embedder.embedDocuments(texts),
    embedder: hashingIdentity(DIMS),
    corpusStats: stats,
    indexType: "flat",
    indexBuilder: faissIndexBuilder,
    indexShards,
    version,
  });
  await publishSnapshot(store, { indexPrefix: prefix, manifest: built.manifest, files: built.files });
  return built.manifest;
}

const baseEnv = () => ({
  ...localS3Env(s3),
  EMBEDDER: "hashing",
  HASHING_DIMENSIONS: String(DIMS),
  RERANKER: "none",
  LOG_LEVEL: "SILENT",
  INDEX_REFRESH_S: "0",
});

function service(extra: Record<string, string>): SearchService {
  const svc = createSearchService(loadConfig({ ...baseEnv(), ...extra }), { quiet: true });
  services.push(svc);
  return svc;
}

interface Hit {
  id: string;
  dense: { score: number; rank: number } | null;
}
interface Answer {
  results: Hit[];
  warnings: string[];
  retrieval: string;
  shards?: { total: number; answered: number; missing: Array<{ shard: number; code: string; message: string }> };
}

async function search(svc: SearchService, body: Record<string, unknown>): Promise<{ status: number; json: Answer }> {
  const res = await svc.app.request("/search", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Answer };
}

const dense = (query: string, k = 10) => ({ query, k, candidates: k, retrieval: "dense" });
const ranking = (a: Answer) => a.results.map((h) => [h.id, h.dense?.score]);

const savedEnv = { ...process.env };

beforeAll(async () => {
  s3 = await startLocalS3();
  // The service's S3 client reads its credentials the SDK's way (the environment), as on Lambda.
  process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
  store = createStore(loadConfig(localS3Env(s3)));
  version = newSnapshotVersion(new Date());
  const passages = corpus(900);
  await publish("single/", passages, 1);
  manifest = await publish("sharded/", passages, SHARDS);
  workers = await startShardWorkers({
    shards: SHARDS,
    env: cleanEnv({ ...localS3Env(s3), INDEX_PREFIX: "sharded/" }),
  });
  urls.push(...workers.urls);
  // Accepts connections and never answers: a shard stuck past SHARD_TIMEOUT_MS.
  silent = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  for (const s of services) s.close();
  await workers?.close();
  silent?.closeAllConnections();
  await new Promise((r) => silent?.close(r));
  await s3?.close();
  process.env = savedEnv;
});

describe("index shards in the snapshot", () => {
  it("INDEX_SHARDS=4 publishes four contiguous index files covering every passage", () => {
    expect(manifest.format_version).toBe(3);
    expect(manifest.index_shards?.map((s) => s.file)).toEqual([0, 1, 2, 3].map((i) => `index-${i}.faiss`));
    expect(manifest.index_shards?.map((s) => s.count)).toEqual([225, 225, 225, 225]);
    expect(manifest.files["index.faiss"]).toBeUndefined();
  });

  it("SEARCH_SHARDS=local loads all four files and answers as the single index does", async () => {
    const single = service({ INDEX_PREFIX: "single/" });
    const all = service({ INDEX_PREFIX: "sharded/" });
    for (const q of QUERIES) {
      const a = await search(single, dense(q));
      const b = await search(all, dense(q));
      expect(b.status).toBe(200);
      expect(ranking(b.json)).toEqual(ranking(a.json));
      expect(b.json.shards).toBeUndefined();
    }
  });
});

describe("fan-out over shard workers (SEARCH_SHARDS=http)", () => {
  it("four shards answer exactly the single index's top-k, scores included", async () => {
    const single = service({ INDEX_PREFIX: "single/" });
    const fan = service({ INDEX_PREFIX: "sharded/", SEARCH_SHARDS: "http", SHARD_URLS: urls.join(",") });
    for (const q of QUERIES) {
      for (const k of [1, 10, 40]) {
        const a = await search(single, dense(q, k));
        const b = await search(fan, dense(q, k));
        expect(b.status).toBe(200);
        expect(b.json.warnings.filter((w) => w.includes("shard"))).toEqual([]);
        expect(b.json.shards).toEqual({ total: 4, answered: 4, missing: [] });
        expect(ranking(b.json)).toEqual(ranking(a.json));
        expect(b.json.results.length).toBe(k);
      }
    }
    // Hybrid fuses the same dense side with BM25: identical answers too.
    const h = { query: QUERIES[0], k: 10, retrieval: "hybrid" };
    expect(ranking((await search(fan, h)).json)).toEqual(ranking((await search(single, h)).json));
  });

  it("a shard that times out leaves the other shards' exact top-k and a warning naming it, status 200", async () => {
    const single = service({ INDEX_PREFIX: "single/" });
    const targets = [...urls];
    targets[2] = silentUrl;
    const fan = service({
      INDEX_PREFIX: "sharded/",
      SEARCH_SHARDS: "http",
      SHARD_URLS: targets.join(","),
      SHARD_TIMEOUT_MS: "300",
      SHARD_LOAD_TIMEOUT_MS: "300",
    });
    const lost = indexShardsOf(manifest)[2];
    const ordinalOf = (id: string) => Number(id.slice(1, id.indexOf("#")));
    for (const q of QUERIES.slice(0, 3)) {
      const b = await search(fan, dense(q, 10));
      expect(b.status).toBe(200);
      expect(b.json.shards).toMatchObject({ total: 4, answered: 3, missing: [{ shard: 2, code: "timeout" }] });
      expect(b.json.warnings.join(" ")).toMatch(
        /index shards: 1 of 4 did not answer \(shard 2: timed out after 300 ms\)/,
      );
      // Exact over what answered: the single index's ranking without shard 2's passages.
      const full = await search(single, dense(q, 200));
      const expected = full.json.results
        .filter((h) => {
          const o = ordinalOf(h.id);
          return o < lost.offset || o >= lost.offset + lost.count;
        })
        .slice(0, 10);
      expect(ranking(b.json)).toEqual(ranking({ ...full.json, results: expected }));
    }
  });

  it("no shard answering: dense answers empty with a warning, hybrid falls back to BM25 (never a 5xx)", async () => {
    const down = "http://127.0.0.1:9"; // the discard port: connection refused
    const fan = service({
      INDEX_PREFIX: "sharded/",
      SEARCH_SHARDS: "http",
      SHARD_URLS: [silentUrl, down, down, down].join(","),
      SHARD_TIMEOUT_MS: "200",
      SHARD_LOAD_TIMEOUT_MS: "200",
    });
    // Nothing loaded the version, yet it goes live: shards load on first use, and until they
    // answer a query says which are missing.
    const d = await search(fan, dense(QUERIES[0]));
    expect(d.status).toBe(200);
    expect(d.json.results).toEqual([]);
    expect(d.json.shards).toMatchObject({ total: 4, answered: 0 });
    expect(d.json.shards?.missing.map((m) => m.code)).toEqual(["timeout", "unavailable", "unavailable", "unavailable"]);
    expect(d.json.warnings.join(" ")).toMatch(/index shards: none of 4 answered .*no dense results/);
    const h = await search(fan, { query: QUERIES[0], k: 5, retrieval: "hybrid" });
    expect(h.status).toBe(200);
    expect(h.json.retrieval).toBe("sparse");
    expect(h.json.results.length).toBe(5);
    expect(h.json.warnings.join(" ")).toMatch(/results are sparse \(BM25\) only/);
  });

  it("shard workers refuse a shard they do not serve, a bad vector and bad JSON with 400", async () => {
    const post = (body: string) =>
      fetch(`${urls[0]}/shard/search`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const wrong = await post(JSON.stringify({ version, shard: 1, vector: [0.1], k: 3 }));
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: { code: "invalid_request", message: /serves shard 0, not 1/ } });
    const dims = await post(JSON.stringify({ version, shard: 0, vector: [0.1, 0.2], k: 3 }));
    expect(dims.status).toBe(400);
    expect(await dims.json()).toMatchObject({ error: { message: /2 dimensions, the index 256/ } });
    const junk = await post("{not json");
    expect(junk.status).toBe(400);
    const unknown = await post(
      JSON.stringify({ version: newSnapshotVersion(new Date(0)), shard: 0, vector: [1], k: 0 }),
    );
    // A version the bucket does not hold: the snapshot is the problem, not the request's shape.
    expect(unknown.status).toBe(502);
    expect(await unknown.json()).toMatchObject({ error: { code: "snapshot_invalid" } });
    const health = (await (await fetch(`${urls[0]}/health`)).json()) as { shard_id: number; loaded: unknown[] };
    expect(health.shard_id).toBe(0);
    expect(health.loaded).toEqual([{ version, shard: 0, vectors: 225, offset: 0 }]);
  });
});

describe("fan-out through the shard Lambda handler (SEARCH_SHARDS=lambda)", () => {
  it("the Lambda client and handler answer as the HTTP workers do", async () => {
    const env = { ...baseEnv(), INDEX_PREFIX: "sharded/" };
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      // One handler instance serves every shard here (SHARD_ID unset); deployed, each shard has its own.
      const invoked: string[] = [];
      const client = createLambdaShardClient({
        functions: ["shard-0", "shard-1", "shard-2", "shard-3"],
        client: {
          async send(command) {
            const input = (command as { input: { FunctionName: string; Payload: Uint8Array } }).input;
            invoked.push(input.FunctionName);
            const out = await shardLambdaHandler(JSON.parse(new TextDecoder().decode(input.Payload)));
            return { StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(out)) };
          },
        },
      });
      const index = createFanoutIndex({
        version,
        dimensions: DIMS,
        shards: indexShardsOf(manifest),
        client,
        timeoutMs: 5000,
      });
      const embedder = createHashingEmbedder({ dimensions: DIMS, stats: manifest.corpus_stats as never });
      const q = await embedder.embedQuery(QUERIES[1]);
      const got = await index.searchShards(q, 10);
      expect(got.missing).toEqual([]);
      expect(new Set(invoked)).toEqual(new Set(["shard-0", "shard-1", "shard-2", "shard-3"]));
      // Same as the HTTP fan-out's top-10 for the same query.
      const fan = service({ INDEX_PREFIX: "sharded/", SEARCH_SHARDS: "http", SHARD_URLS: urls.join(",") });
      const viaHttp = await search(fan, dense(QUERIES[1], 10));
      expect(got.ordinals.map((o) => `d${o}#0`)).toEqual(viaHttp.json.results.map((h) => h.id));
      // A refusal comes back as a value the client turns into a missing shard, not a crash.
      const bad = await shardLambdaHandler({ version, shard: 9, vector: [1], k: 1 });
      expect(bad).toMatchObject({ error: { code: "invalid_request", status: 400 } });
    } finally {
      process.env = saved;
    }
  });
});
