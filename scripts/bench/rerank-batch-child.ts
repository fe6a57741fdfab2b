// Child process of the rerank benchmark's micro-batch section: a fresh process loads the CPU
// default graph (int8) with one token budget and scores one set of pairs twice, so the first call
// pays what a cold process pays (ONNX Runtime's first run at each shape, fresh activation memory).
// Prints one JSON line: load, first and second call in ms, and the process's peak RSS in MB.
// Usage: node --import tsx rerank-batch-child.ts <model dir> <batch tokens> <pairs.json>
import { readFileSync } from "node:fs";
import { loadCrossEncoder } from "../../shared/adapters/cross-encoder.ts";

const [modelDir, budget, pairsFile] = process.argv.slice(2);
const { query, documents } = JSON.parse(readFileSync(pairsFile, "utf8")) as { query: string; documents: string[] };
const t0 = performance.now();
const model = await loadCrossEncoder({ modelDir, provider: "cpu", quantized: true, batchTokens: Number(budget) });
const t1 = performance.now();
await model.scorePairs(query, documents);
const t2 = performance.now();
await model.scorePairs(query, documents);
const t3 = performance.now();
console.log(
  JSON.stringify({
    batch_tokens: model.batchTokens,
    load_ms: t1 - t0,
    first_ms: t2 - t1,
    second_ms: t3 - t2,
    // ru_maxrss is in KiB on Linux.
    peak_rss_mb: (process.resourceUsage().maxRSS * 1024) / 1e6,
  }),
);
