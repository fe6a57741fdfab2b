// Which second stages the evaluation reranks with. The weight-free lexical reranker always runs
// (it is the embedded default); a cross-encoder runs beside it when one is configured or fetched,
// or when a fixture is asked for (random weights: its rows measure plumbing, never relevance).
import { existsSync } from "node:fs";
import path from "node:path";
import { createLexicalReranker, createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import type { Config } from "../../shared/core/config.ts";
import type { RerankerPort } from "../../shared/core/ports.ts";
import type { RerankRequest, RerankResponse } from "../../shared/core/types.ts";
import { ensureFixtureModel } from "../fixtures/index.ts";
import { DEFAULT_RERANKER_MODEL, hasOnnxModel, MODELS_DIR } from "../local/defaults.ts";

export const RERANK_MODEL_CHOICES = ["auto", "lexical", "minilm", "tiny", "none"] as const;
/**
 * auto    lexical, plus RERANKER_MODEL_DIR (or models/ms-marco-MiniLM-L-6-v2 when fetched)
 * lexical the weight-free lexical reranker only
 * minilm  lexical, plus the MiniLM-L6-shaped fixture (6 layers, hidden 384): realistic cost, random scores
 * tiny    lexical, plus the 2-layer fixture: seconds instead of minutes, random scores
 * none    no reranked rows
 */
export type RerankModelChoice = (typeof RERANK_MODEL_CHOICES)[number];

export interface EvalReranker {
  /** Row name part: "lexical" or "cross-encoder". */
  name: "lexical" | "cross-encoder";
  port: RerankerPort;
  /** Model, provider and, for fixtures, a "random weights" notice. */
  label: string;
  fixture: boolean;
}

/**
 * Remembers each (query, passage) score: both rerankers score a pair the same whatever else is in
 * the request (the lexical one with the index's term statistics), so the candidate-count sweep and
 * the three first stages score each pair once.
 */
export function memoizedReranker(inner: RerankerPort): RerankerPort {
  const scores = new Map<string, number>();
  let last: RerankResponse["meta"] | undefined;
  return {
    describe: () => inner.describe(),
    async rerank(req: RerankRequest): Promise<RerankResponse> {
      const texts = req.documents.map((d) => (typeof d === "string" ? d : d.text));
      const key = (t: string) => `${req.query}\u0000${t}`;
      const missing = [...new Set(texts.filter((t) => !scores.has(key(t))))];
      if (missing.length > 0) {
        const res = await inner.rerank({ ...req, documents: missing, top_n: undefined });
        for (const r of res.results) scores.set(key(missing[r.index]), r.relevance_score);
        last = res.meta;
      }
      const results = texts
        .map((t, index) => ({ index, relevance_score: scores.get(key(t))!, logit: scores.get(key(t))! }))
        .sort((a, b) => b.relevance_score - a.relevance_score || a.index - b.index);
      return {
        results,
        meta: last ?? {
          model: inner.describe().model ?? "?",
          provider: inner.describe().provider ?? "?",
          pairs: 0,
          tokens: 0,
          truncated: 0,
          timings: { tokenize_ms: 0, inference_ms: 0, total_ms: 0 },
        },
      };
    },
  };
}

export async function resolveEvalRerankers(cfg: Config, choice: RerankModelChoice): Promise<EvalReranker[]> {
  if (choice === "none") return [];
  const lexical = createLexicalReranker(cfg);
  const out: EvalReranker[] = [
    {
      name: "lexical",
      port: memoizedReranker(lexical),
      label: `${lexical.describe().model} (weight-free)`,
      fixture: false,
    },
  ];
  let dir: string | undefined;
  if (choice === "minilm" || choice === "tiny")
    dir = await ensureFixtureModel(choice === "tiny" ? "tiny-cross" : "minilm-l6-cross");
  else if (choice === "auto") {
    const fetched = path.join(MODELS_DIR, DEFAULT_RERANKER_MODEL);
    dir = cfg.rerankerModelDir ?? (existsSync(fetched) && hasOnnxModel(fetched) ? fetched : undefined);
  }
  if (dir) {
    const model = createLocalReranker({
      ...cfg,
      rerankerBackend: "onnx",
      rerankerModelDir: dir,
      rerankerModelS3: undefined,
    });
    await model.warm();
    const d = model.describe();
    const fixture = d.fixture === true;
    const label = `${d.model ?? dir}${d.provider ? ` (${d.provider})` : ""}${fixture ? " [fixture: random weights]" : ""}`;
    out.push({ name: "cross-encoder", port: memoizedReranker(model), label, fixture });
  }
  return out;
}
