// Child process of the coldstart benchmark for the deployed form: plain Node (no TypeScript
// loader) imports the bundled search handler (dist/functions/search/handler.mjs, which starts the
// snapshot and model loads at init, as on Lambda), then answers one API Gateway v2 search event
// and one /health event. Prints one JSON line with the phase timings in ms from process start;
// snapshot and model load times come from /health (index.load_ms, reranker.loadMs).
// Usage: node coldstart-bundle-child.mjs <handler.mjs> <apigw-v2-event.json>
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const atEntry = performance.now(); // ms since process start (performance.timeOrigin)
const [handlerFile, eventFile] = process.argv.slice(2);
const { handler } = await import(pathToFileURL(handlerFile).href);
const afterImports = performance.now();

const recorded = JSON.parse(readFileSync(eventFile, "utf8"));
const event = (method, path, body) => ({
  ...recorded,
  rawPath: path,
  requestContext: { ...recorded.requestContext, http: { ...recorded.requestContext.http, method, path } },
  body: body === undefined ? "" : JSON.stringify(body),
});
const context = { awsRequestId: "coldstart", functionName: "coldstart", getRemainingTimeInMillis: () => 30_000 };
const res = await handler(
  event("POST", "/search", { query: "retrieval latency of the search index", k: 4, candidates: 20 }),
  context,
);
const done = performance.now();
const body = JSON.parse(res.body);
const hundredth = [];
for (let i = 0; i < 99; i++) {
  const t = performance.now();
  await handler(
    event("POST", "/search", { query: `query ${i} about passage ${i * 37} retrieval`, k: 4, candidates: 20 }),
    context,
  );
  hundredth.push(performance.now() - t);
}
const health = JSON.parse((await handler(event("GET", "/health"), context)).body);
const snapshotMs = health.index?.load_ms ?? 0;
const modelMs = health.reranker?.loadMs ?? 0;
// Peak resident memory of the process (Linux), what a Lambda's memory size has to hold.
const peakRssKb = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? Number.NaN);
console.log(
  JSON.stringify({
    status: res.statusCode,
    reranked: body.reranked,
    results: body.results?.length ?? 0,
    runtime_start_ms: atEntry,
    imports_ms: afterImports - atEntry,
    model_load_ms: modelMs,
    // The share of model_load_ms spent on the warm-up run (RERANKER_WARMUP_PAIRS).
    model_warmup_ms: health.reranker?.warmup?.ms ?? 0,
    snapshot_load_ms: snapshotMs,
    // Both loads start during the handler module's evaluation and run concurrently.
    init_ms: Math.max(snapshotMs, modelMs),
    // The first invocation waits for init; what remains is the query itself (approximate: the
    // loads start a little before the import returns).
    first_query_ms: done - afterImports - Math.max(snapshotMs, modelMs),
    query_100_ms: hundredth[hundredth.length - 1],
    // The service's own split of the first answer (embed, search, sparse, texts, rerank).
    first_timings: body.timings,
    total_ms: done,
    peak_rss_mb: peakRssKb / 1024,
  }),
);
process.exit(0);
