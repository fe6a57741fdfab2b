// ONNX Runtime sessions with an execution-provider choice and a fallback chain.
//
// Native backend (onnxruntime-node): CUDA → WebGPU → CPU. WASM backend (onnxruntime-web in Node)
// when asked for, or when the native addon cannot be loaded at all. Both runtimes are imported
// lazily so modules that never run a model do not pay for loading them.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

export type ProviderChoice = "auto" | "cuda" | "webgpu" | "cpu" | "wasm";
type ConcreteProvider = Exclude<ProviderChoice, "auto">;

export type TensorType = "int64" | "int32" | "float32";
export type TensorData = BigInt64Array | Int32Array | Float32Array;

/** A runtime-independent input tensor (row-major). */
export interface TensorFeed {
  data: TensorData;
  dims: readonly number[];
}

export interface TensorOutput {
  type: string;
  data: Float32Array | BigInt64Array | Int32Array;
  dims: readonly number[];
}

export interface ProviderFallback {
  provider: ConcreteProvider;
  reason: string;
}

export type OrtLog = (level: "info" | "warn", message: string) => void;

/** Padded tokens per micro-batch on the CPU and WASM providers, unless the caller sets a budget. */
export const CPU_BATCH_TOKENS = 512;
/** The same on GPU providers, which need large batches to fill the device. */
export const GPU_BATCH_TOKENS = 8192;

/**
 * The micro-batch budget for a provider. On the CPU, batches of ~512 padded tokens keep a layer's
 * activations in cache and touch little fresh memory: against 8192-token batches the int8 MiniLM
 * scored 20 pairs of ~200 tokens in 0.83× the time warm, a fresh process's first call in 0.50×,
 * with 0.50× the peak RSS (0.27× for 100 pairs) (BENCHMARKS.md, rerank: micro-batch budget). A GPU
 * wants the big batch.
 */
export function defaultBatchTokens(provider: ConcreteProvider): number {
  return provider === "cuda" || provider === "webgpu" ? GPU_BATCH_TOKENS : CPU_BATCH_TOKENS;
}

export interface OrtSessionOptions {
  provider?: ProviderChoice;
  /**
   * Intra-op threads. Default: the cores this process may use (availableCores). Where that is every
   * core of the machine, the native runtime is left to its own default, which is the same count
   * (physical cores) with each thread pinned to a core; measured here side by side, pinned threads
   * ran the MiniLM-L6 workload 1.4-1.6x faster (median) than the same count unpinned on a busy 2-core machine. Under a
   * cgroup quota or affinity mask, or when given, the count is passed on as is.
   */
  threads?: number;
  log?: OrtLog;
  /** Test seam: how onnxruntime-node is imported (lets tests simulate a missing native addon). */
  importNative?: () => Promise<unknown>;
}

export interface OrtSession {
  /** Runs the graph; calls are serialised (one inference at a time uses all intra-op threads). */
  run(feeds: Record<string, TensorFeed>): Promise<Record<string, TensorOutput>>;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Element type each input is declared with ("int64", "int32", "float32", …). */
  readonly inputTypes: Readonly<Record<string, string>>;
  /** The provider that actually runs the graph: "cuda", "webgpu", "cpu" or "wasm". */
  readonly provider: ConcreteProvider;
  /** Providers tried or skipped before the one in use, with why. */
  readonly fallbacks: readonly ProviderFallback[];
  readonly threads: number;
  release(): Promise<void>;
}

// Minimal structural view of the two runtimes' shared API (onnxruntime-common).
interface OrtTensorLike {
  type: string;
  data: unknown;
  dims: readonly number[];
}
interface OrtInferenceSessionLike {
  inputNames: readonly string[];
  outputNames: readonly string[];
  inputMetadata?: ReadonlyArray<{ name: string; isTensor: boolean; type?: string }>;
  run(feeds: Record<string, OrtTensorLike>): Promise<Record<string, OrtTensorLike>>;
  release(): Promise<void>;
}
interface OrtModule {
  InferenceSession: {
    create(model: string | Uint8Array, options?: Record<string, unknown>): Promise<OrtInferenceSessionLike>;
  };
  Tensor: new (type: string, data: TensorData, dims: readonly number[]) => OrtTensorLike;
  env: {
    wasm?: { numThreads?: number; wasmPaths?: string | Record<string, string>; proxy?: boolean };
    logLevel?: string;
  };
}

const require = createRequire(import.meta.url);

/**
 * Cores this process may really use: the affinity mask (os.availableParallelism) further capped by
 * a cgroup v2 CPU quota (containers, Lambda), at least 1.
 */
export function availableCores(): number {
  let n = os.availableParallelism();
  try {
    const [quota, period] = readFileSync("/sys/fs/cgroup/cpu.max", "utf8").trim().split(/\s+/);
    if (quota !== "max" && Number(period) > 0) n = Math.min(n, Math.max(1, Math.floor(Number(quota) / Number(period))));
  } catch {
    // No cgroup v2 quota visible: the affinity count stands.
  }
  return Math.max(1, n);
}

/** Folder holding onnxruntime-node's native binaries (where CUDA EP libraries are installed). */
export function nativeBinDir(): string | null {
  try {
    const pkgDir = path.dirname(require.resolve("onnxruntime-node/package.json"));
    return path.join(pkgDir, "bin", "napi-v6", process.platform, process.arch);
  } catch {
    return null;
  }
}

function gpuDevicesVisible(): string | null {
  const candidates = ["/dev/nvidia0", "/dev/dxg"];
  for (const c of candidates) if (existsSync(c)) return c;
  try {
    const render = readdirSync("/dev/dri").find((f) => f.startsWith("renderD"));
    if (render) return `/dev/dri/${render}`;
  } catch {
    // No DRM devices.
  }
  return null;
}

/** Why CUDA cannot be used here, or null when its EP files and a GPU are present. */
export function cudaUnavailableReason(): string | null {
  const bin = nativeBinDir();
  if (!bin) return "onnxruntime-node is not installed";
  const lib = path.join(bin, "libonnxruntime_providers_cuda.so");
  if (!existsSync(lib)) return `CUDA execution provider files are not installed (${lib} is missing)`;
  if (!existsSync("/dev/nvidia0")) return "no NVIDIA GPU is visible (/dev/nvidia0 is missing)";
  return null;
}

function providerChain(choice: ProviderChoice): ConcreteProvider[] {
  switch (choice) {
    case "auto":
      return ["cuda", "webgpu", "cpu", "wasm"];
    case "cuda":
      return ["cuda", "cpu", "wasm"];
    case "webgpu":
      return ["webgpu", "cpu", "wasm"];
    case "cpu":
      return ["cpu", "wasm"];
    case "wasm":
      return ["wasm"];
    default:
      throw new Error(`unknown execution provider "${String(choice)}"; expected one of auto, cuda, webgpu, cpu, wasm`);
  }
}

let nativeModule: Promise<OrtModule> | null = null;
let webModule: Promise<OrtModule> | null = null;

function loadWeb(threads: number): Promise<OrtModule> {
  webModule ??= (async () => {
    const ort = (await import("onnxruntime-web")) as unknown as OrtModule;
    // Point at the installed .wasm/.mjs files so nothing is fetched; thread count is process-wide
    // and must be set before the first session.
    const dist = path.dirname(require.resolve("onnxruntime-web"));
    if (ort.env.wasm) {
      ort.env.wasm.wasmPaths = pathToFileURL(`${dist}${path.sep}`).href;
      ort.env.wasm.numThreads = threads;
      ort.env.wasm.proxy = false;
    }
    return ort;
  })().catch((e) => {
    webModule = null;
    throw e;
  });
  return webModule;
}

function asModule(m: unknown): OrtModule {
  const mod = m as OrtModule & { default?: OrtModule };
  return mod.InferenceSession ? mod : (mod.default as OrtModule);
}

/** The native runtime, imported once per process (a failed import is retried next time). */
function loadNative(importNative?: () => Promise<unknown>): Promise<OrtModule> {
  if (importNative) return importNative().then(asModule);
  nativeModule ??= import("onnxruntime-node").then(asModule, (e) => {
    nativeModule = null;
    throw e;
  });
  return nativeModule;
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
}

/** Creates an inference session, trying providers in order and recording why each one was passed over. */
export async function createOrtSession(model: string | Uint8Array, opts: OrtSessionOptions = {}): Promise<OrtSession> {
  const choice = opts.provider ?? "auto";
  const threads = Math.max(1, Math.floor(opts.threads ?? availableCores()));
  const setThreads = opts.threads !== undefined || threads < os.cpus().length;
  const log: OrtLog = opts.log ?? ((level, msg) => (level === "warn" ? console.warn(msg) : undefined));
  const fallbacks: ProviderFallback[] = [];
  const chain = providerChain(choice);
  const skip = (provider: ConcreteProvider, reason: string, level: "info" | "warn") => {
    fallbacks.push({ provider, reason });
    log(level, `onnxruntime: ${provider} not used: ${reason}`);
  };

  let nativeBroken: string | null = null;
  for (const provider of chain) {
    const isLast = provider === chain[chain.length - 1];
    const fail = (reason: string, level: "info" | "warn", cause?: unknown) => {
      if (isLast) {
        const tried = [...fallbacks, { provider, reason }].map((f) => `${f.provider}: ${f.reason}`).join("; ");
        throw new Error(`no ONNX Runtime backend could start (${tried})`, { cause });
      }
      skip(provider, reason, level);
    };
    if (provider !== "wasm" && nativeBroken) {
      fail(nativeBroken, "info");
      continue;
    }
    // Automatic choice skips GPU providers quietly when their preconditions are absent;
    // an explicit request for a missing provider is reported as a warning.
    if (provider === "cuda") {
      const why = cudaUnavailableReason();
      if (why) {
        fail(why, choice === "auto" ? "info" : "warn");
        continue;
      }
    }
    if (provider === "webgpu" && choice === "auto" && !gpuDevicesVisible()) {
      fail("no GPU device is visible (/dev/dri/renderD*, /dev/nvidia0, /dev/dxg)", "info");
      continue;
    }

    let ort: OrtModule;
    try {
      ort = provider === "wasm" ? await loadWeb(threads) : await loadNative(opts.importNative);
    } catch (e) {
      const reason = `${provider === "wasm" ? "onnxruntime-web" : "onnxruntime-node"} could not be loaded: ${message(e)}`;
      if (provider !== "wasm") nativeBroken = reason;
      fail(reason, "warn", e);
      continue;
    }
    try {
      return await createOn(ort, provider, model, threads, setThreads || provider === "wasm", fallbacks);
    } catch (e) {
      fail(message(e), "warn", e);
    }
  }
  throw new Error("unreachable: provider chain exhausted");
}

async function createOn(
  ort: OrtModule,
  provider: ConcreteProvider,
  model: string | Uint8Array,
  threads: number,
  setThreads: boolean,
  fallbacks: ProviderFallback[],
): Promise<OrtSession> {
  const executionProviders = provider === "cuda" ? [{ name: "cuda", deviceId: 0 }] : [provider];
  const options: Record<string, unknown> = {
    executionProviders,
    graphOptimizationLevel: "all",
    ...(setThreads ? { intraOpNumThreads: threads } : {}),
    interOpNumThreads: 1,
    executionMode: "sequential",
    logSeverityLevel: 3,
  };
  // onnxruntime-web in Node takes bytes, not a path.
  const source = provider === "wasm" && typeof model === "string" ? new Uint8Array(await readFile(model)) : model;
  const session = await ort.InferenceSession.create(source, options);
  const inputTypes: Record<string, string> = {};
  for (const m of session.inputMetadata ?? []) if (m.isTensor && m.type) inputTypes[m.name] = m.type;

  let queue: Promise<unknown> = Promise.resolve();
  const run = (feeds: Record<string, TensorFeed>): Promise<Record<string, TensorOutput>> => {
    const next = queue.then(async () => {
      const tensors: Record<string, OrtTensorLike> = {};
      for (const [name, feed] of Object.entries(feeds)) {
        const data = convert(feed.data, inputTypes[name]);
        tensors[name] = new ort.Tensor(elementType(data), data, feed.dims);
      }
      const out = await session.run(tensors);
      const result: Record<string, TensorOutput> = {};
      for (const [name, t] of Object.entries(out)) {
        result[name] = { type: t.type, data: t.data as TensorOutput["data"], dims: [...t.dims] };
      }
      return result;
    });
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    run,
    inputNames: [...session.inputNames],
    outputNames: [...session.outputNames],
    inputTypes,
    provider,
    fallbacks: [...fallbacks],
    threads,
    release: () => session.release(),
  };
}

function elementType(data: TensorData): TensorType {
  return data instanceof BigInt64Array ? "int64" : data instanceof Int32Array ? "int32" : "float32";
}

/** Converts integer feeds to the element type the graph declares (some exports take int32 ids). */
function convert(data: TensorData, declared: string | undefined): TensorData {
  if (declared === "int32" && data instanceof BigInt64Array) return Int32Array.from(data, (v) => Number(v));
  if (declared === "int64" && data instanceof Int32Array) return BigInt64Array.from(data, (v) => BigInt(v));
  return data;
}
