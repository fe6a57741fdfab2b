// Cross-encoder inference on ONNX Runtime: (query, document) pairs → one relevance logit each.
//
// Hugging Face layout (config.json, tokenizer.json, onnx/model.onnx). BERT/MiniLM graphs take
// token_type_ids, XLM-RoBERTa graphs do not: only the inputs the graph declares are fed. Pairs are
// sorted by length and cut into micro-batches by a padded-token budget (shared/core/batching.ts).
// One session per model and provider per process (memoised promise, forgotten when loading fails
// so the next call retries).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { padRows, runInBatches } from "../core/batching.ts";
import type { ModelDescription, PairScoreOptions, PairScorer, PairScores } from "../core/rerank.ts";
import {
  createOrtSession,
  cudaUnavailableReason,
  defaultBatchTokens,
  type OrtLog,
  type OrtSession,
  type ProviderChoice,
  type ProviderFallback,
} from "./ort-session.ts";
import { loadTokenizer, type PairTokenizer } from "./hf-tokenizer.ts";

export interface CrossEncoderOptions {
  modelDir: string;
  provider?: ProviderChoice;
  /** Prefer a dynamic-int8 graph (QUANTIZED_GRAPH_NAMES) when the folder has one and the provider is the CPU. */
  quantized?: boolean;
  /** Pair length limit in tokens; default and ceiling: the model's own limit. */
  maxLength?: number;
  /** Padded tokens per inference micro-batch (default: defaultBatchTokens of the provider in use). */
  batchTokens?: number;
  threads?: number;
  /** Tokens shared by neighbouring windows of the chunk strategy (default: the tokenizer's, ≤ 32). */
  chunkOverlap?: number;
  /**
   * Which session of this folder: loads are shared per (file, provider, threads, instance), so
   * workers that must run at the same time ask for different instances.
   */
  instance?: number;
  /** Name reported in responses; default: config `_name_or_path`, else the folder name. */
  name?: string;
  log?: OrtLog;
}

export interface ScorePairsOptions {
  maxTokensPerDoc?: number;
  strategy?: PairScoreOptions["strategy"];
}

export interface CrossEncoder extends PairScorer {
  readonly model: string;
  readonly provider: string;
  readonly fallbacks: readonly ProviderFallback[];
  readonly maxLength: number;
  readonly batchTokens: number;
  /** config.json says `"fixture": true`: generated weights, scores carry no meaning. */
  readonly fixture: boolean;
  readonly family: "bert" | "xlm-roberta" | string;
  /** The ONNX file in use. */
  readonly modelFile: string;
  /** int8 when the file is a dynamic-int8 graph, else fp32. */
  readonly precision: "int8" | "fp32";
  readonly inputNames: readonly string[];
  readonly tokenizer: PairTokenizer;
  scorePairs(query: string, documents: string[], opts?: ScorePairsOptions): Promise<PairScores>;
  describe(): ModelDescription;
}

interface ModelConfig {
  model_type?: string;
  _name_or_path?: string;
  pad_token_id?: number;
  max_position_embeddings?: number;
  num_labels?: number;
  id2label?: Record<string, string>;
  fixture?: boolean;
}

interface LoadedModel {
  session: OrtSession;
  tokenizer: PairTokenizer;
  config: ModelConfig;
  modelFile: string;
}

const loaded = new Map<string, Promise<LoadedModel>>();

/**
 * Dynamic-int8 graph names accepted, in order of preference: ours and Xenova/transformers.js
 * (`model_quantized.onnx`), Optimum's (`model_int8.onnx`, and the per-ISA exports Hugging Face repos
 * ship under onnx/: AVX-512 VNNI, AVX-512, AVX2, ARM64).
 */
export const QUANTIZED_GRAPH_NAMES = [
  "model_quantized.onnx",
  "model_int8.onnx",
  "model_qint8_avx512_vnni.onnx",
  "model_qint8_avx512.onnx",
  "model_quint8_avx2.onnx",
  "model_qint8_arm64.onnx",
] as const;

/** Whether a graph file is one of the accepted int8 names. */
export function isQuantizedGraph(file: string): boolean {
  return (QUANTIZED_GRAPH_NAMES as readonly string[]).includes(path.basename(file));
}

/**
 * Whether the int8 graph should run: asked for (RERANKER_QUANTIZED, default true) and on the CPU. GPU
 * providers run fp32 (int8 MatMulInteger has no fast CUDA/WebGPU kernel); with `auto` that means
 * fp32 only where the CUDA provider can actually start.
 */
export function wantsInt8(quantized: boolean | undefined, provider: ProviderChoice | undefined): boolean {
  if (!quantized) return false;
  if (provider === "cuda" || provider === "webgpu") return false;
  if ((provider ?? "auto") === "auto" && cudaUnavailableReason() === null) return false;
  return true;
}

/** Finds the graph: an int8 one (QUANTIZED_GRAPH_NAMES) when asked and present, else onnx/model.onnx or model.onnx. */
export function modelFileIn(modelDir: string, quantized = false): string {
  const candidates = [
    ...(quantized ? QUANTIZED_GRAPH_NAMES.flatMap((f) => [`onnx/${f}`, f]) : []),
    "onnx/model.onnx",
    "model.onnx",
  ].map((f) => path.join(modelDir, f));
  const found = candidates.find((f) => existsSync(f));
  if (!found)
    throw new Error(
      `no ONNX graph in ${modelDir} (looked for ${candidates.map((c) => path.relative(modelDir, c)).join(", ")})`,
    );
  return found;
}

function readConfig(modelDir: string): ModelConfig {
  const file = path.join(modelDir, "config.json");
  if (!existsSync(file)) throw new Error(`${file} is missing`);
  return JSON.parse(readFileSync(file, "utf8")) as ModelConfig;
}

async function loadModel(opts: CrossEncoderOptions): Promise<LoadedModel> {
  const modelDir = path.resolve(opts.modelDir);
  const modelFile = modelFileIn(modelDir, wantsInt8(opts.quantized, opts.provider));
  const key = JSON.stringify([modelFile, opts.provider ?? "auto", opts.threads ?? null, opts.instance ?? 0]);
  let p = loaded.get(key);
  if (!p) {
    p = (async () => {
      const config = readConfig(modelDir);
      const [tokenizer, session] = await Promise.all([
        loadTokenizer(modelDir),
        createOrtSession(modelFile, { provider: opts.provider ?? "auto", threads: opts.threads, log: opts.log }),
      ]);
      if (!session.inputNames.includes("input_ids")) {
        await session.release();
        throw new Error(`${modelFile} has no input_ids input (inputs: ${session.inputNames.join(", ")})`);
      }
      return { session, tokenizer, config, modelFile };
    })();
    loaded.set(key, p);
    p.catch(() => loaded.delete(key));
  }
  return p;
}

/** Releases every memoised session (tests and benchmarks that switch models). */
export async function releaseCrossEncoders(): Promise<void> {
  const all = [...loaded.values()];
  loaded.clear();
  await Promise.all(all.map((p) => p.then((m) => m.session.release()).catch(() => undefined)));
}

export async function loadCrossEncoder(opts: CrossEncoderOptions): Promise<CrossEncoder> {
  const { session, tokenizer, config, modelFile } = await loadModel(opts);
  // The tokenizer adapter reads the limit from tokenizer_config and the position table in config.json.
  const modelLimit = tokenizer.modelMaxLength;
  const maxLength = Math.min(opts.maxLength ?? modelLimit, modelLimit);
  if (opts.maxLength && opts.maxLength > modelLimit) {
    opts.log?.(
      "warn",
      `cross-encoder: maxLength ${opts.maxLength} exceeds the model's limit ${modelLimit}; using ${modelLimit}`,
    );
  }
  const batchTokens = Math.max(maxLength, opts.batchTokens ?? defaultBatchTokens(session.provider));
  if (maxLength < tokenizer.pairOverhead + 2)
    throw new Error(`maxLength ${maxLength} leaves no room for a query and a document`);
  // The model's own pad id (XLM-R derives position ids from it), else the tokenizer's.
  const padId = config.pad_token_id ?? tokenizer.padId;
  const numLabels = config.num_labels ?? (config.id2label ? Object.keys(config.id2label).length : 1);
  if (numLabels > 2)
    throw new Error(`${modelFile}: ${numLabels} labels; a reranker has 1 (or 2: not relevant / relevant)`);
  const modelName = opts.name ?? config._name_or_path ?? path.basename(path.resolve(opts.modelDir));
  const outputName = session.outputNames.includes("logits") ? "logits" : session.outputNames[0];
  const wants = (name: string) => session.inputNames.includes(name);

  interface Pair {
    doc: number;
    ids: number[];
    typeIds: number[];
  }

  const encodeAll = (
    query: string,
    documents: string[],
    o: ScorePairsOptions,
  ): { pairs: Pair[]; truncated: number } => {
    const pairs: Pair[] = [];
    let truncated = 0;
    const strategy = o.strategy ?? "truncate";
    documents.forEach((text, doc) => {
      if (strategy === "truncate") {
        const e = tokenizer.encodePair(query, text, { maxLength, maxTokensPerDoc: o.maxTokensPerDoc });
        if (e.truncated) truncated++;
        pairs.push({ doc, ids: e.ids, typeIds: e.typeIds });
        return;
      }
      // chunk: cap the document at maxTokensPerDoc (Cohere's meaning), then cover all of it with
      // overlapping model-sized windows cut at word boundaries; its score is its best window's.
      if (o.maxTokensPerDoc !== undefined && tokenizer.countTokens(text) > o.maxTokensPerDoc) truncated++;
      const windows = tokenizer.chunkDoc(query, text, {
        maxLength,
        maxTokensPerDoc: o.maxTokensPerDoc,
        overlapTokens: opts.chunkOverlap,
      });
      for (const w of windows) {
        const e = tokenizer.encodePair(query, w.text, { maxLength });
        pairs.push({ doc, ids: e.ids, typeIds: e.typeIds });
      }
    });
    return { pairs, truncated };
  };

  const scorePairs = async (query: string, documents: string[], o: ScorePairsOptions = {}): Promise<PairScores> => {
    const t0 = performance.now();
    const { pairs, truncated } = encodeAll(query, documents, o);
    const t1 = performance.now();
    const ids = pairs.map((p) => p.ids);
    const typeIds = pairs.map((p) => p.typeIds);
    const masks = ids.map((r) => new Array<number>(r.length).fill(1));
    const pairLogits = await runInBatches(
      ids.map((r) => r.length),
      batchTokens,
      async (batch) => {
        const dims = [batch.indices.length, batch.padTo];
        const alloc = (n: number) => new BigInt64Array(n);
        const feeds: Record<string, { data: BigInt64Array; dims: number[] }> = {
          input_ids: { data: padRows(ids, batch.indices, batch.padTo, padId, alloc), dims },
        };
        if (wants("attention_mask")) {
          feeds.attention_mask = { data: padRows(masks, batch.indices, batch.padTo, 0, alloc), dims };
        }
        if (wants("token_type_ids"))
          feeds.token_type_ids = { data: padRows(typeIds, batch.indices, batch.padTo, 0, alloc), dims };
        const out = (await session.run(feeds))[outputName];
        const data = out.data as Float32Array;
        const labels = out.dims.length > 1 ? out.dims[out.dims.length - 1] : 1;
        // Two-label heads: logit(relevant) - logit(not relevant) has sigmoid = softmax[:, 1].
        return Array.from({ length: batch.indices.length }, (_, r) =>
          labels === 2 ? data[r * 2 + 1] - data[r * 2] : data[r * labels],
        );
      },
    );
    const logits = new Float32Array(documents.length).fill(Number.NEGATIVE_INFINITY);
    pairs.forEach((p, i) => {
      if (pairLogits[i] > logits[p.doc]) logits[p.doc] = pairLogits[i];
    });
    const t2 = performance.now();
    return {
      logits,
      pairs: pairs.length,
      tokens: ids.reduce((s, r) => s + r.length, 0),
      truncated,
      tokenizeMs: t1 - t0,
      inferenceMs: t2 - t1,
    };
  };

  const fixture = config.fixture === true;
  const precision = isQuantizedGraph(modelFile) ? "int8" : "fp32";
  return {
    model: modelName,
    precision,
    provider: session.provider,
    fallbacks: session.fallbacks,
    maxLength,
    batchTokens,
    fixture,
    family: config.model_type ?? "bert",
    modelFile,
    inputNames: session.inputNames,
    tokenizer,
    scorePairs,
    describe: () => ({ model: modelName, provider: session.provider, fixture, precision }),
  };
}
