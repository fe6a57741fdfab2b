// Child process of scripts/bench/scale-ann.ts: loads one index file the way the search function's
// loader does (faissIndexFromFile) in a fresh process, so its RSS growth is the index's resident
// memory and nothing the parent allocated, freed or fragmented while building.
//   node --import tsx scripts/bench/scale-ann-child.ts <file> <type> <queries.f32>
// prints one JSON line: { rssBeforeMb, rssLoadedMb, rssSearchedMb, peakMb, peakMethod, loadMs }
import { readFileSync, writeFileSync } from "node:fs";
import { type ConcreteIndexType, faissIndexFromFile, hasTypedFaiss } from "../../shared/adapters/faiss-index.ts";

const MB = 1e6;

function vmKb(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const [file, type, queryFile] = process.argv.slice(2);
if (!file || !type || !queryFile) throw new Error("usage: scale-ann-child.ts <file> <type> <queries.f32>");
const q = readFileSync(queryFile);
const queries = new Float32Array(q.buffer, q.byteOffset, q.byteLength / 4).slice();
hasTypedFaiss(); // load the addon (and its static faiss) before the baseline
(globalThis as { gc?: () => void }).gc?.();
let hwm = false;
try {
  writeFileSync("/proc/self/clear_refs", "5"); // reset VmHWM: the peak is measured from here
  hwm = vmKb("VmHWM") !== null;
} catch {}
const before = process.memoryUsage().rss;
const t0 = performance.now();
const index = faissIndexFromFile(file, { type: type as ConcreteIndexType });
const loadMs = performance.now() - t0;
const loaded = process.memoryUsage().rss;
const d = index.dimensions;
for (let off = 0; off + d <= queries.length; off += d) index.search(queries.subarray(off, off + d), 20);
const searched = process.memoryUsage().rss;
const peak = Math.max(hwm ? (vmKb("VmHWM") ?? 0) : 0, searched);
console.log(
  JSON.stringify({
    rssBeforeMb: before / MB,
    rssLoadedMb: loaded / MB,
    rssSearchedMb: searched / MB,
    peakMb: peak / MB,
    peakMethod: hwm ? "VmHWM" : "sampled",
    loadMs,
  }),
);
