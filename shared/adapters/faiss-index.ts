// VectorIndex over faiss-node: exact inner product (cosine on normalised vectors) and the
// approximate index types of faiss's index factory, built in bounded batches.
//
// faiss-node's own buffer paths are avoided on purpose: Index.fromBuffer copies the bytes twice
// and never frees its VectorIOReader (RSS grows by the index size on every load, measured), and
// toBuffer leaks its VectorIOWriter the same way. Going through a private temp file with
// write()/read() costs one sequential file pass and frees everything.
import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config } from "../core/config.ts";
import { ValidationError } from "../core/errors.ts";
import type { IndexBuilder } from "../core/build.ts";
import type { SnapshotManifest, VectorIndex, VectorSearchResult } from "../core/ports.ts";
import type { IndexSink } from "../core/snapshot-loader.ts";
import { bytesSource, checkFaissFile, checkFaissFileAt, METRIC_INNER_PRODUCT } from "./faiss-file-check.ts";
import {
  FLAT_HEADER_BYTES,
  type NativeFlat,
  type NativeScan,
  parseFlatHeader,
  type RowFormat,
  SimdFlatIndex,
  simdFlatAvailable,
} from "./simd-flat.ts";
import { createSqDecoder, parseSqHeader, type SqHeader } from "./sq-decode.ts";

const require = createRequire(import.meta.url);

/** What faiss-node's Index looks like to us; the typed methods exist only in our patched build. */
interface NativeIndex {
  ntotal(): number;
  getDimension(): number;
  isTrained(): boolean;
  add(x: number[]): void;
  train(x: number[]): void;
  search(x: number[], k: number): { distances: number[]; labels: number[] };
  write(fname: string): void;
  toBuffer(): Buffer;
  addTyped?(x: Float32Array): void;
  searchTyped?(x: Float32Array, k: number): { distances: Float32Array; labels: Float64Array };
  setSearchParameter?(name: string, value: number): void;
  setBuildParameter?(name: string, value: number): boolean;
}

interface FaissModule {
  Index: {
    fromFactory(d: number, descriptor: string, metric?: number): NativeIndex;
    fromBuffer(buf: Buffer): NativeIndex;
    read(fname: string): NativeIndex;
  };
  IndexFlatIP: new (d: number) => NativeIndex;
  /** Our build only (scripts/faiss-node/flat-scan.cc). */
  scanInnerProduct?: NativeScan;
  scanInnerProductKernel?: string;
  scanInnerProductF16?: NativeScan;
  adviseHugePages?: (memory: ArrayBuffer) => boolean;
}

let faissModule: FaissModule | undefined;
function faiss(): FaissModule {
  faissModule ??= require("faiss-node") as FaissModule;
  return faissModule;
}

/** The snapshot's index file name (shared/core/snapshot.ts INDEX_FILE). */
const INDEX_FILE_NAME = "index.faiss";

export type IndexType = Config["indexType"];
export type ConcreteIndexType = Exclude<IndexType, "auto">;
export const INDEX_TYPES: readonly ConcreteIndexType[] = [
  "flat",
  "hnsw",
  "ivf",
  "ivfpq",
  "ivfpq-refine",
  "sq8",
  "fp16",
];

/**
 * "auto" keeps the exact scan while a query reads at most 80 MB: up to this many values stored as
 * fp16 (104K×384, 26K×1536), scanned as halves by our faiss-node build. Beyond it goes approximate.
 */
export const FLAT_MAX_FLOATS = 40_000_000;
/**
 * Above this many floats (16 MB of float32: 10.4K×384) "auto" stores the exact index as fp16: half
 * the snapshot bytes to publish, download, verify and hold in memory, and half to read per query
 * (the native scan converts halves in registers; recall@20 against float32 was 0.999 in
 * `npm run bench -- faiss`). Below it the saving is under 8 MB and not worth the rounding.
 */
export const FP16_FROM_FLOATS = 4_194_304;

/**
 * Default index type by corpus size (INDEX_TYPE overrides it):
 * - up to FP16_FROM_FLOATS floats (10.4K×384) → "flat": exact. A flat query reads every vector
 *   once (our SIMD scan: ~2.7 ms for 50K×384).
 * - up to FLAT_MAX_FLOATS floats (count × dimensions; 104K vectors at 384-d, 26K at 1536-d) →
 *   "fp16": the same exact scan over vectors stored, shipped and scanned as fp16 (where the
 *   native fp16 scan is missing, e.g. the prebuilt faiss-node binary, they are decoded to float32
 *   at load: twice the memory and scan time).
 * - up to 5,000,000 vectors → "ivf" (IVF-Flat, nprobe from the count): in `npm run bench -- faiss`
 *   at 200K×384 it kept recall@20 = 1.000 at 8–33× Flat's speed, while HNSW's recall swung between
 *   builds with faiss's default efConstruction (40; we now build with 80). "hnsw" remains
 *   available through INDEX_TYPE.
 * - beyond → "ivfpq-refine": IVF-PQ codes (d/12 bytes per vector) pick kFactor·k candidates that
 *   an SQ8 copy of the vectors (d bytes each) re-scores, so the index fits a function's memory
 *   (Lambda tops out at 10 GB) at ~0.28× Flat's bytes. Plain "ivfpq" (no re-scoring, d/8-byte codes)
 *   measured recall@20 ≈ 0.35 on the bench's clustered vectors: still buildable through INDEX_TYPE,
 *   and older snapshots of it load, but "auto" no longer picks it.
 * "sq8" (INDEX_TYPE) stores a quarter of the bytes (recall@20 0.970); the search function decodes
 * it into the float32 flat scan, so it saves snapshot bytes only, not memory. (faiss's own SQ
 * scan, used where WebAssembly SIMD is missing, is 7–8× slower than Flat.)
 */
export function chooseIndexType(count: number, override: IndexType = "auto", dimensions = 384): ConcreteIndexType {
  if (override !== "auto") return override;
  if (count * dimensions <= FP16_FROM_FLOATS) return "flat";
  if (count * dimensions <= FLAT_MAX_FLOATS) return "fp16";
  if (count <= 5_000_000) return "ivf";
  return "ivfpq-refine";
}

/** Build-time knobs; anything unset gets a default derived from the vector count. */
export interface FaissIndexParams {
  /** HNSW graph degree (M). */
  hnswM?: number;
  /** HNSW candidate list size at query time. */
  efSearch?: number;
  /** HNSW candidate list size while building (our faiss-node build only; faiss's default is 40). */
  efConstruction?: number;
  /** IVF inverted lists. */
  nlist?: number;
  /** IVF lists probed per query. */
  nprobe?: number;
  /** PQ sub-quantizers (must divide the dimensions). */
  pqM?: number;
  /** ivfpq-refine: candidates re-scored per result (k·kFactor IVF-PQ hits re-ranked by SQ8). */
  kFactor?: number;
  /** Vectors used to train IVF/PQ (taken from the start of the stream). */
  trainSize?: number;
}

/** Recorded in the manifest (`index_params`) so the loader sets the same search parameters. */
export type IndexParamsRecord = Record<string, string | number>;

export interface FaissIndexOptions {
  dimensions: number;
  type: IndexType;
  /** Expected number of vectors: picks "auto" and the IVF size. The stream may differ. */
  count?: number;
  params?: FaissIndexParams;
  /** Use faiss-node's upstream number[] methods even when our typed ones exist (tests, comparisons). */
  upstreamOnly?: boolean;
  /** Who scans a "flat" index (default "simd"). */
  flatKernel?: FlatKernel;
}

/**
 * Who scans a "flat" index (faiss's own flat kernel is scalar in the build we link):
 * - "simd": shared/adapters/simd-flat.ts with the native AVX2/FMA scan of our faiss-node build,
 *   or its WebAssembly SIMD kernel where that build is absent (the prebuilt binary);
 * - "wasm": the WebAssembly kernel even when the native scan exists (comparisons, tests);
 * - "faiss": faiss-node's IndexFlatIP.
 */
export type FlatKernel = "simd" | "wasm" | "faiss";

function useSimd(kernel: FlatKernel | undefined, upstreamOnly: boolean | undefined): boolean {
  return kernel !== "faiss" && !upstreamOnly && simdFlatAvailable();
}

let nativeFlatOps: NativeFlat | null | undefined;
/** The native flat scan of our faiss-node build, or null (prebuilt binary, or faiss-node absent). */
export function nativeFlat(): NativeFlat | null {
  if (nativeFlatOps === undefined) {
    try {
      const m = faiss();
      nativeFlatOps = m.scanInnerProduct
        ? { scan: m.scanInnerProduct, scanF16: m.scanInnerProductF16, adviseHugePages: m.adviseHugePages }
        : null;
    } catch {
      nativeFlatOps = null; // the WebAssembly kernel needs no addon
    }
  }
  return nativeFlatOps;
}

/**
 * Zeroed memory for a snapshot file the loader holds (the passage store): backed by transparent
 * huge pages where our faiss-node build can ask for them (loader option `allocate`).
 */
export function allocateSnapshotBytes(bytes: number): Uint8Array {
  const buf = new ArrayBuffer(bytes); // calloc'd: untouched until the download writes it
  nativeFlat()?.adviseHugePages?.(buf);
  return new Uint8Array(buf);
}

function newFlatIndex(
  d: number,
  capacity: number,
  kernel: FlatKernel | undefined,
  hugePages = true,
  rowFormat: RowFormat = "f32",
): SimdFlatIndex {
  const native = kernel !== "wasm" ? nativeFlat() : null;
  if (!native) return new SimdFlatIndex(d, capacity);
  return new SimdFlatIndex(d, capacity, hugePages ? native : { scan: native.scan, scanF16: native.scanF16 }, rowFormat);
}

/** Whether fp16 snapshots can stay fp16 in memory (the native fp16 scan of our faiss-node build). */
function keepsHalves(kernel: FlatKernel | undefined): boolean {
  return kernel !== "wasm" && typeof nativeFlat()?.scanF16 === "function";
}

/** SQfp16 rows scanned as they are stored (no float32 copy). */
const HALF_PARAMS: IndexParamsRecord = { factory: "SQfp16", scan: "fp16 rows, native SIMD flat" };

export interface FaissVectorIndex extends VectorIndex {
  readonly type: ConcreteIndexType | "unknown";
  readonly params: IndexParamsRecord;
  /** Serialised index (faiss's own format, as read back by faissIndexFromBuffer). */
  toBuffer(): Uint8Array;
  /**
   * Sets a search parameter (efSearch, nprobe, kFactor; other faiss ParameterSpace names pass
   * through); false when this build or this index type cannot.
   */
  setSearchParameter(name: string, value: number): boolean;
}

/**
 * HNSW build-time candidate list. faiss's default (40) left recall@20 at efSearch=128 anywhere
 * between 0.46 and 0.98 across builds of the same 200K×384 clustered vectors (`npm run bench --
 * faiss`); a wider list builds a better-connected graph. Needs our faiss-node build.
 */
const HNSW_EF_CONSTRUCTION = 80;
/** faiss's own default, what an index built without setBuildParameter gets. */
const FAISS_DEFAULT_EF_CONSTRUCTION = 40;

/** Largest number of floats handed to faiss-node as a JS array at once (fallback paths only). */
const MAX_JS_FLOATS = 1 << 20;

function defaultNlist(n: number): number {
  // ~2·sqrt(n) lists, rounded to a power of two (1024 at 200K), with at least 39 training points
  // per list (faiss's k-means warns below that).
  const target = 2 ** Math.round(Math.log2(Math.max(1, 2 * Math.sqrt(n))));
  let nlist = Math.max(1, target);
  while (nlist > 1 && nlist * 39 > n) nlist /= 2;
  return nlist;
}

function defaultPqM(d: number, dimsPerCode = 8): number {
  // d/8 sub-quantizers of 8 bits: 1 byte per 8 dimensions (48 B for 384-d); the largest divisor of d
  // not above d/dimsPerCode.
  for (let m = Math.max(1, Math.floor(d / dimsPerCode)); m >= 1; m--) if (d % m === 0) return m;
  return 1;
}

/**
 * ivfpq-refine's PQ codes: 1 byte per 12 dimensions (32 B for 384-d). The codes only pick
 * candidates, the SQ8 copy ranks them; a finer PQ buys little because the candidate list is wide
 * anyway, and the budget is tight: per vector the index holds m + 8 (IVF list id) + d (SQ8) bytes
 * against Flat's 4d, so m/12 keeps it near 0.28× Flat at any d ≥ 384.
 */
const REFINE_PQ_DIMS_PER_CODE = 12;
/**
 * Default re-scored candidates per result (k·kFactor SQ8 distance computations per query). On the
 * bench's clustered 200K×384 vectors recall@20 reached the SQ8 copy's own ceiling (0.964) at 16;
 * 32 leaves room for real embeddings, whose neighbourhoods PQ separates worse, for ~0.3 ms a
 * query (BENCHMARKS.md). Not scaled with n: how many candidates are needed depends on how many
 * near-ties the PQ codes cannot split, a property of the neighbourhood, not of the corpus size.
 */
export const DEFAULT_K_FACTOR = 32;

/**
 * Search parameters as the manifest (index_params), INDEX_PARAMS and INDEX_SEARCH_PARAMS name
 * them → faiss ParameterSpace names. (Config's name=integer parser takes letters only, and the
 * other two already match faiss.) On an IndexRefine, ParameterSpace passes nprobe/efSearch on to
 * the base index.
 */
const FAISS_SEARCH_PARAMS: Record<string, string> = { efSearch: "efSearch", nprobe: "nprobe", kFactor: "k_factor_rf" };
export const SEARCH_PARAM_NAMES = Object.keys(FAISS_SEARCH_PARAMS);

interface Plan {
  type: ConcreteIndexType;
  factory: string;
  params: IndexParamsRecord;
  search: Record<string, number>;
  /** Set on the empty index before vectors are added (setBuildParameter). */
  build?: Record<string, number>;
  trainSize: number;
}

function plan(type: ConcreteIndexType, d: number, n: number, p: FaissIndexParams): Plan {
  switch (type) {
    case "flat":
      return { type, factory: "Flat", params: { factory: "Flat" }, search: {}, trainSize: 0 };
    case "sq8":
    case "fp16": {
      const factory = type === "sq8" ? "SQ8" : "SQfp16";
      // SQ8 learns per-dimension ranges; fp16 needs no training but faiss accepts a train call.
      return {
        type,
        factory,
        params: { factory },
        search: {},
        trainSize: type === "sq8" ? (p.trainSize ?? 16_384) : 0,
      };
    }
    case "hnsw": {
      const m = p.hnswM ?? 32;
      const efSearch = p.efSearch ?? 128;
      const efConstruction = p.efConstruction ?? HNSW_EF_CONSTRUCTION;
      if (!Number.isInteger(efConstruction) || efConstruction < 1 || efConstruction > 4096)
        throw new ValidationError(`efConstruction must be an integer within 1..4096, got ${efConstruction}`);
      const factory = `HNSW${m},Flat`;
      return {
        type,
        factory,
        params: { factory, hnsw_m: m, efConstruction, efSearch },
        search: { efSearch },
        build: { efConstruction },
        trainSize: 0,
      };
    }
    case "ivf":
    case "ivfpq":
    case "ivfpq-refine": {
      const nlist = p.nlist ?? defaultNlist(n);
      const nprobe = Math.min(nlist, p.nprobe ?? Math.max(1, Math.round(nlist / 32)));
      let factory = `IVF${nlist},Flat`;
      const params: IndexParamsRecord = { nlist, nprobe };
      // The training sample is the one array handed to faiss-node as JS numbers: capped at 50K rows.
      let trainSize = p.trainSize ?? Math.min(Math.max(nlist * 39, 10_000), 50_000);
      if (type === "ivfpq") {
        const m = p.pqM ?? defaultPqM(d);
        if (d % m !== 0) throw new ValidationError(`PQ sub-quantizers (${m}) must divide the dimensions (${d})`);
        // "np": skip polysemous training, a simulated-annealing pass that only helps Hamming-distance
        // filtering (unused here) and made training ~20x slower in our measurements.
        factory = `IVF${nlist},PQ${m}x8np`;
        params.pq_m = m;
        params.pq_bits = 8;
        // PQ codebooks have 256 centroids each: at least 39·256 training points are wanted.
        trainSize = p.trainSize ?? Math.min(Math.max(nlist * 39, 256 * 39), 50_000);
      }
      const search: Record<string, number> = { nprobe };
      if (type === "ivfpq-refine") {
        const m = p.pqM ?? defaultPqM(d, REFINE_PQ_DIMS_PER_CODE);
        if (d % m !== 0) throw new ValidationError(`PQ sub-quantizers (${m}) must divide the dimensions (${d})`);
        const kFactor = p.kFactor ?? DEFAULT_K_FACTOR;
        if (!Number.isInteger(kFactor) || kFactor < 1 || kFactor > 1024)
          throw new ValidationError(`kFactor must be an integer within 1..1024, got ${kFactor}`);
        // IndexRefine (faiss's "Refine(...)" factory suffix): the IVF-PQ base returns k·kFactor
        // candidates, the SQ8 index re-scores them and the best k are returned. Both are trained
        // on the same sample and receive every added vector.
        factory = `IVF${nlist},PQ${m}x8np,Refine(SQ8)`;
        params.pq_m = m;
        params.pq_bits = 8;
        params.refine = "SQ8";
        params.kFactor = kFactor;
        search.kFactor = kFactor;
        trainSize = p.trainSize ?? Math.min(Math.max(nlist * 39, 256 * 39), 50_000);
      }
      return { type, factory, params: { factory, ...params }, search, trainSize };
    }
  }
}

function rowsPerBatch(d: number): number {
  return Math.max(1, Math.floor(MAX_JS_FLOATS / d));
}

function addRows(index: NativeIndex, rows: Float32Array, d: number): void {
  if (rows.length === 0) return;
  if (typeof index.addTyped === "function") {
    index.addTyped(rows);
    return;
  }
  // Upstream faiss-node: bounded slices so at most MAX_JS_FLOATS JS numbers exist at once.
  const step = rowsPerBatch(d) * d;
  for (let off = 0; off < rows.length; off += step) index.add(Array.from(rows.subarray(off, off + step)));
}

/**
 * Sets each parameter this index has; returns those that took effect. One the index lacks (kFactor
 * on an IVF-Flat snapshot, efSearch on IVF: INDEX_SEARCH_PARAMS applies to whatever snapshot is
 * live) is left out instead of failing the load.
 */
function applySearchParams(index: NativeIndex, search: Record<string, number>): Record<string, number> {
  const applied: Record<string, number> = {};
  if (typeof index.setSearchParameter !== "function") return applied;
  for (const [name, value] of Object.entries(search)) if (setNativeParameter(index, name, value)) applied[name] = value;
  return applied;
}

function setNativeParameter(index: NativeIndex, name: string, value: number): boolean {
  if (typeof index.setSearchParameter !== "function") return false;
  try {
    // ParameterSpace throws "could not set parameter" for a name this index type does not have.
    index.setSearchParameter(FAISS_SEARCH_PARAMS[name] ?? name, value);
    return true;
  } catch {
    return false;
  }
}

class FaissIndex implements FaissVectorIndex {
  readonly dimensions: number;
  readonly count: number;
  constructor(
    private readonly native: NativeIndex,
    readonly type: ConcreteIndexType | "unknown",
    readonly params: IndexParamsRecord,
  ) {
    this.dimensions = native.getDimension();
    this.count = native.ntotal();
  }

  search(query: Float32Array, k: number): VectorSearchResult {
    if (query.length !== this.dimensions) {
      throw new ValidationError(`query vector has ${query.length} dimensions, the index has ${this.dimensions}`);
    }
    // faiss-node's upstream search throws for k > ntotal; the contract is "fewer results".
    const kk = Math.min(Math.floor(k), this.count);
    if (!(kk > 0)) return { ordinals: [], scores: [] };
    const ordinals: number[] = [];
    const scores: number[] = [];
    if (typeof this.native.searchTyped === "function") {
      const r = this.native.searchTyped(query, kk);
      for (let i = 0; i < kk; i++) {
        if (r.labels[i] < 0) continue; // approximate indexes pad with -1 when they find fewer
        ordinals.push(r.labels[i]);
        scores.push(r.distances[i]);
      }
    } else {
      const r = this.native.search(Array.from(query), kk);
      for (let i = 0; i < kk; i++) {
        if (r.labels[i] < 0) continue;
        ordinals.push(r.labels[i]);
        scores.push(r.distances[i]);
      }
    }
    return { ordinals, scores };
  }

  setSearchParameter(name: string, value: number): boolean {
    if (!setNativeParameter(this.native, name, value)) return false;
    this.params[name] = value;
    return true;
  }

  toBuffer(): Uint8Array {
    return withTempFile((file) => {
      this.native.write(file);
      return readFileSync(file);
    });
  }
}

/** A "flat" index searched by our SIMD scan (native or WebAssembly); same file format as faiss's IndexFlatIP. */
class SimdFlat implements FaissVectorIndex {
  /**
   * "flat", or "fp16"/"sq8" for a scalar-quantized snapshot: kept as fp16 rows where the native
   * fp16 scan exists (toBuffer() gives the SQfp16 file back), otherwise decoded into float32 rows
   * (exact scan of the decoded vectors; toBuffer() then writes a Flat file of them).
   */
  constructor(
    readonly flat: SimdFlatIndex,
    readonly type: "flat" | "fp16" | "sq8" = "flat",
    readonly params: IndexParamsRecord = { factory: "Flat" },
  ) {}
  get dimensions(): number {
    return this.flat.dimensions;
  }
  get count(): number {
    return this.flat.count;
  }
  search(query: Float32Array, k: number): VectorSearchResult {
    return this.flat.search(query, k);
  }
  toBuffer(): Uint8Array {
    return this.flat.toBuffer();
  }
  setSearchParameter(): boolean {
    return false; // an exact scan has nothing to tune
  }
}

function withTempFile<T>(fn: (file: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "faiss-"));
  try {
    return fn(join(dir, `${randomBytes(6).toString("hex")}.faiss`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Builds an inner-product index from row-major batches of vectors. Only one batch is held as JS
 * numbers at a time (none with the typed add of our faiss-node build); IVF/PQ/SQ8 are trained
 * on the first `trainSize` vectors of the stream, buffered as a Float32Array.
 */
export async function buildFaissIndex(
  opts: FaissIndexOptions,
  batches: Iterable<Float32Array> | AsyncIterable<Float32Array>,
): Promise<FaissVectorIndex> {
  const d = opts.dimensions;
  if (!Number.isInteger(d) || d <= 0) throw new ValidationError(`dimensions must be a positive integer, got ${d}`);
  const hint = opts.count ?? 0;
  const params = opts.params ?? {};
  let type = chooseIndexType(hint, opts.type, d);
  let p = plan(type, d, Math.max(hint, 1), params);
  if (type === "flat" && useSimd(opts.flatKernel, opts.upstreamOnly)) {
    const flat = newFlatIndex(d, hint, opts.flatKernel);
    for await (const batch of batches) flat.add(batch);
    return new SimdFlat(flat);
  }

  let index: NativeIndex | undefined;
  // Training buffer (only for types that need training): the first trainSize rows.
  let pending: Float32Array | undefined = p.trainSize > 0 ? new Float32Array(p.trainSize * d) : undefined;
  let pendingRows = 0;

  const create = (n: number): NativeIndex => {
    // The stream may be shorter than the hint: size IVF from what we actually have.
    if (opts.type === "auto") type = chooseIndexType(n, "auto", d);
    p = plan(type, d, n, params);
    const native = maybeUpstream(
      type === "flat" ? new (faiss().IndexFlatIP)(d) : faiss().Index.fromFactory(d, p.factory, METRIC_INNER_PRODUCT),
      opts.upstreamOnly,
    );
    for (const [name, value] of Object.entries(p.build ?? {})) {
      // Record what the index really got: upstream faiss-node keeps faiss's default.
      if (native.setBuildParameter?.(name, value) !== true && name === "efConstruction")
        p.params.efConstruction = FAISS_DEFAULT_EF_CONSTRUCTION;
    }
    return native;
  };

  const train = (idx: NativeIndex, rows: Float32Array) => {
    if (idx.isTrained()) return;
    const n = rows.length / d;
    if (n === 0) throw new ValidationError(`a ${type} index needs training vectors; none were given`);
    const pq = type === "ivfpq" || type === "ivfpq-refine";
    if ((pq && n < 256) || ((pq || type === "ivf") && n < Number(p.params.nlist))) {
      throw new ValidationError(
        `a ${type} index needs at least ${pq ? Math.max(256, Number(p.params.nlist)) : p.params.nlist} vectors to train, got ${n}`,
      );
    }
    // faiss-node has no typed train: this one bounded sample is the largest JS array we build.
    idx.train(Array.from(rows));
  };

  for await (const batch of batches) {
    if (batch.length % d !== 0)
      throw new ValidationError(`a batch of ${batch.length} floats is not a multiple of ${d} dimensions`);
    let rows = batch;
    if (pending) {
      const room = pending.length / d - pendingRows;
      const take = Math.min(room, rows.length / d);
      pending.set(rows.subarray(0, take * d), pendingRows * d);
      pendingRows += take;
      rows = rows.subarray(take * d);
      if (pendingRows * d < pending.length) continue;
      index = create(Math.max(hint, pendingRows));
      train(index, pending);
      addRows(index, pending, d);
      pending = undefined;
    }
    index ??= create(hint);
    addRows(index, rows, d);
  }
  if (pending) {
    // Stream ended before the training sample filled up: the sample is the whole corpus.
    const sample = pending.subarray(0, pendingRows * d);
    index = create(pendingRows);
    train(index, sample);
    addRows(index, sample, d);
  }
  index ??= create(0);
  const applied = applySearchParams(index, p.search);
  const record = { ...p.params };
  // Record only search parameters that really took effect (upstream faiss-node cannot set them).
  for (const name of Object.keys(p.search)) if (!(name in applied)) delete record[name];
  return new FaissIndex(index, type, record);
}

/** Hides the typed methods of our patched build, leaving the upstream faiss-node API. */
function maybeUpstream(native: NativeIndex, upstreamOnly: boolean | undefined): NativeIndex {
  if (upstreamOnly) {
    // Own properties shadow the prototype's (read-only) methods on this one wrapper object.
    for (const name of ["addTyped", "searchTyped", "setSearchParameter", "setBuildParameter"]) {
      Object.defineProperty(native, name, { value: undefined, configurable: true });
    }
  }
  return native;
}

export interface FaissLoadOptions {
  upstreamOnly?: boolean;
  flatKernel?: FlatKernel;
  /** efSearch / nprobe / kFactor etc., as recorded in the manifest's index_params. */
  searchParams?: Record<string, unknown>;
  type?: ConcreteIndexType | "unknown";
}

function searchParamsOf(record: Record<string, unknown> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of SEARCH_PARAM_NAMES) {
    const v = record?.[name];
    if (typeof v === "number" && Number.isFinite(v)) out[name] = v;
  }
  return out;
}

function wrapLoaded(loaded: NativeIndex, opts: FaissLoadOptions): FaissIndex {
  const native = maybeUpstream(loaded, opts.upstreamOnly);
  const applied = applySearchParams(native, searchParamsOf(opts.searchParams));
  const params: IndexParamsRecord = {};
  for (const [k, v] of Object.entries(opts.searchParams ?? {}))
    if (typeof v === "string" || typeof v === "number") params[k] = v;
  // A search parameter this index type lacks (kFactor from INDEX_SEARCH_PARAMS on an IVF-Flat
  // snapshot) is not in effect: leave it out. (Upstream faiss-node applies none; the record stays.)
  if (typeof native.setSearchParameter === "function")
    for (const name of SEARCH_PARAM_NAMES) if (name in params && !(name in applied)) delete params[name];
  return new FaissIndex(native, opts.type ?? "unknown", { ...params, ...applied });
}

/** Reads an index serialised by toBuffer() (or faiss's write_index). */
export function faissIndexFromBuffer(buf: Uint8Array, opts: FaissLoadOptions = {}): FaissVectorIndex {
  const header = useSimd(opts.flatKernel, opts.upstreamOnly) ? parseFlatHeader(buf) : null;
  if (header) {
    const expected = FLAT_HEADER_BYTES + header.count * header.dimensions * 4;
    if (buf.byteLength !== expected)
      throw new ValidationError(`flat index file has ${buf.byteLength} bytes, expected ${expected}`);
    const flat = newFlatIndex(header.dimensions, header.count, opts.flatKernel);
    flat.fileView(header).set(buf);
    return new SimdFlat(flat);
  }
  const sq = useSimd(opts.flatKernel, opts.upstreamOnly) && keepsHalves(opts.flatKernel) ? parseSqHeader(buf) : null;
  if (sq && typeof sq === "object" && sq.qtype === "fp16" && buf.byteLength === sq.headerBytes + sq.codeBytes) {
    const flat = newFlatIndex(sq.dimensions, sq.count, opts.flatKernel, true, "f16");
    flat.halfFileView(sq.headerBytes, sq.count).set(buf);
    return new SimdFlat(flat, "fp16", HALF_PARAMS);
  }
  checkFaissFile(bytesSource(buf));
  let native: NativeIndex;
  try {
    native = withTempFile((file) => {
      const fd = openSync(file, "w", 0o600);
      try {
        writeSync(fd, buf);
      } finally {
        closeSync(fd);
      }
      return faiss().Index.read(file);
    });
  } catch (e) {
    throw new ValidationError(`not a readable FAISS index: ${(e as Error).message}`);
  }
  return wrapLoaded(native, opts);
}

/** Reads a flat IP index file straight into WebAssembly memory; null when the file is another type. */
function simdFlatFromFile(file: string, kernel: FlatKernel | undefined): SimdFlat | null {
  const fd = openSync(file, "r");
  try {
    const head = new Uint8Array(FLAT_HEADER_BYTES);
    readSync(fd, head, 0, FLAT_HEADER_BYTES, 0);
    const header = parseFlatHeader(head);
    if (!header) return null;
    const expected = FLAT_HEADER_BYTES + header.count * header.dimensions * 4;
    const size = fstatSync(fd).size;
    if (size !== expected) throw new ValidationError(`flat index file has ${size} bytes, expected ${expected}`);
    const flat = newFlatIndex(header.dimensions, header.count, kernel);
    const view = flat.fileView(header);
    for (let at = 0; at < view.byteLength; ) {
      const got = readSync(fd, view, at, view.byteLength - at, at);
      if (got === 0) throw new ValidationError("flat index file ended early");
      at += got;
    }
    return new SimdFlat(flat);
  } finally {
    closeSync(fd);
  }
}

/** Reads an index from a file (the loader's spool file): no JS copy of the bytes at all. */
export function faissIndexFromFile(file: string, opts: FaissLoadOptions = {}): FaissVectorIndex {
  if (useSimd(opts.flatKernel, opts.upstreamOnly)) {
    const flat = simdFlatFromFile(file, opts.flatKernel);
    if (flat) return flat;
  }
  checkFaissFileAt(file);
  let native: NativeIndex;
  try {
    native = faiss().Index.read(file);
  } catch (e) {
    throw new ValidationError(`not a readable FAISS index: ${(e as Error).message}`);
  }
  return wrapLoaded(native, opts);
}

/**
 * Load options from a snapshot manifest (index type and recorded search parameters); `override`
 * (INDEX_SEARCH_PARAMS) wins over the recorded search parameters.
 */
export function loadOptionsFromManifest(
  manifest: SnapshotManifest,
  override?: Record<string, number>,
): FaissLoadOptions {
  const type = (INDEX_TYPES as readonly string[]).includes(manifest.index_type)
    ? (manifest.index_type as ConcreteIndexType)
    : "unknown";
  return { type, searchParams: { ...manifest.index_params, ...override } };
}

/** Whether this faiss-node build has our typed add/search patch (false for the prebuilt binary). */
export function hasTypedFaiss(): boolean {
  const probe = new (faiss().IndexFlatIP)(1);
  return typeof probe.searchTyped === "function" && typeof probe.addTyped === "function";
}

/** The faiss-backed IndexBuilder for shared/core/build.ts (buildSnapshot's `indexBuilder`). */
export const faissIndexBuilder: IndexBuilder<FaissVectorIndex> = (opts, batches) =>
  buildFaissIndex(
    { dimensions: opts.dimensions, type: parseIndexType(opts.type), count: opts.count, params: opts.params },
    batches,
  );

export function parseIndexType(type: string): IndexType {
  if (type === "auto" || (INDEX_TYPES as readonly string[]).includes(type)) return type as IndexType;
  throw new ValidationError(`unknown index type "${type}"; expected auto, ${INDEX_TYPES.join(", ")}`);
}

/**
 * decodeIndex for the snapshot loader: bytes of index.faiss → index with the manifest's search
 * parameters, or `searchParams` (INDEX_SEARCH_PARAMS) where given.
 */
export function decodeFaissSnapshotIndex(
  bytes: Uint8Array,
  manifest: SnapshotManifest,
  searchParams?: Record<string, number>,
): FaissVectorIndex {
  return faissIndexFromBuffer(bytes, loadOptionsFromManifest(manifest, searchParams));
}

/**
 * openIndexSink for the snapshot loader, so the loader never holds index.faiss in JS memory
 * (peak ≈ the index itself): a flat index streams straight into the WebAssembly memory it is
 * searched in; other types stream into a private temp file that faiss reads (on Lambda /tmp,
 * whose ephemeral storage must exceed the largest index).
 */
export function createFaissIndexSinkFactory(
  opts: {
    tmpDir?: string;
    flatKernel?: FlatKernel;
    /** Ask for huge pages for the flat index (default true; benchmarks compare without). */
    hugePages?: boolean;
    /** efSearch/nprobe overriding the manifest's (INDEX_SEARCH_PARAMS). */
    searchParams?: Record<string, number>;
  } = {},
): (manifest: SnapshotManifest) => Promise<IndexSink> {
  const toFile = tempFileSink(opts);
  const newFlat = (d: number, rows: number, format: RowFormat = "f32") =>
    newFlatIndex(d, rows, opts.flatKernel, opts.hugePages ?? true, format);
  return async (manifest) => {
    if (!useSimd(opts.flatKernel, false)) return toFile(manifest);
    const fallback = () => toFile(manifest);
    if (manifest.index_type === "flat") return inPlaceSink(manifest, flatLayout(manifest, newFlat), fallback);
    if (manifest.index_type === "fp16" && keepsHalves(opts.flatKernel))
      return inPlaceSink(manifest, halfLayout(manifest, newFlat), fallback);
    if (manifest.index_type === "fp16" || manifest.index_type === "sq8")
      return scalarQuantizedSink(manifest, newFlat, fallback);
    return toFile(manifest);
  };
}

/**
 * A file whose rows can be searched where they land: a fixed-size header, then `rowBytes` per row.
 * (faiss IndexFlatIP: float32 rows; SQfp16: IEEE halves, kept as they are by the native fp16 scan.)
 */
interface InPlaceLayout {
  headerBytes: number;
  rowBytes: number;
  /** The row count a complete header declares, or null when it is not the file this layout expects. */
  rowsInHeader(head: Uint8Array): number | null;
  /** Memory for `rows` rows and the byte view the whole file goes into. */
  open(rows: number): { flat: SimdFlatIndex; view: Uint8Array };
  wrap(flat: SimdFlatIndex): SimdFlat;
}

type NewFlat = (d: number, rows: number, format?: RowFormat) => SimdFlatIndex;

function flatLayout(manifest: SnapshotManifest, newFlat: NewFlat): InPlaceLayout {
  const d = manifest.embedder.dimensions;
  return {
    headerBytes: FLAT_HEADER_BYTES,
    rowBytes: 4 * d,
    rowsInHeader(head) {
      const h = parseFlatHeader(head);
      return h && h.dimensions === d ? h.count : null;
    },
    open(rows) {
      const flat = newFlat(d, rows);
      return { flat, view: flat.fileView({ dimensions: d, count: rows }) };
    },
    wrap: (flat) => new SimdFlat(flat),
  };
}

/** An SQfp16 file: FIXED header (no trained values for fp16), then 2·d bytes per row. */
const SQ_FP16_HEADER_BYTES = 81;

function halfLayout(manifest: SnapshotManifest, newFlat: NewFlat): InPlaceLayout {
  const d = manifest.embedder.dimensions;
  return {
    headerBytes: SQ_FP16_HEADER_BYTES,
    rowBytes: 2 * d,
    rowsInHeader(head) {
      const h = parseSqHeader(head);
      return h &&
        typeof h === "object" &&
        h.qtype === "fp16" &&
        h.dimensions === d &&
        h.headerBytes === SQ_FP16_HEADER_BYTES
        ? h.count
        : null;
    },
    open(rows) {
      const flat = newFlat(d, rows, "f16");
      return { flat, view: flat.halfFileView(SQ_FP16_HEADER_BYTES, rows) };
    },
    wrap: (flat) => new SimdFlat(flat, "fp16", HALF_PARAMS),
  };
}

/**
 * Streams an SQfp16/SQ8 file and decodes its codes into the memory of a SIMD flat index as they
 * arrive (shared/adapters/sq-decode.ts): the snapshot is 1/2 or 1/4 the bytes of a flat one, the
 * search is the flat scan (faiss's own SQ scan in our build is 7–8× slower than Flat). A file that
 * is not what the manifest says goes to `fallback` (faiss reads it).
 */
function scalarQuantizedSink(
  manifest: SnapshotManifest,
  newFlat: NewFlat,
  fallback: () => Promise<IndexSink>,
): IndexSink {
  let head: Uint8Array = new Uint8Array(0);
  let decoder: ReturnType<typeof createSqDecoder> | undefined;
  let flat: SimdFlatIndex | undefined;
  let header: SqHeader | undefined;
  let other: IndexSink | undefined;
  return {
    async write(chunk) {
      if (other) return other.write(chunk);
      if (decoder) return decoder.push(chunk);
      // Usually the first part holds the whole header: parse it in place, without a copy.
      let joined: Uint8Array = chunk;
      if (head.byteLength > 0) {
        joined = new Uint8Array(head.byteLength + chunk.byteLength);
        joined.set(head);
        joined.set(chunk, head.byteLength);
      }
      const parsed = parseSqHeader(joined);
      if (typeof parsed === "number") {
        head = joined === chunk ? chunk.slice() : joined; // part buffers are reused: keep a copy
        return;
      }
      const expected = manifest.index_type === "fp16" ? "fp16" : "sq8";
      if (
        !parsed ||
        parsed.qtype !== expected ||
        parsed.dimensions !== manifest.embedder.dimensions ||
        parsed.count !== manifest.counts.passages
      ) {
        other = await fallback();
        return other.write(joined);
      }
      header = parsed;
      flat = newFlat(parsed.dimensions, parsed.count);
      decoder = createSqDecoder(parsed, flat.rowsView(parsed.count));
      head = new Uint8Array(0);
      decoder.push(joined.subarray(parsed.headerBytes));
    },
    async finish() {
      if (other) return other.finish();
      if (!flat || !header || !decoder?.done())
        throw new ValidationError(`${manifest.index_type} index file is shorter than its header says`);
      return new SimdFlat(flat, header.qtype, {
        factory: header.qtype === "fp16" ? "SQfp16" : "SQ8",
        scan: "decoded to float32, SIMD flat",
      });
    },
    async abort() {
      if (other) await other.abort();
      flat = undefined;
      decoder = undefined;
    },
  };
}

/**
 * Streams a file (flat IP, or SQfp16 kept as halves) into the WebAssembly memory it will be
 * searched in. The memory is sized from the manifest up front, so downloaded parts can land in
 * place (target()); the header is checked when it arrives, and a file that is not what the
 * layout expects goes to `fallback` instead.
 */
function inPlaceSink(manifest: SnapshotManifest, layout: InPlaceLayout, fallback: () => Promise<IndexSink>): IndexSink {
  const fileBytes = manifest.files[INDEX_FILE_NAME]?.bytes ?? 0;
  const rows = (fileBytes - layout.headerBytes) / layout.rowBytes;
  // Sized from the manifest; when it cannot describe the file, decide from the header alone.
  let opened = Number.isInteger(rows) && rows >= 0 ? layout.open(rows) : undefined;
  let checked = false;
  const head = new Uint8Array(layout.headerBytes);
  let received = 0;
  let other: IndexSink | undefined;
  return {
    target(offset, length) {
      return other ? undefined : opened?.flat.fileRange(offset, length);
    },
    async write(chunk) {
      if (other) return other.write(chunk);
      if (!checked) {
        const take = Math.min(chunk.byteLength, layout.headerBytes - received);
        head.set(chunk.subarray(0, take), received);
        if (received + take < layout.headerBytes) {
          if (opened) opened.view.set(chunk, received);
          received += take;
          return;
        }
        checked = true;
        const count = layout.rowsInHeader(head);
        if (count === null || (opened && count !== rows)) {
          // Not the file the manifest describes: let faiss read whatever it is.
          opened = undefined;
          other = await fallback();
          await other.write(head.subarray(0, received + take));
          if (take < chunk.byteLength) await other.write(chunk.subarray(take));
          return;
        }
        if (!opened) {
          opened = layout.open(count);
          opened.view.set(head.subarray(0, received));
        }
      }
      if (!opened) throw new ValidationError("index sink has no memory");
      const { view } = opened;
      if (received + chunk.byteLength > view.byteLength)
        throw new ValidationError(`${manifest.index_type} index file is longer than its header says`);
      // Parts downloaded through target() are already in place.
      if (chunk.buffer !== view.buffer || chunk.byteOffset !== view.byteOffset + received) view.set(chunk, received);
      received += chunk.byteLength;
    },
    async finish() {
      if (other) return other.finish();
      if (!opened || received !== opened.view.byteLength)
        throw new ValidationError(`${manifest.index_type} index file is shorter than its header says`);
      return layout.wrap(opened.flat);
    },
    async abort() {
      if (other) await other.abort();
      opened = undefined;
    },
  };
}

function tempFileSink(opts: {
  tmpDir?: string;
  searchParams?: Record<string, number>;
}): (manifest: SnapshotManifest) => Promise<IndexSink> {
  return async (manifest) => {
    const dir = await mkdtemp(join(opts.tmpDir ?? tmpdir(), "faiss-load-"));
    const file = join(dir, "index.faiss");
    const fh = await open(file, "wx", 0o600);
    let closed = false;
    const cleanup = async () => {
      if (!closed) {
        closed = true;
        await fh.close().catch(() => {});
      }
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    };
    return {
      async write(chunk) {
        let done = 0;
        while (done < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done);
          done += bytesWritten;
        }
      },
      async finish() {
        try {
          closed = true;
          await fh.close();
          return faissIndexFromFile(file, loadOptionsFromManifest(manifest, opts.searchParams));
        } finally {
          await cleanup();
        }
      },
      abort: cleanup,
    };
  };
}
