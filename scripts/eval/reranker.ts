// Which cross-encoder the evaluation reranks with: a real model when RERANKER_MODEL_DIR names
// one, else a generated fixture (random weights: its rows measure plumbing, never relevance).
import type { Config } from "../../shared/core/config.ts";
import type { RerankerPort } from "../../shared/core/ports.ts";
import { createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import { ensureFixtureModel } from "../fixtures/index.ts";

export const RERANK_MODEL_CHOICES = ["auto", "minilm", "tiny", "none"] as const;
/**
 * auto   RERANKER_MODEL_DIR when set, else the MiniLM-L6-shaped fixture
 * minilm the MiniLM-L6-shaped fixture (6 layers, hidden 384): realistic cost, random scores
 * tiny   the 2-layer fixture: seconds instead of minutes, random scores
 * none   no reranking rows
 */
export type RerankModelChoice = (typeof RERANK_MODEL_CHOICES)[number];

export interface EvalReranker {
  port: RerankerPort;
  /** Model, provider and, for fixtures, a "random weights" notice. */
  label: string;
  fixture: boolean;
  dir: string;
}

export async function resolveEvalReranker(cfg: Config, choice: RerankModelChoice): Promise<EvalReranker | null> {
  if (choice === "none") return null;
  let dir: string;
  if (choice === "auto" && cfg.rerankerModelDir) dir = cfg.rerankerModelDir;
  else dir = await ensureFixtureModel(choice === "tiny" ? "tiny-cross" : "minilm-l6-cross");
  const reranker = createLocalReranker({ ...cfg, rerankerModelDir: dir, rerankerModelS3: undefined });
  await reranker.warm();
  const d = reranker.describe();
  const fixture = d.fixture === true;
  const label = `${d.model ?? dir}${d.provider ? ` (${d.provider})` : ""}${fixture ? " [fixture: random weights]" : ""}`;
  return { port: reranker, label, fixture, dir };
}
