// Reranker adapters against real loopback HTTP servers (our answer shape, TEI's bare array,
// failures) and the Lambda adapter against a client that runs the reranker's real invoke handler.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createHttpReranker,
  createInProcessReranker,
  createLambdaReranker,
  type LambdaInvoker,
  noneReranker,
  normalizeRerankAnswer,
  rerankEndpoint,
  rerankerFromConfig,
} from "../../shared/adapters/reranker-clients.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { ConfigError, RerankerUnavailableError } from "../../shared/core/errors.ts";
import type { RerankRequest } from "../../shared/core/types.ts";
import { handleRerankInvoke } from "../../shared/http/rerank-app.ts";
import { overlapScore, rerankAnswer, sleep } from "../helpers/search-fixture.ts";

interface Seen {
  path: string;
  auth?: string;
  body: Record<string, unknown>;
}

let server: Server;
let base: string;
const seen: Seen[] = [];

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

// One server, behaviour by path prefix: /ok, /tei, /fail, /garbage, /wrong-shape, /slow.
async function handle(req: IncomingMessage, res: ServerResponse) {
  const body = await readJson(req);
  seen.push({ path: req.url ?? "", auth: req.headers.authorization, body });
  const json = (status: number, value: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(value));
  };
  const query = String(body.query);
  const docs = (body.documents ?? body.texts) as string[];
  const req2: RerankRequest = { query, documents: docs };
  if (req.url?.startsWith("/ok")) return json(200, rerankAnswer(req2, overlapScore(query), 123));
  if (req.url?.startsWith("/cohere")) {
    const a = rerankAnswer(req2, overlapScore(query));
    return json(200, {
      id: "x",
      results: a.results.map(({ index, relevance_score }) => ({ index, relevance_score })),
      meta: { api_version: { version: "2" } },
    });
  }
  if (req.url?.startsWith("/tei")) {
    const a = rerankAnswer(req2, overlapScore(query));
    return json(
      200,
      a.results.map((r) => ({ index: r.index, score: r.relevance_score })),
      { "x-compute-tokens": "77" },
    );
  }
  if (req.url?.startsWith("/fail")) return json(500, { error: { code: "internal", message: "model exploded" } });
  if (req.url?.startsWith("/garbage")) {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end("{not json");
  }
  if (req.url?.startsWith("/wrong-shape")) return json(200, { results: [{ index: "zero", relevance_score: 0.5 }] });
  if (req.url?.startsWith("/slow")) {
    await sleep(1500);
    if (!res.destroyed)
      json(
        200,
        rerankAnswer(req2, () => 1),
      );
    return;
  }
  json(404, { error: "no such path" });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const req: RerankRequest = { query: "cat purrs", documents: ["dogs bark", "a cat purrs", { id: "d3", text: "cats" }] };

describe("http reranker", () => {
  it("builds the endpoint from a base URL or takes a full /rerank URL", () => {
    expect(rerankEndpoint("http://h:1")).toBe("http://h:1/rerank");
    expect(rerankEndpoint("http://h:1/")).toBe("http://h:1/rerank");
    expect(rerankEndpoint("https://api.cohere.com/v2/rerank")).toBe("https://api.cohere.com/v2/rerank");
  });

  it("calls our service shape with a bearer token and keeps its meta", async () => {
    const r = createHttpReranker({ url: `${base}/ok`, token: "s3cret" });
    const resp = await r.rerank(req);
    const last = seen.at(-1)!;
    expect(last.path).toBe("/ok/rerank");
    expect(last.auth).toBe("Bearer s3cret");
    expect(last.body).toEqual({ query: "cat purrs", documents: ["dogs bark", "a cat purrs", "cats"] });
    expect(resp.results[0].index).toBe(1);
    expect(resp.meta.tokens).toBe(123);
    expect(resp.meta.model).toBe("test");
    expect(r.describe()).toMatchObject({ kind: "http", url: `${base}/ok/rerank`, model: "test" });
  });

  it("accepts a Cohere v2 answer (no logit, no meta fields) and fills meta", async () => {
    const r = createHttpReranker({ url: `${base}/cohere`, model: "rerank-v3.5" });
    const resp = await r.rerank(req);
    expect(seen.at(-1)!.body.model).toBe("rerank-v3.5");
    expect(resp.results.map((x) => x.index)).toEqual([1, 2, 0]);
    expect(resp.results[0].logit).toBe(resp.results[0].relevance_score);
    expect(resp.meta).toMatchObject({ model: "rerank-v3.5", provider: "http", pairs: 3, tokens: 0 });
  });

  it("speaks TEI: sends texts with truncation, reads the bare array and the token header", async () => {
    const r = createHttpReranker({ url: `${base}/tei`, api: "tei" });
    const resp = await r.rerank(req);
    expect(seen.at(-1)!.body).toMatchObject({
      query: "cat purrs",
      texts: ["dogs bark", "a cat purrs", "cats"],
      truncate: true,
    });
    expect(resp.results[0]).toMatchObject({ index: 1 });
    expect(resp.meta.tokens).toBe(77);
  });

  it("turns a 5xx into an error naming the status and the service's message", async () => {
    const err = await createHttpReranker({ url: `${base}/fail` })
      .rerank(req)
      .catch((e) => e);
    expect(err).toBeInstanceOf(RerankerUnavailableError);
    expect(err.message).toBe(`reranker at ${base}/fail/rerank answered HTTP 500: internal: model exploded`);
  });

  it("rejects an answer that is not JSON, or not a rerank answer", async () => {
    await expect(createHttpReranker({ url: `${base}/garbage` }).rerank(req)).rejects.toThrow(
      /malformed answer: not JSON \("\{not json"\)/,
    );
    await expect(createHttpReranker({ url: `${base}/wrong-shape` }).rerank(req)).rejects.toThrow(
      /malformed answer: results\.0\.index: .*number/,
    );
  });

  it("gives up after the call's time limit", async () => {
    const started = performance.now();
    const err = await createHttpReranker({ url: `${base}/slow`, timeoutMs: 5000 })
      .rerank(req, { timeoutMs: 100 })
      .catch((e) => e);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err.message).toBe(`reranker at ${base}/slow/rerank timed out after 100 ms`);
  });

  it("reports an unreachable service", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(createHttpReranker({ url: `http://127.0.0.1:${port}` }).rerank(req)).rejects.toThrow(
      /unreachable: ECONNREFUSED/,
    );
  });
});

/** A Lambda client that runs the reranker function's real invoke handler in-process. */
function invokeClient(
  behave: (payload: unknown) => Promise<{ Payload?: Uint8Array; FunctionError?: string }> | null = () => null,
): LambdaInvoker & { names: string[] } {
  const scorer = createInProcessReranker(async (r) => rerankAnswer(r, overlapScore(r.query), 42));
  const names: string[] = [];
  return {
    names,
    async send(command, options) {
      const input = (command as { input: { FunctionName: string; Payload: Uint8Array } }).input;
      names.push(input.FunctionName);
      const payload = JSON.parse(new TextDecoder().decode(input.Payload));
      const special = behave(payload);
      if (special) {
        const abort = options?.abortSignal;
        return await new Promise((resolve, reject) => {
          special.then(resolve, reject);
          abort?.addEventListener("abort", () => reject(abort.reason));
        });
      }
      const out = await handleRerankInvoke(scorer, payload);
      return { StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(out)) };
    },
  };
}

describe("lambda reranker", () => {
  it("invokes the function with the request and returns its answer", async () => {
    const client = invokeClient();
    const r = createLambdaReranker({ functionName: "reranker-fn:live", client });
    const resp = await r.rerank(req);
    expect(client.names).toEqual(["reranker-fn:live"]);
    expect(resp.results[0].index).toBe(1);
    expect(resp.meta.tokens).toBe(42);
    expect(r.describe()).toMatchObject({ kind: "lambda", url: "lambda:reranker-fn:live", model: "test" });
  });

  it("turns an {error} payload (bad request answered as a value) into an error", async () => {
    const r = createLambdaReranker({ functionName: "fn", client: invokeClient() });
    await expect(r.rerank({ query: "", documents: ["x"] })).rejects.toThrow(
      /reranker function fn refused the call: invalid_request: .*query/,
    );
  });

  it("turns a function error (unhandled exception) into an error", async () => {
    const client = invokeClient(async () => ({
      FunctionError: "Unhandled",
      Payload: new TextEncoder().encode(
        JSON.stringify({ errorType: "Runtime.OutOfMemory", errorMessage: "out of memory" }),
      ),
    }));
    const r = createLambdaReranker({ functionName: "fn", client });
    await expect(r.rerank(req)).rejects.toThrow("reranker function fn failed: Runtime.OutOfMemory: out of memory");
  });

  it("rejects a payload that is not a rerank answer", async () => {
    const client = invokeClient(async () => ({
      Payload: new TextEncoder().encode(JSON.stringify({ statusCode: 200 })),
    }));
    await expect(createLambdaReranker({ functionName: "fn", client }).rerank(req)).rejects.toThrow(/malformed answer/);
  });

  it("aborts the invocation at the time limit", async () => {
    const client = invokeClient(() => sleep(2000).then(() => ({})));
    const err = await createLambdaReranker({ functionName: "fn", client })
      .rerank(req, { timeoutMs: 80 })
      .catch((e) => e);
    expect(err.message).toBe("reranker function fn timed out after 80 ms");
  });
});

describe("normalizeRerankAnswer", () => {
  it("names the field that is wrong", () => {
    expect(() =>
      normalizeRerankAnswer({ results: [{ index: 0 }] }, { source: "x", pairs: 1, wallMs: 1, provider: "p" }),
    ).toThrow(/x returned a malformed answer: results\.0\.relevance_score/);
  });
});

describe("rerankerFromConfig", () => {
  it("builds the adapter RERANKER names", () => {
    expect(rerankerFromConfig(loadConfig({ RERANKER: "none" }))).toBe(noneReranker);
    expect(rerankerFromConfig(loadConfig({ RERANKER: "http", RERANKER_URL: "http://x:9/" })).describe()).toMatchObject({
      kind: "http",
      url: "http://x:9/rerank",
    });
    expect(rerankerFromConfig(loadConfig({ RERANKER: "lambda", RERANKER_FUNCTION: "f" })).describe().kind).toBe(
      "lambda",
    );
    const local = createInProcessReranker(async (r) => rerankAnswer(r, () => 1));
    expect(rerankerFromConfig(loadConfig({ RERANKER: "in-process" }), { local: () => local })).toBe(local);
    expect(() => rerankerFromConfig(loadConfig({ RERANKER: "in-process" }))).toThrow(ConfigError);
  });

  it("RERANKER_API and RERANKER_MODEL pick the request shape and the model sent over real HTTP", async () => {
    const tei = rerankerFromConfig(loadConfig({ RERANKER: "http", RERANKER_URL: `${base}/tei`, RERANKER_API: "tei" }));
    const teiAnswer = await tei.rerank(req);
    expect(seen.at(-1)!.body).toMatchObject({ texts: ["dogs bark", "a cat purrs", "cats"], truncate: true });
    expect(seen.at(-1)!.body.documents).toBeUndefined();
    expect(teiAnswer.results[0].index).toBe(1);

    const cohere = rerankerFromConfig(
      loadConfig({ RERANKER: "http", RERANKER_URL: `${base}/cohere`, RERANKER_MODEL: "rerank-v3.5" }),
    );
    await cohere.rerank(req);
    expect(seen.at(-1)!.body).toMatchObject({ model: "rerank-v3.5", documents: ["dogs bark", "a cat purrs", "cats"] });
    expect(seen.at(-1)!.body.texts).toBeUndefined();

    expect(() => loadConfig({ RERANKER: "http", RERANKER_URL: base, RERANKER_API: "openai" })).toThrow(/RERANKER_API/);
  });

  it("noneReranker refuses calls", async () => {
    await expect(noneReranker.rerank(req)).rejects.toThrow(/disabled/);
  });
});
