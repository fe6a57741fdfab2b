// Child process of the coldstart benchmark: a fresh Node process that builds the search service
// from its environment (as the Lambda function does at init) and answers one search.
// Prints one JSON line with the phase timings in ms from process start.
const atEntry = performance.now(); // ms since process start (performance.timeOrigin)

const { loadConfig } = await import("../../shared/core/config.ts");
const { createSearchService } = await import("../../functions/runtime/search-deps.ts");
const afterImports = performance.now();

const cfg = loadConfig();
const service = createSearchService(cfg, { quiet: true });
const t0 = performance.now();
const warm = (service.reranker as { warm?: () => Promise<unknown> }).warm;
const modelP = (warm ? warm.call(service.reranker) : Promise.resolve()).then(() => performance.now() - t0);
const snapshotP = service.loader.current().then(() => performance.now() - t0);
const [modelMs, snapshotMs] = await Promise.all([modelP, snapshotP]);
const ready = performance.now();
const res = await service.app.request("/search", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ query: "retrieval latency of the search index", k: 4, candidates: 20 }),
});
const body = (await res.json()) as { reranked?: boolean; results?: unknown[] };
const done = performance.now();
service.close();
console.log(
  JSON.stringify({
    status: res.status,
    reranked: body.reranked,
    results: body.results?.length ?? 0,
    runtime_start_ms: atEntry,
    imports_ms: afterImports - atEntry,
    model_load_ms: modelMs,
    snapshot_load_ms: snapshotMs,
    init_ms: ready - afterImports,
    first_query_ms: done - ready,
    total_ms: done,
  }),
);
process.exit(0);
