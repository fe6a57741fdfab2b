// A call with a hard time limit the core enforces itself (an adapter may ignore the limit it is
// given): the adapter is asked to stop at `ms` through the signal, the core stops waiting shortly
// after. A plain timer cleared on completion rather than AbortSignal.timeout(), whose timers stay
// registered until they fire (seconds after the answer) on a busy instance. Used by the search
// stages (embedder, reranker) and the fan-out over index shards.

export class TimeLimitError extends Error {
  constructor(readonly ms: number) {
    super(`timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/** Slack given to an adapter that honours the limit itself, so its own (more specific) error wins. */
export const TIMEOUT_GRACE_MS = 25;

export async function withTimeLimit<T>(
  ms: number,
  fn: (signal: AbortSignal) => Promise<T>,
  outer?: AbortSignal,
): Promise<T> {
  const ac = new AbortController();
  const onOuter = () => ac.abort(outer?.reason);
  if (outer?.aborted) onOuter();
  else outer?.addEventListener("abort", onOuter, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new TimeLimitError(ms);
      ac.abort(e);
      reject(e);
    }, ms + TIMEOUT_GRACE_MS);
  });
  try {
    return await Promise.race([fn(ac.signal), expired]);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onOuter);
  }
}
