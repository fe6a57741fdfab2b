// What the clients of our other functions share (reranker-clients.ts, shard-clients.ts): a call's
// time limit, and Lambda direct invocation (the SDK loaded on first use, error payloads read).

/**
 * The caller's signal combined with a time limit; `timedOut()` tells which one fired. A cleared
 * timer rather than AbortSignal.timeout(), which stays registered until it fires; call `done()`.
 */
export function deadline(timeoutMs: number | undefined, outer: AbortSignal | undefined) {
  if (timeoutMs === undefined) return { signal: outer, timedOut: () => false, done: () => {} };
  const ac = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    ac.abort(new DOMException(`timed out after ${timeoutMs} ms`, "TimeoutError"));
  }, timeoutMs);
  const onOuter = () => ac.abort(outer?.reason);
  if (outer?.aborted) onOuter();
  else outer?.addEventListener("abort", onOuter, { once: true });
  return {
    signal: ac.signal,
    timedOut: () => expired,
    done: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onOuter);
    },
  };
}

/** The part of LambdaClient we use (tests pass their own). */
export interface LambdaInvoker {
  send(
    command: unknown,
    options?: { abortSignal?: AbortSignal },
  ): Promise<{ Payload?: Uint8Array; FunctionError?: string; StatusCode?: number }>;
}

export type LambdaSdk = typeof import("@aws-sdk/client-lambda");
let lambdaSdk: Promise<LambdaSdk> | undefined;
// Loaded on first use so http/in-process deployments never pay for the SDK at cold start.
export const loadLambdaSdk = () => {
  lambdaSdk ??= import("@aws-sdk/client-lambda").catch((e) => {
    lambdaSdk = undefined;
    throw e;
  });
  return lambdaSdk;
};

/** The error text of a Lambda payload: a thrown error (errorType/errorMessage) or our `{error}` value. */
export function lambdaErrorText(payload: unknown): string | null {
  if (typeof payload !== "object" || payload === null) return null;
  const p = payload as Record<string, unknown>;
  if (typeof p.errorMessage === "string")
    return `${typeof p.errorType === "string" ? `${p.errorType}: ` : ""}${p.errorMessage}`;
  const err = p.error;
  if (typeof err === "string") return err;
  if (typeof err === "object" && err !== null) {
    const e = err as Record<string, unknown>;
    return `${typeof e.code === "string" ? `${e.code}: ` : ""}${typeof e.message === "string" ? e.message : JSON.stringify(e)}`;
  }
  return null;
}
