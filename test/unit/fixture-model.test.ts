// Fixture models: folder layout, determinism, graph structure, and that ONNX Runtime and the
// transformers.js reference both run them with the same results (and padding changes nothing).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { AutoModelForSequenceClassification, AutoTokenizer, env } from "@huggingface/transformers";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer, type PairTokenizer } from "../../shared/adapters/hf-tokenizer.ts";
import { verifyChecksums } from "../../scripts/fixtures/checksums.ts";
import { fixtureKey, REPO_ROOT, writeFixtureModel } from "../../scripts/fixtures/index.ts";
import { summarizeModel } from "../../shared/adapters/onnx-graph.ts";
import { ensureFixtureModel, FIXTURES, sharedModelDir } from "../helpers/fixtures.ts";

env.allowRemoteModels = false;

const work = mkdtempSync(path.join(tmpdir(), "fixtures-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const dirs: Record<string, string> = {};
beforeAll(async () => {
  for (const n of ["tiny-cross", "tiny-bi", "tiny-xlmr-cross"] as const) dirs[n] = await ensureFixtureModel(n);
});

const readJson = (dir: string, f: string) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));

/** Runs pairs through ORT, padded to the longest one, the way the reranker feeds a micro-batch. */
async function runPairs(session: ort.InferenceSession, tok: PairTokenizer, pairs: Array<[string, string]>) {
  const enc = pairs.map(([q, d]) => tok.encodePair(q, d));
  const len = Math.max(...enc.map((e) => e.ids.length));
  const pad = (rows: number[][], v: number) =>
    BigInt64Array.from(rows.flatMap((r) => [...r, ...Array(len - r.length).fill(v)]).map(BigInt));
  const dims = [enc.length, len];
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor(
      "int64",
      pad(
        enc.map((e) => e.ids),
        tok.padId,
      ),
      dims,
    ),
    attention_mask: new ort.Tensor(
      "int64",
      pad(
        enc.map((e) => e.attentionMask),
        0,
      ),
      dims,
    ),
  };
  if (session.inputNames.includes("token_type_ids"))
    feeds.token_type_ids = new ort.Tensor(
      "int64",
      pad(
        enc.map((e) => e.typeIds),
        0,
      ),
      dims,
    );
  const out = await session.run(feeds);
  return out[session.outputNames[0]];
}

const PAIRS: Array<[string, string]> = [
  ["how many people live in berlin?", "Berlin has a population of 3,520,031 registered inhabitants."],
  ["how many people live in berlin?", "The flow over a wing at supersonic speed."],
  ["boundary layer", "a"],
  ["boundary layer", "heat transfer in the boundary layer of a flat plate at high mach number and low pressure"],
];

describe("fixture folders", () => {
  it("hold a Hugging Face layout marked as a fixture, with checksums that verify", async () => {
    for (const [name, dir] of Object.entries(dirs)) {
      for (const f of [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "README.md",
        "checksums.json",
      ])
        expect(existsSync(path.join(dir, f)), `${name}: ${f}`).toBe(true);
      const cfg = readJson(dir, "config.json");
      expect(cfg.fixture).toBe(true);
      expect(cfg._comment).toMatch(/random weights/i);
      expect(readFileSync(path.join(dir, "README.md"), "utf8")).toMatch(/meaningless scores/);
      expect(await verifyChecksums(dir, readJson(dir, "checksums.json"))).toEqual([]);
      expect(path.basename(dir)).toBe(`${name}-${fixtureKey(name as "tiny-cross").key}`);
    }
    const ce = readJson(dirs["tiny-cross"], "config.json");
    expect(ce).toMatchObject({
      architectures: ["BertForSequenceClassification"],
      model_type: "bert",
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 64,
      max_position_embeddings: 128,
      type_vocab_size: 2,
      id2label: { "0": "LABEL_0" },
    });
    expect(ce.vocab_size).toBe(Object.keys(readJson(dirs["tiny-cross"], "tokenizer.json").model.vocab).length);
    const xl = readJson(dirs["tiny-xlmr-cross"], "config.json");
    expect(xl).toMatchObject({
      architectures: ["XLMRobertaForSequenceClassification"],
      model_type: "xlm-roberta",
      pad_token_id: 1,
      type_vocab_size: 1,
      max_position_embeddings: 130,
    });
    expect(readJson(dirs["tiny-xlmr-cross"], "tokenizer.json").model.type).toBe("Unigram");
    expect(readJson(dirs["tiny-bi"], "1_Pooling/config.json").pooling_mode_mean_tokens).toBe(true);
  });

  it("are deterministic: the same spec gives the same bytes, another seed other weights", async () => {
    await writeFixtureModel(path.join(work, "a"), "tiny-cross");
    await writeFixtureModel(path.join(work, "b"), "tiny-cross", { overrides: { seed: 7 } });
    const model = (d: string) => readFileSync(path.join(d, "onnx/model.onnx"));
    expect(model(path.join(work, "a")).equals(model(dirs["tiny-cross"]))).toBe(true);
    expect(model(path.join(work, "b")).equals(model(dirs["tiny-cross"]))).toBe(false);
    expect(fixtureKey("tiny-cross", { overrides: { seed: 7 } }).key).not.toBe(fixtureKey("tiny-cross").key);
  });

  it("generate once when several processes ask at the same time", async () => {
    const cacheDir = path.join(work, "concurrent");
    const script = `const m = await import(${JSON.stringify(path.join(REPO_ROOT, "scripts/fixtures/index.ts"))}); console.log(await m.ensureFixtureModel("tiny-xlmr-cross", { cacheDir: ${JSON.stringify(cacheDir)} }));`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
          cwd: REPO_ROOT,
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        let err = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (err += d));
        child.on("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}: ${err}`))));
      });
    const results = await Promise.all([run(), run(), run()]);
    expect(new Set(results).size).toBe(1);
    expect(readdirSync(cacheDir)).toEqual([path.basename(results[0])]); // no temp folders or locks left
    expect(await verifyChecksums(results[0], readJson(results[0], "checksums.json"))).toEqual([]);
  }, 120_000);

  it.skipIf(!sharedModelDir("ms-marco-MiniLM-L-6-v2"))(
    "MiniLM-shaped fixtures copy the real tokenizer when it fits, else generate one",
    async () => {
      const small = { layers: 1, hidden: 32, heads: 2, intermediate: 64 }; // vocabulary stays 30522
      const withReal = path.join(work, "real-tok");
      await writeFixtureModel(withReal, "minilm-l6-cross", { overrides: small });
      const src = sharedModelDir("ms-marco-MiniLM-L-6-v2")!;
      expect(
        readFileSync(path.join(withReal, "tokenizer.json")).equals(readFileSync(path.join(src, "tokenizer.json"))),
      ).toBe(true);
      expect(readJson(withReal, "config.json").vocab_size).toBe(30522);
      const generated = path.join(work, "gen-tok");
      await writeFixtureModel(generated, "minilm-l6-cross", { overrides: small, useSharedTokenizer: false });
      expect(readJson(generated, "config.json").fixture_generator.tokenizer).toBe("generated");
      expect(readJson(generated, "config.json").vocab_size).toBe(30522);
      expect(fixtureKey("minilm-l6-cross").key).not.toBe(
        fixtureKey("minilm-l6-cross", { useSharedTokenizer: false }).key,
      );
      // A tokenizer whose ids exceed the embedding table is not used.
      const tooSmall = fixtureKey("minilm-l6-cross", { overrides: { vocabSize: 1000 } });
      expect(tooSmall.tokenizer.kind).toBe("generated");
    },
  );
});

describe("graph structure", () => {
  it("cross-encoder: exporter op patterns, int64 dynamic inputs, logits [batch, 1], opset 17", () => {
    const s = summarizeModel(readFileSync(path.join(dirs["tiny-cross"], "onnx/model.onnx")));
    const L = FIXTURES["tiny-cross"].layers;
    expect(s.opsets["ai.onnx"]).toBe(17);
    expect(s.inputs).toEqual(
      ["input_ids", "attention_mask", "token_type_ids"].map((name) => ({
        name,
        elemType: 7,
        dims: ["batch_size", "sequence_length"],
      })),
    );
    expect(s.outputs).toEqual([{ name: "logits", elemType: 1, dims: ["batch_size", 1] }]);
    expect(s.ops).toMatchObject({
      LayerNormalization: 1 + 2 * L,
      Erf: L,
      Softmax: L,
      MatMul: 8 * L,
      Gemm: 2,
      Tanh: 1,
      Gather: 5 + 2 * L,
    });
  });

  it("XLM-R: no token_type_ids, RoBERTa position ids from a cumulative sum of non-pad tokens", () => {
    const s = summarizeModel(readFileSync(path.join(dirs["tiny-xlmr-cross"], "onnx/model.onnx")));
    expect(s.inputs.map((i) => i.name)).toEqual(["input_ids", "attention_mask"]);
    expect(s.ops).toMatchObject({ CumSum: 1, Equal: 1, Not: 1 });
    expect(s.ops.Range).toBeUndefined();
  });

  it("bi-encoder: last_hidden_state [batch, seq, hidden]", () => {
    const s = summarizeModel(readFileSync(path.join(dirs["tiny-bi"], "onnx/model.onnx")));
    expect(s.outputs).toEqual([
      { name: "last_hidden_state", elemType: 1, dims: ["batch_size", "sequence_length", 32] },
    ]);
    expect(s.ops.Gemm).toBeUndefined();
  });
});

describe("running the fixtures", () => {
  for (const name of ["tiny-cross", "tiny-xlmr-cross"] as const) {
    it(`${name}: padding in a batch leaves every logit as it is alone, and logits differ between inputs`, async () => {
      const dir = dirs[name];
      const session = await ort.InferenceSession.create(path.join(dir, "onnx/model.onnx"));
      const tok = await loadTokenizer(dir);
      const batched = Array.from((await runPairs(session, tok, PAIRS)).data as Float32Array);
      const alone = await Promise.all(
        PAIRS.map(async (p) => ((await runPairs(session, tok, [p])).data as Float32Array)[0]),
      );
      for (const [i, v] of batched.entries()) expect(v).toBeCloseTo(alone[i], 5);
      expect(Math.max(...batched) - Math.min(...batched)).toBeGreaterThan(0.05); // head std spreads tiny logits apart
    });

    it(`${name}: transformers.js AutoModelForSequenceClassification gives the same logits`, async () => {
      const dir = dirs[name];
      env.localModelPath = `${path.dirname(dir)}/`;
      const refTok = await AutoTokenizer.from_pretrained(path.basename(dir));
      const refModel = await AutoModelForSequenceClassification.from_pretrained(path.basename(dir), { dtype: "fp32" });
      const inputs = refTok(
        PAIRS.map((p) => p[0]),
        { text_pair: PAIRS.map((p) => p[1]), padding: true, truncation: true },
      );
      const ref = Array.from((await refModel(inputs)).logits.data as Float32Array);
      const session = await ort.InferenceSession.create(path.join(dir, "onnx/model.onnx"));
      const ours = Array.from((await runPairs(session, await loadTokenizer(dir), PAIRS)).data as Float32Array);
      for (const [i, v] of ours.entries()) expect(Math.abs(v - ref[i])).toBeLessThan(1e-5);
      await refModel.dispose();
    });
  }

  it("tiny-cross: model_quantized.onnx holds the same weights in int8, fuses as quantize_dynamic output does, and matches transformers.js q8", async () => {
    const dir = dirs["tiny-cross"];
    const qPath = path.join(dir, "onnx/model_quantized.onnx");
    const raw = summarizeModel(readFileSync(qPath));
    expect(raw.ops).toMatchObject({
      DynamicQuantizeLinear: 6 * FIXTURES["tiny-cross"].layers,
      MatMulInteger: 6 * FIXTURES["tiny-cross"].layers,
    });
    const optimised = path.join(work, "q.opt.onnx");
    await ort.InferenceSession.create(qPath, {
      graphOptimizationLevel: "all",
      optimizedModelFilePath: optimised,
      logSeverityLevel: 3,
    });
    expect(summarizeModel(readFileSync(optimised)).ops["com.microsoft:DynamicQuantizeMatMul"]).toBeGreaterThan(0);

    const tok = await loadTokenizer(dir);
    const fp32 = Array.from(
      (await runPairs(await ort.InferenceSession.create(path.join(dir, "onnx/model.onnx")), tok, PAIRS))
        .data as Float32Array,
    );
    const q8 = Array.from((await runPairs(await ort.InferenceSession.create(qPath), tok, PAIRS)).data as Float32Array);
    for (const [i, v] of q8.entries()) {
      expect(v).not.toBe(fp32[i]); // really a different graph
      expect(Math.abs(v - fp32[i])).toBeLessThan(0.2); // but the same weights, rounded
    }
    env.localModelPath = `${path.dirname(dir)}/`;
    const refTok = await AutoTokenizer.from_pretrained(path.basename(dir));
    const refModel = await AutoModelForSequenceClassification.from_pretrained(path.basename(dir), { dtype: "q8" });
    const inputs = refTok(
      PAIRS.map((p) => p[0]),
      { text_pair: PAIRS.map((p) => p[1]), padding: true, truncation: true },
    );
    const ref = Array.from((await refModel(inputs)).logits.data as Float32Array);
    for (const [i, v] of q8.entries()) expect(Math.abs(v - ref[i])).toBeLessThan(1e-4);
    await refModel.dispose();
  });

  it("tiny-bi: token vectors of a padded sequence equal those of the sequence alone", async () => {
    const dir = dirs["tiny-bi"];
    const session = await ort.InferenceSession.create(path.join(dir, "onnx/model.onnx"));
    const tok = await loadTokenizer(dir);
    const encode = (texts: string[]) => {
      const enc = texts.map((t) => tok.encode(t));
      const len = Math.max(...enc.map((e) => e.ids.length));
      const pad = (rows: number[][], v: number) =>
        BigInt64Array.from(rows.flatMap((r) => [...r, ...Array(len - r.length).fill(v)]).map(BigInt));
      return {
        len,
        n: enc[0].ids.length,
        feeds: {
          input_ids: new ort.Tensor(
            "int64",
            pad(
              enc.map((e) => e.ids),
              tok.padId,
            ),
            [texts.length, len],
          ),
          attention_mask: new ort.Tensor(
            "int64",
            pad(
              enc.map((e) => e.attentionMask),
              0,
            ),
            [texts.length, len],
          ),
          token_type_ids: new ort.Tensor(
            "int64",
            pad(
              enc.map((e) => e.typeIds),
              0,
            ),
            [texts.length, len],
          ),
        },
      };
    };
    const short = "boundary layer flow";
    const alone = encode([short]);
    const both = encode([short, "a much longer text about heat transfer over a flat plate at high speed"]);
    const a = (await session.run(alone.feeds)).last_hidden_state;
    const b = (await session.run(both.feeds)).last_hidden_state;
    expect(b.dims).toEqual([2, both.len, 32]);
    const av = a.data as Float32Array;
    const bv = b.data as Float32Array;
    for (let i = 0; i < alone.n * 32; i++) expect(bv[i]).toBeCloseTo(av[i], 5);
  });

  it("LayerNormalization as one op (opset 17) and decomposed (opset 14) compute the same logits", async () => {
    const dir = path.join(work, "decomposed");
    await writeFixtureModel(dir, "tiny-cross", { overrides: { layerNorm: "decomposed" } });
    const s = summarizeModel(readFileSync(path.join(dir, "onnx/model.onnx")));
    expect(s.opsets["ai.onnx"]).toBe(14);
    expect(s.ops.LayerNormalization).toBeUndefined();
    expect(s.ops.ReduceMean).toBe(2 * (1 + 2 * FIXTURES["tiny-cross"].layers));
    const tok = await loadTokenizer(dirs["tiny-cross"]);
    const fused = (
      await runPairs(await ort.InferenceSession.create(path.join(dirs["tiny-cross"], "onnx/model.onnx")), tok, PAIRS)
    ).data as Float32Array;
    const decomposed = (
      await runPairs(await ort.InferenceSession.create(path.join(dir, "onnx/model.onnx")), tok, PAIRS)
    ).data as Float32Array;
    for (const [i, v] of fused.entries()) expect(decomposed[i]).toBeCloseTo(v, 4);
  });
});
