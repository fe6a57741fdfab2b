// Picks and builds the embedder from the configuration, or the one that matches a snapshot.
// The ONNX and USE-lite embedders are imported lazily so the hashing and OpenAI paths never load
// onnxruntime.
import { existsSync } from "node:fs";
import path from "node:path";
import type { Config } from "../core/config.ts";
import { ConfigError } from "../core/errors.ts";
import { assertEmbedderMatches, describeIdentity, joinEmbedders, USE_LITE_PART_DIMENSIONS } from "../core/embedding.ts";
import type { Embedder } from "../core/ports.ts";
import type { EmbedderIdentity, EmbedderKind } from "../core/types.ts";
import { HASHING_MODEL, type HashingCorpusStats, HashingStatsBuilder, createHashingEmbedder } from "./hash-embedder.ts";
import { USE_LITE_DIMENSIONS, USE_LITE_MODEL, useLiteAvailable } from "./use-lite-embedder.ts";

/** The identity of USE-lite joined with a hashing embedder of `hashingDimensions`. */
export function useLiteHashingIdentity(hashingDimensions: number): EmbedderIdentity {
  return {
    kind: "use-lite+hashing",
    model: `${USE_LITE_MODEL}+${HASHING_MODEL}`,
    dimensions: USE_LITE_DIMENSIONS + hashingDimensions,
    normalized: true,
  };
}

export interface EmbedderChoice {
  kind: EmbedderKind;
  /** Why this kind, for logs and `cli config` output. */
  reason: string;
}

type ChoiceConfig = Pick<Config, "embedder" | "openaiApiKey" | "embeddingModelDir">;

function onnxModelFile(cfg: ChoiceConfig): string | null {
  return cfg.embeddingModelDir ? path.join(cfg.embeddingModelDir, "onnx", "model.onnx") : null;
}

function canRunWith(kind: EmbedderKind, cfg: ChoiceConfig, useLiteInstalled: () => boolean): boolean {
  if (kind === "hashing") return true;
  if (kind === "openai") return Boolean(cfg.openaiApiKey);
  if (kind === "use-lite" || kind === "use-lite+hashing") return useLiteInstalled();
  const file = onnxModelFile(cfg);
  return file !== null && existsSync(file);
}

/**
 * Which embedder the configuration selects. EMBEDDER=auto: openai when OPENAI_API_KEY is set, else onnx
 * when EMBEDDING_MODEL_DIR holds onnx/model.onnx, else use-lite+hashing when the USE-lite package is
 * installed, else hashing. USE-lite alone is not an auto pick: on technical vocabulary (Cranfield) its
 * hybrid fell below BM25 alone (docs/EVAL.md); joined with the hashing embedder's lexical features its
 * hybrid is at least as good as hashing's on every collection measured. Given a snapshot's identity, auto follows the
 * snapshot's kind when this configuration can run it, so an added API key does not break old snapshots.
 */
export function describeEmbedderChoice(
  cfg: ChoiceConfig,
  snapshot?: EmbedderIdentity,
  /** Whether the USE-lite package can be loaded (a parameter so tests can take it away). */
  useLiteInstalled: () => boolean = useLiteAvailable,
): EmbedderChoice {
  const canRun = (kind: EmbedderKind, c: ChoiceConfig) => canRunWith(kind, c, useLiteInstalled);
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
  if (canRun("use-lite+hashing", cfg))
    return {
      kind: "use-lite+hashing",
      reason: `EMBEDDER=auto, no OPENAI_API_KEY${file ? `, ${file} does not exist` : " and no EMBEDDING_MODEL_DIR"}: Universal Sentence Encoder Lite (offline, from npm) joined with the hashing embedder`,
    };
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
    case "openai": {
      if (!cfg.openaiApiKey) throw new ConfigError("OPENAI_API_KEY", "required when EMBEDDER=openai");
      // Imported when chosen: the OpenAI SDK is a sixth of the search bundle's code.
      const { createOpenAIEmbedder } = await import("./openai-embedder.ts");
      embedder = createOpenAIEmbedder({
        apiKey: cfg.openaiApiKey,
        baseURL: cfg.openaiBaseUrl,
        model: same?.model ?? cfg.openaiModel,
        dimensions: same?.dimensions ?? cfg.openaiDimensions,
        timeoutMs: cfg.embedTimeoutMs,
      });
      break;
    }
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
    case "use-lite+hashing": {
      const { createUseLiteEmbedder } = await import("./use-lite-embedder.ts");
      const hashingDimensions = same ? same.dimensions - USE_LITE_PART_DIMENSIONS : cfg.hashingDimensions;
      const hashing = createHashingEmbedder({
        dimensions: hashingDimensions,
        stats: opts.corpusStats as HashingCorpusStats | undefined,
      });
      const useLite = await createUseLiteEmbedder({ cacheDir: cfg.modelCacheDir });
      embedder = joinEmbedders(useLiteHashingIdentity(hashingDimensions), [useLite, hashing]);
      break;
    }
  }
  if (identity) assertEmbedderMatches(identity, embedder.identity);
  return embedder;
}

/**
 * Starts the slow part of the embedder createEmbedder would build for this snapshot identity (USE-lite's
 * model load: graph conversion on a cold /tmp, ONNX session, tokenizer), so a search function's cold
 * start overlaps it with the index download. Resolves when done; never rejects (createEmbedder
 * reports a failure on the first query). Cheap or remote kinds need nothing.
 */
export async function prepareEmbedder(cfg: EmbedderConfig, identity: EmbedderIdentity): Promise<void> {
  const { kind } = describeEmbedderChoice(cfg, identity);
  if (kind !== "use-lite" && kind !== "use-lite+hashing") return;
  try {
    const { loadUseLiteRuntime } = await import("./use-lite-embedder.ts");
    await loadUseLiteRuntime({ cacheDir: cfg.modelCacheDir });
  } catch {
    // Reported by createEmbedder, which retries the load.
  }
}

/** Accumulates the corpus statistics an embedder needs at query time (manifest.corpus_stats), if any. */
export interface CorpusStatsBuilder {
  add(passageText: string): void;
  finish(): unknown;
}

/** A statistics builder for embedders that use them (hashing: document frequencies); null for the rest. */
export function corpusStatsBuilder(identity: EmbedderIdentity): CorpusStatsBuilder | null {
  if (identity.kind === "hashing") return new HashingStatsBuilder(identity.dimensions);
  // The hashing part of a joined vector weights queries by the same document frequencies.
  if (identity.kind === "use-lite+hashing")
    return new HashingStatsBuilder(identity.dimensions - USE_LITE_PART_DIMENSIONS);
  return null;
}

/** manifest.corpus_stats for these passage texts, or undefined when the embedder needs none. */
export function computeCorpusStats(identity: EmbedderIdentity, passageTexts: Iterable<string>): unknown {
  const b = corpusStatsBuilder(identity);
  if (!b) return undefined;
  for (const t of passageTexts) b.add(t);
  return b.finish();
}
