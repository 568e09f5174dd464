import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import entry from "../../src/index";

// The dead-letter consumers are the last stop of every message: they store it in D1 or keep it on a queue,
// never ack what they did not store.

const worker: Required<Pick<ExportedHandler<Env>, "queue">> = entry;
let seq = 0;
const msg = (body: unknown, attempts = 1) => ({ id: `dl-${Date.now()}-${seq++}`, timestamp: new Date(), attempts, body });

async function runQueue(queue: string, messages: ReturnType<typeof msg>[], e: Env = env) {
  const batch = createMessageBatch(queue, messages);
  const delays = new Map<string, number | undefined>();
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    m.retry = (options?: QueueRetryOptions) => {
      delays.set(m.id, options?.delaySeconds);
      retry(options);
    };
  }
  const ctx = createExecutionContext();
  await worker.queue(batch, e, ctx);
  const result = await getQueueResult(batch, ctx);
  return { ...result, delays };
}

const stored = (messageId: string) => env.DB.prepare("SELECT * FROM dead_letters WHERE message_id = ?").bind(messageId).all<Record<string, any>>();

/** D1 refusing every write, as during an outage. */
const brokenDb = {
  prepare() {
    throw new Error("D1_ERROR: database unavailable");
  },
  batch() {
    throw new Error("D1_ERROR: database unavailable");
  },
} as unknown as D1Database;

describe("dead-letter consumers", () => {
  it.each(["billing-dlq", "billing-dlq-dev", "billing-dlq-overflow", "billing-dlq-overflow-dev"])("%s stores each message in D1 and acks it", async (queue) => {
    const m = msg({ type: "payment.attempt", invoiceId: "inv_dead", attempt: 6 }, 6);
    const r = await runQueue(queue, [m]);
    expect(r.explicitAcks).toEqual([m.id]);
    expect(r.retryMessages).toEqual([]);
    const rows = (await stored(m.id)).results;
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.body)).toEqual({ type: "payment.attempt", invoiceId: "inv_dead", attempt: 6 });
  });

  it.each(["billing-dlq", "billing-dlq-overflow"])("when D1 fails, %s acks nothing and retries every message with a backoff", async (queue) => {
    const a = msg({ type: "notification.send", notificationId: "ntf_1" }, 1);
    const b = msg({ type: "stripe.event", eventId: "evt_1" }, 4);
    const r = await runQueue(queue, [a, b], { ...env, DB: brokenDb });
    expect(r.explicitAcks).toEqual([]);
    expect(r.retryMessages.map((x) => x.msgId).sort()).toEqual([a.id, b.id].sort());
    expect(r.delays.get(a.id)).toBeGreaterThan(0);
    expect(r.delays.get(b.id)).toBeGreaterThan(r.delays.get(a.id)!);
    expect((await stored(a.id)).results).toHaveLength(0);
  });

  it("one message that cannot be stored does not hold back the others in its batch", async () => {
    const good = msg({ type: "idempotency.purge" }, 3);
    // A BigInt has no JSON form; the message is still stored, with the number as a string.
    const odd = msg({ type: "odd", amount: 10n }, 3);
    const r = await runQueue("billing-dlq", [good, odd]);
    expect(r.explicitAcks.sort()).toEqual([good.id, odd.id].sort());
    expect(JSON.parse((await stored(odd.id)).results[0]!.body)).toEqual({ type: "odd", amount: "10" });
  });
});
