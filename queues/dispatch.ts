import type { QueueMessage } from "./messages";
import type { LogFields, Services } from "../src/platform/services";
import { TrailingWrites } from "../src/platform/trailing-writes";
import { dbOf } from "../src/db/client";

export type HandlerResult =
  | { status: "done" }
  | { status: "retry"; delaySeconds: number; reason: string }
  /** Wait without spending a delivery attempt (e.g. payments frozen): a fresh delayed copy, this one acked. */
  | { status: "requeue"; delaySeconds: number; reason: string };
/**
 * `s`: the message's own Services (never shared with another message of the batch: they run concurrently), acting as
 * the system at the time the message is handled. `batchSize`: how many messages share this invocation (and so its
 * per-invocation limits).
 */
export type MessageHandler<M> = (message: M, s: Services, attempts: number, batchSize: number) => Promise<HandlerResult>;
type Handlers<M extends { type: string }> = { [K in M["type"]]: MessageHandler<Extract<M, { type: K }>> };

/** Exponential backoff for retries, capped at an hour. */
export function backoffSeconds(attempts: number, base = 10): number {
  return Math.min(3600, base * 2 ** Math.max(0, attempts - 1));
}

/**
 * How the messages of one batch run: messages with the same key run one after another in batch order; different keys
 * run concurrently, so one message's D1 and gateway round trips overlap another's (a batch's wall time is its slowest
 * key, not the sum). Without `keyOf`, every message is its own key.
 */
export type ConsumerOptions<M> = {
  /**
   * Makes each message's own Services (src/platform/services.ts `messageServices`), tagged with `fields`, sharing the
   * batch's trailing writes.
   */
  services: (env: Env, fields: LogFields, trailing: TrailingWrites) => Services;
  producer?: (env: Env) => Queue;
  keyOf?: (message: M) => string | undefined;
  /** Keys in flight at once (default: all of the batch's). */
  concurrency?: number;
};

/**
 * Runs each message through its typed handler: ack on success, retry with backoff on failure or throw, each message
 * on its own (one message's failure never retries another). An unknown type is retried too, so it ends in the
 * dead-letter queue rather than vanishing.
 */
export function consumer<M extends { type: string }>(queue: string, handlers: Handlers<M>, options: ConsumerOptions<M>) {
  const { services, producer, keyOf, concurrency = Infinity } = options;
  return async (batch: MessageBatch<unknown>, env: Env): Promise<void> => {
    const size = batch.messages.length;
    const trailing = new TrailingWrites(() => dbOf(env));
    const handle = async (msg: Message<unknown>) => {
      const body = msg.body as M;
      const handler = (handlers as unknown as Record<string, MessageHandler<M> | undefined>)[body?.type];
      let result: HandlerResult;
      const s = services(env, { queue, messageId: msg.id, type: body?.type }, trailing);
      try {
        result = handler
          ? await handler(body, s, msg.attempts, size)
          : { status: "retry", delaySeconds: backoffSeconds(msg.attempts), reason: `unknown message type ${String(body?.type)}` };
      } catch (e) {
        result = { status: "retry", delaySeconds: backoffSeconds(msg.attempts), reason: String(e) };
      }
      if (result.status === "requeue" && producer) {
        try {
          await producer(env).send(body, { delaySeconds: result.delaySeconds });
          msg.ack();
          return;
        } catch (e) {
          result = { status: "retry", delaySeconds: result.delaySeconds, reason: `requeue failed: ${String(e)}` };
        }
      }
      if (result.status === "done") msg.ack();
      else {
        s.log.warn("queue message retry", { attempts: msg.attempts, reason: result.reason });
        msg.retry({ delaySeconds: result.delaySeconds });
      }
    };
    const lanes = new Map<string, Message<unknown>[]>();
    for (const msg of batch.messages) {
      let key: string;
      try {
        key = keyOf?.(msg.body as M) ?? `message:${msg.id}`;
      } catch {
        key = `message:${msg.id}`;
      }
      const lane = lanes.get(key);
      if (lane) lane.push(msg);
      else lanes.set(key, [msg]);
    }
    const pending = [...lanes.values()];
    const runLanes = async () => {
      for (let lane = pending.shift(); lane; lane = pending.shift()) for (const msg of lane) await handle(msg);
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, pending.length)) }, runLanes));
    // After the messages (already acked or retried on their own): a failed flush loses only what its repair path
    // re-derives (platform/trailing-writes.ts), so it is logged, not retried with the batch.
    const writes = trailing.size;
    try {
      await trailing.flush();
    } catch (e) {
      console.log(JSON.stringify({ level: "error", msg: "trailing writes of a queue batch failed; the repair path redoes them", queue, writes, error: String(e) }));
    }
  };
}

export type { QueueMessage };
