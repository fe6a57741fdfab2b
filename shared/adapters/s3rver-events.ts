// The local stand-in for S3 → Lambda notifications: s3rver emits an "event" with S3 notification
// records on every put/copy/delete; this feeds them to the SAME reindex handler the Lambda runs.
//
// Like the deployed function (reserved concurrency 1, async invocations queued), invocations run one
// at a time; events arriving during a run are coalesced into one follow-up run (each run lists the
// whole corpus, so one run covers them all). A failed invocation is retried like Lambda's async
// retries (2 by default), each with a fresh simulated time limit.
import type { S3EventLike, S3EventRecordLike } from "../core/reindex.ts";
import type { LogFn } from "../core/snapshot-loader.ts";

/** s3rver's instance (or any emitter of S3 notification events). */
export interface S3EventEmitterLike {
  on(event: "event", listener: (e: S3EventLike) => void): unknown;
  off(event: "event", listener: (e: S3EventLike) => void): unknown;
}

/** The slice of a Lambda context the reindex handler reads, plus names for logs. */
export interface LocalInvocationContext {
  getRemainingTimeInMillis(): number;
  awsRequestId: string;
  functionName: string;
}

export interface AttachReindexOptions {
  /**
   * The Lambda handler (functions/reindex/handler.ts `handler`, or createReindexHandler(...)); it gets s3rver's
   * notification (the same record shape S3 sends) and a simulated context. Declared as a method so the deployed
   * handler, typed with aws-lambda's S3Event and Context, can be passed as it is (method parameters are bivariant).
   */
  handler?(event: S3EventLike, context: LocalInvocationContext): Promise<unknown>;
  /** Alternatively, any function taking the (coalesced) event. */
  run?: (event: S3EventLike) => Promise<unknown>;
  log?: LogFn;
  /** Only records whose key starts with this are queued (the handler filters again); default: all. */
  corpusPrefix?: string;
  /** Simulated function time limit per invocation (default 900,000 ms, Lambda's maximum). */
  timeoutMs?: number;
  /** Retries of a failed invocation (default 2, as Lambda's async invocations). */
  retries?: number;
  /** Wait before a retry (default 1000 ms). */
  retryDelayMs?: number;
}

export interface S3rverReindexBinding {
  /** Stops listening; a run in progress finishes. */
  detach(): void;
  /** Resolves when no run is in progress and none is queued (tests await this after an upload). */
  idle(): Promise<void>;
  /** Completed invocations (successful or not, retries counted once). */
  readonly runs: number;
  /** Invocations that failed after all retries. */
  readonly failures: number;
  readonly lastResult: unknown;
  readonly lastError: unknown;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function keyOf(r: S3EventRecordLike): string {
  const raw = r.s3?.object?.key ?? "";
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return raw;
  }
}

export function attachReindexToS3rver(server: S3EventEmitterLike, opts: AttachReindexOptions): S3rverReindexBinding {
  const { run } = opts;
  const handler = opts.handler;
  if (!handler === !run) throw new Error("attachReindexToS3rver needs exactly one of `handler` or `run`");
  const log: LogFn = opts.log ?? (() => {});
  const timeoutMs = opts.timeoutMs ?? 900_000;
  const retries = Math.max(0, opts.retries ?? 2);
  const retryDelayMs = opts.retryDelayMs ?? 1000;

  let pending: S3EventRecordLike[] = [];
  let draining: Promise<void> | null = null;
  let invocations = 0;
  const state = { runs: 0, failures: 0, lastResult: undefined as unknown, lastError: undefined as unknown };

  async function invoke(event: S3EventLike): Promise<void> {
    const id = `local-${++invocations}`;
    for (let attempt = 0; ; attempt++) {
      const started = Date.now();
      const context: LocalInvocationContext = {
        getRemainingTimeInMillis: () => timeoutMs - (Date.now() - started),
        awsRequestId: `${id}-${attempt}`,
        functionName: "reindex-local",
      };
      try {
        state.lastResult = handler ? await opts.handler!(event, context) : await run!(event);
        state.lastError = undefined;
        state.runs++;
        return;
      } catch (e) {
        state.lastError = e;
        if (attempt < retries) {
          log("warn", "local reindex invocation failed; retrying", {
            invocation: id,
            attempt: attempt + 1,
            error: (e as Error)?.message ?? String(e),
          });
          await sleep(retryDelayMs);
          continue;
        }
        state.runs++;
        state.failures++;
        log("error", "local reindex invocation failed", { invocation: id, error: (e as Error)?.message ?? String(e) });
        return;
      }
    }
  }

  async function drain(): Promise<void> {
    try {
      while (pending.length > 0) {
        const records = pending;
        pending = [];
        log("info", "local S3 event → reindex", { records: records.length });
        await invoke({ Records: records });
      }
    } finally {
      draining = null;
    }
  }

  const listener = (e: S3EventLike) => {
    const records = (e?.Records ?? []).filter(
      (r) => opts.corpusPrefix === undefined || keyOf(r).startsWith(opts.corpusPrefix),
    );
    if (records.length === 0) return;
    pending.push(...records);
    draining ??= drain();
  };
  server.on("event", listener);

  return {
    detach: () => {
      server.off("event", listener);
    },
    async idle() {
      while (draining) await draining;
    },
    get runs() {
      return state.runs;
    },
    get failures() {
      return state.failures;
    },
    get lastResult() {
      return state.lastResult;
    },
    get lastError() {
      return state.lastError;
    },
  };
}
