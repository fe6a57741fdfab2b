// The embedded defaults of the local tools (dev stack, serve, query): which embedder and which
// cross-encoder run when the user configured nothing, and why. Real models fetched into models/
// win over generated fixtures; a fixture is always announced, because its scores are random.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describeEmbedderChoice, type EmbedderChoice } from "../../shared/adapters/embedders.ts";
import type { Config } from "../../shared/core/config.ts";
import { ensureFixtureModel, type FixtureName, REPO_ROOT } from "../fixtures/index.ts";

/** Where `npm run cli -- models fetch <name>` (scripts/fetch-model.ts) puts models. */
export const MODELS_DIR = path.join(REPO_ROOT, "models");
export const DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2";
export const DEFAULT_RERANKER_MODEL = "ms-marco-MiniLM-L-6-v2";

export interface RerankerChoice {
  /**
   * model: a cross-encoder folder on disk; store: RERANKER_MODEL_S3_PREFIX; remote: RERANKER=http|lambda
   * (nothing to load here); none: no second stage.
   */
  kind: "model" | "store" | "remote" | "none";
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
  /** Use the small `tiny-cross` fixture instead of the MiniLM-shaped one (DEMO_FAST=1). */
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
 * fetched, else a generated fixture (minilm-l6-cross, or tiny-cross when `fast`).
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
      const name: FixtureName = opts.fast ? "tiny-cross" : "minilm-l6-cross";
      const dir = await ensureFixtureModel(name, opts.fixtureCacheDir ? { cacheDir: opts.fixtureCacheDir } : {});
      cfg.rerankerModelDir = dir;
      reranker = {
        kind: "model",
        dir,
        name,
        fixture: true,
        reason: `no RERANKER_MODEL_DIR and no ${path.relative(REPO_ROOT, fetched)}: generated fixture ${name}`,
      };
    }
  }
  return { cfg, embedder, reranker };
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
