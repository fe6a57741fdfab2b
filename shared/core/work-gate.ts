// A fixed number of inference slots (by default one: the ONNX session already uses every core, so
// concurrent runs on one session only contend), first come first served, with a bounded queue; and work whose caller has gone (a search that
// timed out and fell back to first-stage results) is dropped before it starts instead of delaying
// everyone queued behind it.
import { DomainError } from "./errors.ts";

export class OverloadedError extends DomainError {
  constructor(queued: number) {
    super("overloaded", 503, `reranker busy: ${queued} requests already queued; retry shortly`, { retryAfterS: 1 });
  }
}

export interface WorkGate {
  /** Runs fn in a free slot (0 … concurrency − 1), queueing when every slot is busy. */
  run<T>(fn: (slot: number) => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Requests waiting (not counting the ones running). */
  readonly queued: number;
}

/**
 * `concurrency` slots (default 1: one inference at a time); with RERANKER_WORKERS > 1 each slot
 * is its own ONNX session with a share of the cores, so that many requests run at once.
 */
export function createWorkGate(opts: { maxQueue: number; concurrency?: number }): WorkGate {
  const slots = Math.max(1, Math.floor(opts.concurrency ?? 1));
  const free = Array.from({ length: slots }, (_, i) => slots - 1 - i);
  const waiting: Array<(slot: number) => void> = [];
  const release = (slot: number) => {
    const next = waiting.shift();
    if (next) next(slot);
    else free.push(slot);
  };
  return {
    get queued() {
      return waiting.length;
    },
    async run(fn, signal) {
      signal?.throwIfAborted();
      let slot: number;
      if (free.length > 0) slot = free.pop()!;
      else {
        if (waiting.length >= opts.maxQueue) throw new OverloadedError(waiting.length);
        slot = await new Promise<number>((resolve) => waiting.push(resolve));
      }
      try {
        signal?.throwIfAborted();
        return await fn(slot);
      } finally {
        release(slot);
      }
    },
  };
}
