// Property-based tests (fast-check) of the HTTP edges: arbitrary JSON bodies, raw bodies, content
// types and unicode strings sent to /search (the search function's composition root over a real
// hashing/faiss snapshot in a filesystem store, the in-process ONNX cross-encoder on the tiny fixture
// model) and to /rerank (the rerank app on the same fixture). Every answer must be below 500 and be
// JSON: either `{error: {code, message}}` (4xx) or a result (200). Prints how many cases ran.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import type { Hono } from "hono";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createSearchService, type SearchService } from "../../functions/runtime/search-deps.ts";
import { createLocalReranker } from "../../shared/adapters/local-reranker.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { createRerankApp } from "../../shared/http/rerank-app.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";
import { corpusPassages } from "../helpers/search-fixture.ts";
import { createFsStore, HASHING_DIMENSIONS, publishPassages } from "../helpers/search-stack.ts";

let dir: string;
let search: SearchService;
let rerankApp: Hono;
let cases = 0;
/** Answers per status in the current test, so each test can check it reached the handlers too. */
let statuses = new Map<number, number>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fuzz-http-"));
  await publishPassages(createFsStore(dir), corpusPassages());
  const modelDir = await ensureFixtureModel("tiny-cross");
  const cfg = loadConfig({
    STORE_KIND: "fs",
    STORE_DIR: dir,
    EMBEDDER: "hashing",
    HASHING_DIMENSIONS: String(HASHING_DIMENSIONS),
    RERANKER: "in-process",
    RERANKER_MODEL_DIR: modelDir,
    RERANKER_PROVIDER: "cpu",
    RERANKER_THREADS: "1",
    RERANKER_TIMEOUT_MS: "20000",
    MAX_QUERY_CHARS: "200",
    LOG_LEVEL: "SILENT",
  });
  search = createSearchService(cfg, { quiet: true });
  await search.loader.current();
  const reranker = createLocalReranker(cfg, { log: () => {} });
  await reranker.warm();
  rerankApp = createRerankApp({ reranker, limits: { maxDocuments: 8, maxQueryChars: 200, maxBodyBytes: 16_384 } });
});

afterAll(() => {
  search?.close();
  rmSync(dir, { recursive: true, force: true });
  console.log(`fuzz: ${cases} HTTP cases (/search and /rerank)`);
});

// Every UTF-16 code unit (lone surrogates included), full code points, graphemes, and edge strings.
const anyText = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)), maxLength: 80 }),
  fc.string({ unit: "binary", maxLength: 80 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.constantFrom("", " ", "\u0000", "\ud800", "cat purrs", "a".repeat(201), "🧪".repeat(120), "__proto__"),
);
const anyNumber = fc.oneof(
  fc.integer({ min: -5, max: 300 }),
  fc.double(),
  fc.constantFrom(0, -0, 1e308, Number.MAX_SAFE_INTEGER + 2),
);
const anyValue = fc.oneof(anyText, anyNumber, fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }));

/** Mostly a valid value (so requests get past validation), sometimes anything at all. */
const mostly = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 4, arbitrary: valid as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyValue });

const mostlyString = (valid: fc.Arbitrary<string>) =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: fc.oneof(anyText, anyNumber.map(String)) });

const searchBody = fc.oneof(
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  {
    weight: 4,
    arbitrary: fc
      .record(
        {
          query: mostly(anyText),
          k: mostly(fc.integer({ min: 1, max: 10 })),
          candidates: mostly(fc.integer({ min: 10, max: 50 })),
          rerank: mostly(fc.boolean()),
          fusion: mostly(fc.constantFrom("rerank", "linear", "rrf")),
          alpha: mostly(fc.double({ min: 0, max: 1, noNaN: true })),
          collapse: mostly(fc.boolean()),
          budget_ms: mostly(fc.integer({ min: 1, max: 5000 })),
          filter: mostly(
            fc.record(
              {
                source_prefix: mostly(anyText),
                metadata: fc.dictionary(
                  fc.string({ maxLength: 8 }),
                  fc.oneof(fc.string(), fc.integer(), fc.boolean()),
                  {
                    maxKeys: 2,
                  },
                ),
              },
              { requiredKeys: [] },
            ),
          ),
          // The body schema is strict: an unknown field is a 400 naming it (kept to about 1 in 10).
          extra: fc.integer({ min: 0, max: 9 }),
        },
        { requiredKeys: ["query", "extra"] },
      )
      .map(({ extra, ...body }) => (extra === 0 ? { ...body, extra: "unknown field" } : body)),
  },
);

const rerankDocument = fc.oneof(
  { weight: 3, arbitrary: anyText },
  {
    weight: 1,
    arbitrary: fc.record({ id: mostly(anyText), text: mostly(anyText), metadata: anyValue }, { requiredKeys: [] }),
  },
  { weight: 1, arbitrary: anyValue },
);
const rerankBody = fc.oneof(
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  {
    weight: 4,
    arbitrary: fc
      .record(
        {
          query: mostly(anyText),
          documents: mostly(fc.array(rerankDocument, { minLength: 1, maxLength: 10 })),
          // TEI's `texts`, about 1 in 10 (alone it is accepted; with `documents` it is a 400).
          texts: fc.oneof(
            { weight: 9, arbitrary: fc.constant(undefined) },
            { weight: 1, arbitrary: fc.array(anyText, { maxLength: 4 }) },
          ),
          top_n: mostly(fc.integer({ min: 1, max: 10 })),
          return_documents: mostly(fc.boolean()),
          raw_scores: mostly(fc.boolean()),
          max_tokens_per_doc: mostly(fc.integer({ min: 1, max: 512 })),
          long_document_strategy: mostly(fc.constantFrom("truncate", "chunk")),
        },
        { requiredKeys: ["query", "documents", "texts"] },
      )
      .map(({ texts, ...body }) => (texts === undefined ? body : { ...body, texts })),
  },
);

/** A JSON body, or raw text that is usually not JSON, under a random content type. */
const wire = (body: fc.Arbitrary<unknown>) =>
  fc.record({
    payload: fc.oneof(
      { weight: 4, arbitrary: body.map((b) => JSON.stringify(b) ?? "null") },
      { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 120 }) },
    ),
    contentType: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom("application/json", "application/json; charset=utf-8") },
      { weight: 1, arbitrary: fc.constantFrom("text/plain", null) },
    ),
  });

/** Sends the request and checks the invariant: < 500, JSON, an error object or a result. */
async function expectCleanAnswer(
  app: { request: (req: Request) => Response | Promise<Response> },
  req: Request,
  isResult: (json: Record<string, unknown>) => boolean,
): Promise<void> {
  cases++;
  const res = await app.request(req);
  statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  const text = await res.text();
  const where = `${req.method} ${req.url} → ${res.status} ${text.slice(0, 300)}`;
  expect(res.status, where).toBeLessThan(500);
  expect(res.headers.get("content-type") ?? "", where).toMatch(/application\/json/);
  const json = JSON.parse(text) as Record<string, unknown>;
  if (res.status >= 400) {
    const err = json.error as { code?: unknown; message?: unknown } | undefined;
    expect(typeof err?.code, where).toBe("string");
    expect(typeof err?.message, where).toBe("string");
    expect(String(err?.message).length, where).toBeGreaterThan(0);
  } else {
    expect(res.status, where).toBe(200);
    expect(isResult(json), where).toBe(true);
  }
}

const isSearchResult = (j: Record<string, unknown>) => Array.isArray(j.results) && typeof j.reranked === "boolean";
const isRerankResult = (j: Record<string, unknown>) => Array.isArray(j.results) && typeof j.meta === "object";

const post = (path: string, w: { payload: string; contentType: string | null }) =>
  new Request(`http://local${path}`, {
    method: "POST",
    headers: w.contentType ? { "content-type": w.contentType } : {},
    body: w.payload,
  });

describe("fuzzed HTTP input never produces a 5xx", () => {
  beforeEach(() => {
    statuses = new Map();
  });
  // The generators are biased towards well-formed requests, so a good share gets past validation.
  afterEach((ctx) => {
    console.log(`fuzz: ${ctx.task.name}: statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(statuses.get(200) ?? 0, JSON.stringify([...statuses])).toBeGreaterThan(0);
  });

  it("POST /search: arbitrary JSON bodies, raw bodies and content types", async () => {
    await fc.assert(
      fc.asyncProperty(wire(searchBody), (w) => expectCleanAnswer(search.app, post("/search", w), isSearchResult)),
      { numRuns: 250 },
    );
  });

  it("GET /search: arbitrary query-string values", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            q: anyText,
            k: mostlyString(fc.integer({ min: 1, max: 10 }).map(String)),
            candidates: mostlyString(fc.integer({ min: 10, max: 50 }).map(String)),
            rerank: mostlyString(fc.constantFrom("true", "false")),
            fusion: mostlyString(fc.constantFrom("rerank", "linear", "rrf")),
            alpha: mostlyString(fc.double({ min: 0, max: 1, noNaN: true }).map(String)),
            collapse: mostlyString(fc.constantFrom("true", "false")),
            budget_ms: mostlyString(fc.integer({ min: 1, max: 5000 }).map(String)),
          },
          { requiredKeys: ["q"] },
        ),
        (params) => {
          const qs = new URLSearchParams(params as Record<string, string>).toString();
          return expectCleanAnswer(search.app, new Request(`http://local/search?${qs}`), isSearchResult);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("POST /rerank: arbitrary JSON bodies, raw bodies and content types (tiny fixture cross-encoder)", async () => {
    await fc.assert(
      fc.asyncProperty(wire(rerankBody), (w) => expectCleanAnswer(rerankApp, post("/rerank", w), isRerankResult)),
      { numRuns: 250 },
    );
  });

  it("POST /rerank: well-formed requests with arbitrary unicode always rerank every document", async () => {
    const text = anyText.filter((t) => t.trim().length > 0 && t.length <= 200);
    await fc.assert(
      fc.asyncProperty(text, fc.array(text, { minLength: 1, maxLength: 8 }), async (query, documents) => {
        await expectCleanAnswer(
          rerankApp,
          post("/rerank", { payload: JSON.stringify({ query, documents }), contentType: "application/json" }),
          (j) => isRerankResult(j) && (j.results as unknown[]).length === documents.length,
        );
      }),
      { numRuns: 60 },
    );
  });
});
