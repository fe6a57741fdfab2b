import { describe, expect, it } from "vitest";
import { createWorkGate, OverloadedError } from "../../shared/core/work-gate.ts";

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

describe("createWorkGate", () => {
  it("runs one job at a time, in arrival order", async () => {
    const gate = createWorkGate({ maxQueue: 10 });
    const order: string[] = [];
    const first = deferred();
    const a = gate.run(async () => {
      order.push("a start");
      await first.promise;
      order.push("a end");
    });
    const b = gate.run(async () => order.push("b"));
    const c = gate.run(async () => order.push("c"));
    await Promise.resolve();
    expect(order).toEqual(["a start"]);
    expect(gate.queued).toBe(2);
    first.resolve();
    await Promise.all([a, b, c]);
    expect(order).toEqual(["a start", "a end", "b", "c"]);
    expect(gate.queued).toBe(0);
  });

  it("refuses work past the queue bound with a 503 overloaded error", async () => {
    const gate = createWorkGate({ maxQueue: 1 });
    const hold = deferred();
    const a = gate.run(() => hold.promise);
    const b = gate.run(async () => "b");
    const err = await gate.run(async () => "c").catch((e) => e);
    expect(err).toBeInstanceOf(OverloadedError);
    expect(err.status).toBe(503);
    expect(err.code).toBe("overloaded");
    expect(err.retryAfterS).toBe(1);
    hold.resolve();
    await a;
    expect(await b).toBe("b");
  });

  it("drops queued work whose caller gave up before it starts, and keeps the queue moving", async () => {
    const gate = createWorkGate({ maxQueue: 10 });
    const hold = deferred();
    const ran: string[] = [];
    const a = gate.run(() => hold.promise);
    const ac = new AbortController();
    const b = gate.run(async () => ran.push("b"), ac.signal).catch((e) => e);
    const c = gate.run(async () => ran.push("c"));
    ac.abort(new Error("client went away"));
    hold.resolve();
    await a;
    expect(((await b) as Error).message).toBe("client went away");
    await c;
    expect(ran).toEqual(["c"]);
  });
});

describe("work gate with several slots (RERANKER_WORKERS)", () => {
  it("runs up to `concurrency` calls at once, each in its own slot, and queues the rest", async () => {
    const gate = createWorkGate({ maxQueue: 10, concurrency: 2 });
    let running = 0;
    let most = 0;
    const slotsSeen: number[][] = [];
    const job = () =>
      gate.run(async (slot) => {
        running++;
        most = Math.max(most, running);
        slotsSeen.push([slot, running]);
        await new Promise((r) => setTimeout(r, 10));
        running--;
        return slot;
      });
    const slots = await Promise.all([job(), job(), job(), job(), job()]);
    expect(most).toBe(2);
    expect(new Set(slots)).toEqual(new Set([0, 1]));
    // Two calls running at the same moment never share a slot.
    expect(slotsSeen.filter(([, r]) => r === 2).length).toBeGreaterThan(0);
  });
});
