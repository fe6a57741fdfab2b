// Embeddings from the OpenAI API (or any server speaking POST /v1/embeddings), through the official
// `openai` client. The client's own retries are off (maxRetries: 0) so the policy below (backoff with
// jitter, Retry-After, time budget, give-up error) is ours, visible and testable.
import OpenAI from "openai";
import { ConfigError, EmbedderUnavailableError } from "../core/errors.ts";
import { l2normalize } from "../core/embedding.ts";
import type { EmbedOptions, Embedder, EmbedderUsage } from "../core/ports.ts";
import type { EmbedderIdentity } from "../core/types.ts";

/** Native vector sizes of OpenAI's embedding models. */
export const OPENAI_MODEL_DIMENSIONS: Readonly<Record<string, number>> = {
  "text-embedding-3-small": 1536,
  "text-embedding-3-large": 3072,
  "text-embedding-ada-002": 1536,
};

/** Per-request limits of the embeddings endpoint: 2048 inputs and 300K tokens summed over inputs. */
export const OPENAI_MAX_INPUTS = 2048;
const DEFAULT_BATCH_TOKENS = 250_000; // under the 300K limit, since tokens are estimated

export interface OpenAIEmbedderOptions {
  apiKey: string;
  baseURL?: string;
  model?: string;
  /** Shortened vectors (text-embedding-3-*), or the declared size of another server's model. */
  dimensions?: number;
  /** Retries after the first attempt, for 408/409/429/5xx answers and connection errors. */
  maxRetries?: number;
  /** Time budget of embedQuery, retries and waits included. */
  timeoutMs?: number;
  /** Time budget of each request batch of embedDocuments, retries and waits included. */
  batchTimeoutMs?: number;
  /** Most inputs per request (≤ 2048). */
  batchSize?: number;
  /** Most estimated tokens per request (UTF-8 bytes / 3, which overestimates English text). */
  batchTokens?: number;
  /** Requests in flight at once while embedding documents. */
  concurrency?: number;
  /** First backoff step; doubles per retry up to maxDelayMs, with jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Injected in tests to observe and skip waits. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Rough token count for batching: UTF-8 bytes / 3 (English averages ~4.5 bytes per token). */
export function estimateTokens(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return Math.ceil(bytes / 3) + 1;
}

/** Consecutive [start, end) ranges of texts within both limits; an oversized text gets a batch of its own. */
export function planBatches(texts: string[], maxInputs: number, maxTokens: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = 0;
  let tokens = 0;
  for (let i = 0; i < texts.length; i++) {
    const t = estimateTokens(texts[i]);
    if (i > start && (i - start >= maxInputs || tokens + t > maxTokens)) {
      out.push([start, i]);
      start = i;
      tokens = 0;
    }
    tokens += t;
  }
  if (start < texts.length) out.push([start, texts.length]);
  return out;
}

/** Delay the server asked for (retry-after-ms, then retry-after in seconds or as an HTTP date), in ms. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = Number.parseFloat(headers.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const raw = headers.get("retry-after");
  if (!raw) return undefined;
  const s = Number.parseFloat(raw);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

function isRetryable(e: unknown): boolean {
  if (!(e instanceof OpenAI.APIError) || e instanceof OpenAI.APIUserAbortError) return false;
  const hint = e.headers?.get("x-should-retry");
  if (hint === "true") return true;
  if (hint === "false") return false;
  if (e instanceof OpenAI.APIConnectionError) return true; // includes timeouts
  const s = e.status ?? 0;
  return s === 408 || s === 409 || s === 429 || s >= 500;
}

export function createOpenAIEmbedder(opts: OpenAIEmbedderOptions): Embedder {
  const model = opts.model ?? "text-embedding-3-small";
  const native = OPENAI_MODEL_DIMENSIONS[model];
  const shortenable = model.startsWith("text-embedding-3");
  if (!opts.apiKey) throw new ConfigError("OPENAI_API_KEY", "is required for the OpenAI embedder");
  if (opts.dimensions !== undefined && (!Number.isInteger(opts.dimensions) || opts.dimensions < 1)) {
    throw new ConfigError("OPENAI_EMBEDDING_DIMENSIONS", `expected a positive integer, got ${opts.dimensions}`);
  }
  if (opts.dimensions === undefined && native === undefined) {
    throw new ConfigError(
      "OPENAI_EMBEDDING_DIMENSIONS",
      `model "${model}" is not an OpenAI model we know; set its vector size`,
    );
  }
  if (opts.dimensions !== undefined && native !== undefined && opts.dimensions > native) {
    throw new ConfigError(
      "OPENAI_EMBEDDING_DIMENSIONS",
      `${model} gives at most ${native} dimensions, got ${opts.dimensions}`,
    );
  }
  if (opts.dimensions !== undefined && native !== undefined && !shortenable && opts.dimensions !== native) {
    throw new ConfigError("OPENAI_EMBEDDING_DIMENSIONS", `${model} cannot shorten its ${native}-dimension vectors`);
  }
  const dimensions = opts.dimensions ?? native;
  // Only text-embedding-3-* (and servers imitating them) accept `dimensions`; for other models it is just declared.
  const sendDimensions = opts.dimensions !== undefined && shortenable;
  const identity: EmbedderIdentity = { kind: "openai", model, dimensions, normalized: true };

  const maxRetries = opts.maxRetries ?? 5;
  const queryBudget = opts.timeoutMs ?? 10_000;
  const batchBudget = opts.batchTimeoutMs ?? 120_000;
  const batchSize = Math.min(OPENAI_MAX_INPUTS, Math.max(1, opts.batchSize ?? OPENAI_MAX_INPUTS));
  const batchTokens = Math.max(1, opts.batchTokens ?? DEFAULT_BATCH_TOKENS);
  const concurrency = Math.max(1, opts.concurrency ?? 2);
  const baseDelay = opts.baseDelayMs ?? 500;
  const maxDelay = opts.maxDelayMs ?? 8_000;
  const sleep = opts.sleep ?? abortableSleep;
  const random = opts.random ?? Math.random;
  const apiKey = opts.apiKey;

  const client = new OpenAI({ apiKey, baseURL: opts.baseURL, maxRetries: 0, timeout: batchBudget });
  const usage: EmbedderUsage = { calls: 0, texts: 0, tokens: 0 };

  // Servers may echo the key (e.g. "Incorrect API key provided: sk-..."); it must not reach logs or clients.
  const redact = (s: string) =>
    s
      .split(apiKey)
      .join("[redacted]")
      .replace(/\bsk-[A-Za-z0-9_-]{6,}/g, "sk-[redacted]");
  const describe = (e: unknown) => {
    if (e instanceof OpenAI.APIError) return redact(`${e.status ? `HTTP ${e.status}: ` : ""}${e.message}`);
    return redact(e instanceof Error ? e.message : String(e));
  };
  /** A cause safe to log: name, status and the redacted message, without the client's request details. */
  const safeCause = (e: unknown): Error => {
    const c = new Error(describe(e));
    c.name = e instanceof Error ? e.name : "Error";
    if (e instanceof OpenAI.APIError && e.status !== undefined) Object.assign(c, { status: e.status });
    return c;
  };

  /** One request with retries, inside `budgetMs`; vectors in input order. */
  async function request(input: string[], budgetMs: number, signal?: AbortSignal): Promise<Float32Array[]> {
    const deadline = Date.now() + budgetMs;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        throw new EmbedderUnavailableError(`OpenAI embeddings timed out after ${budgetMs} ms (${attempt} attempts)`);
      let failure: unknown;
      try {
        usage.calls++;
        const res = await client.embeddings.create(
          { model, input, encoding_format: "base64", ...(sendDimensions ? { dimensions } : {}) },
          { signal, timeout: remaining, maxRetries: 0 },
        );
        usage.tokens += res.usage?.total_tokens ?? res.usage?.prompt_tokens ?? 0;
        return decode(res, input.length);
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (e instanceof EmbedderUnavailableError) throw e;
        failure = e;
      }
      const what = describe(failure);
      if (Date.now() >= deadline) {
        throw new EmbedderUnavailableError(
          `OpenAI embeddings timed out after ${budgetMs} ms (${attempt + 1} attempts): ${what}`,
          safeCause(failure),
        );
      }
      if (!isRetryable(failure))
        throw new EmbedderUnavailableError(`OpenAI embeddings request failed: ${what}`, safeCause(failure));
      const asked = failure instanceof OpenAI.APIError ? retryAfterMs(failure.headers) : undefined;
      if (attempt >= maxRetries) {
        throw new EmbedderUnavailableError(
          `OpenAI embeddings unavailable after ${attempt + 1} attempts: ${what}`,
          safeCause(failure),
          asked !== undefined ? Math.max(1, Math.ceil(asked / 1000)) : undefined,
        );
      }
      const backoff = Math.min(maxDelay, baseDelay * 2 ** attempt);
      const wait = asked ?? backoff / 2 + (random() * backoff) / 2;
      if (Date.now() + wait >= deadline) {
        throw new EmbedderUnavailableError(
          `OpenAI embeddings unavailable: ${what}; the next try (in ${Math.round(wait)} ms) would pass the ${budgetMs} ms budget`,
          safeCause(failure),
          Math.max(1, Math.ceil(wait / 1000)),
        );
      }
      await sleep(wait, signal);
    }
  }

  function decode(res: OpenAI.Embeddings.CreateEmbeddingResponse, expected: number): Float32Array[] {
    const out = new Array<Float32Array>(expected);
    for (const item of res.data ?? []) {
      const raw = item.embedding as unknown;
      let v: Float32Array;
      if (typeof raw === "string") {
        const buf = Buffer.from(raw, "base64");
        // Copy into an aligned buffer: Buffer.from may return a slice of a shared pool at any offset.
        v = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      } else if (Array.isArray(raw)) v = Float32Array.from(raw as number[]);
      else
        throw new EmbedderUnavailableError(
          "OpenAI embeddings response has an embedding that is neither base64 nor an array",
        );
      if (v.length !== dimensions) {
        throw new EmbedderUnavailableError(
          `OpenAI embeddings response has ${v.length}-dimension vectors, expected ${dimensions} for ${model}`,
        );
      }
      if (!Number.isInteger(item.index) || item.index < 0 || item.index >= expected) {
        throw new EmbedderUnavailableError(`OpenAI embeddings response has an out-of-range index ${item.index}`);
      }
      // Re-normalised: shortened or third-party vectors are not always unit length.
      out[item.index] = l2normalize(v);
    }
    for (let i = 0; i < expected; i++) {
      if (!out[i])
        throw new EmbedderUnavailableError(
          `OpenAI embeddings response lacks the vector of input ${i} (of ${expected})`,
        );
    }
    return out;
  }

  async function embedMany(texts: string[], budgetMs: number, o: EmbedOptions): Promise<Float32Array[]> {
    const out = new Array<Float32Array>(texts.length);
    // The API rejects empty inputs; an empty text gets a zero vector (it matches nothing).
    const todo: number[] = [];
    for (let i = 0; i < texts.length; i++) {
      if (texts[i].trim() === "") out[i] = new Float32Array(dimensions);
      else todo.push(i);
    }
    const inputs = todo.map((i) => texts[i]);
    const batches = planBatches(inputs, batchSize, batchTokens);
    let next = 0;
    let done = texts.length - todo.length;
    // The first failure stops the other workers and cancels their requests in flight.
    const stop = new AbortController();
    const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
    const worker = async () => {
      while (next < batches.length && !signal.aborted) {
        const [a, b] = batches[next++];
        try {
          const vecs = await request(inputs.slice(a, b), budgetMs, signal);
          for (let k = a; k < b; k++) out[todo[k]] = vecs[k - a];
        } catch (e) {
          stop.abort(e);
          throw e;
        }
        done += b - a;
        o.onProgress?.(done, texts.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, batches.length) }, worker));
    usage.texts += texts.length;
    return out;
  }

  return {
    identity,
    embedDocuments: (texts, o = {}) => embedMany(texts, batchBudget, o),
    embedQuery: async (text, o = {}) => (await embedMany([text], queryBudget, o))[0],
    usage: () => ({ ...usage }),
  };
}
