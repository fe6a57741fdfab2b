// One inference at a time, first come first served, with a bounded queue. The ONNX session already
// uses every core, so concurrent runs only contend; and work whose caller has gone (a search that
// timed out and fell back to first-stage results) is dropped before it starts instead of delaying
// everyone queued behind it.
import { DomainError } from "./errors.ts";

export class OverloadedError extends DomainError {
  constructor(queued: number) {
    super("overloaded", 503, `reranker busy: ${queued} requests already queued; retry shortly`, { retryAfterS: 1 });
  }
}

export interface WorkGate {
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Requests waiting (not counting the one running). */
  readonly queued: number;
}

export function createWorkGate(opts: { maxQueue: number }): WorkGate {
  let busy = false;
  const waiting: Array<() => void> = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else busy = false;
  };
  return {
    get queued() {
      return waiting.length;
    },
    async run(fn, signal) {
      signal?.throwIfAborted();
      if (busy) {
        if (waiting.length >= opts.maxQueue) throw new OverloadedError(waiting.length);
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        busy = true;
      }
      try {
        signal?.throwIfAborted();
        return await fn();
      } finally {
        release();
      }
    },
  };
}
