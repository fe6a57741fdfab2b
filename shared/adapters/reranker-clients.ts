// RerankerPort adapters: where the search function sends its rerank calls (RERANKER setting).
// - in-process: any function with the rerank signature (the local ONNX cross-encoder);
// - lambda: direct invocation of the reranker function (@aws-sdk/client-lambda, loaded lazily);
// - http: our reranker service or any Cohere / Infinity / TEI-compatible `/rerank` endpoint;
// - none: reranking disabled.
// Every failure is thrown as a RerankerUnavailableError whose message names the cause; the search
// core turns it into a warning and first-stage results.

import { z } from "zod";
import type { Config } from "../core/config.ts";
import { ConfigError, RerankerUnavailableError } from "../core/errors.ts";
import type { RerankCallOptions, RerankerDescription, RerankerPort } from "../core/ports.ts";
import type { RerankRequest, RerankResponse, RerankResult } from "../core/types.ts";
import { deadline, type LambdaInvoker, lambdaErrorText, loadLambdaSdk } from "./remote-call.ts";

export type { LambdaInvoker };

// ---------- answer validation (shared by lambda and http) ----------

const resultSchema = z.looseObject({
  index: z.number().int().nonnegative(),
  relevance_score: z.number(),
  logit: z.number().optional(),
  id: z.string().optional(),
});

const metaSchema = z.looseObject({
  model: z.string().optional(),
  provider: z.string().optional(),
  pairs: z.number().optional(),
  tokens: z.number().optional(),
  truncated: z.number().optional(),
  fixture: z.boolean().optional(),
  cache: z.looseObject({ hits: z.number(), misses: z.number() }).optional(),
  timings: z
    .looseObject({
      tokenize_ms: z.number().optional(),
      inference_ms: z.number().optional(),
      total_ms: z.number().optional(),
    })
    .optional(),
});

/** Ours, Cohere v2, Infinity: `{results: [{index, relevance_score}], meta?, usage?, model?}`. */
const cohereAnswer = z.looseObject({
  results: z.array(resultSchema),
  meta: metaSchema.optional(),
  model: z.string().optional(),
  usage: z.looseObject({ total_tokens: z.number().optional() }).optional(),
});

/** TEI: a bare array `[{index, score}]`. */
const teiAnswer = z.array(z.looseObject({ index: z.number().int().nonnegative(), score: z.number() }));

const answerSchema = z.union([cohereAnswer, teiAnswer]);

function describeZodError(e: z.ZodError): string {
  // A union failure lists both alternatives; name the one the answer was closest to.
  const issue = e.issues[0];
  if (issue?.code === "invalid_union") {
    const branches = (issue as unknown as { errors: z.core.$ZodIssue[][] }).errors;
    const best = branches.reduce((a, b) => (b.length < a.length ? b : a));
    return best.map((i) => `${i.path.length ? i.path.join(".") : "answer"}: ${i.message}`).join("; ");
  }
  return e.issues.map((i) => `${i.path.length ? i.path.join(".") : "answer"}: ${i.message}`).join("; ");
}

/**
 * A RerankResponse from any supported answer shape. Foreign services report no logit (it is set
 * to the relevance score) and little meta (filled with what is known: pairs, wall time, tokens
 * when the service counts them).
 */
export function normalizeRerankAnswer(
  raw: unknown,
  ctx: { source: string; pairs: number; wallMs: number; model?: string; provider: string; tokens?: number },
): RerankResponse {
  const parsed = answerSchema.safeParse(raw);
  if (!parsed.success) {
    throw new RerankerUnavailableError(`${ctx.source} returned a malformed answer: ${describeZodError(parsed.error)}`);
  }
  const answer = parsed.data;
  let results: RerankResult[];
  let meta: z.infer<typeof metaSchema> | undefined;
  let tokens = ctx.tokens;
  let model = ctx.model;
  if (Array.isArray(answer)) {
    results = answer.map((r) => ({ index: r.index, relevance_score: r.score, logit: r.score }));
  } else {
    results = answer.results.map((r) => ({
      index: r.index,
      relevance_score: r.relevance_score,
      logit: r.logit ?? r.relevance_score,
      ...(r.id !== undefined ? { id: r.id } : {}),
    }));
    meta = answer.meta;
    tokens ??= answer.usage?.total_tokens;
    model = answer.model ?? model;
  }
  const timings = meta?.timings;
  return {
    results,
    meta: {
      model: meta?.model ?? model ?? "unknown",
      provider: meta?.provider ?? ctx.provider,
      pairs: meta?.pairs ?? ctx.pairs,
      tokens: meta?.tokens ?? tokens ?? 0,
      truncated: meta?.truncated ?? 0,
      timings: {
        tokenize_ms: timings?.tokenize_ms ?? 0,
        inference_ms: timings?.inference_ms ?? 0,
        total_ms: timings?.total_ms ?? ctx.wallMs,
      },
      ...(meta?.cache ? { cache: { hits: meta.cache.hits, misses: meta.cache.misses } } : {}),
      ...(meta?.fixture !== undefined ? { fixture: meta.fixture } : {}),
    },
  };
}

const textsOf = (req: RerankRequest) => req.documents.map((d) => (typeof d === "string" ? d : d.text));

/** Remembers model/provider/fixture from answers so describe() (and /health) can show them. */
function learnedDescription(base: RerankerDescription) {
  const d: RerankerDescription = { ...base };
  return {
    describe: (): RerankerDescription => ({ ...d }),
    learn(resp: RerankResponse) {
      d.model = resp.meta.model;
      d.provider = resp.meta.provider;
      if (resp.meta.fixture !== undefined) d.fixture = resp.meta.fixture;
    },
  };
}

// ---------- in-process ----------

export type RerankFunction = (req: RerankRequest, opts?: RerankCallOptions) => Promise<RerankResponse>;

/** Wraps a rerank function running in this process (the local cross-encoder, a test double). */
export function createInProcessReranker(
  fn: RerankFunction,
  description: Partial<RerankerDescription> = {},
): RerankerPort {
  const desc = learnedDescription({ ...description, kind: "in-process" });
  return {
    describe: desc.describe,
    async rerank(req, opts) {
      const resp = await fn(req, opts);
      desc.learn(resp);
      return resp;
    },
  };
}

// ---------- none ----------

export const noneReranker: RerankerPort = {
  describe: () => ({ kind: "none" }),
  rerank: async () => {
    throw new RerankerUnavailableError("reranking is disabled (RERANKER=none)");
  },
};

// ---------- lambda ----------

export interface LambdaRerankerOptions {
  functionName: string;
  region?: string;
  /** Injected client; by default a LambdaClient for `region` is created on first use. */
  client?: LambdaInvoker;
  /** Time limit when a call gives none. */
  timeoutMs?: number;
}

export function createLambdaReranker(opts: LambdaRerankerOptions): RerankerPort {
  const source = `reranker function ${opts.functionName}`;
  const desc = learnedDescription({ kind: "lambda", url: `lambda:${opts.functionName}` });
  let client: LambdaInvoker | undefined = opts.client;
  return {
    describe: desc.describe,
    async rerank(req, callOpts = {}) {
      const sdk = await loadLambdaSdk();
      client ??= new sdk.LambdaClient({ region: opts.region }) as unknown as LambdaInvoker;
      const timeoutMs = callOpts.timeoutMs ?? opts.timeoutMs;
      const { signal, timedOut, done } = deadline(timeoutMs, callOpts.signal);
      const started = performance.now();
      let out: Awaited<ReturnType<LambdaInvoker["send"]>>;
      try {
        const command = new sdk.InvokeCommand({
          FunctionName: opts.functionName,
          InvocationType: "RequestResponse",
          Payload: new TextEncoder().encode(JSON.stringify(req)),
        });
        out = await client.send(command, { abortSignal: signal });
      } catch (e) {
        if (timedOut()) throw new RerankerUnavailableError(`${source} timed out after ${timeoutMs} ms`, e);
        if (callOpts.signal?.aborted) throw callOpts.signal.reason ?? e;
        throw new RerankerUnavailableError(`${source} could not be invoked: ${(e as Error).message}`, e);
      } finally {
        done();
      }
      const text = out.Payload ? new TextDecoder().decode(out.Payload) : "";
      let payload: unknown;
      try {
        payload = JSON.parse(text);
      } catch {
        throw new RerankerUnavailableError(
          `${source} returned a malformed answer: not JSON (${JSON.stringify(text.slice(0, 80))})`,
        );
      }
      if (out.FunctionError) {
        throw new RerankerUnavailableError(`${source} failed: ${lambdaErrorText(payload) ?? out.FunctionError}`);
      }
      const error = lambdaErrorText(payload);
      if (error) throw new RerankerUnavailableError(`${source} refused the call: ${error}`);
      const resp = normalizeRerankAnswer(payload, {
        source,
        pairs: req.documents.length,
        wallMs: performance.now() - started,
        provider: "lambda",
      });
      desc.learn(resp);
      return resp;
    },
  };
}

// ---------- http ----------

export interface HttpRerankerOptions {
  /** Base URL (`/rerank` is appended) or a full endpoint URL ending in `/rerank` (e.g. Cohere's `/v2/rerank`). */
  url: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /**
   * Request body shape: "cohere" = `{query, documents}` (our service, Cohere v2, Infinity, Jina);
   * "tei" = `{query, texts, truncate: true}` (text-embeddings-inference). Answers of either shape
   * are accepted whatever this says.
   */
  api?: "cohere" | "tei";
  /** Model name sent with the request (Cohere requires one). */
  model?: string;
  /** Time limit when a call gives none. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export function rerankEndpoint(url: string): string {
  const trimmed = url.replace(/\/+$/, "");
  return /\/rerank$/.test(trimmed) ? trimmed : `${trimmed}/rerank`;
}

function errorSnippet(text: string): string {
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    const msg = lambdaErrorText(j) ?? (typeof j.message === "string" ? j.message : null);
    if (msg) return msg.slice(0, 200);
  } catch {}
  return text.trim().slice(0, 200) || "(empty body)";
}

export function createHttpReranker(opts: HttpRerankerOptions): RerankerPort {
  const endpoint = rerankEndpoint(opts.url);
  const source = `reranker at ${endpoint}`;
  const doFetch = opts.fetch ?? fetch;
  const api = opts.api ?? "cohere";
  const desc = learnedDescription({ kind: "http", url: endpoint, ...(opts.model ? { model: opts.model } : {}) });
  return {
    describe: desc.describe,
    async rerank(req, callOpts = {}) {
      const texts = textsOf(req);
      const body =
        api === "tei"
          ? { query: req.query, texts, truncate: true, raw_scores: req.raw_scores ?? false }
          : {
              ...(opts.model ? { model: opts.model } : {}),
              query: req.query,
              documents: texts,
              ...(req.top_n !== undefined ? { top_n: req.top_n } : {}),
              ...(req.max_tokens_per_doc !== undefined ? { max_tokens_per_doc: req.max_tokens_per_doc } : {}),
            };
      const timeoutMs = callOpts.timeoutMs ?? opts.timeoutMs;
      const { signal, timedOut, done } = deadline(timeoutMs, callOpts.signal);
      const started = performance.now();
      let res: Response;
      let text: string;
      try {
        res = await doFetch(endpoint, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json",
            ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          },
          body: JSON.stringify(body),
          signal,
        });
        text = await res.text();
      } catch (e) {
        if (timedOut()) throw new RerankerUnavailableError(`${source} timed out after ${timeoutMs} ms`, e);
        if (callOpts.signal?.aborted) throw callOpts.signal.reason ?? e;
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        throw new RerankerUnavailableError(
          `${source} is unreachable: ${cause?.code ?? cause?.message ?? (e as Error).message}`,
          e,
        );
      } finally {
        done();
      }
      if (!res.ok) throw new RerankerUnavailableError(`${source} answered HTTP ${res.status}: ${errorSnippet(text)}`);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new RerankerUnavailableError(
          `${source} returned a malformed answer: not JSON (${JSON.stringify(text.slice(0, 80))})`,
        );
      }
      // TEI counts tokens in a header; Infinity in `usage`; ours in `meta`.
      const headerTokens = Number(res.headers.get("x-compute-tokens"));
      const resp = normalizeRerankAnswer(json, {
        source,
        pairs: texts.length,
        wallMs: performance.now() - started,
        model: opts.model,
        provider: "http",
        tokens: Number.isFinite(headerTokens) && headerTokens > 0 ? headerTokens : undefined,
      });
      desc.learn(resp);
      return resp;
    },
  };
}

// ---------- by configuration ----------

export interface RerankerFromConfigOptions {
  /** Builds the in-process reranker (createLocalReranker); kept out of this file so ORT loads only when chosen. */
  local?: () => RerankerPort;
  lambdaClient?: LambdaInvoker;
  fetch?: typeof fetch;
}

/** The reranker the RERANKER setting names; RERANKER=none gives noneReranker. */
export function rerankerFromConfig(
  cfg: Pick<
    Config,
    | "reranker"
    | "rerankerUrl"
    | "rerankerToken"
    | "rerankerApi"
    | "rerankerModel"
    | "rerankerFunction"
    | "rerankerTimeoutMs"
    | "awsRegion"
  >,
  opts: RerankerFromConfigOptions = {},
): RerankerPort {
  switch (cfg.reranker) {
    case "none":
      return noneReranker;
    case "in-process":
    case "fixture":
      if (!opts.local) throw new ConfigError("RERANKER", "in-process reranking needs a local reranker factory");
      return opts.local();
    case "lambda":
      if (!cfg.rerankerFunction) throw new ConfigError("RERANKER_FUNCTION", "required when RERANKER=lambda");
      return createLambdaReranker({
        functionName: cfg.rerankerFunction,
        region: cfg.awsRegion,
        client: opts.lambdaClient,
        timeoutMs: cfg.rerankerTimeoutMs,
      });
    case "http":
      if (!cfg.rerankerUrl) throw new ConfigError("RERANKER_URL", "required when RERANKER=http");
      return createHttpReranker({
        url: cfg.rerankerUrl,
        token: cfg.rerankerToken,
        api: cfg.rerankerApi,
        model: cfg.rerankerModel,
        timeoutMs: cfg.rerankerTimeoutMs,
        fetch: opts.fetch,
      });
  }
}
