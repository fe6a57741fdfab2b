// The reindex for a corpus larger than one invocation (docs/REINDEX.md, "A corpus larger than one
// invocation"): a coordinator cuts the sorted listing into key-range shards and starts one workflow
// execution (Step Functions on AWS, shared/core/state-machine.ts locally); shard workers read, chunk
// and embed their keys (through the same embedding cache) and write partial outputs named by a hash
// of their keys and ETags; the merge assembles the shards in key order, through the same steps as the
// single run (CorpusAssembly, buildAssembledSnapshot, publishBuild), and flips the pointer against the
// ETag the coordinator read. So a sharded build publishes the same snapshot a single run would.
//
// - Duplicate events start nothing: the execution name is a hash of the listing, the settings and the
//   live pointer's ETag, and a second start of the same name is refused by the engine.
// - Unchanged shards are reused: a shard whose objects (keys + ETags) did not change keeps its output.
// - A shard that still fails after its retries fails the execution before the merge: the pointer stays
//   where it was; the next run finds every finished shard's output and redoes only the missing ones.
// - A lost pointer flip (another build published first) re-plans from a fresh listing, reusing shards.
import { sameIdentity } from "./embedding.ts";
import { createEmbeddingCache, embedThroughCache } from "./embedding-cache.ts";
import { PreconditionFailedError, SnapshotInvalidError, ValidationError } from "./errors.ts";
import type { Embedder, EmbedderUsage, ObjectInfo, ObjectStore } from "./ports.ts";
import { systemClock } from "./ports.ts";
import {
  type BuildSetting,
  buildAssembledSnapshot,
  buildSettingOf,
  CorpusAssembly,
  isUpToDate,
  listCorpusObjects,
  logPublished,
  type ObjectReadContext,
  type ObjectRecord,
  publishBuild,
  type ReindexOptions,
  type ReindexResult,
  ReindexTimeoutError,
  readCorpusObject,
  readLiveSnapshot,
  tidyAfterPublish,
} from "./reindex.ts";
import { DEFAULT_WORKFLOW, reindexStateMachine, runStateMachine } from "./state-machine.ts";
import { encodePassageStore, openPassageStore, sha256Hex } from "./snapshot.ts";
import type { LogFn } from "./snapshot-loader.ts";
import type { EmbedderIdentity, Passage } from "./types.ts";
import type { SkippedInput } from "./documents.ts";

export const SHARD_PLAN_FORMAT = 1;

export interface ShardingSettings {
  /** A shard holds at most this many bytes of corpus objects (a larger single object is its own shard). */
  maxShardBytes: number;
  /** ... and at most this many estimated passages, whichever limit comes first. */
  maxShardPassages: number;
}

export const DEFAULT_SHARDING: ShardingSettings = { maxShardBytes: 200 * 1024 * 1024, maxShardPassages: 100_000 };

export interface ShardedReindexOptions extends ReindexOptions {
  sharding?: Partial<ShardingSettings>;
}

export interface PlannedShard {
  index: number;
  /** sha256 of the embedder, chunking and the shard's keys + ETags: names its output. */
  hash: string;
  /** [start, end) into the plan's listing. */
  start: number;
  end: number;
  bytes: number;
  estimated_passages: number;
  /** Key prefix of the shard's output (shard.json, passages.bin, vectors.f32). */
  output: string;
}

/** index/builds/<build id>/plan.json: everything a shard worker and the merge need. */
export interface ShardPlan {
  format: number;
  build_id: string;
  created_at: string;
  /** The pointer ETag read before listing (null: nothing published); the merge flips against it. */
  pointer_etag: string | null;
  live_version: string | null;
  corpus_prefix: string;
  setting: BuildSetting;
  listing: Array<{ key: string; etag: string; size: number }>;
  shards: PlannedShard[];
}

export type ExecutionStatus = "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED" | "PENDING_REDRIVE";

export interface ExecutionStart {
  /** False when an execution of that name already existed (then `status` is its status). */
  started: boolean;
  id: string;
  status: ExecutionStatus;
  /** The local runner, which runs the execution to its end: the merge's result. */
  output?: unknown;
}

/** Starts workflow executions: Step Functions (shared/adapters/step-functions.ts) or the local runner. */
export interface ExecutionStarter {
  /** Starts an execution named `name` unless one of that name exists. */
  start(name: string, input: { plan_key: string; shards: number[] }): Promise<ExecutionStart>;
}

export type CoordinateStatus = "started" | "running" | "unchanged";

export interface CoordinateResult {
  status: CoordinateStatus;
  build_id: string | null;
  plan_key: string | null;
  /** Execution id (ARN on AWS). */
  execution: string | null;
  /** The local runner's merge result (on AWS the execution continues after the coordinator returns). */
  output?: unknown;
  objects: number;
  shards: number;
  /** Shards whose output from an earlier build is reused as is. */
  reused: number;
  live_version: string | null;
}

export interface ShardBuildResult {
  shard: number;
  hash: string;
  reused: boolean;
  objects: number;
  passages: number;
  embedded: number;
  cached: number;
}

export type MergeStatus = "published" | "superseded" | "replanned";

export interface MergeResult extends Omit<ReindexResult, "status"> {
  status: MergeStatus;
  build_id: string;
  shards: number;
  reused: number;
  /** When the flip was lost to a newer build: the coordinator's answer for the fresh listing. */
  replanned?: CoordinateResult;
}

// ---------- keys and planning ----------

export function buildsPrefix(indexPrefix: string): string {
  return `${indexPrefix}builds/`;
}

export function planKey(indexPrefix: string, buildId: string): string {
  return `${buildsPrefix(indexPrefix)}${buildId}/plan.json`;
}

function shardOutputPrefix(indexPrefix: string, hash: string): string {
  return `${buildsPrefix(indexPrefix)}shards/${hash}/`;
}

const SHARD_FILE = "shard.json";
/** Executions of one corpus state after failures (each a fresh name) before the coordinator gives up. */
const MAX_RESTARTS = 20;
const SHARD_PASSAGES = "passages.bin";
const SHARD_VECTORS = "vectors.f32";

/**
 * Cuts a key-sorted listing into contiguous shards: a shard closes before the object that would take
 * it over either limit. Passages are estimated from bytes and the chunk size (~4 bytes per token).
 */
export function cutShards(
  listing: ReadonlyArray<{ size: number }>,
  limits: ShardingSettings,
  chunking: { max_tokens: number; overlap: number },
): Array<{ start: number; end: number; bytes: number; estimated_passages: number }> {
  if (!(limits.maxShardBytes > 0) || !(limits.maxShardPassages > 0)) {
    throw new ValidationError("shard limits must be positive");
  }
  const bytesPerPassage = Math.max(1, (chunking.max_tokens - chunking.overlap) * 4);
  const estimate = (bytes: number) => Math.ceil(bytes / bytesPerPassage);
  const out: Array<{ start: number; end: number; bytes: number; estimated_passages: number }> = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < listing.length; i++) {
    const size = Math.max(0, listing[i].size);
    if (i > start && (bytes + size > limits.maxShardBytes || estimate(bytes + size) > limits.maxShardPassages)) {
      out.push({ start, end: i, bytes, estimated_passages: estimate(bytes) });
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (listing.length > start) out.push({ start, end: listing.length, bytes, estimated_passages: estimate(bytes) });
  return out;
}

function normEtag(etag: string): string {
  return etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/** What a shard's output depends on: its objects, how they are chunked, and the embedder. */
function shardHash(
  setting: BuildSetting,
  corpusPrefix: string,
  objects: ReadonlyArray<{ key: string; etag: string }>,
): string {
  return sha256Hex(
    JSON.stringify([
      SHARD_PLAN_FORMAT,
      setting.identity,
      setting.chunking,
      corpusPrefix,
      objects.map((o) => [o.key, normEtag(o.etag)]),
    ]),
  );
}

async function readJson<T>(store: ObjectStore, key: string): Promise<T | null> {
  const got = await store.get(key);
  if (!got) return null;
  try {
    return JSON.parse(new TextDecoder().decode(got.body)) as T;
  } catch (e) {
    throw new SnapshotInvalidError(`${key} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export async function readPlan(store: ObjectStore, key: string): Promise<ShardPlan> {
  const plan = await readJson<ShardPlan>(store, key);
  if (!plan) throw new ValidationError(`no build plan at ${key}`);
  if (plan.format !== SHARD_PLAN_FORMAT || !Array.isArray(plan.shards) || !Array.isArray(plan.listing)) {
    throw new SnapshotInvalidError(`${key} is not a build plan of format ${SHARD_PLAN_FORMAT}`);
  }
  return plan;
}

// ---------- shared setup ----------

interface RunParts {
  embedder: Embedder;
  identity: EmbedderIdentity;
  setting: BuildSetting;
  log: LogFn;
  ignorePrefixes: string[];
  readCtx: ObjectReadContext;
  checkDeadline: (stage: string) => void;
}

async function runParts(opts: ShardedReindexOptions): Promise<RunParts> {
  const embedder = typeof opts.embedder === "function" ? await opts.embedder() : opts.embedder;
  const identity = embedder.identity;
  const log = opts.log ?? (() => {});
  const reserveMs = opts.reserveMs ?? 10_000;
  return {
    embedder,
    identity,
    log,
    setting: buildSettingOf(opts, identity),
    ignorePrefixes: [opts.indexPrefix, opts.cachePrefix].filter((p) => p !== opts.corpusPrefix),
    readCtx: {
      store: opts.store,
      corpusPrefix: opts.corpusPrefix,
      chunking: opts.chunking,
      maxObjectBytes: opts.maxObjectBytes ?? 256 * 1024 * 1024,
      log,
      sleep: opts.sleep ?? ((ms) => new Promise<void>((r) => setTimeout(r, ms))),
      random: opts.random ?? Math.random,
    },
    checkDeadline: (stage) => {
      const left = opts.remainingTimeMs?.();
      if (left !== undefined && left < reserveMs) throw new ReindexTimeoutError(stage, left);
    },
  };
}

/** shard.json: the shard's objects (documents without their passages), digests and counts. */
interface ShardOutput {
  format: number;
  hash: string;
  identity: EmbedderIdentity;
  objects: Array<Omit<ObjectRecord, "docs"> & { docs: Array<{ id: string; passages: number }> }>;
  passages: number;
  files: Record<string, { bytes: number; sha256: string }>;
  embedding: { embedded: number; cached: number; calls: number; tokens: number };
  /** False when an object could not be read: the output serves this build but is never reused. */
  reusable: boolean;
  /** The build that wrote it (a later build that finds it reuses it). */
  build_id: string;
}

async function readShardOutput(store: ObjectStore, prefix: string): Promise<ShardOutput | null> {
  return readJson<ShardOutput>(store, `${prefix}${SHARD_FILE}`).catch(() => null);
}

function reusableOutput(out: ShardOutput | null, hash: string, identity: EmbedderIdentity): boolean {
  return (
    out !== null &&
    out.format === SHARD_PLAN_FORMAT &&
    out.hash === hash &&
    out.reusable === true &&
    sameIdentity(out.identity, identity)
  );
}

// ---------- coordinator ----------

/**
 * Plans a sharded build of the current corpus and starts its execution; a no-op when the live
 * snapshot is up to date, and "running" when an execution for exactly this state already exists.
 */
export async function coordinateShardedReindex(
  opts: ShardedReindexOptions,
  starter: ExecutionStarter,
): Promise<CoordinateResult> {
  const { store, indexPrefix, corpusPrefix } = opts;
  const parts = await runParts(opts);
  const { log, setting } = parts;
  const limits = { ...DEFAULT_SHARDING, ...opts.sharding };
  // Pointer first, listing second, as in the single run: a publish after this read loses the merge's flip.
  const live = await readLiveSnapshot(store, indexPrefix, log);
  const listing = await listCorpusObjects(store, corpusPrefix, parts.ignorePrefixes);
  const none = {
    build_id: null,
    plan_key: null,
    execution: null,
    objects: listing.length,
    shards: 0,
    reused: 0,
    live_version: live?.version ?? null,
  };
  if ((live && isUpToDate(live, listing, setting)) || (!live && listing.length === 0)) {
    log("info", "snapshot is up to date; nothing to do", { version: live?.version ?? null, objects: listing.length });
    return { status: "unchanged", ...none };
  }
  const cuts = cutShards(listing, limits, setting.chunking);
  const shards: PlannedShard[] = cuts.map((c, index) => {
    const hash = shardHash(setting, corpusPrefix, listing.slice(c.start, c.end));
    return { index, hash, ...c, output: shardOutputPrefix(indexPrefix, hash) };
  });
  const outputs = await Promise.all(shards.map((s) => readShardOutput(store, s.output)));
  const reused = outputs.filter((o, i) => reusableOutput(o, shards[i].hash, parts.identity)).length;
  const buildId = sha256Hex(
    JSON.stringify([
      SHARD_PLAN_FORMAT,
      setting,
      corpusPrefix,
      listing.map((o) => [o.key, normEtag(o.etag)]),
      live?.etag ?? null,
    ]),
  ).slice(0, 40);
  const plan: ShardPlan = {
    format: SHARD_PLAN_FORMAT,
    build_id: buildId,
    created_at: new Date().toISOString(),
    pointer_etag: live?.etag ?? null,
    live_version: live?.version ?? null,
    corpus_prefix: corpusPrefix,
    setting,
    listing: listing.map((o) => ({ key: o.key, etag: o.etag, size: o.size })),
    shards,
  };
  const key = planKey(indexPrefix, buildId);
  // Same build id = same listing, settings and pointer: an existing plan is the same plan.
  if (!(await store.head(key))) await store.put(key, JSON.stringify(plan), { contentType: "application/json" });
  // Step Functions keeps an execution name for 90 days: a build of this state that failed (a shard
  // that kept failing) is retried under the next suffix, reusing every shard that did finish.
  const input = { plan_key: key, shards: shards.map((s) => s.index) };
  let exec: ExecutionStart | undefined;
  for (let k = 0; k < MAX_RESTARTS; k++) {
    exec = await starter.start(k === 0 ? `reindex-${buildId}` : `reindex-${buildId}-${k}`, input);
    if (exec.started || exec.status === "RUNNING" || exec.status === "SUCCEEDED" || exec.status === "PENDING_REDRIVE")
      break;
  }
  if (!exec || (!exec.started && exec.status !== "RUNNING" && exec.status !== "SUCCEEDED")) {
    throw new ValidationError(`build ${buildId} failed ${MAX_RESTARTS} times; fix the cause, then upload again`);
  }
  const result: CoordinateResult = {
    status: exec.started ? "started" : "running",
    build_id: buildId,
    plan_key: key,
    execution: exec.id,
    ...(exec.output !== undefined ? { output: exec.output } : {}),
    objects: listing.length,
    shards: shards.length,
    reused,
    live_version: live?.version ?? null,
  };
  log("info", exec.started ? "sharded reindex started" : "a sharded reindex of this corpus state is already running", {
    ...result,
    trigger: opts.trigger?.slice(0, 20) ?? [],
  });
  return result;
}

// ---------- shard worker ----------

/** Builds one shard's output (or finds it already built): read, chunk and embed its objects. */
export async function buildReindexShard(
  opts: ShardedReindexOptions,
  req: { plan_key: string; shard: number },
): Promise<ShardBuildResult> {
  const { store } = opts;
  const parts = await runParts(opts);
  const { log, identity, embedder } = parts;
  const plan = await readPlan(store, req.plan_key);
  const entry = plan.shards[req.shard];
  if (!entry || entry.index !== req.shard) throw new ValidationError(`plan ${plan.build_id} has no shard ${req.shard}`);
  if (!sameIdentity(plan.setting.identity, identity)) {
    throw new ValidationError(
      `plan ${plan.build_id} was made for embedder ${plan.setting.identity.kind}/${plan.setting.identity.model}; ` +
        `this worker has ${identity.kind}/${identity.model}`,
    );
  }
  const existing = await readShardOutput(store, entry.output);
  if (reusableOutput(existing, entry.hash, identity)) {
    log("info", "shard output reused", { build_id: plan.build_id, shard: entry.index, hash: entry.hash });
    return {
      shard: entry.index,
      hash: entry.hash,
      reused: true,
      objects: entry.end - entry.start,
      passages: existing!.passages,
      embedded: 0,
      cached: 0,
    };
  }
  const usage0: EmbedderUsage = { ...embedder.usage() };
  const cache = createEmbeddingCache({ store, prefix: opts.cachePrefix, identity, log });
  const d = identity.dimensions;
  const passages: Passage[] = [];
  const rows: Float32Array[] = [];
  const objects: ShardOutput["objects"] = [];
  let embedded = 0;
  let cached = 0;
  let reusable = true;
  const stage = `building shard ${entry.index}`;
  for (const info of plan.listing.slice(entry.start, entry.end)) {
    parts.checkDeadline(stage);
    const parsed = await readCorpusObject(parts.readCtx, { ...info });
    if (parsed.unreadable) reusable = false;
    const texts = parsed.docs.flatMap((doc) => doc.passages.map((p) => p.text));
    const hashes = parsed.docs.flatMap((doc) => doc.hashes);
    if (texts.length > 0) {
      const r = await embedThroughCache({
        cache,
        corpusKey: info.key,
        texts,
        hashes,
        embedder,
        batchSize: Math.max(1, opts.embedBatchSize ?? 128),
        beforeBatch: () => parts.checkDeadline(stage),
        log,
      });
      embedded += r.embedded;
      cached += r.cached;
      for (const h of hashes) rows.push(r.vectors.get(h)!);
    }
    for (const doc of parsed.docs) passages.push(...doc.passages);
    objects.push({
      key: parsed.key,
      etag: parsed.etag,
      unreadable: parsed.unreadable,
      vanished: parsed.vanished,
      skips: parsed.skips,
      docs: parsed.docs.map((doc) => ({ id: doc.id, passages: doc.passages.length })),
    });
  }
  const vectors = new Float32Array(rows.length * d);
  for (const [i, v] of rows.entries()) vectors.set(v, i * d);
  const files: Record<string, Uint8Array> = {
    [SHARD_PASSAGES]: encodePassageStore(passages),
    [SHARD_VECTORS]: new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength),
  };
  // Data first, shard.json last: an output without shard.json is unfinished and is rebuilt.
  for (const [name, bytes] of Object.entries(files)) {
    await store.put(`${entry.output}${name}`, bytes, { contentType: "application/octet-stream" });
  }
  const u = embedder.usage();
  const output: ShardOutput = {
    format: SHARD_PLAN_FORMAT,
    hash: entry.hash,
    identity,
    objects,
    passages: passages.length,
    files: Object.fromEntries(
      Object.entries(files).map(([n, b]) => [n, { bytes: b.byteLength, sha256: sha256Hex(b) }]),
    ),
    embedding: { embedded, cached, calls: u.calls - usage0.calls, tokens: u.tokens - usage0.tokens },
    reusable,
    build_id: plan.build_id,
  };
  await store.put(`${entry.output}${SHARD_FILE}`, JSON.stringify(output), { contentType: "application/json" });
  log("info", "shard built", {
    build_id: plan.build_id,
    shard: entry.index,
    objects: objects.length,
    passages: passages.length,
    embedded,
    cached,
  });
  return {
    shard: entry.index,
    hash: entry.hash,
    reused: false,
    objects: objects.length,
    passages: passages.length,
    embedded,
    cached,
  };
}

// ---------- merge ----------

async function readShardFile(store: ObjectStore, prefix: string, name: string, out: ShardOutput): Promise<Uint8Array> {
  const got = await store.get(`${prefix}${name}`);
  const want = out.files[name];
  if (!got || !want || got.body.byteLength !== want.bytes || sha256Hex(got.body) !== want.sha256) {
    throw new SnapshotInvalidError(`shard output ${prefix}${name} is missing or does not match its digest`);
  }
  return got.body;
}

/**
 * Assembles every shard in key order, builds the index once (an IVF quantizer is trained once, on the
 * merged vectors), and publishes against the plan's pointer ETag. On a lost flip it re-plans through
 * `replan` (the coordinator with this state machine's starter) instead of publishing an older state.
 */
export async function mergeReindexShards(
  opts: ShardedReindexOptions,
  req: { plan_key: string },
  replan: ExecutionStarter | null,
): Promise<MergeResult> {
  const { store, indexPrefix } = opts;
  const clock = opts.clock ?? systemClock;
  const t0 = clock.now();
  const parts = await runParts(opts);
  const { log, identity } = parts;
  const plan = await readPlan(store, req.plan_key);
  const d = identity.dimensions;
  const assembly = new CorpusAssembly();
  /** For each assembled passage: [shard vectors, row]. */
  const rowOf: Array<[Float32Array, number]> = [];
  const totals = { embedded: 0, cached: 0, calls: 0, tokens: 0 };
  let reused = 0;
  for (const entry of plan.shards) {
    parts.checkDeadline("merging the shards");
    const out = await readShardOutput(store, entry.output);
    if (!out || out.hash !== entry.hash || !sameIdentity(out.identity, identity)) {
      throw new ValidationError(`shard ${entry.index} of build ${plan.build_id} has no output; it was not built`);
    }
    const fromEarlierBuild = out.build_id !== plan.build_id;
    if (fromEarlierBuild) reused++;
    const passageStore = openPassageStore(await readShardFile(store, entry.output, SHARD_PASSAGES, out));
    const raw = await readShardFile(store, entry.output, SHARD_VECTORS, out);
    const vectors = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    if (vectors.length !== out.passages * d || passageStore.count !== out.passages) {
      throw new SnapshotInvalidError(`shard ${entry.index} holds ${out.passages} passages but other counts of data`);
    }
    // A reused shard cost nothing in this build: its passages count as cached.
    totals.embedded += fromEarlierBuild ? 0 : out.embedding.embedded;
    totals.cached += fromEarlierBuild ? out.passages : out.embedding.cached;
    totals.calls += fromEarlierBuild ? 0 : out.embedding.calls;
    totals.tokens += fromEarlierBuild ? 0 : out.embedding.tokens;
    let row = 0;
    for (const o of out.objects) {
      const docs = o.docs.map((doc) => {
        const first = row;
        row += doc.passages;
        return {
          id: doc.id,
          first,
          passages: Array.from({ length: doc.passages }, (_, j) => passageStore.get(first + j)),
        };
      });
      const record: ObjectRecord = { ...o, skips: o.skips as SkippedInput[], docs };
      for (const i of assembly.add(record, log)) {
        for (let j = 0; j < docs[i].passages.length; j++) rowOf.push([vectors, docs[i].first + j]);
      }
    }
  }
  assembly.checkReadable(plan.listing.map((o) => ({ ...o })));
  const built = await buildAssembledSnapshot(opts, assembly, {
    identity,
    checkDeadline: () => parts.checkDeadline("building the index"),
    vectorAt: async (i) => {
      const [vs, row] = rowOf[i];
      return vs.subarray(row * d, (row + 1) * d);
    },
  });
  const base = {
    build_id: plan.build_id,
    shards: plan.shards.length,
    reused,
    previousVersion: plan.live_version,
    attempts: 1,
    counts: {
      objects: plan.listing.length,
      documents: assembly.documents,
      passages: assembly.passages.length,
      skipped: assembly.skipped.length,
    },
    embedding: {
      embedded: totals.embedded,
      cached: totals.cached,
      calls: totals.calls,
      texts: totals.embedded,
      tokens: totals.tokens,
    },
    skipped: assembly.skipped,
  };
  parts.checkDeadline("publishing the snapshot");
  let version: string;
  try {
    ({ version } = await publishBuild({
      store,
      indexPrefix,
      built,
      expectedEtag: plan.pointer_etag,
      build: {
        builder: "reindex",
        chunking: plan.setting.chunking,
        ...(plan.setting.indexParams && Object.keys(plan.setting.indexParams).length > 0
          ? { index_params: plan.setting.indexParams }
          : {}),
        objects: plan.listing.length,
        embedding: base.embedding,
        duration_ms: Math.round(clock.now() - t0),
        attempt: 1,
        sharded: { build_id: plan.build_id, shards: plan.shards.length, reused },
      },
    }));
  } catch (e) {
    if (!(e instanceof PreconditionFailedError)) throw e;
    log("warn", "the pointer changed while the shards were built (another build published); re-planning", {
      build_id: plan.build_id,
    });
    const again = replan ? await coordinateShardedReindex(opts, replan) : null;
    const status: MergeStatus = again && again.status !== "unchanged" ? "replanned" : "superseded";
    return {
      ...base,
      status,
      version: again?.live_version ?? null,
      durationMs: clock.now() - t0,
      ...(again ? { replanned: again } : {}),
    };
  }
  const result: MergeResult = { ...base, status: "published", version, durationMs: clock.now() - t0 };
  logPublished(log, { ...result, status: "published" }, indexPrefix);
  const listing: ObjectInfo[] = plan.listing.map((o) => ({ ...o }));
  await tidyAfterPublish({
    store,
    indexPrefix,
    keepSnapshots: opts.keepSnapshots ?? 3,
    cache: (opts.pruneCache ?? true) ? createEmbeddingCache({ store, prefix: opts.cachePrefix, identity, log }) : null,
    listing,
    log,
  });
  await pruneBuilds(store, indexPrefix, plan, log);
  return result;
}

/** Build outputs older than this that the published plan does not use are deleted. */
const BUILD_OUTPUT_TTL_MS = 60 * 60 * 1000;

/**
 * Deletes other builds' plans and shard outputs the published plan does not reference, once they are
 * an hour old (a build that is still running keeps its fresh outputs). Never throws.
 */
async function pruneBuilds(store: ObjectStore, indexPrefix: string, plan: ShardPlan, log: LogFn): Promise<void> {
  try {
    const keep = new Set(plan.shards.map((s) => s.output));
    const keepPlan = `${buildsPrefix(indexPrefix)}${plan.build_id}/`;
    const cutoff = Date.now() - BUILD_OUTPUT_TTL_MS;
    let deleted = 0;
    for await (const o of store.list(buildsPrefix(indexPrefix))) {
      if (o.key.startsWith(keepPlan) || [...keep].some((p) => o.key.startsWith(p))) continue;
      if (!o.lastModified || o.lastModified.getTime() > cutoff) continue;
      await store.delete(o.key);
      deleted++;
    }
    if (deleted > 0) log("info", "old build outputs pruned", { objects: deleted });
  } catch (e) {
    log("warn", "pruning old build outputs failed", { error: e instanceof Error ? e.message : String(e) });
  }
}

// ---------- the local runner (the local stack, the CLI and the tests) ----------

export interface InProcessWorkflowOptions {
  /** Map concurrency, attempts and retry interval (defaults: DEFAULT_WORKFLOW, the deployed ones). */
  workflow?: Partial<typeof DEFAULT_WORKFLOW>;
  /** Execution names and their status, kept across starters (as Step Functions keeps them). */
  executions?: Map<string, ExecutionStatus>;
  sleep?: (ms: number) => Promise<void>;
}

const LOCAL_SHARD_FUNCTION = "local:reindex-shard";
const LOCAL_MERGE_FUNCTION = "local:reindex-merge";

/**
 * Runs the deployed state machine definition in this process: the Map's shard workers as concurrent
 * calls of buildReindexShard, then mergeReindexShards, with the definition's retries. An execution
 * runs to its end inside start(); names are kept like Step Functions keeps them.
 */
export function createInProcessStarter(
  opts: ShardedReindexOptions,
  o: InProcessWorkflowOptions = {},
): ExecutionStarter & { executions: Map<string, ExecutionStatus> } {
  const definition = reindexStateMachine({
    ...DEFAULT_WORKFLOW,
    ...o.workflow,
    shardFunction: LOCAL_SHARD_FUNCTION,
    mergeFunction: LOCAL_MERGE_FUNCTION,
  });
  const executions = o.executions ?? new Map<string, ExecutionStatus>();
  const starter = {
    executions,
    async start(name: string, input: { plan_key: string; shards: number[] }): Promise<ExecutionStart> {
      const known = executions.get(name);
      if (known) return { started: false, id: name, status: known };
      executions.set(name, "RUNNING");
      try {
        const output = await runStateMachine(definition, input, {
          context: { stateMachineId: "local:reindex", executionName: name },
          sleep: o.sleep,
          invoke: async (fn, payload) => {
            const p = payload as { plan_key: string; shard: number };
            if (fn === LOCAL_SHARD_FUNCTION) return buildReindexShard(opts, p);
            if (fn === LOCAL_MERGE_FUNCTION) return mergeReindexShards(opts, p, starter);
            throw new ValidationError(`no local function ${fn}`);
          },
        });
        executions.set(name, "SUCCEEDED");
        return { started: true, id: name, status: "SUCCEEDED", output };
      } catch (e) {
        executions.set(name, "FAILED");
        throw e;
      }
    },
  };
  return starter;
}
