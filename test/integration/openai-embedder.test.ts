// The OpenAI embedder against a real HTTP server on loopback that speaks POST /v1/embeddings,
// driven through the real `openai` client (base64 encoding, retries, batching, errors).
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { inspect } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createOpenAIEmbedder,
  estimateTokens,
  planBatches,
  retryAfterMs,
} from "../../shared/adapters/openai-embedder.ts";
import { dot, l2normalize } from "../../shared/core/embedding.ts";
import { ConfigError, EmbedderUnavailableError } from "../../shared/core/errors.ts";

const API_KEY = "sk-test-0123456789abcdefSECRET";

interface Seen {
  model: string;
  input: string[];
  encoding_format?: string;
  dimensions?: number;
  authorization?: string;
}

/** A scripted answer for the next request; unscripted requests succeed. */
type Script = { status: number; headers?: Record<string, string>; body?: unknown; delayMs?: number };

/** Deterministic, deliberately non-normalised vector for a text. */
function vectorFor(text: string, dims: number): number[] {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return Array.from({ length: dims }, (_, i) => Math.sin(h + i * 7.3) * 3 + 0.5);
}

const expected = (text: string, dims: number) => Array.from(l2normalize(Float32Array.from(vectorFor(text, dims))));

/** Each vector is the server's vector for the text at the same position, normalised. */
function expectVectorsOf(vecs: Float32Array[], texts: string[], dims = 8): void {
  expect(vecs).toHaveLength(texts.length);
  for (let i = 0; i < texts.length; i++) expect(Array.from(vecs[i])).toEqual(expected(texts[i], dims));
}

class FakeOpenAI {
  server!: Server;
  baseURL = "";
  seen: Seen[] = [];
  script: Script[] = [];
  /** Ignore encoding_format and answer floats, like some OpenAI-compatible servers. */
  floatsOnly = false;
  /** Return `data` in reverse order (with correct `index` fields). */
  reverse = false;
  /** Answer this many dimensions regardless of the request. */
  forceDims: number | null = null;
  defaultDims = 1536;

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.baseURL = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }

  reset(): void {
    this.seen = [];
    this.script = [];
    this.floatsOnly = false;
    this.reverse = false;
    this.forceDims = null;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== "POST" || req.url !== "/v1/embeddings") {
      res
        .writeHead(404, { "content-type": "application/json" })
        .end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const input: string[] = typeof body.input === "string" ? [body.input] : body.input;
    this.seen.push({
      model: body.model,
      input,
      encoding_format: body.encoding_format,
      dimensions: body.dimensions,
      authorization: req.headers.authorization,
    });
    const step = this.script.shift();
    if (step?.delayMs) await new Promise((r) => setTimeout(r, step.delayMs));
    if (res.destroyed) return;
    if (req.headers.authorization !== `Bearer ${API_KEY}`) {
      // Like OpenAI, echo the key back: the embedder must not pass it on.
      const msg = `Incorrect API key provided: ${String(req.headers.authorization).replace("Bearer ", "")}`;
      res
        .writeHead(401, { "content-type": "application/json" })
        .end(JSON.stringify({ error: { message: msg, type: "invalid_request_error" } }));
      return;
    }
    if (step && step.status !== 200) {
      res.writeHead(step.status, { "content-type": "application/json", ...step.headers });
      res.end(JSON.stringify(step.body ?? { error: { message: `scripted ${step.status}`, type: "server_error" } }));
      return;
    }
    const dims = this.forceDims ?? body.dimensions ?? this.defaultDims;
    const base64 = body.encoding_format === "base64" && !this.floatsOnly;
    const data = input.map((text, index) => {
      const v = vectorFor(text, dims);
      return {
        object: "embedding",
        index,
        embedding: base64 ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v,
      };
    });
    if (this.reverse) data.reverse();
    const tokens = input.reduce((n, t) => n + t.split(/\s+/).filter(Boolean).length, 0);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        object: "list",
        data,
        model: body.model,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      }),
    );
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const api = new FakeOpenAI();
beforeAll(() => api.start());
afterAll(() => api.close());
beforeEach(() => api.reset());

/** Records the waits the embedder asks for and skips them. */
function recordingSleep() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

const make = (o: Partial<Parameters<typeof createOpenAIEmbedder>[0]> = {}) =>
  createOpenAIEmbedder({ apiKey: API_KEY, baseURL: api.baseURL, dimensions: 8, ...o });

describe("OpenAI embedder over HTTP", () => {
  it("embeds through the real client with base64 encoding, in input order, normalised, counting usage", async () => {
    const e = make();
    const texts = ["wing flutter", "boundary layer transition", "héllo wörld 🚀"];
    const vecs = await e.embedDocuments(texts);
    expect(api.seen).toHaveLength(1);
    expect(api.seen[0]).toMatchObject({
      model: "text-embedding-3-small",
      input: texts,
      encoding_format: "base64",
      dimensions: 8,
    });
    expect(api.seen[0].authorization).toBe(`Bearer ${API_KEY}`);
    expectVectorsOf(vecs, texts);
    for (const v of vecs) {
      expect(v).toBeInstanceOf(Float32Array);
      expect(dot(v, v)).toBeCloseTo(1, 5);
    }
    expect(e.usage()).toEqual({ calls: 1, texts: 3, tokens: 2 + 3 + 3 });
    const q = await e.embedQuery("wing flutter");
    expect(Array.from(q)).toEqual(Array.from(vecs[0]));
    expect(e.usage()).toMatchObject({ calls: 2, texts: 4 });
  });

  it("accepts float answers from servers that ignore encoding_format, and orders by `index`", async () => {
    api.floatsOnly = true;
    api.reverse = true;
    const texts = ["a1", "b2", "c3", "d4"];
    const vecs = await make().embedDocuments(texts);
    expectVectorsOf(vecs, texts);
  });

  it("splits batches by input count and by estimated tokens, keeping order across concurrent requests", async () => {
    const texts = Array.from({ length: 11 }, (_, i) => `text number ${i}`);
    api.script = [{ status: 200, delayMs: 60 }]; // the first batch answers last
    const vecs = await make({ batchSize: 4, concurrency: 3 }).embedDocuments(texts);
    expect(api.seen.map((s) => s.input.length)).toEqual([4, 4, 3]);
    expectVectorsOf(vecs, texts);

    api.reset();
    const long = "x".repeat(300); // ~101 estimated tokens each
    await make({ batchTokens: 250 }).embedDocuments([long, long, long, "short", long, long, long]);
    expect(api.seen.map((s) => s.input.length)).toEqual([2, 3, 2]);
  });

  it("gives empty texts a zero vector without sending them", async () => {
    const vecs = await make().embedDocuments(["", "real text", "  "]);
    expect(api.seen).toHaveLength(1);
    expect(api.seen[0].input).toEqual(["real text"]);
    expect(Array.from(vecs[0])).toEqual(new Array(8).fill(0));
    expect(dot(vecs[1], vecs[1])).toBeCloseTo(1, 5);
  });

  it("retries 429 honouring retry-after (seconds) and retry-after-ms", async () => {
    const { waits, sleep } = recordingSleep();
    api.script = [
      { status: 429, headers: { "retry-after": "2" } },
      { status: 429, headers: { "retry-after-ms": "150", "retry-after": "9" } },
    ];
    const e = make({ sleep });
    const v = await e.embedQuery("rate limited");
    expect(waits).toEqual([2000, 150]);
    expect(api.seen).toHaveLength(3);
    expect(e.usage().calls).toBe(3);
    expectVectorsOf([v], ["rate limited"]);
  });

  it("waits for real with the default sleep", async () => {
    api.script = [{ status: 429, headers: { "retry-after-ms": "30" } }];
    const t0 = Date.now();
    await make().embedQuery("real wait");
    expect(api.seen).toHaveLength(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it("retries 500/503 with exponential backoff and jitter", async () => {
    const { waits, sleep } = recordingSleep();
    api.script = [{ status: 500 }, { status: 503 }, { status: 502 }];
    let r = 0;
    const randoms = [0, 1, 0.5];
    await make({ sleep, random: () => randoms[r++], baseDelayMs: 100 }).embedQuery("flaky");
    // attempt k waits between half and all of 100·2^k ms
    expect(waits).toEqual([50, 200, 300]);
    expect(api.seen).toHaveLength(4);
  });

  it("gives up after maxRetries with EmbedderUnavailableError carrying the cause and a retry hint", async () => {
    const { waits, sleep } = recordingSleep();
    api.script = Array.from({ length: 10 }, () => ({ status: 503, headers: { "retry-after": "3" } }));
    const err = await make({ sleep, maxRetries: 2 })
      .embedQuery("down")
      .catch((e) => e);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.status).toBe(503);
    expect(err.code).toBe("embedder_unavailable");
    expect(err.retryAfterS).toBe(3);
    expect(err.message).toMatch(/after 3 attempts/);
    expect(err.message).toMatch(/HTTP 503/);
    expect((err.cause as Error & { status?: number }).status).toBe(503);
    expect(api.seen).toHaveLength(3);
    expect(waits).toEqual([3000, 3000]);
  });

  it("does not retry a 400 or 401, and never lets the API key into errors", async () => {
    const wrongKey = "sk-wrong-key-abcdefghijklmnop";
    const err = await createOpenAIEmbedder({ apiKey: wrongKey, baseURL: api.baseURL, dimensions: 8 })
      .embedQuery("who am i")
      .catch((e) => e);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.message).toMatch(/HTTP 401/);
    expect(api.seen).toHaveLength(1);
    const everything = `${err.message}\n${err.stack}\n${inspect(err, { depth: 10 })}\n${JSON.stringify(err)}`;
    expect(everything).not.toContain(wrongKey);
    expect(everything).not.toContain("abcdefghijklmnop");

    api.reset();
    api.script = [{ status: 400, body: { error: { message: `bad input for key ${API_KEY}` } } }];
    const bad = await make()
      .embedQuery("x")
      .catch((e) => e);
    expect(bad).toBeInstanceOf(EmbedderUnavailableError);
    expect(api.seen).toHaveLength(1);
    expect(`${bad.message}${inspect(bad, { depth: 10 })}`).not.toContain(API_KEY);
  });

  it("keeps to the time budget: a slow server times out, a long retry-after gives up at once", async () => {
    api.script = [{ status: 200, delayMs: 2000 }];
    const t0 = Date.now();
    const slow = await make({ timeoutMs: 200, maxRetries: 5 })
      .embedQuery("slow")
      .catch((e) => e);
    expect(slow).toBeInstanceOf(EmbedderUnavailableError);
    expect(slow.message).toMatch(/timed out after 200 ms/);
    expect(Date.now() - t0).toBeLessThan(1900);

    api.reset();
    const { waits, sleep } = recordingSleep();
    api.script = [{ status: 429, headers: { "retry-after": "30" } }];
    const busy = await make({ timeoutMs: 1000, sleep })
      .embedQuery("busy")
      .catch((e) => e);
    expect(busy).toBeInstanceOf(EmbedderUnavailableError);
    expect(busy.retryAfterS).toBe(30);
    expect(busy.message).toMatch(/budget/);
    expect(waits).toEqual([]);
    expect(api.seen).toHaveLength(1);
  });

  it("stops on an aborted signal, during a request and during a wait", async () => {
    api.script = [{ status: 200, delayMs: 1000 }];
    const ac = new AbortController();
    const reason = new Error("caller gave up");
    setTimeout(() => ac.abort(reason), 50);
    await expect(make().embedDocuments(["a", "b"], { signal: ac.signal })).rejects.toBe(reason);

    api.reset();
    api.script = [{ status: 429, headers: { "retry-after": "5" } }];
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(reason), 50);
    const t0 = Date.now();
    await expect(make({ timeoutMs: 20_000 }).embedQuery("x", { signal: ac2.signal })).rejects.toBe(reason);
    expect(Date.now() - t0).toBeLessThan(4000);
  });

  it("retries connection errors, then gives up", async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const { waits, sleep } = recordingSleep();
    const err = await createOpenAIEmbedder({
      apiKey: API_KEY,
      baseURL: `http://127.0.0.1:${port}/v1`,
      dimensions: 8,
      sleep,
      maxRetries: 1,
    })
      .embedQuery("anyone?")
      .catch((e) => e);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.message).toMatch(/after 2 attempts/);
    expect(waits).toHaveLength(1);
  });

  it("rejects vectors of the wrong size", async () => {
    api.forceDims = 4;
    const err = await make()
      .embedQuery("x")
      .catch((e) => e);
    expect(err).toBeInstanceOf(EmbedderUnavailableError);
    expect(err.message).toMatch(/4-dimension vectors, expected 8/);
  });

  it("uses the model's native size when no dimensions are set, without sending `dimensions`", async () => {
    const e = createOpenAIEmbedder({ apiKey: API_KEY, baseURL: api.baseURL, model: "text-embedding-3-large" });
    api.defaultDims = 3072;
    const v = await e.embedQuery("large");
    api.defaultDims = 1536;
    expect(v).toHaveLength(3072);
    expect(api.seen[0].dimensions).toBeUndefined();
    expect(e.identity).toEqual({ kind: "openai", model: "text-embedding-3-large", dimensions: 3072, normalized: true });
  });
});

describe("OpenAI embedder configuration", () => {
  it("derives its identity from model and dimensions", () => {
    expect(createOpenAIEmbedder({ apiKey: "k" }).identity).toEqual({
      kind: "openai",
      model: "text-embedding-3-small",
      dimensions: 1536,
      normalized: true,
    });
    expect(createOpenAIEmbedder({ apiKey: "k", dimensions: 256 }).identity.dimensions).toBe(256);
    expect(createOpenAIEmbedder({ apiKey: "k", model: "nomic-embed-text", dimensions: 768 }).identity.model).toBe(
      "nomic-embed-text",
    );
  });

  it.each([
    [{ apiKey: "" }, "OPENAI_API_KEY"],
    [{ apiKey: "k", model: "mystery-model" }, "OPENAI_EMBEDDING_DIMENSIONS"],
    [{ apiKey: "k", dimensions: 4096 }, "OPENAI_EMBEDDING_DIMENSIONS"],
    [{ apiKey: "k", dimensions: 0 }, "OPENAI_EMBEDDING_DIMENSIONS"],
    [{ apiKey: "k", model: "text-embedding-ada-002", dimensions: 512 }, "OPENAI_EMBEDDING_DIMENSIONS"],
  ])("rejects %j naming %s", (o, variable) => {
    try {
      createOpenAIEmbedder(o);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).variable).toBe(variable);
    }
  });
});

describe("batching and header helpers", () => {
  it("estimates tokens from UTF-8 bytes", () => {
    expect(estimateTokens("")).toBe(1);
    expect(estimateTokens("abcdef")).toBe(3);
    expect(estimateTokens("日本")).toBe(3); // 6 bytes
    expect(estimateTokens("🚀")).toBe(3); // 4 bytes
  });

  it("plans batches within both limits; an oversized text goes alone", () => {
    const t = (n: number) => "x".repeat(n * 3 - 3); // n estimated tokens
    expect(planBatches([], 4, 100)).toEqual([]);
    expect(planBatches([t(10), t(10), t(10)], 2, 100)).toEqual([
      [0, 2],
      [2, 3],
    ]);
    expect(planBatches([t(60), t(50), t(500), t(10)], 10, 100)).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
      [3, 4],
    ]);
  });

  it("reads retry-after-ms, retry-after seconds and HTTP dates", () => {
    expect(retryAfterMs(new Headers({ "retry-after-ms": "120.5" }))).toBe(120.5);
    expect(retryAfterMs(new Headers({ "retry-after": "2" }))).toBe(2000);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterMs(new Headers({ "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT" }), now)).toBe(5000);
    expect(retryAfterMs(new Headers({ "retry-after": "soon" }))).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });
});
