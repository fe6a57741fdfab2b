import { describe, expect, it } from "vitest";
import { createRerankCostTracker } from "../../shared/core/budget.ts";
import { EmbedderMismatchError, EmbedderUnavailableError, IndexNotReadyError } from "../../shared/core/errors.ts";
import type { RerankerPort } from "../../shared/core/ports.ts";
import { LEXICAL_PROVIDER } from "../../shared/core/lexical-scorer.ts";
import {
  defaultFusion,
  matchesFilter,
  type SearchDeps,
  type SearchRequest,
  scoresFromRerank,
  searchTwoStage,
} from "../../shared/core/search.ts";
import type { Passage, RerankRequest, RerankResponse } from "../../shared/core/types.ts";
import {
  bowEmbedder,
  bowIdentity,
  corpusPassages,
  jsSnapshot,
  overlapScore,
  rerankAnswer,
  sleep,
} from "../helpers/search-fixture.ts";

function portFrom(fn: (req: RerankRequest) => Promise<RerankResponse>): RerankerPort & { calls: RerankRequest[] } {
  const calls: RerankRequest[] = [];
  return {
    calls,
    describe: () => ({ kind: "in-process", model: "test" }),
    rerank: (req) => {
      calls.push(req);
      return fn(req);
    },
  };
}

const overlapReranker = () => portFrom(async (req) => rerankAnswer(req, overlapScore(req.query)));

function deps(over: Partial<SearchDeps> = {}): SearchDeps {
  return {
    snapshot: jsSnapshot(),
    embedder: bowEmbedder(),
    reranker: overlapReranker(),
    estimate: createRerankCostTracker(),
    limits: { maxCandidates: 200 },
    rerankTimeoutMs: 1500,
    ...over,
  };
}

const req = (over: Partial<SearchRequest> = {}): SearchRequest => ({
  query: "cat purrs",
  k: 4,
  candidates: 20,
  rerank: true,
  fusion: "rerank",
  ...over,
});

describe("searchTwoStage: first stage", () => {
  it("returns first-stage results with ranks and scores when rerank is off", async () => {
    const d = deps();
    const r = await searchTwoStage(req({ rerank: false }), d);
    expect(r.reranked).toBe(false);
    expect(r.reranked_candidates).toBe(0);
    expect(r.warnings).toEqual([]);
    expect((d.reranker as ReturnType<typeof overlapReranker>).calls).toHaveLength(0);
    expect(r.results).toHaveLength(4);
    expect(r.results[0]).toMatchObject({ id: "cats#1", doc_id: "cats", source: "kb/animals/cats.md", rerank: null });
    expect(r.results.map((h) => h.retrieval.rank)).toEqual([1, 2, 3, 4]);
    // score = retrieval score, descending
    for (const h of r.results) expect(h.score).toBe(h.retrieval.score);
    for (let i = 1; i < r.results.length; i++)
      expect(r.results[i - 1].score).toBeGreaterThanOrEqual(r.results[i].score);
    expect(r.index).toEqual({ version: "v-test-1", count: corpusPassages().length });
    expect(r.candidates).toBe(corpusPassages().length); // 15 passages < 20 candidates
    expect(r.timings.total_ms).toBeGreaterThanOrEqual(
      r.timings.embed_ms + r.timings.search_ms + r.timings.rerank_ms - 0.01,
    );
  });

  it("fetches exactly `candidates` from the index without a filter", async () => {
    const snapshot = jsSnapshot();
    await searchTwoStage(req({ candidates: 5, rerank: false }), deps({ snapshot }));
    expect(snapshot.index.searches).toEqual([5]);
  });
});

describe("searchTwoStage: second stage", () => {
  it("orders by the cross-encoder's score and reports both stages", async () => {
    const d = deps();
    const r = await searchTwoStage(req({ query: "wild cats savanna", k: 3, candidates: 8 }), d);
    const port = d.reranker as ReturnType<typeof overlapReranker>;
    expect(port.calls).toHaveLength(1);
    expect(port.calls[0].documents).toHaveLength(8);
    expect(r.reranked).toBe(true);
    expect(r.reranked_candidates).toBe(8);
    expect(r.results[0].doc_id).toBe("lions");
    expect(r.results.map((h) => h.rerank!.rank)).toEqual([1, 2, 3]);
    // rerank mode: score is the cross-encoder score, computed independently here
    const score = overlapScore("wild cats savanna");
    for (const h of r.results) {
      expect(h.score).toBe(h.rerank!.score);
      expect(h.rerank!.score).toBeCloseTo(score(h.text), 12);
    }
  });

  it("passes the fusion mode and alpha through", async () => {
    const ranked = await searchTwoStage(req({ fusion: "rrf", k: 5 }), deps());
    for (const h of ranked.results)
      expect(h.score).toBeCloseTo(1 / (60 + h.retrieval.rank) + 1 / (60 + h.rerank!.rank), 12);
    const lin = await searchTwoStage(req({ fusion: "linear", alpha: 1, k: 5 }), deps());
    // alpha 1: minmax(rerank) alone; the best reranked candidate scores 1
    expect(lin.results[0].score).toBe(1);
    expect(lin.results[0].rerank!.rank).toBe(1);
  });

  it("without a named fusion: the reranker's order for a model, linear fusion for the lexical scorer", async () => {
    const { fusion: _, ...unnamed } = req({ query: "wild cats savanna", k: 5, candidates: 8 });
    const model = await searchTwoStage(unnamed, deps());
    expect(model.fusion).toBe("rerank");
    for (const h of model.results) expect(h.score).toBe(h.rerank!.score);
    const lexicalPort = portFrom(async (r) => {
      const a = rerankAnswer(r, overlapScore(r.query));
      return { ...a, meta: { ...a.meta, provider: LEXICAL_PROVIDER } };
    });
    const lexical = await searchTwoStage(unnamed, deps({ reranker: lexicalPort }));
    expect(lexical.fusion).toBe("linear");
    const linear = await searchTwoStage({ ...unnamed, fusion: "linear" }, deps({ reranker: lexicalPort }));
    expect(lexical.results.map((h) => [h.id, h.score])).toEqual(linear.results.map((h) => [h.id, h.score]));
    // A named fusion wins.
    const named = await searchTwoStage({ ...unnamed, fusion: "rerank" }, deps({ reranker: lexicalPort }));
    expect(named.fusion).toBe("rerank");
    for (const h of named.results) expect(h.score).toBe(h.rerank!.score);
    expect(defaultFusion([])).toBe("rerank");
    expect(defaultFusion([LEXICAL_PROVIDER, "cpu"])).toBe("rerank");
    expect(defaultFusion([LEXICAL_PROVIDER, LEXICAL_PROVIDER])).toBe("linear");
  });

  it("observes successful calls in the cost estimate", async () => {
    const estimate = createRerankCostTracker();
    await searchTwoStage(req(), deps({ estimate }));
    expect(estimate.current().observations).toBe(1);
  });

  it("leaves answers partly from the reranker's score cache out of the cost estimate", async () => {
    const estimate = createRerankCostTracker();
    const cached = portFrom(async (r) => {
      const answer = await rerankAnswer(r, overlapScore(r.query));
      return { ...answer, meta: { ...answer.meta, cache: { hits: 1, misses: r.documents.length - 1 } } };
    });
    const res = await searchTwoStage(req(), deps({ estimate, reranker: cached }));
    expect(res.reranked).toBe(true);
    expect(estimate.current().observations).toBe(0);
  });
});

describe("searchTwoStage: filters", () => {
  it("filters by source prefix and by metadata equality (arrays: contains)", async () => {
    const bySource = await searchTwoStage(
      req({ query: "cats", rerank: false, filter: { source_prefix: "kb/code/" } }),
      deps(),
    );
    expect(bySource.results.map((h) => h.doc_id).sort()).toEqual(["python", "rust", "sql"]);
    const byMeta = await searchTwoStage(
      req({ query: "cats", rerank: false, k: 10, filter: { metadata: { lang: "de" } } }),
      deps(),
    );
    expect(byMeta.results.map((h) => h.doc_id)).toEqual(["katzen"]);
    const byTag = await searchTwoStage(
      req({ query: "cats", rerank: false, k: 10, filter: { metadata: { tags: "wild" } } }),
      deps(),
    );
    expect(byTag.results.map((h) => h.doc_id)).toEqual(["lions"]);
    const numeric = await searchTwoStage(
      req({ query: "x", rerank: false, k: 10, filter: { metadata: { version: 2 } } }),
      deps(),
    );
    expect(numeric.results.map((h) => h.doc_id)).toEqual(["sql"]);
    // "2" (string) is not 2 (number)
    const strict = await searchTwoStage(
      req({ query: "x", rerank: false, k: 10, filter: { metadata: { version: "2" } } }),
      deps(),
    );
    expect(strict.results).toEqual([]);
    expect(strict.warnings[0]).toMatch(/only 0 passages/);
  });

  it("matchesFilter combines source prefix and metadata (all must hold)", () => {
    const p: Passage = {
      id: "a#0",
      docId: "a",
      text: "t",
      source: "kb/x",
      metadata: { lang: "en", n: 1 },
      start: 0,
      end: 1,
    };
    expect(matchesFilter(p, undefined)).toBe(true);
    expect(matchesFilter(p, { source_prefix: "kb/", metadata: { lang: "en" } })).toBe(true);
    expect(matchesFilter(p, { source_prefix: "kb/", metadata: { lang: "de" } })).toBe(false);
    expect(matchesFilter(p, { metadata: { missing: null } })).toBe(false);
    expect(matchesFilter({ ...p, source: undefined }, { source_prefix: "" })).toBe(true);
    expect(matchesFilter({ ...p, source: undefined }, { source_prefix: "kb" })).toBe(false);
  });

  it("widens the fetch until enough passages match, so k results still come back", async () => {
    // 300 noise passages that match the query strongly, then 3 weak matches under kb/.
    const noise: Passage[] = Array.from({ length: 300 }, (_, i) => ({
      id: `n${i}#0`,
      docId: `n${i}`,
      text: `purring cat number ${i} purring cat`,
      source: "noise/",
      start: 0,
      end: 10,
    }));
    const wanted: Passage[] = [
      "a cat",
      "the cat sat here today quietly",
      "one cat among many words in this long passage",
    ].map((text, i) => ({ id: `w${i}#0`, docId: `w${i}`, text, source: "kb/wanted", start: 0, end: text.length }));
    const snapshot = jsSnapshot([...noise, ...wanted]);
    const r = await searchTwoStage(
      req({ query: "purring cat", k: 3, candidates: 5, rerank: false, filter: { source_prefix: "kb/" } }),
      deps({ snapshot }),
    );
    expect(r.results.map((h) => h.id).sort()).toEqual(["w0#0", "w1#0", "w2#0"]);
    expect(r.results.map((h) => h.retrieval.rank)).toEqual([1, 2, 3]);
    // 64 (over-fetch) → 256 → 303 (the whole index)
    expect(snapshot.index.searches).toEqual([64, 256, 303]);
    expect(r.warnings).toEqual([]);
  });

  it("stops widening as soon as enough passages match", async () => {
    const many: Passage[] = Array.from({ length: 400 }, (_, i) => ({
      id: `p${i}#0`,
      docId: `p${i}`,
      text: `cat ${i}`,
      source: i % 2 === 0 ? "even/" : "odd/",
      start: 0,
      end: 5,
    }));
    const snapshot = jsSnapshot(many);
    const r = await searchTwoStage(
      req({ query: "cat", k: 4, candidates: 10, rerank: false, filter: { source_prefix: "odd/" } }),
      deps({ snapshot }),
    );
    expect(r.results).toHaveLength(4);
    expect(r.candidates).toBe(10);
    expect(snapshot.index.searches).toEqual([64]);
  });
});

describe("searchTwoStage: collapse", () => {
  it("keeps the best passage per document", async () => {
    const r = await searchTwoStage(req({ query: "cats cat", k: 4, collapse: true }), deps());
    const docs = r.results.map((h) => h.doc_id);
    expect(new Set(docs).size).toBe(docs.length);
    expect(docs).toHaveLength(4);
    const plain = await searchTwoStage(req({ query: "cats cat", k: 4 }), deps());
    expect(plain.results.filter((h) => h.doc_id === "cats").length).toBeGreaterThan(1);
    // the collapsed winner of "cats" is that document's best passage in the uncollapsed order
    expect(r.results.find((h) => h.doc_id === "cats")!.id).toBe(plain.results.find((h) => h.doc_id === "cats")!.id);
  });

  it("extends the pool past `candidates` until it spans k documents", async () => {
    // One long document with 30 passages that all beat the others on the query.
    const long: Passage[] = Array.from({ length: 30 }, (_, i) => ({
      id: `long#${i}`,
      docId: "long",
      text: `solar panel solar panel part ${i}`,
      start: i,
      end: i + 1,
    }));
    const others: Passage[] = ["solar energy", "panel discussion", "solar wind"].map((text, i) => ({
      id: `o${i}#0`,
      docId: `o${i}`,
      text,
      start: 0,
      end: text.length,
    }));
    const snapshot = jsSnapshot([...long, ...others]);
    const r = await searchTwoStage(
      req({ query: "solar panel", k: 3, candidates: 5, rerank: false, collapse: true }),
      deps({ snapshot }),
    );
    expect(r.results).toHaveLength(3);
    expect(r.results[0].doc_id).toBe("long");
    expect(new Set(r.results.map((h) => h.doc_id)).size).toBe(3);
    expect(r.candidates).toBeGreaterThan(5);
  });
});

describe("searchTwoStage: embedder checks", () => {
  it("refuses an embedder that does not match the snapshot", async () => {
    const other = bowEmbedder({ ...bowIdentity, model: "another-model" });
    await expect(searchTwoStage(req(), deps({ embedder: other }))).rejects.toBeInstanceOf(EmbedderMismatchError);
    await expect(searchTwoStage(req(), deps({ embedder: other }))).rejects.toThrow(/test-bow-256.*another-model/);
  });

  it("refuses query vectors of the wrong size", async () => {
    const e = bowEmbedder();
    e.embedQuery = async () => new Float32Array(3);
    await expect(searchTwoStage(req(), deps({ embedder: e }))).rejects.toThrow(/3 dimensions.*256/);
  });

  it("turns an embedding failure into EmbedderUnavailableError (503), keeping domain errors as they are", async () => {
    const e = bowEmbedder();
    e.embedQuery = async () => {
      throw new Error("connect ECONNREFUSED 127.0.0.1:9");
    };
    const err = await searchTwoStage(req(), deps({ embedder: e })).catch((x) => x);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.status).toBe(503);
    expect(err.message).toMatch(/ECONNREFUSED/);
    e.embedQuery = async () => {
      throw new IndexNotReadyError();
    };
    await expect(searchTwoStage(req(), deps({ embedder: e }))).rejects.toBeInstanceOf(IndexNotReadyError);
  });

  it("gives up on an embedder that hangs past embedTimeoutMs (503), aborting its signal", async () => {
    const e = bowEmbedder();
    let aborted = false;
    e.embedQuery = (_text, opts) =>
      new Promise((_, reject) => {
        opts?.signal?.addEventListener("abort", () => {
          aborted = true;
          reject(opts.signal!.reason);
        });
      });
    const err = await searchTwoStage(
      req(),
      deps({ embedder: e, limits: { maxCandidates: 200, embedTimeoutMs: 40 } }),
    ).catch((x) => x);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.message).toBe("query embedding failed: timed out after 40 ms");
    expect(aborted).toBe(true);
  });
});

describe("searchTwoStage: degraded second stage", () => {
  async function firstStage() {
    return (await searchTwoStage(req({ rerank: false }), deps())).results;
  }

  it("answers with first-stage results and a warning when the reranker throws", async () => {
    const failing = portFrom(async () => {
      throw new Error("model exploded");
    });
    const r = await searchTwoStage(req(), deps({ reranker: failing }));
    expect(r.reranked).toBe(false);
    expect(r.reranked_candidates).toBe(0);
    expect(r.warnings).toEqual(["reranker failed (model exploded); results are first-stage only"]);
    expect(r.results).toEqual(await firstStage());
  });

  it("enforces the rerank timeout itself, even on a reranker that ignores it", async () => {
    const slow = portFrom(async (q) => {
      await sleep(400);
      return rerankAnswer(q, () => 1);
    });
    const r = await searchTwoStage(req(), deps({ reranker: slow, rerankTimeoutMs: 50 }));
    expect(r.reranked).toBe(false);
    expect(r.warnings).toEqual(["reranker failed (timed out after 50 ms); results are first-stage only"]);
    expect(r.results).toEqual(await firstStage());
  });

  it("treats an answer that does not cover every document as malformed", async () => {
    const partial = portFrom(async (q) => {
      const a = rerankAnswer(q, () => 0.5);
      return { ...a, results: a.results.slice(1) };
    });
    const r = await searchTwoStage(req(), deps({ reranker: partial }));
    expect(r.reranked).toBe(false);
    expect(r.warnings[0]).toMatch(/malformed answer: 1 of 13 documents have no score/);
  });

  it("says so when reranking is requested but not configured", async () => {
    const none: RerankerPort = {
      describe: () => ({ kind: "none" }),
      rerank: async () => Promise.reject(new Error("unused")),
    };
    for (const reranker of [null, none]) {
      const r = await searchTwoStage(req(), deps({ reranker }));
      expect(r.reranked).toBe(false);
      expect(r.warnings[0]).toMatch(/not configured/);
    }
  });

  it("scoresFromRerank rejects out-of-range, duplicate and non-finite answers", () => {
    const meta = {
      model: "m",
      provider: "p",
      pairs: 2,
      tokens: 0,
      truncated: 0,
      timings: { tokenize_ms: 0, inference_ms: 0, total_ms: 0 },
    };
    const ok = scoresFromRerank(
      {
        results: [
          { index: 1, relevance_score: 0.2, logit: 0 },
          { index: 0, relevance_score: 0.9, logit: 0 },
        ],
        meta,
      },
      2,
    );
    expect(ok).toEqual([0.9, 0.2]);
    expect(() => scoresFromRerank({ results: [{ index: 2, relevance_score: 1, logit: 0 }], meta }, 2)).toThrow(
      /outside 0..1/,
    );
    expect(() =>
      scoresFromRerank(
        {
          results: [
            { index: 0, relevance_score: 1, logit: 0 },
            { index: 0, relevance_score: 1, logit: 0 },
          ],
          meta,
        },
        2,
      ),
    ).toThrow(/twice/);
    expect(() => scoresFromRerank({ results: [{ index: 0, relevance_score: Number.NaN, logit: 0 }], meta }, 1)).toThrow(
      /finite/,
    );
    expect(() => scoresFromRerank({ meta } as unknown as RerankResponse, 1)).toThrow(/no results array/);
  });
});

describe("searchTwoStage: latency budget", () => {
  // A frozen clock: no time passes, so the plan depends on the estimate alone.
  const frozen = { now: () => 0 };
  // Prior: 10 ms per pair, nothing per token or call → n candidates cost 10·n ms.
  const tracker = () => createRerankCostTracker({ prior: { msPerPair: 10, msPerToken: 0, overheadMs: 0 } });

  it("reranks only the best first-stage candidates that fit", async () => {
    const d = deps({ clock: frozen, estimate: tracker() });
    const r = await searchTwoStage(req({ k: 2, candidates: 8, budget_ms: 31 }), d);
    // remaining 31 − 0 − 1 (reserve) = 30 → 3 candidates
    expect(r.reranked).toBe(true);
    expect(r.reranked_candidates).toBe(3);
    const port = d.reranker as ReturnType<typeof overlapReranker>;
    const firstStage = (await searchTwoStage(req({ k: 8, candidates: 8, rerank: false }), deps())).results;
    expect(port.calls[0].documents).toEqual(firstStage.slice(0, 3).map((h) => h.text));
    expect(r.warnings).toEqual([
      "latency budget: reranked the best 3 of 8 candidates (all predicted to take 80 ms, 30 ms of the 31 ms budget left)",
    ]);
    expect(r.results.every((h) => h.rerank !== null && h.rerank.rank <= 3)).toBe(true);
  });

  it("lists unreranked candidates after the reranked ones", async () => {
    const d = deps({ clock: frozen, estimate: tracker() });
    const r = await searchTwoStage(req({ k: 6, candidates: 8, budget_ms: 31 }), d);
    expect(r.results.map((h) => h.rerank === null)).toEqual([false, false, false, true, true, true]);
    expect(r.results.slice(3).map((h) => h.retrieval.rank)).toEqual([4, 5, 6]);
  });

  it("skips reranking when fewer than minRerankCandidates (default 2) fit", async () => {
    const d = deps({ clock: frozen, estimate: tracker() });
    const r = await searchTwoStage(req({ k: 2, candidates: 8, budget_ms: 15 }), d);
    expect(r.reranked).toBe(false);
    expect(r.reranked_candidates).toBe(0);
    expect((d.reranker as ReturnType<typeof overlapReranker>).calls).toHaveLength(0);
    expect(r.warnings).toEqual([
      "latency budget: reranking skipped (all 8 candidates predicted to take 80 ms, 14 ms of the 15 ms budget left)",
    ]);
    // a higher minimum skips where the default would rerank 3
    const strict = deps({ clock: frozen, estimate: tracker(), limits: { maxCandidates: 200, minRerankCandidates: 4 } });
    expect((await searchTwoStage(req({ k: 2, candidates: 8, budget_ms: 31 }), strict)).reranked_candidates).toBe(0);
  });

  it("reranks everything within the budget without a warning", async () => {
    const r = await searchTwoStage(
      req({ k: 2, candidates: 8, budget_ms: 500 }),
      deps({ clock: frozen, estimate: tracker() }),
    );
    expect(r.reranked_candidates).toBe(8);
    expect(r.warnings).toEqual([]);
  });

  it("cuts the rerank call at what is left of the budget", async () => {
    const slow = portFrom(async (q) => {
      await sleep(1000);
      return rerankAnswer(q, () => 1);
    });
    // estimate says it fits (1 ms per pair), the real call takes 1 s; budget 120 ms, timeout setting 5 s
    const estimate = createRerankCostTracker({ prior: { msPerPair: 1, msPerToken: 0, overheadMs: 0 } });
    const started = performance.now();
    const r = await searchTwoStage(req({ budget_ms: 120 }), deps({ reranker: slow, rerankTimeoutMs: 5000, estimate }));
    expect(performance.now() - started).toBeLessThan(900);
    expect(r.reranked).toBe(false);
    expect(r.warnings[0]).toMatch(/^reranker failed \(timed out after \d+ ms\)/);
    const ms = Number(/after (\d+) ms/.exec(r.warnings[0])![1]);
    expect(ms).toBeLessThanOrEqual(119);
  });
});

describe("hybrid first stage", () => {
  const sparseSnapshot = () => jsSnapshot(corpusPassages(), "v-sparse-1", { sparse: true });
  /** First stage only, k large enough (2 × candidates) for the whole hybrid pool to come back. */
  const firstStage = (query: string, over: Partial<SearchRequest> = {}, d: Partial<SearchDeps> = {}) => {
    const candidates = over.candidates ?? 3;
    return searchTwoStage(
      req({ query, rerank: false, candidates, k: candidates * 2, ...over }),
      deps({ snapshot: sparseSnapshot(), ...d }),
    );
  };
  const ids = (r: { results: { id: string }[] }) => r.results.map((h) => h.id);
  const throwingEmbedder = (message = "embedder must not be called") => {
    const e = bowEmbedder();
    e.embedQuery = async () => {
      throw new Error(message);
    };
    return e;
  };
  // Sides that overlap partly, fully ("programming language") and little ("cats language").
  const QUERIES = ["cat purrs", "programming language", "water tea coffee", "wild cats savanna", "cats language"];

  it.each(QUERIES)("%s: the pool is the deduplicated union of each side's top candidates", async (query) => {
    const dense = await firstStage(query, { retrieval: "dense" });
    const sparse = await firstStage(query, { retrieval: "sparse" });
    const hybrid = await firstStage(query, { retrieval: "hybrid" });
    expect([dense.retrieval, sparse.retrieval, hybrid.retrieval]).toEqual(["dense", "sparse", "hybrid"]);
    expect(dense.results).toHaveLength(3);
    expect(sparse.results.length).toBeGreaterThan(0);
    const union = new Set([...ids(dense), ...ids(sparse)]);
    // ⊇ both sides, nothing else, no passage twice
    expect(new Set(ids(hybrid))).toEqual(union);
    expect(ids(hybrid)).toHaveLength(union.size);
    expect(hybrid.candidates).toBe(union.size);
    expect(hybrid.warnings).toEqual([]);
    // each side's score and rank, null exactly where the passage is not in that side's list
    const denseOf = new Map(dense.results.map((h) => [h.id, h.retrieval]));
    const sparseOf = new Map(sparse.results.map((h) => [h.id, h.retrieval]));
    for (const h of hybrid.results) {
      expect(h.dense, h.id).toEqual(denseOf.get(h.id) ?? null);
      expect(h.sparse, h.id).toEqual(sparseOf.get(h.id) ?? null);
    }
    // single-side modes report their own side only
    for (const h of dense.results) expect([h.dense, h.sparse]).toEqual([h.retrieval, null]);
    for (const h of sparse.results) expect([h.dense, h.sparse]).toEqual([null, h.retrieval]);
  });

  it.each([undefined, 10])("RRF (rrf_k %s) scores Σ 1/(k + rank) over the sides a passage is on", async (rrfK) => {
    const k = rrfK ?? 60;
    const r = await firstStage("cat purrs", { hybrid: { fusion: "rrf", ...(rrfK ? { rrf_k: rrfK } : {}) } });
    expect(r.retrieval).toBe("hybrid");
    expect(r.results.some((h) => h.dense && h.sparse)).toBe(true);
    expect(r.results.some((h) => !h.dense || !h.sparse)).toBe(true);
    r.results.forEach((h, i) => {
      const want = (h.dense ? 1 / (k + h.dense.rank) : 0) + (h.sparse ? 1 / (k + h.sparse.rank) : 0);
      expect(h.retrieval.score, h.id).toBeCloseTo(want, 12);
      expect(h.retrieval.rank).toBe(i + 1);
      expect(h.score).toBe(h.retrieval.score);
      if (i > 0) expect(r.results[i - 1].retrieval.score).toBeGreaterThanOrEqual(h.retrieval.score);
    });
  });

  it.each(QUERIES)("%s: convex with dense_weight 1 orders like dense, 0 like sparse", async (query) => {
    const dense = await firstStage(query, { retrieval: "dense" });
    const sparse = await firstStage(query, { retrieval: "sparse" });
    const allDense = await firstStage(query, { hybrid: { fusion: "convex", dense_weight: 1 } });
    const allSparse = await firstStage(query, { hybrid: { fusion: "convex", dense_weight: 0 } });
    expect(allDense.results[0].id).toBe(dense.results[0].id);
    expect(ids({ results: allDense.results.filter((h) => h.dense) })).toEqual(ids(dense));
    expect(allSparse.results[0].id).toBe(sparse.results[0].id);
    expect(ids({ results: allSparse.results.filter((h) => h.sparse) })).toEqual(ids(sparse));
    // w · minmax(dense), the missing side counting 0
    const scores = dense.results.map((h) => h.retrieval.score);
    const [lo, hi] = [Math.min(...scores), Math.max(...scores)];
    for (const h of allDense.results) {
      const want = h.dense ? (hi > lo ? (h.dense.score - lo) / (hi - lo) : 1) : 0;
      expect(h.retrieval.score, h.id).toBeCloseTo(want, 12);
    }
  });

  it.each(["sparse", "hybrid"] as const)("%s: filters hold", async (retrieval) => {
    const code = await firstStage("cats language", { retrieval, filter: { source_prefix: "kb/code/" } });
    expect(code.retrieval).toBe(retrieval);
    expect(code.results.length).toBeGreaterThan(0);
    for (const h of code.results) expect(h.source).toMatch(/^kb\/code\//);
    expect(new Set(code.results.map((h) => h.doc_id))).toEqual(new Set(["python", "rust", "sql"]));
    const german = await firstStage("cats", { retrieval, filter: { metadata: { lang: "de" } } });
    expect(german.results.map((h) => h.doc_id)).toEqual(["katzen"]);
    const pets = await firstStage("cats dogs", { retrieval, filter: { metadata: { tags: "pets" } }, candidates: 10 });
    expect(pets.results.length).toBeGreaterThan(0);
    for (const h of pets.results) expect(["cats", "dogs"]).toContain(h.doc_id);
  });

  it("collapse works in sparse mode, widening the pool to k documents", async () => {
    const plain = await firstStage("cat cats", { retrieval: "sparse", candidates: 2, k: 2 });
    expect(plain.results.map((h) => h.doc_id)).toEqual(["cats", "cats"]);
    const collapsed = await firstStage("cat cats", { retrieval: "sparse", candidates: 2, k: 2, collapse: true });
    const docs = collapsed.results.map((h) => h.doc_id);
    expect(docs).toHaveLength(2);
    expect(new Set(docs).size).toBe(2);
    expect(docs[0]).toBe("cats");
    for (const h of collapsed.results) expect(h.sparse).not.toBeNull();
  });

  it("sparse mode never calls the embedder and reports embed_ms 0", async () => {
    // Time moves only while the embedder works, so embed_ms is exactly the embedding's share.
    let now = 0;
    const clock = { now: () => now };
    const slow = bowEmbedder();
    const embed = slow.embedQuery;
    slow.embedQuery = async (text, opts) => {
      now += 5;
      return embed(text, opts);
    };
    const r = await firstStage("cat purrs", { retrieval: "sparse" }, { embedder: throwingEmbedder(), clock });
    expect(r.retrieval).toBe("sparse");
    expect(r.warnings).toEqual([]);
    expect(r.results.length).toBeGreaterThan(0);
    expect(r.timings.embed_ms).toBe(0);
    // A mismatched embedder is a misconfigured service: every mode says so, sparse too.
    const other = bowEmbedder({ ...bowIdentity, model: "another-model" });
    await expect(firstStage("cat purrs", { retrieval: "sparse" }, { embedder: other })).rejects.toThrow(
      EmbedderMismatchError,
    );
    // the same clock does see a real embedding
    const h = await firstStage("cat purrs", { retrieval: "hybrid" }, { embedder: slow, clock });
    expect(h.timings.embed_ms).toBe(5);
    expect(slow.queries).toEqual(["cat purrs"]);
  });

  it("hybrid with a failing embedder answers from BM25 with a warning; dense mode still fails", async () => {
    const failing = throwingEmbedder("connect ECONNREFUSED 127.0.0.1:9");
    const sparse = await firstStage("cat purrs", { retrieval: "sparse" });
    const r = await firstStage("cat purrs", { retrieval: "hybrid" }, { embedder: failing });
    expect(r.retrieval).toBe("sparse");
    expect(r.warnings).toEqual([
      "query embedding failed: connect ECONNREFUSED 127.0.0.1:9; results are sparse (BM25) only",
    ]);
    expect(r.results).toEqual(sparse.results);
    for (const h of r.results) expect(h.dense).toBeNull();
    // unset retrieval on a snapshot with a BM25 index is hybrid, and degrades the same way
    expect((await firstStage("cat purrs", { retrieval: undefined }, { embedder: failing })).retrieval).toBe("sparse");
    const err = await firstStage("cat purrs", { retrieval: "dense" }, { embedder: failing }).catch((x) => x);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it("defaults to hybrid where the snapshot has a BM25 index, and to dense (silently) where it has none", async () => {
    expect((await firstStage("cat purrs", { retrieval: undefined })).retrieval).toBe("hybrid");
    const old = await searchTwoStage(req({ rerank: false }), deps());
    expect(old.retrieval).toBe("dense");
    expect(old.warnings).toEqual([]);
  });

  it.each(["hybrid", "sparse"] as const)(
    "explicit %s on a snapshot without a BM25 index answers dense with a warning",
    async (retrieval) => {
      const dense = await searchTwoStage(req({ rerank: false, retrieval: "dense" }), deps());
      const r = await searchTwoStage(req({ rerank: false, retrieval }), deps());
      expect(r.retrieval).toBe("dense");
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toMatch(/no sparse index/);
      expect(r.results).toEqual(dense.results);
      expect(r.timings.sparse_ms).toBe(0);
    },
  );

  it.each([
    ["yeast dough", "bread#0"],
    ["Haustiere Katzen", "katzen#0"],
    ["relational databases", "sql#0"],
  ])("a rare-word query (%s) finds the passage holding the words first", async (query, id) => {
    for (const retrieval of ["sparse", "hybrid"] as const) {
      const r = await firstStage(query, { retrieval });
      expect(r.results[0].id, retrieval).toBe(id);
      expect(r.results[0].sparse?.rank, retrieval).toBe(1);
    }
  });
});

describe("rerank fan-out (RERANKER_FANOUT)", () => {
  // Scores depend on the text only, so splitting the candidates cannot change them.
  const lengthScore = (t: string) => (t.length % 17) + t.length / 1000;

  it("splits the candidates into parallel calls and merges them into the single-call answer", async () => {
    let inFlight = 0;
    let most = 0;
    const slow = portFrom(async (r) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await sleep(20);
      inFlight--;
      return rerankAnswer(r, lengthScore);
    });
    const single = await searchTwoStage(
      req({ k: 12, candidates: 12 }),
      deps({ reranker: portFrom(async (r) => rerankAnswer(r, lengthScore)) }),
    );
    const fanned = await searchTwoStage(
      req({ k: 12, candidates: 12 }),
      deps({ reranker: slow, limits: { maxCandidates: 200, rerankFanout: 3, rerankPairsPerCall: 2 } }),
    );
    expect(slow.calls).toHaveLength(3);
    expect(most).toBe(3);
    expect(slow.calls.flatMap((c) => c.documents).sort()).toEqual(single.results.map((h) => h.text).sort());
    expect(fanned.results.map((h) => [h.id, h.rerank])).toEqual(single.results.map((h) => [h.id, h.rerank]));
    expect(fanned.reranked_candidates).toBe(single.reranked_candidates);
    expect(fanned.warnings).toEqual([]);
  });

  it("never makes calls smaller than RERANKER_FANOUT_PAIRS", async () => {
    const port = portFrom(async (r) => rerankAnswer(r, lengthScore));
    await searchTwoStage(
      req({ k: 5, candidates: 5 }),
      deps({ reranker: port, limits: { maxCandidates: 200, rerankFanout: 8, rerankPairsPerCall: 4 } }),
    );
    expect(port.calls).toHaveLength(1);
  });

  it("a failing call leaves only its candidates with first-stage scores, with a warning, never an error", async () => {
    let call = 0;
    const flaky = portFrom(async (r) => {
      if (call++ === 1) throw new Error("instance crashed");
      return rerankAnswer(r, lengthScore);
    });
    const res = await searchTwoStage(
      req({ k: 12, candidates: 12 }),
      deps({ reranker: flaky, limits: { maxCandidates: 200, rerankFanout: 3, rerankPairsPerCall: 2 } }),
    );
    const failedTexts = new Set(flaky.calls[1].documents as string[]);
    expect(res.reranked).toBe(true);
    expect(res.warnings.join(" ")).toMatch(/failed for 1 of 3 parallel calls \(instance crashed\)/);
    for (const h of res.results) expect(h.rerank === null, h.id).toBe(failedTexts.has(h.text));
    // Reranked candidates come first, the failed group's follow in first-stage order.
    const firstUnranked = res.results.findIndex((h) => h.rerank === null);
    expect(res.results.slice(firstUnranked).every((h) => h.rerank === null)).toBe(true);
    expect(res.reranked_candidates).toBe(12 - failedTexts.size);
  });
});

describe("searchTwoStage: passage texts from a lazily read store", () => {
  /** A store that answers info() without texts and records every load(). */
  function lazyPassages(passages: Passage[]) {
    const loads: number[][] = [];
    return {
      loads,
      store: {
        count: passages.length,
        get: () => {
          throw new Error("lazy store: use load()");
        },
        info: (o: number) => {
          const { text: _t, ...info } = passages[o];
          return info;
        },
        load: async (ordinals: readonly number[]) => {
          loads.push([...ordinals]);
          return ordinals.map((o) => passages[o]);
        },
      },
    };
  }

  it("reads texts for every candidate when reranking, and only the returned hits' otherwise", async () => {
    const passages = corpusPassages();
    const eager = await searchTwoStage(req({ k: 2, candidates: 8 }), deps());
    const lazy = lazyPassages(passages);
    const snapshot = { ...jsSnapshot(passages), passages: lazy.store };
    const reranked = await searchTwoStage(req({ k: 2, candidates: 8 }), deps({ snapshot }));
    expect(reranked.results).toEqual(eager.results);
    expect(lazy.loads.flat().length).toBe(8); // every candidate, once
    lazy.loads.length = 0;
    const plain = await searchTwoStage(req({ k: 2, candidates: 8, rerank: false }), deps({ snapshot }));
    expect(lazy.loads).toEqual([plain.results.map((h) => passages.findIndex((p) => p.id === h.id))]);
    expect(plain.results.every((h) => h.text.length > 0)).toBe(true);
  });

  it("a failed text read fails the search with the store's error", async () => {
    const lazy = lazyPassages(corpusPassages());
    lazy.store.load = async () => {
      throw new (await import("../../shared/core/errors.ts")).StoreUnavailableError("texts could not be read");
    };
    const snapshot = { ...jsSnapshot(), passages: lazy.store };
    await expect(searchTwoStage(req(), deps({ snapshot }))).rejects.toMatchObject({ code: "store_unavailable" });
  });
});
