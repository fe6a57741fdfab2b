// rerank: cross-encoder latency on CPU, side by side with the reference implementation
// (@huggingface/transformers) on the same pairs, plus ONNX Runtime's own fp32 MatMul rate measured in
// the same run (the ceiling for the model's linear layers on this machine).
//
// Models: the generated MiniLM-L6-shaped fixture (random weights, shape-faithful) and, when
// ../shared/data holds it, an independent PyTorch export of the same shape; the same workload runs
// on both, and their cost per token is compared. Scores of both carry no meaning.
// Workloads: 20 candidates of ~200 and of ~60 document tokens, one query.
import { createLocalReranker } from "../../../shared/adapters/local-reranker.ts";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type CrossEncoder, loadCrossEncoder, releaseCrossEncoders } from "../../../shared/adapters/cross-encoder.ts";
import { loadTokenizer, type PairTokenizer } from "../../../shared/adapters/hf-tokenizer.ts";
import {
  availableCores,
  CPU_BATCH_TOKENS,
  createOrtSession,
  GPU_BATCH_TOKENS,
} from "../../../shared/adapters/ort-session.ts";
import { DEFAULT_SHARED_DATA, ensureFixtureModel } from "../../fixtures/index.ts";
import { DataType, GraphBuilder } from "../../../shared/adapters/onnx-graph.ts";
import { normalArray } from "../../fixtures/prng.ts";
import {
  type Figure,
  figure,
  stats,
  type Suite,
  type SuiteContext,
  type SuiteResult,
  type TimingStats,
} from "../harness.ts";

const PYTORCH_DIR = path.join(DEFAULT_SHARED_DATA, "models", "minilm-l6-cross-encoder-random-weights");
const CANDIDATES = 20;
const QUERY = "what are the structural and aeroelastic problems associated with flight of high speed aircraft";

interface Shape {
  layers: number;
  hidden: number;
  intermediate: number;
}

/**
 * FLOPs of one forward pass over `rows` sequences padded to `seq` tokens: per layer the Q/K/V/output
 * projections (4 × 2·s·h²), attention scores and weighted sum (2 × 2·s²·h) and the FFN (2 × 2·s·h·f);
 * the pooler and classifier add 2·h² + 2·h per row. Embeddings, LayerNorm, softmax and GELU are
 * elementwise and left out (well under 1% here).
 */
export function crossEncoderFlops(shape: Shape, rows: number, seq: number): number {
  const { layers, hidden: h, intermediate: f } = shape;
  const perLayer = 8 * seq * h * h + 4 * seq * seq * h + 4 * seq * h * f;
  return rows * (layers * perLayer + 2 * h * h + 2 * h);
}

function readShape(modelDir: string): Shape {
  const c = JSON.parse(readFileSync(path.join(modelDir, "config.json"), "utf8"));
  return { layers: c.num_hidden_layers, hidden: c.hidden_size, intermediate: c.intermediate_size };
}

/** Deterministic English-like text: the Cranfield abstracts when present, else a fixed word list. */
function sourceText(): string {
  const corpus = path.join(DEFAULT_SHARED_DATA, "cranfield", "corpus.jsonl");
  if (existsSync(corpus)) {
    return readFileSync(corpus, "utf8")
      .split("\n")
      .slice(0, 400)
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { text: string }).text)
      .join(" ");
  }
  const words =
    "the boundary layer flow over a flat plate at supersonic speed was measured and compared with theory for several heat transfer rates pressure distributions and shock wave interactions on wings bodies and nozzles".split(
      " ",
    );
  return Array.from({ length: 40_000 }, (_, i) => words[(i * 7 + (i >> 3)) % words.length]).join(" ");
}

/** `count` documents of exactly `tokens` document tokens each, cut from the source text at token boundaries. */
function makeDocs(tok: PairTokenizer, text: string, count: number, tokens: number): string[] {
  const spans = tok.spans(text);
  const docs: string[] = [];
  for (let i = 0; i < count; i++) {
    const start = (i * (tokens + 37)) % Math.max(1, spans.length - tokens - 1);
    docs.push(text.slice(spans[start][0], spans[start + tokens - 1][1]));
  }
  return docs;
}

const batchChildScript = path.join(import.meta.dirname, "..", "rerank-batch-child.ts");

/** One fresh process scoring the pairs in `pairsFile` twice with the given budget (rerank-batch-child.ts). */
function runBatchChild(
  modelDir: string,
  budget: number,
  pairsFile: string,
): Promise<{ batch_tokens: number; first_ms: number; second_ms: number; peak_rss_mb: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", "tsx", batchChildScript, modelDir, String(budget), pairsFile],
      { maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        const line = stdout
          .trim()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .pop();
        if (err || !line)
          return reject(new Error(`rerank batch child failed: ${err?.message ?? ""} ${stderr.slice(-1000)}`));
        resolve(JSON.parse(line));
      },
    );
  });
}

interface Reference {
  score(query: string, docs: string[]): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** The reference: transformers.js AutoTokenizer + AutoModelForSequenceClassification, local files only, fp32. */
async function loadReference(modelDir: string): Promise<Reference> {
  const { AutoTokenizer, AutoModelForSequenceClassification, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  env.localModelPath = `${path.dirname(modelDir)}/`;
  const name = path.basename(modelDir);
  const tokenizer = await AutoTokenizer.from_pretrained(name);
  const model = await AutoModelForSequenceClassification.from_pretrained(name, { dtype: "fp32", device: "cpu" });
  return {
    async score(query, docs) {
      const inputs = tokenizer(Array(docs.length).fill(query), { text_pair: docs, padding: true, truncation: true });
      const out = (await model(inputs)) as { logits: { data: Float32Array } };
      return Float32Array.from(out.logits.data);
    },
    dispose: async () => {
      await model.dispose();
    },
  };
}

/** ONNX Runtime's fp32 MatMul rate on this machine: Y[m,n] = A[m,k] · B[k,n], B a weight initializer. */
async function matmulRate(
  reps: number,
  m = 4096,
  k = 384,
  n = 1536,
): Promise<{ gflops: number; peak: number; ms: TimingStats }> {
  const g = new GraphBuilder();
  const b = g.floatTensor("B", [k, n], normalArray(1, "B", k * n, 0.02));
  g.op1("MatMul", ["A", b], {}, { name: "Y" });
  const bytes = g.encode({
    name: "matmul",
    opset: 17,
    inputs: [{ name: "A", elemType: DataType.FLOAT, dims: [m, k] }],
    outputs: [{ name: "Y", elemType: DataType.FLOAT, dims: [m, n] }],
  });
  // Same thread settings as the cross-encoder sessions (the runtime's default on an unrestricted machine).
  const session = await createOrtSession(bytes, { provider: "cpu" });
  const a = normalArray(2, "A", m * k, 1);
  const samples: number[] = [];
  for (let i = 0; i < reps + 5; i++) {
    const t = performance.now();
    await session.run({ A: { data: a, dims: [m, k] } });
    if (i >= 5) samples.push(performance.now() - t);
  }
  await session.release();
  const ms = stats(samples);
  return { gflops: (2 * m * k * n) / (ms.p50 * 1e6), peak: (2 * m * k * n) / (ms.min * 1e6), ms };
}

interface CaseResult {
  ours: TimingStats;
  oursInference: TimingStats;
  reference?: TimingStats;
  logits: Float32Array;
  refLogits?: Float32Array;
  tokens: number;
  padded: number;
}

/** Alternates ours and the reference call by call, so both see the same machine state. */
async function runCase(
  ce: CrossEncoder,
  ref: Reference | null,
  docs: string[],
  warmup: number,
  reps: number,
): Promise<CaseResult> {
  const ours: number[] = [];
  const inference: number[] = [];
  const refs: number[] = [];
  let logits: Float32Array = new Float32Array(0);
  let refLogits: Float32Array | undefined;
  let tokens = 0;
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const r = await ce.scorePairs(QUERY, docs);
    const t1 = performance.now();
    if (ref) refLogits = await ref.score(QUERY, docs);
    const t2 = performance.now();
    if (i >= warmup) {
      ours.push(t1 - t0);
      inference.push(r.inferenceMs);
      if (ref) refs.push(t2 - t1);
    }
    logits = r.logits;
    tokens = r.tokens;
  }
  const longest = Math.max(
    ...docs.map((d) => ce.tokenizer.encodePair(QUERY, d, { maxLength: ce.maxLength }).ids.length),
  );
  return {
    ours: stats(ours),
    oursInference: stats(inference),
    reference: ref ? stats(refs) : undefined,
    logits,
    refLogits,
    tokens,
    padded: longest * docs.length,
  };
}

function maxAbsDiff(a: Float32Array, b: Float32Array | undefined): number {
  if (!b) return Number.NaN;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export const suite: Suite = {
  name: "rerank",
  description:
    "cross-encoder latency (CPU) vs @huggingface/transformers, MatMul ceiling, fixture vs PyTorch export, WASM backend",
  async run(ctx: SuiteContext): Promise<SuiteResult> {
    const warmup = ctx.quick ? 1 : 3;
    const reps = ctx.quick ? 3 : 20;
    const threads = availableCores();
    const figures: Figure[] = [];
    const notes: string[] = [
      "Fixture and PyTorch-export weights are random: scores carry no meaning; score diffs compare implementations on identical inputs.",
      `Threads: ${threads} (cores available to this process; native sessions leave the count to ONNX Runtime, which pins one thread per physical core). Latency = tokenisation + inference for all ${CANDIDATES} pairs in one call.`,
    ];
    const details: Record<string, unknown> = {};

    ctx.log("rerank: generating/loading the MiniLM-L6-shaped fixture…");
    const fixtureDir = await ensureFixtureModel("minilm-l6-cross", { log: ctx.log });
    const pytorchDir = existsSync(path.join(PYTORCH_DIR, "onnx", "model.onnx")) ? PYTORCH_DIR : null;
    if (!pytorchDir) notes.push(`PyTorch export not found at ${PYTORCH_DIR}: fixture-vs-PyTorch figures skipped.`);

    const tokenizer = await loadTokenizer(fixtureDir);
    const text = sourceText();
    const workloads: Array<[string, string[]]> = [
      ["200", makeDocs(tokenizer, text, CANDIDATES, 200)],
      ["60", makeDocs(tokenizer, text, CANDIDATES, 60)],
    ];
    const docs200 = workloads[0][1];
    const docs60 = workloads[1][1];

    ctx.log("rerank: ONNX Runtime fp32 MatMul rate…");
    const mm = await matmulRate(ctx.quick ? 10 : 50);
    // [4096,384]×[384,1536]: the FFN projection at about the ~200-token workload's padded token count.
    figures.push(
      figure(
        "ORT fp32 MatMul [4096,384]×[384,1536]",
        mm.gflops,
        "GFLOP/s",
        undefined,
        `p50 ${mm.ms.p50.toFixed(2)} ms, best ${mm.peak.toFixed(0)} GFLOP/s`,
      ),
    );

    const shape = readShape(fixtureDir);
    // No explicit thread count: the production default (all available cores, pinned by the runtime).
    const fixture = await loadCrossEncoder({ modelDir: fixtureDir, provider: "cpu" });
    ctx.log("rerank: reference (@huggingface/transformers) on the fixture…");
    const ref = await loadReference(fixtureDir);
    const results: Record<string, CaseResult> = {};
    for (const [len, docs] of workloads) {
      ctx.log(`rerank: fixture, ${CANDIDATES} × ~${len} tokens…`);
      results[len] = await runCase(fixture, ref, docs, warmup, reps);
    }
    await ref.dispose();

    let maxDiff = 0;
    for (const [len, r] of Object.entries(results)) {
      const ratio = r.ours.p50 / (r.reference?.p50 ?? Number.NaN);
      const flops = crossEncoderFlops(shape, CANDIDATES, r.padded / CANDIDATES);
      const achieved = flops / (r.oursInference.p50 * 1e6);
      const diff = maxAbsDiff(r.logits, r.refLogits);
      maxDiff = Math.max(maxDiff, diff);
      const tag = `fixture ${CANDIDATES}×~${len} tok`;
      figures.push(
        figure(
          `${tag}: p50 latency`,
          r.ours.p50,
          "ms",
          undefined,
          `p99 ${r.ours.p99.toFixed(1)} ms; ${r.tokens} tokens, padded ${r.padded}`,
        ),
        figure(
          `${tag}: reference p50 latency`,
          r.reference?.p50 ?? Number.NaN,
          "ms",
          undefined,
          `p99 ${r.reference?.p99.toFixed(1)} ms`,
        ),
        figure(
          `${tag}: latency vs reference`,
          ratio,
          "×",
          len === "200" ? { text: "≤ 0.6×", met: ratio <= 0.6 } : undefined,
        ),
        figure(`${tag}: pairs/s`, (CANDIDATES * 1000) / r.ours.p50, "pairs/s"),
        figure(
          `${tag}: achieved`,
          achieved,
          "GFLOP/s",
          undefined,
          `${(flops / 1e9).toFixed(1)} GFLOP per call over inference p50 ${r.oursInference.p50.toFixed(1)} ms`,
        ),
        figure(
          `${tag}: achieved / MatMul rate`,
          achieved / mm.gflops,
          "×",
          len === "200" ? { text: "≥ 0.5×", met: achieved / mm.gflops >= 0.5 } : undefined,
        ),
        figure(`${tag}: max |logit − reference|`, diff, "", { text: "≤ 1e-4", met: diff <= 1e-4 }),
      );
      details[`fixture_${len}`] = {
        ours: r.ours,
        ours_inference: r.oursInference,
        reference: r.reference,
        tokens: r.tokens,
        padded: r.padded,
        gflop: flops / 1e9,
      };
    }
    const main = results["200"];
    const mainAchieved =
      crossEncoderFlops(shape, CANDIDATES, main.padded / CANDIDATES) / (main.oursInference.p50 * 1e6);

    // Same workload on the independent PyTorch export: is the fixture's cost per token faithful?
    let costRatio: number | null = null;
    if (pytorchDir) {
      const pt = await loadCrossEncoder({ modelDir: pytorchDir, provider: "cpu" });
      const ptRef = ctx.quick ? null : await loadReference(pytorchDir);
      for (const [len, docs] of workloads) {
        ctx.log(`rerank: PyTorch export, ${CANDIDATES} × ~${len} tokens…`);
        // Interleave with the fixture again so both share the machine state of this moment.
        const a: number[] = [];
        const b: number[] = [];
        let ptRes: CaseResult | null = null;
        for (let i = 0; i < warmup + reps; i++) {
          const t0 = performance.now();
          await fixture.scorePairs(QUERY, docs);
          const t1 = performance.now();
          await pt.scorePairs(QUERY, docs);
          const t2 = performance.now();
          if (i >= warmup) {
            a.push(t1 - t0);
            b.push(t2 - t1);
          }
        }
        if (ptRef && len === "200") ptRes = await runCase(pt, ptRef, docs, 1, Math.max(3, Math.floor(reps / 2)));
        const fx = stats(a);
        const ptStats = stats(b);
        // Both tokenise identically (same tokenizer.json), so tokens per call are equal: latency ratio = cost-per-token ratio.
        const ratio = fx.p50 / ptStats.p50;
        if (len === "200") costRatio = ratio;
        figures.push(
          figure(
            `PyTorch export ${CANDIDATES}×~${len} tok: p50 latency`,
            ptStats.p50,
            "ms",
            undefined,
            `p99 ${ptStats.p99.toFixed(1)} ms`,
          ),
          figure(`fixture / PyTorch export cost per token (~${len} tok)`, ratio, "×", {
            text: "within ±10%",
            met: Math.abs(ratio - 1) <= 0.1,
          }),
        );
        if (ptRes?.reference) {
          const r2 = ptRes.ours.p50 / ptRes.reference.p50;
          figures.push(
            figure(`PyTorch export ${CANDIDATES}×~${len} tok: latency vs reference`, r2, "×", {
              text: "≤ 0.6×",
              met: r2 <= 0.6,
            }),
          );
          figures.push(
            figure(`PyTorch export: max |logit − reference|`, maxAbsDiff(ptRes.logits, ptRes.refLogits), ""),
          );
          maxDiff = Math.max(maxDiff, maxAbsDiff(ptRes.logits, ptRes.refLogits));
        }
        details[`pytorch_${len}`] = { pytorch: ptStats, fixture_interleaved: fx };
      }
      await ptRef?.dispose();
    }

    // int8 (dynamic, the folder's model_quantized.onnx) against fp32 on the same pairs, interleaved.
    ctx.log("rerank: int8 vs fp32…");
    const int8 = await loadCrossEncoder({ modelDir: fixtureDir, provider: "cpu", quantized: true });
    const int8Summary: Record<string, number> = {};
    for (const [len, docs] of workloads) {
      const f: number[] = [];
      const q: number[] = [];
      let lf: Float32Array = new Float32Array(0);
      let lq: Float32Array = new Float32Array(0);
      for (let i = 0; i < warmup + reps; i++) {
        const t0 = performance.now();
        lf = (await fixture.scorePairs(QUERY, docs)).logits;
        const t1 = performance.now();
        lq = (await int8.scorePairs(QUERY, docs)).logits;
        const t2 = performance.now();
        if (i >= warmup) {
          f.push(t1 - t0);
          q.push(t2 - t1);
        }
      }
      const fs = stats(f);
      const qs = stats(q);
      const spread = Math.max(...lf) - Math.min(...lf);
      const relDiff = maxAbsDiff(lf, lq) / spread;
      const top = (x: Float32Array) => [...x.keys()].sort((i, j) => x[j] - x[i]).slice(0, 4);
      const tf = new Set(top(lf));
      const agree = top(lq).filter((i) => tf.has(i)).length / 4;
      const tag = `int8 ${CANDIDATES}×~${len} tok`;
      const vsRef = len === "200" ? qs.p50 / (main.reference?.p50 ?? Number.NaN) : Number.NaN;
      figures.push(
        figure(
          `${tag}: p50 latency`,
          qs.p50,
          "ms",
          undefined,
          `p99 ${qs.p99.toFixed(1)} ms; fp32 interleaved p50 ${fs.p50.toFixed(1)} ms`,
        ),
        figure(`${tag}: int8 / fp32`, qs.p50 / fs.p50, "×", { text: "≤ 0.5×", met: qs.p50 / fs.p50 <= 0.5 }),
        figure(`${tag}: max |Δlogit| / fp32 spread`, relDiff, ""),
        figure(`${tag}: top-4 agreement with fp32`, agree, ""),
      );
      if (len === "200")
        figures.push(figure(`${tag}: int8 / transformers.js fp32`, vsRef, "×", { text: "≤ 0.5×", met: vsRef <= 0.5 }));
      int8Summary[`int8_p50_ms_${len}`] = qs.p50;
      int8Summary[`int8_vs_fp32_${len}`] = qs.p50 / fs.p50;
      if (len === "200") {
        int8Summary.int8_vs_fp32 = qs.p50 / fs.p50;
        int8Summary.int8_latency_ratio_vs_reference = vsRef;
        int8Summary.int8_max_abs_logit_diff_over_spread = relDiff;
        int8Summary.int8_top4_agreement = agree;
      }
    }
    // Micro-batch budget: the CPU default graph (int8) scoring the same pairs with each padded-token
    // budget, interleaved in this process (warm), then once per budget in a fresh process (first
    // call and peak RSS, as a cold instance pays them), including 100 long pairs.
    ctx.log("rerank: micro-batch budgets…");
    const budgets = [CPU_BATCH_TOKENS, 1024, 2048, GPU_BATCH_TOKENS];
    const byBudget = await Promise.all(
      budgets.map((b) => loadCrossEncoder({ modelDir: fixtureDir, provider: "cpu", quantized: true, batchTokens: b })),
    );
    const budgetSummary: Record<string, number> = {};
    for (const [len, docs] of workloads) {
      const times = budgets.map(() => [] as number[]);
      for (let i = 0; i < warmup + reps; i++)
        for (const [j, m] of byBudget.entries()) {
          const t = performance.now();
          await m.scorePairs(QUERY, docs);
          if (i >= warmup) times[j].push(performance.now() - t);
        }
      const p50s = times.map((t) => stats(t).p50);
      const big = p50s[budgets.indexOf(GPU_BATCH_TOKENS)];
      budgets.forEach((b, j) => {
        figures.push(
          figure(
            `int8 ${CANDIDATES}×~${len} tok, ${b}-token batches: p50`,
            p50s[j],
            "ms",
            undefined,
            `${(p50s[j] / big).toFixed(3)}× the ${GPU_BATCH_TOKENS}-token p50`,
          ),
        );
        budgetSummary[`batch_${b}_p50_ms_${len}`] = p50s[j];
      });
      budgetSummary[`batch_default_vs_${GPU_BATCH_TOKENS}_${len}`] = p50s[budgets.indexOf(CPU_BATCH_TOKENS)] / big;
    }
    const docs100 = makeDocs(tokenizer, text, 100, 200);
    const cold: Record<
      string,
      Array<{ batch_tokens: number; first_ms: number; second_ms: number; peak_rss_mb: number }>
    > = {};
    const pairsDir = await mkdtemp(path.join(os.tmpdir(), "rerank-batch-"));
    try {
      for (const [name, docs] of [
        [`${CANDIDATES}×~200`, docs200],
        ["100×~200", docs100],
      ] as const) {
        const file = path.join(pairsDir, `${name.replace(/\W/g, "_")}.json`);
        await writeFile(file, JSON.stringify({ query: QUERY, documents: docs }));
        cold[name] = [];
        // Budgets in turn, twice, so neither order nor page cache favours one.
        for (let round = 0; round < (ctx.quick ? 1 : 2); round++)
          for (const b of budgets) cold[name].push(await runBatchChild(fixtureDir, b, file));
        const big = (k: "first_ms" | "peak_rss_mb") =>
          stats(cold[name].filter((r) => r.batch_tokens === GPU_BATCH_TOKENS).map((r) => r[k])).p50;
        for (const b of budgets) {
          const runs = cold[name].filter((r) => r.batch_tokens === b);
          const first = stats(runs.map((r) => r.first_ms)).p50;
          const rss = stats(runs.map((r) => r.peak_rss_mb)).p50;
          figures.push(
            figure(
              `fresh process, int8 ${name} tok, ${b}-token batches: first call`,
              first,
              "ms",
              undefined,
              `${(first / big("first_ms")).toFixed(3)}× the ${GPU_BATCH_TOKENS}-token first call; second call ${stats(runs.map((r) => r.second_ms)).p50.toFixed(0)} ms`,
            ),
            figure(
              `fresh process, int8 ${name} tok, ${b}-token batches: peak RSS`,
              rss,
              "MB",
              undefined,
              `${(rss / big("peak_rss_mb")).toFixed(3)}× the ${GPU_BATCH_TOKENS}-token peak`,
            ),
          );
          const key = name.startsWith("100") ? "100x200" : `${CANDIDATES}x200`;
          budgetSummary[`fresh_${key}_batch_${b}_first_ms`] = first;
          budgetSummary[`fresh_${key}_batch_${b}_peak_rss_mb`] = rss;
        }
      }
    } finally {
      await rm(pairsDir, { recursive: true, force: true });
    }
    details.batch_budgets = { budgets, fresh: cold };
    notes.push(
      `Micro-batch budgets: the int8 graph with RERANKER_BATCH_TOKENS at ${budgets.join(", ")} (the CPU default is ${CPU_BATCH_TOKENS}, the GPU default ${GPU_BATCH_TOKENS}); warm figures interleaved in this process, first calls and peak RSS from one fresh process per budget and round (two rounds, medians).`,
    );

    // The independent PyTorch export, quantised here by `models quantize`, on the ~200-token pairs.
    if (pytorchDir) {
      ctx.log("rerank: PyTorch export, int8 (quantised here) vs fp32…");
      const { quantizeFolder } = await import("../../models/quantize.ts");
      const tmp = await mkdtemp(path.join(os.tmpdir(), "bench-pt-int8-"));
      try {
        const dir = path.join(tmp, "export");
        await cp(pytorchDir, dir, { recursive: true });
        await quantizeFolder(dir);
        const ptF = await loadCrossEncoder({ modelDir: dir, provider: "cpu", quantized: false });
        const ptQ = await loadCrossEncoder({ modelDir: dir, provider: "cpu", quantized: true });
        const f: number[] = [];
        const q: number[] = [];
        for (let i = 0; i < warmup + reps; i++) {
          const t0 = performance.now();
          await ptF.scorePairs(QUERY, docs200);
          const t1 = performance.now();
          await ptQ.scorePairs(QUERY, docs200);
          const t2 = performance.now();
          if (i >= warmup) {
            f.push(t1 - t0);
            q.push(t2 - t1);
          }
        }
        const fs = stats(f);
        const qs = stats(q);
        figures.push(
          figure(
            `PyTorch export int8 ${CANDIDATES}×~200 tok: p50 latency`,
            qs.p50,
            "ms",
            undefined,
            `p99 ${qs.p99.toFixed(1)} ms; fp32 interleaved p50 ${fs.p50.toFixed(1)} ms`,
          ),
          figure("PyTorch export int8 / fp32", qs.p50 / fs.p50, "×", { text: "≤ 0.5×", met: qs.p50 / fs.p50 <= 0.5 }),
        );
        int8Summary.pytorch_int8_vs_fp32 = qs.p50 / fs.p50;
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
    notes.push(
      "int8 agreement figures use random fixture weights: they measure the quantisation error of the arithmetic on these pairs, not how a trained model's ranking would change.",
    );

    // Fan-out on one host: one call of all pairs on one session (all cores) against two parallel
    // calls of half the pairs on two sessions of cores/2 threads (RERANKER_WORKERS=2), CPU default precision.
    ctx.log("rerank: fan-out, 1 vs 2 workers…");
    const base = {
      rerankerModelDir: fixtureDir,
      rerankerModelS3: undefined,
      modelCacheDir: "/tmp/models",
      rerankerProvider: "cpu" as const,
      rerankerQuantized: true,
      rerankerMaxLength: undefined,
      rerankerBatchTokens: undefined,
      rerankerMaxDocuments: 1000,
      rerankerThreads: undefined,
      rerankerCacheMb: 0,
    };
    const single = createLocalReranker({ ...base, rerankerWorkers: 1 });
    const pair = createLocalReranker({ ...base, rerankerWorkers: 2 });
    await Promise.all([single.warm(), pair.warm()]);
    const halves = [docs200.slice(0, CANDIDATES / 2), docs200.slice(CANDIDATES / 2)];
    const one: number[] = [];
    const two: number[] = [];
    for (let i = 0; i < warmup + reps; i++) {
      const t0 = performance.now();
      await single.rerank({ query: QUERY, documents: docs200 });
      const t1 = performance.now();
      await Promise.all(halves.map((documents) => pair.rerank({ query: QUERY, documents })));
      const t2 = performance.now();
      if (i >= warmup) {
        one.push(t1 - t0);
        two.push(t2 - t1);
      }
    }
    const oneS = stats(one);
    const twoS = stats(two);
    const fanoutRatio = twoS.p50 / oneS.p50;
    figures.push(
      figure(
        `fan-out ${CANDIDATES}×~200 tok, 1 call on 1 worker: p50`,
        oneS.p50,
        "ms",
        undefined,
        `p99 ${oneS.p99.toFixed(1)} ms`,
      ),
      figure(
        `fan-out ${CANDIDATES}×~200 tok, 2 calls on 2 workers: p50`,
        twoS.p50,
        "ms",
        undefined,
        `p99 ${twoS.p99.toFixed(1)} ms`,
      ),
      figure("fan-out: 2 workers / 1 worker", fanoutRatio, "×", { text: "≤ 0.65×", met: fanoutRatio <= 0.65 }),
    );
    int8Summary.fanout2_vs_single = fanoutRatio;

    // Score cache: a replayed query log with repeats (Zipf(1.0) over the queries), same 20 passages each.
    ctx.log("rerank: score cache on a Zipf query log…");
    const cached = createLocalReranker({ ...base, rerankerWorkers: 1, rerankerCacheMb: 32 });
    await cached.warm();
    const queries = Array.from({ length: ctx.quick ? 10 : 60 }, (_, i) => `${QUERY} variant ${i}`);
    const zipf = queries.map((_, i) => 1 / (i + 1));
    const zsum = zipf.reduce((a, b) => a + b, 0);
    let seed = 42;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const pick = () => {
      let u = rand() * zsum;
      for (let i = 0; i < zipf.length; i++) if ((u -= zipf[i]) <= 0) return queries[i];
      return queries[queries.length - 1];
    };
    const hitMs: number[] = [];
    const missMs: number[] = [];
    let hits = 0;
    let lookups = 0;
    const log = ctx.quick ? 30 : 200;
    for (let i = 0; i < log; i++) {
      const t0 = performance.now();
      const r = await cached.rerank({ query: pick(), documents: docs60 });
      const ms = performance.now() - t0;
      const c = r.meta.cache ?? { hits: 0, misses: 0 };
      hits += c.hits;
      lookups += c.hits + c.misses;
      (c.misses === 0 ? hitMs : missMs).push(ms);
    }
    const hitRate = hits / Math.max(1, lookups);
    const hitS = stats(hitMs);
    const missS = stats(missMs);
    figures.push(
      figure(`score cache: hit rate over ${log} requests (Zipf over ${queries.length} queries)`, hitRate, ""),
      figure(
        `score cache: all-hit request p50 (${CANDIDATES}×~60 tok)`,
        hitS.p50,
        "ms",
        undefined,
        `p99 ${hitS.p99.toFixed(2)} ms`,
      ),
      figure(
        `score cache: miss request p50 (${CANDIDATES}×~60 tok)`,
        missS.p50,
        "ms",
        undefined,
        `p99 ${missS.p99.toFixed(1)} ms`,
      ),
    );
    int8Summary.cache_hit_rate = hitRate;
    int8Summary.cache_hit_p50_ms = hitS.p50;
    int8Summary.cache_miss_p50_ms = missS.p50;

    // The WASM backend (onnxruntime-web) on the same ~200-token workload.
    ctx.log("rerank: WASM backend…");
    const wasm = await loadCrossEncoder({ modelDir: fixtureDir, provider: "wasm", threads });
    const wasmReps = ctx.quick ? 2 : 8;
    const wasmTimes: number[] = [];
    let wasmLogits: Float32Array = new Float32Array(0);
    for (let i = 0; i < 1 + wasmReps; i++) {
      const t = performance.now();
      wasmLogits = (await wasm.scorePairs(QUERY, docs200)).logits;
      if (i >= 1) wasmTimes.push(performance.now() - t);
    }
    const wasmStats = stats(wasmTimes);
    const wasmRatio = wasmStats.p50 / main.ours.p50;
    const wasmDiff = maxAbsDiff(wasmLogits, main.logits);
    figures.push(
      figure(
        `WASM backend ${CANDIDATES}×~200 tok: p50 latency`,
        wasmStats.p50,
        "ms",
        undefined,
        `onnxruntime-web, SIMD, ${threads} threads`,
      ),
      figure("WASM / native latency", wasmRatio, "×"),
      figure("WASM: max |logit − native|", wasmDiff, "", { text: "≤ 1e-4", met: wasmDiff <= 1e-4 }),
    );
    await releaseCrossEncoders();

    return {
      suite: "rerank",
      figures,
      summary: {
        latency_ratio_vs_reference: main.ours.p50 / (main.reference?.p50 ?? Number.NaN),
        max_abs_score_diff: maxDiff,
        matmul_utilization: mainAchieved / mm.gflops,
        fixture_vs_pytorch_cost_per_token: costRatio,
        wasm_latency_ratio: wasmRatio,
        wasm_max_abs_score_diff: wasmDiff,
        ...int8Summary,
        ...budgetSummary,
        p50_ms_200: main.ours.p50,
        p99_ms_200: main.ours.p99,
        p50_ms_60: results["60"].ours.p50,
        pairs_per_s_200: (CANDIDATES * 1000) / main.ours.p50,
        achieved_gflops_200: mainAchieved,
        matmul_gflops: mm.gflops,
        threads,
      },
      details,
      notes,
    };
  },
};
