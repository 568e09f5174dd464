import { dbOf } from "../src/db/client";
import { deadLetters } from "../src/db/schema";
import { newId } from "../src/lib/ids";

/** Stores every dead letter in D1 (once per message id) so operators can see and replay it. */
export async function consumeDeadLetters(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const db = dbOf(env);
  const now = Date.now();
  for (const msg of batch.messages) {
    await db
      .insert(deadLetters)
      .values({ id: newId("dlq"), messageId: msg.id, body: JSON.stringify(msg.body), attempts: msg.attempts, receivedAt: now })
      .onConflictDoNothing();
    msg.ack();
  }
}
