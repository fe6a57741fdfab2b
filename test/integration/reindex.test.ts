// Event-triggered reindex end to end on real parts: s3rver on loopback emits S3 notifications for
// uploads and deletes, attachReindexToS3rver feeds them to the reindex Lambda handler (the same
// createReindexHandler the deployed function uses), which embeds with the hashing embedder through
// the cache in the bucket, builds a real faiss index and flips the pointer; the real search service
// (createSearchService: snapshot loader + search app) serves the result without a restart.
//
// The reindex talks to s3rver through a recording proxy, to check the conditional headers on the
// pointer write (s3rver itself ignores them) and to answer one pointer write with a real S3 412.
import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { logger } from "../../shared/adapters/observability.ts";
import { attachReindexToS3rver, type S3rverReindexBinding } from "../../shared/adapters/s3rver-events.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { chunkDocument } from "../../shared/core/chunking.ts";
import { type Config, loadConfig } from "../../shared/core/config.ts";
import { EmbedderUnavailableError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { readPointer } from "../../shared/core/publish.ts";
import { ReindexTimeoutError } from "../../shared/core/reindex.ts";
import { pointerKey } from "../../shared/core/snapshot.ts";
import {
  createReindexHandler,
  createReindexService,
  type ReindexHandler,
  type ReindexSummary,
} from "../../functions/runtime/reindex-deps.ts";
import { createSearchService, type SearchService } from "../../functions/runtime/search-deps.ts";
import { type LocalS3, localS3Env, startLocalS3 } from "../helpers/s3rver.ts";
import { captureLog, type CountingEmbedder, countingEmbedder, doc, jsonl, liveSnapshot } from "../helpers/reindex.ts";

interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** Forwards to s3rver and records requests; can answer the next conditional PUT with a 412. */
function startProxy(target: number) {
  const seen: Recorded[] = [];
  let failNextConditional = false;
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    const conditional = req.headers["if-match"] !== undefined || req.headers["if-none-match"] !== undefined;
    if (failNextConditional && req.method === "PUT" && conditional) {
      failNextConditional = false;
      req.resume();
      res.writeHead(412, { "content-type": "application/xml" });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>',
      );
      return;
    }
    const up = request(
      { host: "127.0.0.1", port: target, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  return new Promise<{ port: number; seen: Recorded[]; failNext(): void; close(): Promise<void> }>((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        seen,
        failNext: () => {
          failNextConditional = true;
        },
        close: () => new Promise((r) => server.close(() => r())),
      }),
    ),
  );
}

let s3: LocalS3;
let proxy: Awaited<ReturnType<typeof startProxy>>;
/** What users upload with (straight to s3rver). */
let user: ObjectStore;
/** The reindex function's store (through the proxy). */
let reindexStore: ObjectStore;
let config: Config;
let embedder: CountingEmbedder;
let handler: ReindexHandler;
let binding: S3rverReindexBinding;
let search: SearchService;
const logs = captureLog();

const CHUNK = { maxTokens: 64, overlap: 8 };

beforeAll(async () => {
  logger.setLogLevel("SILENT"); // the search service logs snapshot swaps through Powertools
  s3 = await startLocalS3();
  proxy = await startProxy(s3.port);
  const s3opts = { bucket: s3.bucket, forcePathStyle: true, region: "us-east-1", credentials: s3.credentials };
  user = createS3Store({ ...s3opts, endpoint: s3.endpoint });
  reindexStore = createS3Store({ ...s3opts, endpoint: `http://127.0.0.1:${proxy.port}` });
  config = loadConfig({
    STORE_KIND: "s3",
    BUCKET: s3.bucket,
    S3_ENDPOINT: s3.endpoint,
    S3_FORCE_PATH_STYLE: "true",
    EMBEDDER: "hashing",
    HASHING_DIMENSIONS: "256",
    CHUNK_TOKENS: String(CHUNK.maxTokens),
    CHUNK_OVERLAP: String(CHUNK.overlap),
    INDEX_TYPE: "flat",
    RERANKER: "none",
    INDEX_REFRESH_S: "3600",
    LOG_LEVEL: "SILENT",
  });
  embedder = countingEmbedder(256);
  const service = createReindexService(config, {
    store: reindexStore,
    embedder,
    log: logs.log,
    options: { retryDelayMs: 1 },
  });
  handler = createReindexHandler(async () => service);
  binding = attachReindexToS3rver(s3.server, { handler, corpusPrefix: config.corpusPrefix, retries: 0, log: logs.log });
  search = createSearchService(config, { store: user, quiet: true });
});

afterAll(async () => {
  binding?.detach();
  await binding?.idle();
  search?.close();
  await proxy?.close();
  await s3?.close();
});

async function searchDocs(query: string, k = 5): Promise<string[]> {
  const res = await search.app.request("/search", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, k, rerank: false }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { results: Array<{ doc_id: string }> };
  return body.results.map((h) => h.doc_id);
}

/** Waits for the event-driven reindex to settle and lets the warm search service pick up the pointer. */
async function settle(): Promise<ReindexSummary> {
  await binding.idle();
  await search.loader.refresh();
  return binding.lastResult as ReindexSummary;
}

const glaciers = {
  id: "glaciers",
  text: "Glaciers carve deep fjords as the ice sheet slowly retreats toward the mountains.",
};
const volcano = {
  id: "volcano",
  text: "Basalt lava flows from the shield volcano and cools into black volcanic rock.",
};
const comets = { id: "comets", text: "Comets grow bright tails of dust and gas when their orbit approaches the sun." };

describe("event-triggered reindex on s3rver", () => {
  it("upload → S3 event → reindex → the running search service serves the new document", async () => {
    await user.put("corpus/earth.jsonl", jsonl([glaciers, volcano]));
    const first = await settle();
    expect(first).toMatchObject({ status: "published", changes: 1, documents: 2, embedded: 2, cached: 0 });
    expect((await searchDocs("ice sheet fjords glaciers"))[0]).toBe("glaciers");
    const v1 = search.loader.status().version;

    await user.put("corpus/space/comets.md", `# Comets\n\n${comets.text}\n`);
    const second = await settle();
    expect(second).toMatchObject({ status: "published", documents: 3, embedded: 1, cached: 2 });
    // Same service instance, new version, new document served.
    expect(search.loader.status().version).toBe(second.version);
    expect(second.version).not.toBe(v1);
    expect((await searchDocs("comet tails of dust"))[0]).toBe("space/comets.md");
  });

  it("sends If-None-Match on the first pointer write and If-Match with the read ETag afterwards", async () => {
    const pointerPuts = proxy.seen.filter(
      (r) => r.method === "PUT" && decodeURIComponent(r.url).includes(pointerKey(config.indexPrefix)),
    );
    expect(pointerPuts.length).toBeGreaterThanOrEqual(2);
    expect(pointerPuts[0].headers["if-none-match"]).toBe("*");
    expect(pointerPuts[0].headers["if-match"]).toBeUndefined();
    expect(pointerPuts[1].headers["if-match"]).toMatch(/^"[0-9a-f]{32}"$/);
  });

  it("a second upload changing one file embeds only that file's changed passages", async () => {
    embedder.embeddedTexts.length = 0;
    const lava = {
      id: "volcano",
      text: "Pahoehoe lava forms smooth ropy crusts on the volcano flanks after eruptions.",
    };
    await user.put("corpus/earth.jsonl", jsonl([glaciers, lava]));
    const r = await settle();
    const expected = chunkDocument(lava, CHUNK).map((p) => p.text);
    expect(embedder.embeddedTexts).toEqual(expected);
    expect(r).toMatchObject({ status: "published", embedded: expected.length, cached: 2 });
    const live = (await liveSnapshot(user))!;
    expect(live.manifest.build!.embedding.embedded).toBe(expected.length);
    expect((await searchDocs("ropy pahoehoe crusts"))[0]).toBe("volcano");
  });

  it("duplicate and concurrent events end with a snapshot holding exactly the bucket's documents", async () => {
    const runsBefore = binding.runs;
    const batch = Array.from({ length: 6 }, (_, i) => doc(`burst${i}`, `topic${i}`));
    await Promise.all(batch.map((d, i) => user.put(`corpus/burst/${i}.jsonl`, jsonl([d]))));
    await settle();
    // Bursts coalesce: far fewer runs than events, and never two at once.
    expect(binding.runs - runsBefore).toBeLessThan(batch.length);
    const live = (await liveSnapshot(user))!;
    expect(live.docIds).toEqual(["glaciers", "volcano", "space/comets.md", ...batch.map((d) => d.id)].sort());
    const listing: string[] = [];
    for await (const o of user.list(config.corpusPrefix)) listing.push(o.key);
    expect(live.manifest.sources!.map((s) => s.key)).toEqual(listing);

    // The same event delivered twice (S3 delivers at least once): both are no-ops.
    const event = {
      Records: [{ eventName: "ObjectCreated:Put", s3: { object: { key: "corpus/burst/0.jsonl" } } }],
    };
    const dup1 = await handler(event);
    const dup2 = await handler(event);
    expect(dup1).toMatchObject({ status: "unchanged", version: live.version, embedded: 0 });
    expect(dup2).toMatchObject({ status: "unchanged", version: live.version });
    // Events outside the corpus prefix (the reindex's own writes) are ignored without a run.
    expect(
      await handler({ Records: [{ eventName: "ObjectCreated:Put", s3: { object: { key: "index/LATEST.json" } } }] }),
    ).toMatchObject({ status: "ignored", changes: 0 });
  });

  it("a lost pointer flip on S3 (412) is retried and still publishes the current corpus", async () => {
    await user.put("corpus/notes.txt", "Aurora curtains glow green above the tundra during the solstice night.");
    // The upload's event is queued; make the reindex's pointer write lose once.
    proxy.failNext();
    const r = await settle();
    expect(r).toMatchObject({ status: "published", attempts: 2 });
    expect(logs.lines.some((l) => l.msg.includes("pointer changed"))).toBe(true);
    expect((await liveSnapshot(user))!.docIds).toContain("notes.txt");
    expect((await searchDocs("aurora curtains tundra"))[0]).toBe("notes.txt");
  });

  it("malformed lines and files are reported with key, line and reason; the rest is indexed", async () => {
    await user.put(
      "corpus/mixed.jsonl",
      [
        JSON.stringify({ id: "reef", text: "Coral reef lagoons shelter bright fish." }),
        "{not json",
        JSON.stringify({ id: "blank", text: "" }),
      ].join("\n"),
    );
    await user.put("corpus/scan.pdf", "%PDF-1.7 binary");
    // Two events: the first run may already list both files, then the second one is a no-op.
    const r = await settle();
    expect(["published", "unchanged"]).toContain(r.status);
    const live = (await liveSnapshot(user))!;
    expect(live.manifest.sources!.map((x) => x.key)).toEqual(
      expect.arrayContaining(["corpus/mixed.jsonl", "corpus/scan.pdf"]),
    );
    const report = live.manifest.report!.skipped;
    expect(report).toEqual(
      expect.arrayContaining([
        { key: "corpus/mixed.jsonl", line: 2, reason: expect.stringMatching(/malformed JSON/) },
        { key: "corpus/mixed.jsonl", line: 3, reason: expect.stringMatching(/empty "text"/) },
        { key: "corpus/scan.pdf", reason: expect.stringMatching(/unsupported file type \.pdf/) },
      ]),
    );
    expect(r.skipped).toBe(report.length);
    expect((await searchDocs("coral reef lagoons fish"))[0]).toBe("reef");
    expect(logs.lines.some((l) => l.msg === "input skipped" && l.data?.key === "corpus/scan.pdf")).toBe(true);
  });

  it("an embedder failing mid-build leaves the pointer alone and the old version serving", async () => {
    const before = await readPointer(user, config.indexPrefix);
    const served = search.loader.status().version;
    embedder.failAfter = embedder.embeddedTexts.length; // the next embedding call fails
    const failuresBefore = binding.failures;
    await user.put("corpus/late.md", "# Meteors\n\nMeteor showers streak across the desert sky.");
    await settle();
    expect(binding.failures).toBe(failuresBefore + 1);
    expect(binding.lastError).toBeInstanceOf(EmbedderUnavailableError);
    expect((await readPointer(user, config.indexPrefix))!.etag).toBe(before!.etag);
    expect(search.loader.status().version).toBe(served);
    expect(await searchDocs("meteor showers desert")).not.toContain("late.md");
    expect(logs.lines.some((l) => l.level === "error" && l.msg.includes("previous snapshot stays live"))).toBe(true);

    // Embedder back: the next event (Lambda's retry, or any later upload) completes the work.
    embedder.failAfter = null;
    const retried = await handler({
      Records: [{ eventName: "ObjectCreated:Put", s3: { object: { key: "corpus/late.md" } } }],
    });
    expect(retried.status).toBe("published");
    await search.loader.refresh();
    expect((await searchDocs("meteor showers desert"))[0]).toBe("late.md");
  });

  it("stops before the Lambda deadline without flipping, and the next invocation completes", async () => {
    // Drive the handler directly with contexts like Lambda's, without the local event path.
    binding.detach();
    await binding.idle();
    await user.put("corpus/deadline.jsonl", jsonl([doc("d1", "equinox", 6), doc("d2", "solstice", 6)]));
    const before = await readPointer(user, config.indexPrefix);
    const event = { Records: [{ eventName: "ObjectCreated:Put", s3: { object: { key: "corpus/deadline.jsonl" } } }] };
    let checks = 0;
    // Plenty of time for the first two checks, then the limit is close: the run stops midway.
    const expiring = { getRemainingTimeInMillis: () => (++checks <= 2 ? 600_000 : 3000) };
    await expect(handler(event, expiring)).rejects.toBeInstanceOf(ReindexTimeoutError);
    expect(checks).toBeGreaterThan(2);
    expect((await readPointer(user, config.indexPrefix))!.etag).toBe(before!.etag);
    const done = await handler(event, { getRemainingTimeInMillis: () => 600_000 });
    expect(done.status).toBe("published");
    expect((await liveSnapshot(user))!.docIds).toEqual(expect.arrayContaining(["d1", "d2"]));
    binding = attachReindexToS3rver(s3.server, {
      handler,
      corpusPrefix: config.corpusPrefix,
      retries: 0,
      log: logs.log,
    });
  });

  it("removing an object removes its passages from the next snapshot", async () => {
    await user.delete("corpus/earth.jsonl");
    const r = await settle();
    expect(r).toMatchObject({ status: "published", changes: 1, embedded: 0 });
    const live = (await liveSnapshot(user))!;
    expect(live.docIds).not.toContain("glaciers");
    expect(live.docIds).not.toContain("volcano");
    expect(live.passageIds.some((id) => id.startsWith("glaciers#") || id.startsWith("volcano#"))).toBe(false);
    expect(await searchDocs("ice sheet fjords glaciers")).not.toContain("glaciers");
  });
});

describe("the deployed handler module on the local event path", () => {
  it("functions/reindex/handler.ts, configured from the environment, reindexes s3rver uploads", async () => {
    // Exactly what the local stack does: environment → loadFunctionConfig → createStore/createEmbedder.
    const env: Record<string, string> = {
      ...localS3Env(s3),
      CORPUS_PREFIX: "real/corpus/",
      INDEX_PREFIX: "real/index/",
      EMBED_CACHE_PREFIX: "real/cache/",
      EMBEDDER: "hashing",
      HASHING_DIMENSIONS: "128",
      INDEX_TYPE: "flat",
    };
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    try {
      const { handler: deployed } = await import("../../functions/reindex/handler.ts");
      const local = attachReindexToS3rver(s3.server, { handler: deployed, corpusPrefix: "real/corpus/", retries: 0 });
      try {
        await user.put("real/corpus/faq.jsonl", jsonl([comets, glaciers]));
        await local.idle();
        expect(local.failures).toBe(0);
        expect(local.lastResult).toMatchObject({ status: "published", documents: 2, passages: 2 });
        const live = (await liveSnapshot(user, "real/index/"))!;
        expect(live.docIds).toEqual(["comets", "glaciers"]);
        expect(live.manifest.embedder).toMatchObject({ kind: "hashing", dimensions: 128 });
        expect(live.manifest.corpus_stats).toMatchObject({ n: 2, dimensions: 128 });
        // The other binding (prefix corpus/) ignored these events: its live snapshot is untouched.
        expect((await liveSnapshot(user))!.docIds).not.toContain("comets");
      } finally {
        local.detach();
        await local.idle();
      }
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
