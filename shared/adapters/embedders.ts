// Picks and builds the embedder from the configuration, or the one that matches a snapshot.
// The ONNX and USE-lite embedders are imported lazily so the hashing and OpenAI paths never load
// onnxruntime.
import { existsSync } from "node:fs";
import path from "node:path";
import type { Config } from "../core/config.ts";
import { ConfigError } from "../core/errors.ts";
import { assertEmbedderMatches, describeIdentity } from "../core/embedding.ts";
import type { Embedder } from "../core/ports.ts";
import type { EmbedderIdentity, EmbedderKind } from "../core/types.ts";
import { type HashingCorpusStats, HashingStatsBuilder, createHashingEmbedder } from "./hash-embedder.ts";
import { createOpenAIEmbedder } from "./openai-embedder.ts";
import { useLiteAvailable } from "./use-lite-embedder.ts";

export interface EmbedderChoice {
  kind: EmbedderKind;
  /** Why this kind, for logs and `cli config` output. */
  reason: string;
}

type ChoiceConfig = Pick<Config, "embedder" | "openaiApiKey" | "embeddingModelDir">;

function onnxModelFile(cfg: ChoiceConfig): string | null {
  return cfg.embeddingModelDir ? path.join(cfg.embeddingModelDir, "onnx", "model.onnx") : null;
}

function canRun(kind: EmbedderKind, cfg: ChoiceConfig): boolean {
  if (kind === "hashing") return true;
  if (kind === "openai") return Boolean(cfg.openaiApiKey);
  if (kind === "use-lite") return useLiteAvailable();
  const file = onnxModelFile(cfg);
  return file !== null && existsSync(file);
}

/**
 * Which embedder the configuration selects. EMBEDDER=auto: openai when OPENAI_API_KEY is set, else onnx
 * when EMBEDDING_MODEL_DIR holds onnx/model.onnx, else hashing. USE-lite (EMBEDDER=use-lite) is not an
 * auto pick: in hybrid search it lost to the hashing embedder on Cranfield, below BM25 alone
 * (docs/EVAL.md), and an embedded default must not make answers worse. Given a snapshot's identity, auto follows
 * the snapshot's kind when this configuration can run it, so an added API key does not break old snapshots.
 */
export function describeEmbedderChoice(cfg: ChoiceConfig, snapshot?: EmbedderIdentity): EmbedderChoice {
  if (cfg.embedder !== "auto") return { kind: cfg.embedder, reason: `EMBEDDER=${cfg.embedder}` };
  if (snapshot && canRun(snapshot.kind, cfg)) {
    return {
      kind: snapshot.kind,
      reason: `EMBEDDER=auto follows the snapshot, built with ${describeIdentity(snapshot)}`,
    };
  }
  if (canRun("openai", cfg)) return { kind: "openai", reason: "EMBEDDER=auto and OPENAI_API_KEY is set" };
  const file = onnxModelFile(cfg);
  if (file && canRun("onnx", cfg)) return { kind: "onnx", reason: `EMBEDDER=auto and ${file} exists` };
  return {
    kind: "hashing",
    reason: file
      ? `EMBEDDER=auto, no OPENAI_API_KEY, and ${file} does not exist: offline hashing embedder`
      : "EMBEDDER=auto, no OPENAI_API_KEY and no EMBEDDING_MODEL_DIR: offline hashing embedder",
  };
}

export interface CreateEmbedderOptions {
  /** manifest.corpus_stats of the snapshot (IDF of the hashing embedder). */
  corpusStats?: unknown;
  /** manifest.embedder: build the embedder matching it, and refuse one that cannot match. */
  identity?: EmbedderIdentity;
}

type EmbedderConfig = ChoiceConfig &
  Pick<
    Config,
    | "openaiBaseUrl"
    | "openaiModel"
    | "openaiDimensions"
    | "embeddingPooling"
    | "hashingDimensions"
    | "embedTimeoutMs"
    | "modelCacheDir"
  >;

/**
 * The embedder for indexing (no identity) or for querying a snapshot (its identity and corpus stats).
 * Throws ConfigError when the chosen kind lacks a setting, EmbedderMismatchError when the result cannot
 * embed queries comparable with the snapshot, SnapshotInvalidError for unusable corpus statistics.
 */
export async function createEmbedder(cfg: EmbedderConfig, opts: CreateEmbedderOptions = {}): Promise<Embedder> {
  const { identity } = opts;
  const { kind } = describeEmbedderChoice(cfg, identity);
  const same = identity?.kind === kind ? identity : undefined;
  let embedder: Embedder;
  switch (kind) {
    case "hashing":
      embedder = createHashingEmbedder({
        dimensions: same?.dimensions ?? cfg.hashingDimensions,
        stats: opts.corpusStats as HashingCorpusStats | undefined,
      });
      break;
    case "openai":
      if (!cfg.openaiApiKey) throw new ConfigError("OPENAI_API_KEY", "required when EMBEDDER=openai");
      embedder = createOpenAIEmbedder({
        apiKey: cfg.openaiApiKey,
        baseURL: cfg.openaiBaseUrl,
        model: same?.model ?? cfg.openaiModel,
        dimensions: same?.dimensions ?? cfg.openaiDimensions,
        timeoutMs: cfg.embedTimeoutMs,
      });
      break;
    case "onnx": {
      if (!cfg.embeddingModelDir) throw new ConfigError("EMBEDDING_MODEL_DIR", "required when EMBEDDER=onnx");
      const { createOnnxEmbedder } = await import("./onnx-embedder.ts");
      embedder = await createOnnxEmbedder({
        modelDir: cfg.embeddingModelDir,
        pooling: same?.pooling ?? cfg.embeddingPooling,
      });
      break;
    }
    case "use-lite": {
      const { createUseLiteEmbedder } = await import("./use-lite-embedder.ts");
      embedder = await createUseLiteEmbedder({ cacheDir: cfg.modelCacheDir });
      break;
    }
  }
  if (identity) assertEmbedderMatches(identity, embedder.identity);
  return embedder;
}

/** Accumulates the corpus statistics an embedder needs at query time (manifest.corpus_stats), if any. */
export interface CorpusStatsBuilder {
  add(passageText: string): void;
  finish(): unknown;
}

/** A statistics builder for embedders that use them (hashing: document frequencies); null for the rest. */
export function corpusStatsBuilder(identity: EmbedderIdentity): CorpusStatsBuilder | null {
  return identity.kind === "hashing" ? new HashingStatsBuilder(identity.dimensions) : null;
}

/** manifest.corpus_stats for these passage texts, or undefined when the embedder needs none. */
export function computeCorpusStats(identity: EmbedderIdentity, passageTexts: Iterable<string>): unknown {
  const b = corpusStatsBuilder(identity);
  if (!b) return undefined;
  for (const t of passageTexts) b.add(t);
  return b.finish();
}
