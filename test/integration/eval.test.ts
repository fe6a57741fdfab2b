// The evaluation pipeline end to end on ADI (82 documents, 35 queries) with the offline defaults:
// hashing embedder → chunking → real FAISS and the BM25 sparse index through the service's search
// core, the lexical reranker, and the tiny fixture cross-encoder on real onnxruntime-node. Asserts
// structure, the sparse path's equality with BM25 over the same passages, and rankings far above
// chance, never figures copied from a run.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/core/config.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import { evaluateRun, metricSpec } from "../../shared/core/metrics.ts";
import { documentText, loadDataset, readCorpus, readQrels } from "../../scripts/eval/dataset.ts";
import { type EvalReport, markdownTable } from "../../scripts/eval/report.ts";
import { documentRanking, runEval, sameScores } from "../../scripts/eval/run-eval.ts";

const repoRoot = path.resolve(import.meta.dirname, "../..");
const adiDir = path.resolve(repoRoot, "../shared/data/adi");
const haveAdi = existsSync(path.join(adiDir, "corpus.jsonl"));
if (!haveAdi) console.warn(`SKIP eval end-to-end tests: ${adiDir} not found (the shared IR collections are absent)`);

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "eval-test-"));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("BEIR reader", () => {
  it("keeps empty documents, reads the qrels header, and names the line of bad input", async () => {
    const dir = path.join(tmp, "mini");
    await import("node:fs/promises").then((fs) => fs.mkdir(dir, { recursive: true }));
    await writeFile(
      path.join(dir, "corpus.jsonl"),
      '{"_id":"1","title":"Wings","text":"lift"}\n{"_id":"2","title":"","text":""}\n\n{"_id":3,"text":"drag"}\n',
    );
    await writeFile(path.join(dir, "queries.jsonl"), '{"_id":"q1","text":"lift"}\n');
    await writeFile(path.join(dir, "qrels.tsv"), "query-id\tcorpus-id\tscore\nq1\t1\t2\nq1\t2\t0\n");
    const ds = await loadDataset(dir);
    expect(ds.corpus.map((d) => d.id)).toEqual(["1", "2", "3"]);
    expect(ds.corpus.map(documentText)).toEqual(["Wings\n\nlift", "", "drag"]);
    expect([...ds.qrels.get("q1")!]).toEqual([
      ["1", 2],
      ["2", 0],
    ]);

    await writeFile(path.join(dir, "bad.jsonl"), '{"_id":"1","text":"a"}\n{"_id":"2",\n');
    await expect(async () => {
      for await (const _ of readCorpus(path.join(dir, "bad.jsonl"))) {
      }
    }).rejects.toThrow(/bad\.jsonl:2: invalid JSON/);
    await writeFile(path.join(dir, "dup.tsv"), "q1\td1\t1\nq1\td1\t2\n");
    await expect(readQrels(path.join(dir, "dup.tsv"))).rejects.toThrow(ValidationError);
    await expect(loadDataset(path.join(tmp, "nope"))).rejects.toThrow(/does not exist/);
  });
});

describe("document rankings", () => {
  it("collapses ranked passages to documents, then appends the rest of the first stage", () => {
    const hits = ["b", "c", "b", "a"].map((doc_id) => ({ doc_id }));
    expect(documentRanking(hits, ["a", "d", "b", "e"], 100)).toEqual(["b", "c", "a", "d", "e"]);
    expect(documentRanking(hits, ["a", "d"], 2)).toEqual(["b", "c"]);
  });

  it("compares the service's sparse ranking with BM25 over passages by score, allowing tie order", () => {
    const baseline = [
      { id: "a", score: 3 },
      { id: "b", score: 2 },
      { id: "a", score: 1.5 },
      { id: "c", score: 2 },
    ];
    expect(
      sameScores(
        [
          { doc: "a", score: 3 },
          { doc: "c", score: 2 },
          { doc: "b", score: 2 },
        ],
        baseline,
      ),
    ).toBe(true);
    expect(
      sameScores(
        [
          { doc: "a", score: 3 },
          { doc: "b", score: 1.5 },
        ],
        baseline,
      ),
    ).toBe(false);
    expect(sameScores([{ doc: "a", score: 3 }], [])).toBe(false);
  });
});

/** Mean nDCG@10 of uniformly random rankings of the whole corpus (seeded, averaged). */
function randomBaseline(docIds: string[], qrels: Map<string, ReadonlyMap<string, number>>, rounds = 20): number {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  let total = 0;
  for (let r = 0; r < rounds; r++) {
    const run = new Map<string, string[]>();
    for (const qid of qrels.keys()) {
      const ids = [...docIds];
      for (let i = ids.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [ids[i], ids[j]] = [ids[j], ids[i]];
      }
      run.set(qid, ids);
    }
    total += evaluateRun(run, qrels, [metricSpec("ndcg", 10)]).mean.ndcg_at_10;
  }
  return total / rounds;
}

describe.skipIf(!haveAdi)("eval pipeline on ADI (offline defaults)", () => {
  let report: EvalReport;
  let perQueryFile: string;

  beforeAll(async () => {
    perQueryFile = path.join(tmp, "per-query.jsonl");
    const cfg = loadConfig({ EMBEDDER: "hashing" });
    report = await runEval({
      datasetDir: adiDir,
      cfg,
      candidates: [100, 10],
      rerankModel: "tiny",
      perQueryOut: perQueryFile,
    });
  }, 300_000);

  const CONFIG_NAMES = [
    "bm25",
    "dense",
    "dense+lexical",
    "dense+cross-encoder",
    "sparse",
    "sparse+lexical",
    "sparse+cross-encoder",
    "hybrid",
    "hybrid+lexical",
    "hybrid+cross-encoder",
    "hybrid+lexical:rerank",
    "hybrid+lexical:rrf",
    "hybrid+cross-encoder:linear",
    "hybrid+cross-encoder:rrf",
  ];

  it("reports every configuration for every candidate count", () => {
    expect(report.dataset).toBe("adi");
    expect(report.embedder).toMatch(/hashing/);
    expect(report.rerankers.map((r) => [r.name, r.fixture])).toEqual([
      ["lexical", false],
      ["cross-encoder", true],
    ]);
    expect(report.rows.map((r) => `${r.config}@${r.candidates}`)).toEqual([
      ...CONFIG_NAMES.map((c) => `${c}@10`),
      ...CONFIG_NAMES.map((c) => `${c}@100`),
    ]);
    expect(report.queries).toMatchObject({ total: 35, evaluated: 35 });
    expect(report.corpus.documents).toBe(82);
    expect(report.corpus.passages).toBeGreaterThanOrEqual(82 - report.corpus.empty_documents);
    for (const r of report.rows) expect(r.seconds).toBeGreaterThanOrEqual(0);
    // Rows without a named fusion use the service's default: linear for the lexical scorer, the
    // reranker's own order for a model; the swept rows use the one they name.
    const fusionOf = (config: string) => [
      ...new Set(report.rows.filter((r) => r.config === config).map((r) => r.fusion)),
    ];
    expect(fusionOf("hybrid+lexical")).toEqual(["linear"]);
    expect(fusionOf("dense+lexical")).toEqual(["linear"]);
    expect(fusionOf("hybrid+cross-encoder")).toEqual(["rerank"]);
    expect(fusionOf("hybrid+lexical:rerank")).toEqual(["rerank"]);
    expect(fusionOf("hybrid+cross-encoder:rrf")).toEqual(["rrf"]);
    expect(fusionOf("hybrid")).toEqual([null]);
  });

  it("the service's sparse path ranks exactly as BM25 over the same passages", () => {
    expect(report.checks.sparse_equals_bm25_over_passages).toBe(true);
    expect(report.warnings.join("\n")).not.toMatch(/sparse ranking differs/);
  });

  it("keeps metrics in range and consistent with each other", () => {
    for (const r of report.rows) {
      for (const v of [r.ndcg_at_10, r.mrr_at_10, r.map_at_100, r.recall_at_100, r.recall_at_candidates]) {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
      expect(r.recall_at_100).toBeGreaterThanOrEqual(r.recall_at_candidates - 1e-12);
      expect(r.fixture).toBe(r.reranker === "cross-encoder");
    }
    // Reranking only reorders a first stage's candidates: the top-100 document set, hence
    // Recall@100, is that first stage's.
    for (const n of [10, 100]) {
      for (const first of ["dense", "sparse", "hybrid"]) {
        const alone = report.rows.find((r) => r.config === first && r.candidates === n)!;
        for (const row of report.rows.filter((r) => r.retrieval === first && r.candidates === n))
          expect(row.recall_at_100).toBeCloseTo(alone.recall_at_100, 12);
      }
    }
  });

  it("ranks far above chance with BM25, each first stage and the lexical reranker", async () => {
    const ds = await loadDataset(adiDir);
    const chance = randomBaseline(
      ds.corpus.map((d) => d.id),
      ds.qrels,
    );
    expect(chance).toBeGreaterThan(0);
    for (const c of ["bm25", "dense", "sparse", "hybrid", "hybrid+lexical"]) {
      const row = report.rows.find((r) => r.config === c)!;
      expect(row.ndcg_at_10, c).toBeGreaterThan(3 * chance);
    }
  });

  it("the embedded default second stage never answers worse than its first stage on ADI", () => {
    for (const n of [10, 100]) {
      const hybrid = report.rows.find((r) => r.config === "hybrid" && r.candidates === n)!;
      const reranked = report.rows.find((r) => r.config === "hybrid+lexical" && r.candidates === n)!;
      expect(reranked.ndcg_at_10).toBeGreaterThanOrEqual(hybrid.ndcg_at_10);
    }
  });

  it("writes one per-query line per judged query and configuration", async () => {
    const lines = (await readFile(perQueryFile, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(35 * report.rows.length);
    const bm25At10 = lines.filter((l) => l.config === "bm25" && l.candidates === 10);
    expect(new Set(bm25At10.map((l) => l.query_id)).size).toBe(35);
    const mean = bm25At10.reduce((s, l) => s + l.ndcg_at_10, 0) / bm25At10.length;
    expect(mean).toBeCloseTo(report.rows[0].ndcg_at_10, 12);
    for (const l of lines) expect(l.top10.length).toBeLessThanOrEqual(10);
  });

  it("renders a markdown table that marks fixture rows as plumbing only", () => {
    const md = markdownTable(report);
    // header, separator, one line per row
    expect(md.split("\n").filter((l) => l.startsWith("| ")).length).toBe(2 + report.rows.length);
    expect(md).toMatch(/hybrid \(dense \+ sparse, RRF\) \+ cross-encoder †/);
    expect(md).toMatch(/plumbing only/);
  });

  it("the CLI prints one JSON object as its last line with --json", async () => {
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        "scripts/cli.ts",
        "eval",
        "--dataset",
        adiDir,
        "--json",
        "--fast",
        "--candidates",
        "10",
        "--embedder",
        "hashing",
      ],
      { cwd: repoRoot, maxBuffer: 16 << 20, timeout: 240_000 },
    );
    const last = stdout.trim().split("\n").at(-1)!;
    const obj = JSON.parse(last);
    expect(obj.dataset).toBe("adi");
    expect(typeof obj.embedder).toBe("string");
    expect(obj.rerankers.map((r: { name: string }) => r.name)).toEqual(["lexical", "cross-encoder"]);
    expect(obj.rows.map((r: { config: string }) => r.config)).toEqual(CONFIG_NAMES);
    // A script can check the figures: one nDCG@10 per configuration and candidate count.
    expect(Object.keys(obj.ndcg_at_10)).toEqual(CONFIG_NAMES.map((c) => `${c}@10`));
    for (const v of Object.values(obj.ndcg_at_10)) expect(typeof v).toBe("number");
    for (const r of obj.rows)
      for (const k of ["ndcg_at_10", "mrr_at_10", "map_at_100", "recall_at_100", "recall_at_candidates"])
        expect(typeof r[k]).toBe("number");
  }, 300_000);
});
