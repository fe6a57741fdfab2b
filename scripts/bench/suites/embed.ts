// embed: the offline embedders side by side in one run, on the same texts: indexing throughput
// (passages/s, tokens/s over Cranfield passages, or synthetic prose without ../shared/data) and query
// latency p50/p99 (the Cranfield queries), for the hashing embedder, Universal Sentence Encoder Lite
// (converted to ONNX, onnxruntime-node CPU), the two joined (use-lite+hashing, the embedded default)
// and the MiniLM-L6-shaped ONNX fixture bi-encoder (random
// weights; the cost of a sentence-transformers model of that size). Also USE-lite's one-off costs:
// converting the graph (cache miss) and creating the embedder from the cached folder.
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createHashingEmbedder } from "../../../shared/adapters/hash-embedder.ts";
import { useLiteHashingIdentity } from "../../../shared/adapters/embedders.ts";
import { createOnnxEmbedder } from "../../../shared/adapters/onnx-embedder.ts";
import { createUseLiteEmbedder, ensureUseLiteModel } from "../../../shared/adapters/use-lite-embedder.ts";
import { chunkDocuments } from "../../../shared/core/chunking.ts";
import { joinEmbedders } from "../../../shared/core/embedding.ts";
import type { Embedder } from "../../../shared/core/ports.ts";
import { documentText, loadDataset } from "../../eval/dataset.ts";
import { DEFAULT_SHARED_DATA, ensureFixtureModel } from "../../fixtures/index.ts";
import { type Figure, figure, type Suite, type SuiteResult, stats } from "../harness.ts";

async function texts(quick: boolean): Promise<{ passages: string[]; queries: string[]; source: string }> {
  const dir = path.join(DEFAULT_SHARED_DATA, "cranfield");
  if (existsSync(path.join(dir, "corpus.jsonl"))) {
    const ds = await loadDataset(dir);
    const passages = chunkDocuments(
      ds.corpus.map((d) => ({ id: d.id, text: documentText(d) })),
      { maxTokens: 256, overlap: 32 },
    ).map((p) => p.text);
    return {
      passages: passages.slice(0, quick ? 100 : 1000),
      queries: ds.queries.map((q) => q.text).slice(0, quick ? 20 : 100),
      source: "cranfield",
    };
  }
  const sentence = (i: number) =>
    `Passage ${i} describes how a search service retrieves candidates and reranks the best of them quickly.`;
  return {
    passages: Array.from(
      { length: quick ? 100 : 1000 },
      (_, i) => `${sentence(i)} ${sentence(i + 1)} ${sentence(i + 2)}`,
    ),
    queries: Array.from({ length: quick ? 20 : 100 }, (_, i) => `how does search number ${i} rerank candidates`),
    source: "synthetic",
  };
}

export const suite: Suite = {
  name: "embed",
  description:
    "offline embedders side by side: indexing passages/s and tokens/s, query p50/p99 (hashing, USE-lite on ONNX, the two joined, MiniLM-L6-shaped ONNX fixture)",
  async run(ctx): Promise<SuiteResult> {
    const { passages, queries, source } = await texts(ctx.quick);
    const figures: Figure[] = [];
    const summary: SuiteResult["summary"] = { texts: source, passages: passages.length, queries: queries.length };

    const cache = await mkdtemp(path.join(os.tmpdir(), "bench-use-lite-"));
    // Resident memory USE-lite adds to a process (the first thing this suite loads), and after indexing.
    const rss0 = process.memoryUsage().rss;
    let t = performance.now();
    await ensureUseLiteModel(cache);
    const convertMs = performance.now() - t;
    t = performance.now();
    const useLite = await createUseLiteEmbedder({ cacheDir: cache });
    const createMs = performance.now() - t;
    figures.push(
      figure("USE-lite: convert TF.js graph to ONNX (cache miss)", convertMs, "ms"),
      figure("USE-lite: create embedder from the cached folder", createMs, "ms"),
    );
    summary.use_lite_convert_ms = Math.round(convertMs);
    summary.use_lite_create_ms = Math.round(createMs);
    await useLite.embedQuery("warm up");
    // The conversion's garbage (TF.js weights read as arrays) is not what a loaded embedder holds.
    (globalThis as { gc?: () => void }).gc?.();
    const rssLoaded = process.memoryUsage().rss;
    figures.push(figure("USE-lite: resident memory added, loaded", (rssLoaded - rss0) / 2 ** 20, "MiB"));
    summary.use_lite_rss_loaded_mib = Math.round((rssLoaded - rss0) / 2 ** 20);

    const fixtureDir = await ensureFixtureModel("minilm-l6-bi", { log: ctx.log });
    const embedders: Array<[string, Embedder]> = [
      ["hashing", createHashingEmbedder({ dimensions: 2048 })],
      ["use_lite", useLite],
      // The embedded default (EMBEDDER=auto without a key or model folder): both of the above in one vector.
      [
        "use_lite_hashing",
        joinEmbedders(useLiteHashingIdentity(2048), [useLite, createHashingEmbedder({ dimensions: 2048 })]),
      ],
      ["minilm_l6_fixture", await createOnnxEmbedder({ modelDir: fixtureDir, provider: "cpu" })],
    ];
    for (const [name, e] of embedders) {
      ctx.log(`${name}: ${passages.length} passages, ${queries.length} queries`);
      await e.embedDocuments(passages.slice(0, 8)); // warm-up
      const before = e.usage().tokens;
      t = performance.now();
      await e.embedDocuments(passages);
      const s = (performance.now() - t) / 1000;
      const tokens = e.usage().tokens - before;
      for (const q of queries.slice(0, 5)) await e.embedQuery(q);
      const samples: number[] = [];
      for (const q of queries) {
        const q0 = performance.now();
        await e.embedQuery(q);
        samples.push(performance.now() - q0);
      }
      const lat = stats(samples);
      figures.push(figure(`${name}: indexing`, passages.length / s, "passages/s"));
      // The hashing embedder counts no tokens (it has no tokenizer, only word features).
      if (tokens > 0) figures.push(figure(`${name}: indexing tokens`, tokens / s, "tokens/s"));
      figures.push(figure(`${name}: query p50`, lat.p50, "ms"), figure(`${name}: query p99`, lat.p99, "ms"));
      summary[`${name}_passages_per_s`] = Math.round(passages.length / s);
      summary[`${name}_tokens_per_s`] = tokens > 0 ? Math.round(tokens / s) : null;
      summary[`${name}_query_p50_ms`] = Math.round(lat.p50 * 1000) / 1000;
      summary[`${name}_query_p99_ms`] = Math.round(lat.p99 * 1000) / 1000;
      if (name === "use_lite") {
        (globalThis as { gc?: () => void }).gc?.();
        const rss = (process.memoryUsage().rss - rss0) / 2 ** 20;
        figures.push(
          figure(
            "USE-lite: resident memory added, after indexing",
            rss,
            "MiB",
            undefined,
            "ORT arena at 8,192-token batches",
          ),
        );
        summary.use_lite_rss_indexed_mib = Math.round(rss);
      }
    }
    await rm(cache, { recursive: true, force: true });
    return {
      suite: "embed",
      figures,
      summary,
      notes: [
        "tokens: USE-lite's are SentencePiece pieces (clipped at 128), the fixture's WordPiece tokens (clipped at 256)",
      ],
    };
  },
};
