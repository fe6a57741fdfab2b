// Local sentence embedder on ONNX Runtime: a sentence-transformers folder (config.json,
// tokenizer.json, onnx/model.onnx with a last_hidden_state output, optional 1_Pooling/config.json
// and sentence_bert_config.json). Mean pooling over the attention mask (or the CLS row), then L2
// normalisation, as sentence-transformers' Pooling + Normalize modules do. Texts are batched by a
// padded-token budget (shared/core/batching.ts).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { padRows, runInBatches } from "../core/batching.ts";
import { l2normalize } from "../core/embedding.ts";
import type { EmbedOptions, Embedder, EmbedderUsage } from "../core/ports.ts";
import type { EmbedderIdentity } from "../core/types.ts";
import { modelFileIn } from "./cross-encoder.ts";
import { loadTokenizer } from "./hf-tokenizer.ts";
import {
  createOrtSession,
  defaultBatchTokens,
  type OrtLog,
  type ProviderChoice,
  type ProviderFallback,
} from "./ort-session.ts";

export type Pooling = "mean" | "cls";

export interface OnnxEmbedderOptions {
  modelDir: string;
  /** Default: what 1_Pooling/config.json says, else mean. */
  pooling?: Pooling;
  /** Tokens per text, special tokens included; default sentence_bert_config max_seq_length, else the model's limit. */
  maxLength?: number;
  /** Padded tokens per inference micro-batch (default: defaultBatchTokens of the provider in use). */
  batchTokens?: number;
  provider?: ProviderChoice;
  threads?: number;
  /** Model name in the identity; default config `_name_or_path`, else the folder name. */
  name?: string;
  log?: OrtLog;
}

export interface OnnxEmbedder extends Embedder {
  readonly provider: string;
  readonly fallbacks: readonly ProviderFallback[];
  readonly maxLength: number;
  /** Texts cut to maxLength since creation. */
  truncatedTexts(): number;
}

function readJson(file: string): Record<string, unknown> | null {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>) : null;
}

function poolingFromFolder(modelDir: string): Pooling | undefined {
  const cfg = readJson(path.join(modelDir, "1_Pooling", "config.json"));
  if (!cfg) return undefined;
  if (cfg.pooling_mode_cls_token === true) return "cls";
  if (cfg.pooling_mode_mean_tokens === true) return "mean";
  return undefined;
}

export async function createOnnxEmbedder(opts: OnnxEmbedderOptions): Promise<OnnxEmbedder> {
  const modelDir = path.resolve(opts.modelDir);
  const config = readJson(path.join(modelDir, "config.json"));
  if (!config) throw new Error(`${path.join(modelDir, "config.json")} is missing`);
  const hidden = Number(config.hidden_size);
  if (!Number.isInteger(hidden) || hidden < 1) throw new Error(`${modelDir}/config.json has no hidden_size`);
  const pooling: Pooling = opts.pooling ?? poolingFromFolder(modelDir) ?? "mean";
  const st = readJson(path.join(modelDir, "sentence_bert_config.json"));

  const [tokenizer, session] = await Promise.all([
    loadTokenizer(modelDir),
    createOrtSession(modelFileIn(modelDir), {
      provider: opts.provider ?? "auto",
      threads: opts.threads,
      log: opts.log,
    }),
  ]);
  const seqDefault = typeof st?.max_seq_length === "number" ? st.max_seq_length : tokenizer.modelMaxLength;
  const maxLength = Math.min(opts.maxLength ?? seqDefault, tokenizer.modelMaxLength);
  const batchTokens = Math.max(maxLength, opts.batchTokens ?? defaultBatchTokens(session.provider));
  const padId = typeof config.pad_token_id === "number" ? config.pad_token_id : tokenizer.padId;
  const output =
    ["last_hidden_state", "token_embeddings"].find((n) => session.outputNames.includes(n)) ?? session.outputNames[0];
  const wants = (name: string) => session.inputNames.includes(name);
  const identity: EmbedderIdentity = {
    kind: "onnx",
    model:
      opts.name ??
      (typeof config._name_or_path === "string" && config._name_or_path
        ? config._name_or_path
        : path.basename(modelDir)),
    dimensions: hidden,
    normalized: true,
    pooling,
  };
  const counters: EmbedderUsage = { calls: 0, texts: 0, tokens: 0 };
  let truncated = 0;

  const embedDocuments = async (texts: string[], o: EmbedOptions = {}): Promise<Float32Array[]> => {
    o.signal?.throwIfAborted();
    const encoded = texts.map((t) => tokenizer.encode(t, { maxLength }));
    const ids = encoded.map((e) => e.ids);
    const masks = encoded.map((e) => e.attentionMask);
    const typeIds = encoded.map((e) => e.typeIds);
    let done = 0;
    const vectors = await runInBatches(
      ids.map((r) => r.length),
      batchTokens,
      async (batch) => {
        o.signal?.throwIfAborted();
        const rows = batch.indices.length;
        const width = batch.padTo;
        const dims = [rows, width];
        const alloc = (n: number) => new BigInt64Array(n);
        const feeds: Record<string, { data: BigInt64Array; dims: number[] }> = {
          input_ids: { data: padRows(ids, batch.indices, width, padId, alloc), dims },
        };
        if (wants("attention_mask"))
          feeds.attention_mask = { data: padRows(masks, batch.indices, width, 0, alloc), dims };
        if (wants("token_type_ids"))
          feeds.token_type_ids = { data: padRows(typeIds, batch.indices, width, 0, alloc), dims };
        const out = (await session.run(feeds))[output];
        const data = out.data as Float32Array;
        const result: Float32Array[] = [];
        for (let r = 0; r < rows; r++) {
          const v = new Float32Array(hidden);
          if (out.dims.length === 2) {
            // Already pooled by the graph (a sentence_embedding output).
            v.set(data.subarray(r * hidden, (r + 1) * hidden));
          } else if (pooling === "cls") {
            v.set(data.subarray(r * width * hidden, r * width * hidden + hidden));
          } else {
            const len = ids[batch.indices[r]].length; // real tokens; the rest is padding
            for (let t = 0; t < len; t++) {
              const base = (r * width + t) * hidden;
              for (let h = 0; h < hidden; h++) v[h] += data[base + h];
            }
            for (let h = 0; h < hidden; h++) v[h] /= Math.max(len, 1);
          }
          result.push(l2normalize(v));
        }
        done += rows;
        o.onProgress?.(done, texts.length);
        return result;
      },
    );
    counters.texts += texts.length;
    counters.tokens += ids.reduce((s, r) => s + r.length, 0);
    truncated += encoded.filter((e) => e.truncated).length;
    return vectors;
  };

  return {
    identity,
    provider: session.provider,
    fallbacks: session.fallbacks,
    maxLength,
    embedDocuments,
    embedQuery: async (text, o) => (await embedDocuments([text], o))[0],
    usage: () => ({ ...counters }),
    truncatedTexts: () => truncated,
  };
}
