import type { QueueMessage } from "./messages";

export type HandlerResult =
  | { status: "done" }
  | { status: "retry"; delaySeconds: number; reason: string }
  /** Wait without spending a delivery attempt (e.g. payments frozen): a fresh delayed copy, this one acked. */
  | { status: "requeue"; delaySeconds: number; reason: string };
export type MessageHandler<M> = (message: M, env: Env, attempts: number) => Promise<HandlerResult>;
type Handlers<M extends { type: string }> = { [K in M["type"]]: MessageHandler<Extract<M, { type: K }>> };

/** Exponential backoff for retries, capped at an hour. */
export function backoffSeconds(attempts: number, base = 10): number {
  return Math.min(3600, base * 2 ** Math.max(0, attempts - 1));
}

/**
 * Runs each message through its typed handler: ack on success, retry with backoff on failure or throw.
 * An unknown type is retried too, so it ends in the dead-letter queue rather than vanishing.
 */
export function consumer<M extends { type: string }>(queue: string, handlers: Handlers<M>, producer?: (env: Env) => Queue) {
  return async (batch: MessageBatch<unknown>, env: Env): Promise<void> => {
    for (const msg of batch.messages) {
      const body = msg.body as M;
      const handler = (handlers as unknown as Record<string, MessageHandler<M> | undefined>)[body?.type];
      let result: HandlerResult;
      try {
        result = handler
          ? await handler(body, env, msg.attempts)
          : { status: "retry", delaySeconds: backoffSeconds(msg.attempts), reason: `unknown message type ${String(body?.type)}` };
      } catch (e) {
        result = { status: "retry", delaySeconds: backoffSeconds(msg.attempts), reason: String(e) };
      }
      if (result.status === "done") msg.ack();
      else if (result.status === "requeue" && producer) {
        await producer(env).send(body, { delaySeconds: result.delaySeconds });
        msg.ack();
      } else {
        console.log(JSON.stringify({ level: "warn", msg: "queue message retry", queue, id: msg.id, type: body?.type, attempts: msg.attempts, reason: result.reason }));
        msg.retry({ delaySeconds: result.delaySeconds });
      }
    }
  };
}

export type { QueueMessage };
