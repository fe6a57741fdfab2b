// Chooses the lexical reranker's feature weights (shared/core/lexical-scorer.ts) by coordinate
// ascent on nDCG@10 of hybrid + lexical, averaged over the tuning collections. Only Cranfield and
// ADI are tuning collections: relevance elsewhere is judged on collections the weights never saw.
//
//   node --import tsx scripts/eval/tune-lexical.ts [--candidates 20] [datasetDir ...]
//
// Prints the weights and the per-collection nDCG@10 of hybrid alone and hybrid + lexical with
// them; paste the weights into DEFAULT_LEXICAL_WEIGHTS and record the run in docs/EVAL.md.
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRerankCostTracker } from "../../shared/core/budget.ts";
import { loadConfig } from "../../shared/core/config.ts";
import {
  combineFeatures,
  DEFAULT_LEXICAL_WEIGHTS,
  type LexicalFeatures,
  type LexicalWeights,
  lexicalFeatures,
} from "../../shared/core/lexical-scorer.ts";
import { evaluateRun, metricSpec } from "../../shared/core/metrics.ts";
import { searchTwoStage } from "../../shared/core/search.ts";
import { REPO_ROOT } from "../fixtures/index.ts";
import { loadDataset } from "./dataset.ts";
import { buildFirstStage } from "./first-stage.ts";
import { DEPTH, documentRanking } from "./run-eval.ts";

interface QueryPool {
  qid: string;
  docs: string[];
  features: LexicalFeatures[];
  /** The hybrid ranking of the whole collection (the rest after the reranked pool). */
  deep: string[];
}

interface Collection {
  name: string;
  qrels: Map<string, ReadonlyMap<string, number>>;
  pools: QueryPool[];
  hybrid: number;
}

const spec = [metricSpec("ndcg", 10)];

async function collect(dir: string, candidates: number): Promise<Collection> {
  const cfg = loadConfig({ EMBEDDER: "hashing" });
  const ds = await loadDataset(dir);
  const fs = await buildFirstStage(ds.corpus, cfg);
  const deps = {
    snapshot: fs.snapshot,
    embedder: fs.queryEmbedder,
    reranker: null,
    estimate: createRerankCostTracker(),
    limits: { maxCandidates: Math.max(fs.snapshot.index.count, DEPTH) },
    rerankTimeoutMs: 60_000,
  };
  const pools: QueryPool[] = [];
  const hybridRun = new Map<string, string[]>();
  for (const q of ds.queries.filter((x) => ds.qrels.has(x.id))) {
    const base = { query: q.text, rerank: false, fusion: "rerank" as const, retrieval: "hybrid" as const };
    const deep = await searchTwoStage({ ...base, k: DEPTH, candidates: DEPTH, collapse: true }, deps);
    const pool = await searchTwoStage({ ...base, k: 2 * candidates, candidates }, deps);
    const stats = fs.snapshot.sparse!.termStatistics(q.text);
    const deepDocs = deep.results.map((h) => h.doc_id);
    hybridRun.set(q.id, documentRanking(pool.results, deepDocs, DEPTH));
    pools.push({
      qid: q.id,
      docs: pool.results.map((h) => h.doc_id),
      features: lexicalFeatures(
        q.text,
        pool.results.map((h) => h.text),
        { stats },
      ),
      deep: deepDocs,
    });
  }
  return { name: ds.name, qrels: ds.qrels, pools, hybrid: evaluateRun(hybridRun, ds.qrels, spec).mean.ndcg_at_10 };
}

function ndcg(c: Collection, w: LexicalWeights): number {
  const run = new Map<string, string[]>();
  for (const p of c.pools) {
    const scores = p.features.map((f) => combineFeatures(f, w));
    const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
    run.set(
      p.qid,
      documentRanking(
        order.map((i) => ({ doc_id: p.docs[i] })),
        p.deep,
        DEPTH,
      ),
    );
  }
  return evaluateRun(run, c.qrels, spec).mean.ndcg_at_10;
}

const GRID = [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3];

async function main() {
  const { values, positionals } = parseArgs({
    options: { candidates: { type: "string", default: "20" } },
    allowPositionals: true,
  });
  const dirs =
    positionals.length > 0
      ? positionals
      : ["cranfield", "adi"].map((d) => path.resolve(REPO_ROOT, "../shared/data", d)).filter((d) => existsSync(d));
  if (dirs.length === 0) throw new Error("no tuning collections found (../shared/data/{cranfield,adi})");
  const collections: Collection[] = [];
  for (const d of dirs) collections.push(await collect(d, Number(values.candidates)));
  const objective = (w: LexicalWeights) => collections.reduce((a, c) => a + ndcg(c, w), 0) / collections.length;

  let best: LexicalWeights = { ...DEFAULT_LEXICAL_WEIGHTS };
  let bestScore = objective(best);
  // bm25 stays at 1: it sets the scale the other weights are relative to.
  const keys = (Object.keys(best) as Array<keyof LexicalWeights>).filter((k) => k !== "bm25");
  for (let round = 0; round < 4; round++) {
    let improved = false;
    for (const k of keys) {
      for (const v of GRID) {
        const w = { ...best, [k]: v };
        const s = objective(w);
        if (s > bestScore + 1e-9) {
          best = w;
          bestScore = s;
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  console.log(JSON.stringify({ weights: best, objective: bestScore }));
  for (const c of collections) {
    console.log(
      `${c.name}: hybrid ${c.hybrid.toFixed(4)}  hybrid+lexical(default weights) ${ndcg(c, DEFAULT_LEXICAL_WEIGHTS).toFixed(4)}  hybrid+lexical(tuned) ${ndcg(c, best).toFixed(4)}`,
    );
  }
}

await main();
