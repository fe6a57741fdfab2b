// The embedded defaults of the local tools (dev stack, serve, query): which embedder and which
// second stage run when the user configured nothing, and why. A trained cross-encoder (configured,
// or fetched into models/) wins; without one the weight-free lexical reranker runs, which needs no
// files and helps (docs/EVAL.md). The random-weight fixtures run only when asked for
// (RERANKER=fixture, or RERANKER_MODEL_DIR naming one) and are always announced.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describeEmbedderChoice, type EmbedderChoice } from "../../shared/adapters/embedders.ts";
import type { Config } from "../../shared/core/config.ts";
import { LEXICAL_MODEL } from "../../shared/core/lexical-scorer.ts";
import { ensureFixtureModel, type FixtureName, REPO_ROOT } from "../fixtures/index.ts";

/** Where `npm run cli -- models fetch <name>` (scripts/fetch-model.ts) puts models. */
export const MODELS_DIR = path.join(REPO_ROOT, "models");
export const DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2";
export const DEFAULT_RERANKER_MODEL = "ms-marco-MiniLM-L-6-v2";

export interface RerankerChoice {
  /**
   * model: a cross-encoder folder on disk; store: RERANKER_MODEL_S3_PREFIX; lexical: the weight-free
   * lexical reranker (in-process, nothing to load); remote: RERANKER=http|lambda (nothing to load
   * here); none: no second stage.
   */
  kind: "model" | "store" | "lexical" | "remote" | "none";
  /** The folder, for kind "model". */
  dir?: string;
  /** Short name for messages. */
  name: string;
  /** Generated random-weight fixture: scores carry no meaning. */
  fixture: boolean;
  reason: string;
}

export interface EmbeddedDefaults {
  /** The configuration with the chosen model folders filled in. */
  cfg: Config;
  embedder: EmbedderChoice;
  reranker: RerankerChoice;
}

export interface DefaultsOptions {
  /** RERANKER=fixture: the small `tiny-cross` fixture instead of the MiniLM-shaped one (DEMO_FAST=1). */
  fast?: boolean;
  /** false: no second stage whatever the configuration says. */
  rerank?: boolean;
  /** Folder holding fetched models (default models/ in the repository). */
  modelsDir?: string;
  /** Fixture cache folder (default .cache/fixtures). */
  fixtureCacheDir?: string;
}

/** A folder an ONNX model loader can open: onnx/model.onnx beside tokenizer.json and config.json. */
export function hasOnnxModel(dir: string): boolean {
  return ["onnx/model.onnx", "tokenizer.json", "config.json"].every((f) => existsSync(path.join(dir, f)));
}

/** Whether a model folder's config.json marks it as a generated fixture. */
export function isFixtureModel(dir: string): boolean {
  try {
    return (JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as { fixture?: unknown }).fixture === true;
  } catch {
    return false;
  }
}

/**
 * Fills in the embedded defaults: EMBEDDING_MODEL_DIR falls back to models/all-MiniLM-L6-v2 when it
 * was fetched (EMBEDDER=auto then picks it unless OPENAI_API_KEY is set); an in-process reranker
 * without RERANKER_MODEL_DIR / RERANKER_MODEL_S3_PREFIX uses models/ms-marco-MiniLM-L-6-v2 when
 * fetched, else the lexical reranker. RERANKER=fixture generates and uses a fixture cross-encoder
 * (minilm-l6-cross, or tiny-cross when `fast`); RERANKER_BACKEND=lexical forces the lexical one.
 */
export async function resolveEmbeddedDefaults(base: Config, opts: DefaultsOptions = {}): Promise<EmbeddedDefaults> {
  const modelsDir = opts.modelsDir ?? MODELS_DIR;
  const cfg: { -readonly [K in keyof Config]: Config[K] } = { ...base };

  if (!cfg.embeddingModelDir) {
    const fetched = path.join(modelsDir, DEFAULT_EMBEDDING_MODEL);
    if (hasOnnxModel(fetched)) cfg.embeddingModelDir = fetched;
  }
  const embedder = describeEmbedderChoice(cfg);

  let reranker: RerankerChoice;
  if (opts.rerank === false || cfg.reranker === "none") {
    cfg.reranker = "none";
    reranker = {
      kind: "none",
      name: "none",
      fixture: false,
      reason: opts.rerank === false ? "reranking turned off" : "RERANKER=none",
    };
  } else if (cfg.reranker === "http" || cfg.reranker === "lambda") {
    reranker = {
      kind: "remote",
      name: cfg.reranker === "http" ? (cfg.rerankerUrl ?? "http") : (cfg.rerankerFunction ?? "lambda"),
      fixture: false,
      reason: `RERANKER=${cfg.reranker}`,
    };
  } else if (cfg.reranker === "fixture") {
    const name: FixtureName = opts.fast ? "tiny-cross" : "minilm-l6-cross";
    const dir = await ensureFixtureModel(name, opts.fixtureCacheDir ? { cacheDir: opts.fixtureCacheDir } : {});
    Object.assign(cfg, { reranker: "in-process", rerankerBackend: "onnx", rerankerModelDir: dir });
    reranker = { kind: "model", dir, name, fixture: true, reason: `RERANKER=fixture: generated fixture ${name}` };
  } else if (cfg.rerankerBackend === "lexical") {
    Object.assign(cfg, { rerankerModelDir: undefined, rerankerModelS3: undefined });
    reranker = lexicalChoice("RERANKER_BACKEND=lexical");
  } else if (cfg.rerankerModelDir) {
    reranker = {
      kind: "model",
      dir: cfg.rerankerModelDir,
      name: path.basename(path.resolve(cfg.rerankerModelDir)),
      fixture: isFixtureModel(cfg.rerankerModelDir),
      reason: `RERANKER_MODEL_DIR=${cfg.rerankerModelDir}`,
    };
  } else if (cfg.rerankerModelS3) {
    reranker = {
      kind: "store",
      name: cfg.rerankerModelS3,
      fixture: false,
      reason: `RERANKER_MODEL_S3_PREFIX=${cfg.rerankerModelS3}`,
    };
  } else {
    const fetched = path.join(modelsDir, DEFAULT_RERANKER_MODEL);
    if (hasOnnxModel(fetched)) {
      cfg.rerankerModelDir = fetched;
      reranker = {
        kind: "model",
        dir: fetched,
        name: DEFAULT_RERANKER_MODEL,
        fixture: isFixtureModel(fetched),
        reason: `fetched into ${path.relative(REPO_ROOT, fetched) || fetched}`,
      };
    } else {
      // RERANKER_BACKEND=auto with no model configured is the lexical reranker.
      reranker = lexicalChoice(
        `no trained cross-encoder: RERANKER_MODEL_DIR is unset and ${path.relative(REPO_ROOT, fetched)} was not fetched`,
      );
    }
  }
  return { cfg, embedder, reranker };
}

function lexicalChoice(reason: string): RerankerChoice {
  return { kind: "lexical", name: LEXICAL_MODEL, fixture: false, reason };
}

/** The lines that say which second stage runs when it is the lexical one, and how to get a trained one. */
export function lexicalNotice(): string[] {
  return [
    `Second stage: ${LEXICAL_MODEL}, the weight-free lexical reranker (exact phrase, term proximity,`,
    "query-term coverage, title/lead matches, BM25). It needs no model files and improves on the",
    "first stage (docs/EVAL.md). For a trained cross-encoder, on a machine with internet:",
    `  npm run cli -- models fetch ${DEFAULT_RERANKER_MODEL}`,
    "(or point RERANKER_MODEL_DIR at a cross-encoder folder with onnx/model.onnx).",
  ];
}

/** The lines that tell a user their reranker scores are random, and how to get a real model. */
export function fixtureNotice(reranker: RerankerChoice): string[] {
  return [
    `RERANKER IS A FIXTURE: ${reranker.name} has random weights, so its scores and the reranked order`,
    "carry NO meaning. It only exercises the plumbing. For real reranking, fetch a model on a machine",
    `with internet:  npm run cli -- models fetch ${DEFAULT_RERANKER_MODEL}`,
    "(or point RERANKER_MODEL_DIR at a cross-encoder folder with onnx/model.onnx).",
  ];
}
