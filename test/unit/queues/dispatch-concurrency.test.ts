import { describe, expect, it } from "vitest";
import { consumer, type HandlerResult } from "../../../queues/dispatch";
import type { Services } from "../../../src/platform/services";

/** What a handler gets per message; these handlers only need it to exist (and dispatch logs retries through it). */
const services = () => ({ log: { info() {}, warn() {}, error() {} } }) as unknown as Services;

type M = { type: "work"; key: string; n: number };

/** A batch as the runtime hands it over, recording what each message was answered. */
function batchOf(bodies: M[]) {
  const outcome = new Map<string, string>();
  const messages = bodies.map((body, i) => ({
    id: `m${i}`,
    timestamp: new Date(),
    attempts: 1,
    body,
    ack: () => void outcome.set(`m${i}`, "ack"),
    retry: () => void outcome.set(`m${i}`, "retry"),
  }));
  return { batch: { queue: "q", messages, ackAll() {}, retryAll() {} } as unknown as MessageBatch<unknown>, outcome };
}

/** A promise with its resolver: a latch one handler waits on and another opens. */
function latch() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe("a queue batch's messages", () => {
  it("of different keys run concurrently: one message waits for another later in the batch and both finish", async () => {
    const second = latch();
    const run = consumer<M>("q", {
      work: async (m): Promise<HandlerResult> => {
        // Run one after another, the first would wait forever for the second (the test would time out).
        if (m.n === 1) await second.opened;
        else second.open();
        return { status: "done" };
      },
    }, { services, keyOf: (m) => m.key });
    const { batch, outcome } = batchOf([{ type: "work", key: "a", n: 1 }, { type: "work", key: "b", n: 2 }]);
    await run(batch, {} as Env);
    expect([...outcome]).toEqual(expect.arrayContaining([["m0", "ack"], ["m1", "ack"]]));
  });

  it("of one key run one after another in batch order", async () => {
    const order: string[] = [];
    let running = 0;
    let overlapped = false;
    const run = consumer<M>("q", {
      work: async (m): Promise<HandlerResult> => {
        overlapped ||= running > 0 && m.key === "same";
        running++;
        order.push(`start ${m.n}`);
        await Promise.resolve();
        await new Promise<void>((r) => queueMicrotask(r));
        order.push(`end ${m.n}`);
        running--;
        return { status: "done" };
      },
    }, { services, keyOf: (m) => m.key });
    const { batch } = batchOf([1, 2, 3].map((n) => ({ type: "work" as const, key: "same", n })));
    await run(batch, {} as Env);
    expect(order).toEqual(["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    expect(overlapped).toBe(false);
  });

  it("are answered each on its own: a throw retries only that message, and a requeue whose send fails is retried, not lost", async () => {
    const run = consumer<M>("q", {
      work: async (m): Promise<HandlerResult> => {
        if (m.n === 2) throw new Error("boom");
        if (m.n === 3) return { status: "requeue", delaySeconds: 5, reason: "frozen" };
        return { status: "done" };
      },
    }, { services, keyOf: (m) => m.key, producer: () => ({ send: async () => { throw new Error("queue down"); } }) as unknown as Queue });
    const { batch, outcome } = batchOf([1, 2, 3].map((n) => ({ type: "work" as const, key: `k${n}`, n })));
    await run(batch, {} as Env);
    expect(Object.fromEntries(outcome)).toEqual({ m0: "ack", m1: "retry", m2: "retry" });
  });

  it("get the batch's size, so a handler can take its share of the invocation's budget", async () => {
    const sizes: number[] = [];
    const run = consumer<M>("q", { work: async (_m, _e, _a, size): Promise<HandlerResult> => (sizes.push(size), { status: "done" }) }, { services });
    await run(batchOf([1, 2, 3, 4].map((n) => ({ type: "work" as const, key: "k", n }))).batch, {} as Env);
    expect(sizes).toEqual([4, 4, 4, 4]);
  });
});

describe("a consumer's concurrency", () => {
  it("bounds the keys in flight at once", async () => {
    let running = 0;
    let peak = 0;
    const run = consumer<M>("q", {
      work: async (): Promise<HandlerResult> => {
        peak = Math.max(peak, ++running);
        for (let i = 0; i < 3; i++) await Promise.resolve();
        running--;
        return { status: "done" };
      },
    }, { services, keyOf: (m) => m.key, concurrency: 3 });
    const { batch, outcome } = batchOf(Array.from({ length: 10 }, (_, n) => ({ type: "work" as const, key: `k${n}`, n })));
    await run(batch, {} as Env);
    expect(peak).toBe(3);
    expect([...outcome.values()].filter((o) => o === "ack")).toHaveLength(10);
  });
});
