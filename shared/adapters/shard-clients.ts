// IndexShardClient adapters: where a fan-out search sends one shard's query (SEARCH_SHARDS).
// - lambda: direct invocation of shard function i (SHARD_FUNCTIONS, @aws-sdk/client-lambda);
// - http: POST <url i>/shard/search on a shard worker (functions/shard/server.ts, SHARD_URLS).
// A shard that cannot be reached, fails or times out throws ShardUnavailableError; a shard that
// refuses the request (wrong shard, unknown version, bad vector) throws the DomainError it sent, so
// the fan-out index can tell a broken deployment from a slow one.
import type { Config } from "../core/config.ts";
import { ConfigError, DomainError, ShardUnavailableError } from "../core/errors.ts";
import { shardRequestBody } from "../core/index-shard-service.ts";
import type { IndexShardClient, ShardSearchRequest, ShardSearchResponse } from "../core/ports.ts";
import { deadline, type LambdaInvoker, lambdaErrorText, loadLambdaSdk } from "./remote-call.ts";

/** Target i of a comma-separated list; one entry serves every shard. */
export function shardTargets(list: string): string[] {
  const targets = list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (targets.length === 0) throw new ConfigError("SHARD_FUNCTIONS/SHARD_URLS", "lists no targets");
  return targets;
}

function targetOf(targets: readonly string[], shard: number): string {
  if (targets.length === 1) return targets[0];
  const t = targets[shard];
  // More shards than targets: a deployment that does not match the snapshot; the shard is missing.
  if (!t) throw new ShardUnavailableError(`no shard target for shard ${shard} (${targets.length} configured)`);
  return t;
}

/** The answer (or refusal) a shard sent, as a response or a thrown error. */
function readAnswer(payload: unknown, source: string): ShardSearchResponse {
  if (typeof payload !== "object" || payload === null)
    throw new ShardUnavailableError(`${source} returned a malformed answer`);
  const p = payload as Record<string, unknown>;
  const err = p.error as { code?: unknown; message?: unknown; status?: unknown } | undefined;
  if (err && typeof err === "object") {
    const code = typeof err.code === "string" ? err.code : "internal";
    const message = `${source}: ${typeof err.message === "string" ? err.message : code}`;
    // Refusals of the request itself are the caller's (or the deployment's) fault, not the shard's health.
    if (code === "invalid_request" || code === "snapshot_invalid") {
      throw new DomainError(code, typeof err.status === "number" ? err.status : 400, message);
    }
    throw new ShardUnavailableError(message);
  }
  return p as unknown as ShardSearchResponse;
}

/** The error a failed call throws: a timeout, the caller's own abort, or the shard unreachable. */
function callFailure(
  source: string,
  e: unknown,
  call: { timedOut: () => boolean; timeoutMs: number; outer?: AbortSignal; failed: string },
): unknown {
  if (call.timedOut())
    return new ShardUnavailableError(`${source} timed out after ${call.timeoutMs} ms`, { cause: e, timeout: true });
  if (call.outer?.aborted) return call.outer.reason ?? e;
  return new ShardUnavailableError(`${source} ${call.failed}: ${(e as Error).message}`, { cause: e });
}

type ShardCall = IndexShardClient["search"];

/** A client from its one call: warm() is a k = 0 search (the shard loads the version and answers nothing). */
function shardClient(kind: "lambda" | "http", targets: readonly string[], call: ShardCall): IndexShardClient {
  return {
    describe: () => ({ kind, targets: [...targets] }),
    search: call,
    warm: async (req, callOpts) => {
      await call({ version: req.version, shard: req.shard, vector: new Float32Array(1), k: 0 }, callOpts);
    },
  };
}

export interface LambdaShardClientOptions {
  functions: string[];
  region?: string;
  client?: LambdaInvoker;
}

export function createLambdaShardClient(opts: LambdaShardClientOptions): IndexShardClient {
  let client = opts.client;
  const call = async (
    req: ShardSearchRequest,
    callOpts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<ShardSearchResponse> => {
    const fn = targetOf(opts.functions, req.shard);
    const source = `shard function ${fn}`;
    const sdk = await loadLambdaSdk();
    client ??= new sdk.LambdaClient({ region: opts.region }) as unknown as LambdaInvoker;
    const { signal, timedOut, done } = deadline(callOpts.timeoutMs, callOpts.signal);
    let out: Awaited<ReturnType<LambdaInvoker["send"]>>;
    try {
      const command = new sdk.InvokeCommand({
        FunctionName: fn,
        InvocationType: "RequestResponse",
        Payload: new TextEncoder().encode(JSON.stringify(shardRequestBody(req))),
      });
      out = await client.send(command, { abortSignal: signal });
    } catch (e) {
      throw callFailure(source, e, {
        timedOut,
        timeoutMs: callOpts.timeoutMs,
        outer: callOpts.signal,
        failed: "could not be invoked",
      });
    } finally {
      done();
    }
    let payload: unknown;
    try {
      payload = JSON.parse(out.Payload ? new TextDecoder().decode(out.Payload) : "");
    } catch {
      throw new ShardUnavailableError(`${source} returned a malformed answer: not JSON`);
    }
    if (out.FunctionError)
      throw new ShardUnavailableError(`${source} failed: ${lambdaErrorText(payload) ?? out.FunctionError}`);
    return readAnswer(payload, source);
  };
  return shardClient("lambda", opts.functions, call);
}

export interface HttpShardClientOptions {
  urls: string[];
  fetch?: typeof fetch;
}

/** Where a shard worker answers: `<base>/shard/search`. */
export function shardEndpoint(url: string): string {
  return `${url.replace(/\/+$/, "")}/shard/search`;
}

export function createHttpShardClient(opts: HttpShardClientOptions): IndexShardClient {
  const doFetch = opts.fetch ?? fetch;
  const call = async (
    req: ShardSearchRequest,
    callOpts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<ShardSearchResponse> => {
    const endpoint = shardEndpoint(targetOf(opts.urls, req.shard));
    const source = `shard worker at ${endpoint}`;
    const { signal, timedOut, done } = deadline(callOpts.timeoutMs, callOpts.signal);
    try {
      let res: Response;
      try {
        res = await doFetch(endpoint, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(shardRequestBody(req)),
          signal,
        });
      } catch (e) {
        throw callFailure(source, e, {
          timedOut,
          timeoutMs: callOpts.timeoutMs,
          outer: callOpts.signal,
          failed: "could not be reached",
        });
      }
      let payload: unknown;
      try {
        payload = await res.json();
      } catch (e) {
        if (timedOut())
          throw new ShardUnavailableError(`${source} timed out after ${callOpts.timeoutMs} ms`, {
            cause: e,
            timeout: true,
          });
        throw new ShardUnavailableError(`${source} answered ${res.status} without a JSON body`);
      }
      if (!res.ok && !(typeof payload === "object" && payload && "error" in payload))
        throw new ShardUnavailableError(`${source} answered ${res.status}`);
      return readAnswer(payload, source);
    } finally {
      done();
    }
  };
  return shardClient("http", opts.urls, call);
}

/** The shard client SEARCH_SHARDS asks for; null for `local` (every shard in this process). */
export function shardClientFromConfig(
  cfg: Pick<Config, "searchShards" | "shardFunctions" | "shardUrls" | "awsRegion">,
  opts: { lambdaClient?: LambdaInvoker; fetch?: typeof fetch } = {},
): IndexShardClient | null {
  if (cfg.searchShards === "lambda") {
    if (!cfg.shardFunctions) throw new ConfigError("SHARD_FUNCTIONS", "required when SEARCH_SHARDS=lambda");
    return createLambdaShardClient({
      functions: shardTargets(cfg.shardFunctions),
      region: cfg.awsRegion,
      client: opts.lambdaClient,
    });
  }
  if (cfg.searchShards === "http") {
    if (!cfg.shardUrls) throw new ConfigError("SHARD_URLS", "required when SEARCH_SHARDS=http");
    return createHttpShardClient({ urls: shardTargets(cfg.shardUrls), fetch: opts.fetch });
  }
  return null;
}
