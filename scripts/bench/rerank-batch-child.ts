// Child process of the rerank benchmark's micro-batch section: a fresh process loads the CPU
// default graph (int8) with one token budget and scores one set of pairs twice, so the first call
// pays what a cold process pays (ONNX Runtime's first run at each shape, fresh activation memory).
// Prints one JSON line: load, first and second call in ms, and the process's peak RSS in MB (Linux).
// Usage: node --import tsx rerank-batch-child.ts <model dir> <batch tokens> <pairs.json>
import { readFileSync } from "node:fs";
import { loadCrossEncoder } from "../../shared/adapters/cross-encoder.ts";

/** This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from the parent across fork and exec. */
function peakRssMb(): number {
  const line = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m);
  return line ? (Number(line[1]) * 1024) / 1e6 : Number.NaN;
}

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
    peak_rss_mb: peakRssMb(),
  }),
);
