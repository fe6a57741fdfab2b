import { ensureFixtureModel } from "../fixtures/index.ts";
import { loadCrossEncoder } from "../../shared/adapters/cross-encoder.ts";
import { makePassages } from "./suites/snapshot.ts";
const dir = await ensureFixtureModel("minilm-l6-cross");
const ce = await loadCrossEncoder({ modelDir: dir, quantized: true });
const passages = makePassages(400, 7).map((p: { text: string }) => p.text);
const mode = process.argv[2];
if (mode !== "none") {
  const t = performance.now();
  await ce.scorePairs("warm up the cross encoder", passages.slice(300, 300 + Number(mode)));
  console.log("warm-up", mode, (performance.now() - t).toFixed(0));
}
const out = [];
for (let i = 0; i < 4; i++) {
  const t = performance.now();
  await ce.scorePairs(`retrieval latency of the search index ${i}`, passages.slice(i * 20, i * 20 + 20));
  out.push((performance.now() - t).toFixed(0));
}
console.log(ce.precision, mode, out.join(" "));
