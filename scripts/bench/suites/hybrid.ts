// hybrid: the first stage's three modes and the weight-free second stage, side by side in one run.
//   1. dense / sparse / hybrid first-stage latency (searchTwoStage with rerank off: embedding,
//      vector search, BM25 search, fusion, passage reads) over the Cranfield passages (when
//      ../shared/data is present) and a 100K-passage synthetic corpus; goal at 100K: hybrid ≤ 1.5×
//      dense.
//   2. sparse.bin bytes per passage on both corpora.
//   3. snapshot build time with and without the sparse index (vectors precomputed, so the figure is
//      the index work the reindex adds, not embedding).
//   4. the lexical reranker's cost per pair beside the MiniLM-L6-shaped fixture cross-encoder's
//      (same Cranfield queries and candidates).
import { existsSync } from "node:fs";
import path from "node:path";
import { faissIndexBuilder } from "../../../shared/adapters/faiss-index.ts";
import { computeHashingStats, createHashingEmbedder, hashingIdentity } from "../../../shared/adapters/hash-embedder.ts";
import { createLexicalReranker, createLocalReranker } from "../../../shared/adapters/local-reranker.ts";
import { createRerankCostTracker } from "../../../shared/core/budget.ts";
import { buildSnapshot } from "../../../shared/core/build.ts";
import { chunkDocuments } from "../../../shared/core/chunking.ts";
import { loadConfig } from "../../../shared/core/config.ts";
import type { Embedder, LoadedSnapshot, RerankerPort } from "../../../shared/core/ports.ts";
import { type RetrievalMode, searchTwoStage } from "../../../shared/core/search.ts";
import { openPassageStore, PASSAGES_FILE } from "../../../shared/core/snapshot.ts";
import { analyzerFromDescription, openSparseIndex } from "../../../shared/core/sparse-index.ts";
import type { Passage } from "../../../shared/core/types.ts";
import { documentText, loadDataset } from "../../eval/dataset.ts";
import { DEFAULT_SHARED_DATA, ensureFixtureModel } from "../../fixtures/index.ts";
import { type Figure, figure, type Suite, type SuiteResult, stats, type TimingStats } from "../harness.ts";
import { mulberry32 } from "../vectors.ts";

const CANDIDATES = 20;
const MODES: readonly RetrievalMode[] = ["dense", "sparse", "hybrid"];

interface Corpus {
  name: string;
  passages: Passage[];
  queries: string[];
  dimensions: number;
}

async function snapshotOf(c: Corpus, sparse: boolean) {
  const embedder = createHashingEmbedder({ dimensions: c.dimensions });
  const texts = c.passages.map((p) => p.text);
  const vectors = await embedder.embedDocuments(texts);
  const corpusStats = computeHashingStats(texts, c.dimensions);
  const t0 = performance.now();
  const built = await buildSnapshot({
    passages: c.passages,
    vectors,
    embedder: hashingIdentity(c.dimensions),
    corpusStats,
    indexType: "flat",
    indexBuilder: faissIndexBuilder,
    sparse,
  });
  const buildMs = performance.now() - t0;
  const info = built.manifest.sparse;
  const snapshot: LoadedSnapshot = {
    version: built.manifest.version,
    manifest: built.manifest,
    index: built.index,
    passages: openPassageStore(built.files[PASSAGES_FILE]),
    sparse: info
      ? openSparseIndex(built.files[info.file], {
          params: info.params,
          analyzer: analyzerFromDescription(info.analyzer),
        })
      : null,
    loadedAt: Date.now(),
  };
  const queryEmbedder = createHashingEmbedder({ dimensions: c.dimensions, stats: corpusStats });
  return { snapshot, buildMs, queryEmbedder, sparseBytes: info?.bytes ?? 0 };
}

/** First-stage latency per mode, the modes interleaved query by query so drift hits each alike. */
async function firstStageLatency(
  snapshot: LoadedSnapshot,
  embedder: Embedder,
  queries: string[],
  rounds: number,
): Promise<Record<RetrievalMode, TimingStats>> {
  const deps = {
    snapshot,
    embedder,
    reranker: null,
    estimate: createRerankCostTracker(),
    limits: { maxCandidates: 200 },
    rerankTimeoutMs: 10_000,
  };
  const samples: Record<RetrievalMode, number[]> = { dense: [], sparse: [], hybrid: [] };
  const run = (query: string, retrieval: RetrievalMode) =>
    searchTwoStage({ query, k: 10, candidates: CANDIDATES, rerank: false, fusion: "rerank", retrieval }, deps);
  for (const q of queries.slice(0, 10)) for (const m of MODES) await run(q, m); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const q of queries) {
      for (const m of MODES) {
        const t = performance.now();
        await run(q, m);
        samples[m].push(performance.now() - t);
      }
    }
  }
  return { dense: stats(samples.dense), sparse: stats(samples.sparse), hybrid: stats(samples.hybrid) };
}

async function cranfield(): Promise<Corpus | null> {
  const dir = path.join(DEFAULT_SHARED_DATA, "cranfield");
  if (!existsSync(path.join(dir, "corpus.jsonl"))) return null;
  const ds = await loadDataset(dir);
  const passages = chunkDocuments(
    ds.corpus.map((d) => ({ id: d.id, text: documentText(d) })),
    { maxTokens: 256, overlap: 32 },
  );
  return { name: "cranfield", passages, queries: ds.queries.map((q) => q.text), dimensions: 2048 };
}

/**
 * Synthetic passages over a Zipf-distributed vocabulary (so postings lengths look like natural
 * text: a few very long, most short); queries are 3–6 words drawn from a random passage.
 */
function synthetic(n: number, seed = 7): Corpus {
  const rand = mulberry32(seed);
  const vocabulary = 50_000;
  const words = Array.from({ length: vocabulary }, (_, i) => `w${i.toString(36)}`);
  // Zipf(1.07) by inverse CDF over a precomputed table.
  const cdf = new Float64Array(vocabulary);
  let total = 0;
  for (let i = 0; i < vocabulary; i++) cdf[i] = total += 1 / (i + 1) ** 1.07;
  const draw = () => {
    const u = rand() * total;
    let lo = 0;
    let hi = vocabulary - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return words[lo];
  };
  const passages: Passage[] = [];
  for (let i = 0; i < n; i++) {
    const len = 40 + Math.floor(rand() * 60);
    const text = Array.from({ length: len }, draw).join(" ");
    passages.push({ id: `s${i}#0`, docId: `s${i}`, text, start: 0, end: text.length });
  }
  const queries: string[] = [];
  for (let i = 0; i < 100; i++) {
    const p = passages[Math.floor(rand() * n)].text.split(" ");
    const len = 3 + Math.floor(rand() * 4);
    const start = Math.floor(rand() * Math.max(1, p.length - len));
    queries.push(p.slice(start, start + len).join(" "));
  }
  return { name: "synthetic_100k", passages, queries, dimensions: 384 };
}

/** µs per pair of a reranker over the same (query, candidates) requests. */
async function perPair(reranker: RerankerPort, requests: Array<{ query: string; documents: string[] }>) {
  for (const r of requests.slice(0, 2)) await reranker.rerank(r);
  const samples: number[] = [];
  let pairs = 0;
  for (const r of requests) {
    const t = performance.now();
    await reranker.rerank(r);
    samples.push((performance.now() - t) * 1000);
    pairs += r.documents.length;
  }
  const totalUs = samples.reduce((a, b) => a + b, 0);
  return { usPerPair: totalUs / pairs, request: stats(samples.map((us) => us / 1000)) };
}

export const suite: Suite = {
  name: "hybrid",
  description:
    "dense / sparse / hybrid first-stage latency (Cranfield passages, 100K synthetic), sparse bytes per passage, build time with and without the sparse index, lexical reranker cost per pair vs the fixture cross-encoder",
  async run(ctx): Promise<SuiteResult> {
    const figures: Figure[] = [];
    const summary: SuiteResult["summary"] = {};
    const notes: string[] = [];
    const corpora: Corpus[] = [];
    const cran = await cranfield();
    if (cran) corpora.push(cran);
    else notes.push(`Cranfield rows skipped: ${path.join(DEFAULT_SHARED_DATA, "cranfield")} not found`);
    corpora.push(synthetic(ctx.quick ? 10_000 : 100_000));

    let cranSnapshot: LoadedSnapshot | null = null;
    for (const c of corpora) {
      ctx.log(`${c.name}: ${c.passages.length} passages, building with and without the sparse index`);
      const without = await snapshotOf(c, false);
      const withSparse = await snapshotOf(c, true);
      if (c.name === "cranfield") cranSnapshot = withSparse.snapshot;
      const key = c.name;
      figures.push(
        figure(`${key}: build, no sparse index`, without.buildMs, "ms"),
        figure(`${key}: build, with sparse index`, withSparse.buildMs, "ms"),
        figure(`${key}: sparse.bin bytes per passage`, withSparse.sparseBytes / c.passages.length, "B"),
      );
      summary[`${key}_build_ms_without_sparse`] = Math.round(without.buildMs);
      summary[`${key}_build_ms_with_sparse`] = Math.round(withSparse.buildMs);
      summary[`${key}_sparse_bytes_per_passage`] = Math.round((withSparse.sparseBytes / c.passages.length) * 10) / 10;

      ctx.log(`${c.name}: first-stage latency, ${c.queries.length} queries × 3 modes`);
      const rounds = c.name === "cranfield" ? 3 : ctx.quick ? 1 : 2;
      const lat = await firstStageLatency(withSparse.snapshot, withSparse.queryEmbedder, c.queries, rounds);
      for (const m of MODES) {
        figures.push(
          figure(`${key}: ${m} first stage p50`, lat[m].p50, "ms"),
          figure(`${key}: ${m} first stage p99`, lat[m].p99, "ms"),
        );
        summary[`${key}_${m}_p50_ms`] = Math.round(lat[m].p50 * 1000) / 1000;
        summary[`${key}_${m}_p99_ms`] = Math.round(lat[m].p99 * 1000) / 1000;
      }
      const ratio = lat.hybrid.p50 / lat.dense.p50;
      const goal = c.name.startsWith("synthetic") ? { text: "≤ 1.5× dense", met: ratio <= 1.5 } : undefined;
      figures.push(figure(`${key}: hybrid / dense p50`, ratio, "×", goal));
      summary[`${key}_hybrid_to_dense_p50`] = Math.round(ratio * 1000) / 1000;
    }

    if (cranSnapshot) {
      // The same requests to both rerankers: Cranfield queries with their hybrid candidates.
      const cran2 = corpora[0];
      const deps = {
        snapshot: cranSnapshot,
        embedder: createHashingEmbedder({ dimensions: cran2.dimensions }),
        reranker: null,
        estimate: createRerankCostTracker(),
        limits: { maxCandidates: 200 },
        rerankTimeoutMs: 10_000,
      };
      const requests = [];
      for (const query of cran2.queries.slice(0, ctx.quick ? 5 : 30)) {
        const first = await searchTwoStage(
          { query, k: 2 * CANDIDATES, candidates: CANDIDATES, rerank: false, fusion: "rerank", retrieval: "sparse" },
          { ...deps },
        );
        requests.push({ query, documents: first.results.map((h) => h.text) });
      }
      // Score cache off: perPair repeats requests and would time cache hits.
      const cfg = loadConfig({}, { rerankerCacheMb: 0 });
      const lexical = await perPair(createLexicalReranker(cfg), requests);
      const fixtureDir = await ensureFixtureModel("minilm-l6-cross", { log: ctx.log });
      const fixture = createLocalReranker({ ...cfg, rerankerBackend: "onnx", rerankerModelDir: fixtureDir });
      await fixture.warm();
      const onnx = await perPair(fixture, requests);
      figures.push(
        figure("lexical reranker per pair", lexical.usPerPair, "µs"),
        figure("fixture cross-encoder (MiniLM-L6 shape, ONNX CPU) per pair", onnx.usPerPair, "µs"),
        figure("cross-encoder / lexical per pair", onnx.usPerPair / lexical.usPerPair, "×"),
      );
      summary.lexical_us_per_pair = Math.round(lexical.usPerPair * 10) / 10;
      summary.fixture_cross_encoder_us_per_pair = Math.round(onnx.usPerPair);
      summary.cross_encoder_to_lexical_per_pair = Math.round(onnx.usPerPair / lexical.usPerPair);
    }
    return { suite: "hybrid", figures, summary, notes };
  },
};
