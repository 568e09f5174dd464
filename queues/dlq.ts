import { dbOf } from "../src/db/client";
import { deadLetters } from "../src/db/schema";
import { newId } from "../src/lib/ids";
import { backoffSeconds } from "./dispatch";

/** JSON of a message body; a BigInt (no JSON form) becomes its decimal string so the message can still be kept. */
const bodyText = (body: unknown) => JSON.stringify(body, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null";

/**
 * Stores every dead letter in D1 (once per message id) so operators can see and replay it. Acks only what was
 * stored: a message whose write failed is retried with backoff, and after its retries it moves to this queue's own
 * dead-letter queue (billing-dlq → billing-dlq-overflow → billing-dlq, see wrangler.toml), so it is never dropped.
 */
export async function consumeDeadLetters(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const db = dbOf(env);
  const now = Date.now();
  for (const msg of batch.messages) {
    try {
      await db
        .insert(deadLetters)
        .values({ id: newId("dlq"), messageId: msg.id, body: bodyText(msg.body), attempts: msg.attempts, receivedAt: now })
        .onConflictDoNothing();
      msg.ack();
    } catch (e) {
      console.log(JSON.stringify({ level: "error", msg: "dead letter not stored", queue: batch.queue, id: msg.id, attempts: msg.attempts, error: String(e) }));
      msg.retry({ delaySeconds: backoffSeconds(msg.attempts, 30) });
    }
  }
}
