// No secret ever appears in logs, errors or responses: Powertools' real output (stdout/stderr) is
// captured while requests carrying keys and tokens are handled and errors embedding them are thrown.
import { Console } from "node:console";
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Hono } from "hono";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { EmbedderUnavailableError } from "../../shared/core/errors.ts";
import { createRateLimiter } from "../../shared/core/rate-limit.ts";
import { REDACTED, createRedactor } from "../../shared/core/redact.ts";
import { createUsageMeter } from "../../shared/core/usage.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createKeyStore } from "../../shared/adapters/key-store.ts";
import {
  type ObservabilityOptions,
  type ObservedEnv,
  createLogger,
  createMetrics,
  errorResponseBody,
  observabilityOptionsFromEnv,
  observe,
  redactConsole,
  requestLog,
  requestLogging,
} from "../../shared/adapters/observability.ts";
import { apiKeyAuth } from "../../shared/http/auth.ts";

const OPENAI_KEY = `sk-proj-${randomBytes(24).toString("hex")}`;
const RERANKER_TOKEN = `rrt-${randomBytes(16).toString("hex")}`;
const opts: ObservabilityOptions = {
  ...observabilityOptionsFromEnv({ OPENAI_API_KEY: OPENAI_KEY, RERANKER_TOKEN, LOG_LEVEL: "DEBUG" }),
  namespace: "RedactionTest",
};

/** Everything written to stdout and stderr while `fn` runs. */
let captured: string[] = [];
beforeEach(() => {
  captured = [];
  const grab = (chunk: unknown) => {
    captured.push(typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8"));
    return true;
  };
  vi.spyOn(process.stdout, "write").mockImplementation(grab as typeof process.stdout.write);
  vi.spyOn(process.stderr, "write").mockImplementation(grab as typeof process.stderr.write);
});
afterEach(() => vi.restoreAllMocks());

const output = () => captured.join("");
const jsonLines = () =>
  output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function expectNoSecrets(text: string, secrets: string[]) {
  for (const s of secrets) {
    expect(text).not.toContain(s);
    // Also no long fragment of a secret (e.g. the secret half of an API key).
    expect(text).not.toContain(s.slice(-24));
  }
}

describe("the structured logger", () => {
  it("scrubs keys, tokens and provider secrets from messages, attributes and errors", () => {
    const logger = createLogger(opts);
    const apiKey = `tsr_${"a1".repeat(8)}_${randomBytes(32).toString("hex")}`;
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const cause = new Error(`upstream said: Authorization: Bearer ${RERANKER_TOKEN}`);
    const err = new Error(`request with ${apiKey} failed; OPENAI_API_KEY=${OPENAI_KEY}`, { cause });
    logger.info(`client sent ${apiKey}`, {
      key_id: "a1a1a1a1a1a1a1a1",
      headers: { "x-api-key": apiKey, authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      config: { openaiApiKey: OPENAI_KEY, rerankerToken: RERANKER_TOKEN, password },
      nested: [{ secret_value: password }, `url?api_key=${password}`],
      embedding_tokens: 42,
    });
    logger.error("boom", err);
    logger.warn("as attribute", { error: err, s3_key: "corpus/docs.jsonl" });

    const text = output();
    expectNoSecrets(text, [apiKey, OPENAI_KEY, RERANKER_TOKEN, password]);
    const lines = jsonLines();
    expect(lines).toHaveLength(3);
    // What is not secret is still there: the scrubbing is targeted, not "log nothing".
    expect(lines[0]).toMatchObject({
      level: "INFO",
      service: opts.serviceName,
      key_id: "a1a1a1a1a1a1a1a1",
      embedding_tokens: 42,
    });
    expect(lines[0].message).toBe(`client sent tsr_${REDACTED}`);
    expect((lines[0].headers as Record<string, string>)["content-type"]).toBe("application/json");
    expect((lines[0].headers as Record<string, string>)["x-api-key"]).toBe(REDACTED);
    expect(lines[2].s3_key).toBe("corpus/docs.jsonl");
    expect(text).toContain("upstream said");
    expect(lines[1].level).toBe("ERROR");
  });
});

describe("HTTP requests carrying keys", () => {
  let root: string;
  let app: Hono<ObservedEnv>;
  let goodKey: string;
  let keyId: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "redact-"));
    const store = createFsStore(root);
    const keys = createKeyStore({ store, prefix: "auth/keys/", cacheTtlMs: 1000 });
    const made = await keys.create({ name: "redaction" });
    goodKey = made.key;
    keyId = made.record.key_id;
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  beforeEach(() => {
    const store = createFsStore(root);
    const logger = createLogger(opts);
    const metrics = createMetrics(opts);
    const keys = createKeyStore({ store, prefix: "auth/keys/", cacheTtlMs: 1000 });
    const limiter = createRateLimiter({ defaults: { rps: 100, burst: 100 }, clock: { now: () => 0 } });
    const usage = createUsageMeter({ store, prefix: "auth/usage/", writerId: "t", flushIntervalMs: 60_000 });
    app = new Hono<ObservedEnv>();
    app.use("*", requestLogging({ logger, metrics }));
    app.use("*", apiKeyAuth({ mode: "required", keys, limiter, usage }));
    app.get("/echo-headers", (c) => {
      // A careless debug line: every header, the key included.
      requestLog(c).debug("headers", { headers: Object.fromEntries(c.req.raw.headers) });
      observe(c, {
        queries: 1,
        rerankPairs: 8,
        cacheHits: 2,
        rerankCacheHits: 5,
        rerankCacheMisses: 0,
        degraded: true,
        timings: { embed_ms: 1.5, search_ms: 0.5, rerank_ms: 3, total_ms: 5 },
      });
      return c.json({ ok: true });
    });
    app.get("/provider-error", () => {
      throw new EmbedderUnavailableError(`OpenAI rejected key ${OPENAI_KEY} (x-api-key was ${goodKey})`);
    });
    app.get("/crash", () => {
      throw new TypeError(`cannot read ${goodKey} with Bearer ${RERANKER_TOKEN}`);
    });
    app.onError((err, c) => {
      requestLog(c).error("unhandled", { error: err });
      const { status, body, headers } = errorResponseBody(err);
      return c.json(body, status as 500, headers);
    });
  });

  it("keeps keys out of logs, EMF metrics and responses, while logging request id, key id and stage metrics", async () => {
    const unknownKey = `tsr_${"f".repeat(16)}_${randomBytes(32).toString("hex")}`;
    const responses: string[] = [];
    const send = async (path: string, headers: Record<string, string>) => {
      const res = await app.request(path, { headers });
      responses.push(`${res.status} ${JSON.stringify([...res.headers])} ${await res.text()}`);
      return res;
    };
    expect((await send("/echo-headers", { "x-api-key": goodKey, "x-request-id": "req-1" })).status).toBe(200);
    expect((await send(`/echo-headers?api_key=${goodKey}`, { authorization: `Bearer ${goodKey}` })).status).toBe(200);
    expect((await send("/echo-headers", { "x-api-key": unknownKey })).status).toBe(401);
    expect((await send("/provider-error", { "x-api-key": goodKey })).status).toBe(503);
    expect((await send("/crash", { "x-api-key": goodKey })).status).toBe(500);

    const secrets = [goodKey, unknownKey, OPENAI_KEY, RERANKER_TOKEN];
    expectNoSecrets(output(), secrets);
    expectNoSecrets(responses.join("\n"), secrets);

    const lines = jsonLines();
    const requestLines = lines.filter((l) => l.message === "request" || l.message === "request failed");
    expect(requestLines).toHaveLength(5);
    expect(requestLines[0]).toMatchObject({
      request_id: "req-1",
      key_id: keyId,
      method: "GET",
      path: "/echo-headers",
      status: 200,
    });
    expect(requestLines[1].path).toBe("/echo-headers"); // no query string in logs
    expect(requestLines[2]).toMatchObject({ status: 401, error_code: "unauthorized" });
    expect(requestLines[2].key_id).toBeUndefined();
    expect(requestLines[3]).toMatchObject({ status: 503, error_code: "embedder_unavailable", key_id: keyId });
    expect(requestLines[4]).toMatchObject({ status: 500, error_code: "internal" });
    const debug = lines.find((l) => l.message === "headers");
    expect(debug).toMatchObject({ request_id: "req-1", key_id: keyId });
    expect((debug!.headers as Record<string, string>)["x-api-key"]).toBe(REDACTED);

    // EMF: one blob per request with per-stage latency and consumption, plus Errors by code.
    const emf = lines.filter((l) => "_aws" in l);
    const first = emf.find((l) => l.request_id === "req-1");
    expect(first).toMatchObject({
      EmbedLatency: 1.5,
      SearchLatency: 0.5,
      RerankLatency: 3,
      TotalLatency: 5,
      RerankPairs: 8,
      CacheHits: 2,
      RerankCacheHits: 5,
      RerankCacheMisses: 0,
      DegradedResponses: 1,
      key_id: keyId,
    });
    const errorCodes = emf.filter((l) => "Errors" in l).map((l) => l.error_code);
    expect(errorCodes.sort()).toEqual(["embedder_unavailable", "internal", "unauthorized"]);

    // Client-facing error bodies keep their meaning without the secrets.
    expect(responses[3]).toContain("embedder_unavailable");
    expect(responses[3]).toContain("OpenAI rejected key");
    expect(responses[4]).toContain('"Internal error"');
  });
});

describe("console output from other code", () => {
  it("is scrubbed once redactConsole() is installed (strings, errors with causes, objects)", async () => {
    const sink = new PassThrough();
    const chunks: string[] = [];
    sink.on("data", (d) => chunks.push(String(d)));
    const target = new Console({ stdout: sink, stderr: sink });
    redactConsole(target, createRedactor([OPENAI_KEY]));
    redactConsole(target, createRedactor([OPENAI_KEY])); // idempotent
    const apiKey = `tsr_${"b2".repeat(8)}_${randomBytes(32).toString("hex")}`;
    target.error(new Error(`failed for ${apiKey}`, { cause: new Error(`provider key ${OPENAI_KEY}`) }));
    target.log("plain", apiKey, { headers: { authorization: `Bearer ${apiKey}` } });
    target.warn(`OPENAI_API_KEY=${OPENAI_KEY}`);
    await new Promise((r) => setImmediate(r));
    const text = chunks.join("");
    expectNoSecrets(text, [apiKey, OPENAI_KEY]);
    expect(text).toContain("failed for tsr_[REDACTED]");
    expect(text).toContain("plain");
  });
});

describe("the redactor", () => {
  it("removes any generated API key or registered secret from arbitrary surrounding text", () => {
    let cases = 0;
    fc.assert(
      fc.property(
        fc.string(),
        fc.string(),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.constantFrom("", "Bearer ", "x-api-key: ", "api_key=", '"token":"'),
        (before, after, secretBytes, lead) => {
          cases++;
          const key = `tsr_${"0123456789abcdef"}_${Buffer.from(secretBytes).toString("hex")}`;
          const r = createRedactor([OPENAI_KEY]);
          const text = `${before}${lead}${key} ${OPENAI_KEY}${after}`;
          const out = r.redactText(text);
          const line = r.redactLine(JSON.stringify({ message: text }));
          return (
            !out.includes(key) &&
            !out.includes(OPENAI_KEY) &&
            !line.includes(key) &&
            JSON.parse(line).message !== undefined
          );
        },
      ),
      { numRuns: 500 },
    );
    expect(cases).toBe(500);
  });

  it("leaves ordinary text and numbers alone", () => {
    const r = createRedactor([OPENAI_KEY]);
    const plain = "Basic usage: 512 tokens, max_tokens_per_doc=512, token budget 8192; key corpus/a.jsonl";
    expect(r.redactText(plain)).toBe(plain);
    expect(r.redactValue({ tokens: 512, key: "corpus/a.jsonl", key_id: "0123456789abcdef", cache_hits: 3 })).toEqual({
      tokens: 512,
      key: "corpus/a.jsonl",
      key_id: "0123456789abcdef",
      cache_hits: 3,
    });
    expect(r.redactValue({ api_key: "abc", credentials: { accessKeyId: "x" }, RERANKER_TOKEN: "y" })).toEqual({
      api_key: REDACTED,
      credentials: REDACTED,
      RERANKER_TOKEN: REDACTED,
    });
    // Short values are never registered as secrets (they would blank ordinary words).
    r.addSecret("abc");
    expect(r.redactText("abc")).toBe("abc");
  });
});
