import { and, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { webhookEvents } from "../../db/schema";
import { fail, ok, type Outcome } from "../../platform/failure";
import type { WebhookMessage } from "../../../queues/messages";
import type { VerifiedEvent } from "./verify";

/**
 * A redelivery of an event still `received` this long after we first stored it is queued again: the first
 * delivery may have died between the insert and the queue send. Applying is idempotent, so this is safe.
 */
export const STUCK_AFTER_MS = 15 * 60_000;

export type ReceiveResult = { received: true; duplicate?: true; requeued?: true };

/** Stores a verified event once by its id and hands it to the webhooks queue; no gateway call on this path. */
export async function receiveStripeEvent(s: Services, event: VerifiedEvent, rawBody: string): Promise<Outcome<ReceiveResult, "unavailable">> {
  const { db } = s;
  const now = s.clock.wall;
  const message = { type: "stripe.event", eventId: event.id } satisfies WebhookMessage;
  const inserted = await db
    .insert(webhookEvents)
    .values({ id: event.id, source: "stripe", type: event.type, payload: rawBody, status: "received", error: null, receivedAt: now, processedAt: null })
    .onConflictDoNothing()
    .run();
  if (inserted.meta.changes === 0) {
    const stored = await db.select({ status: webhookEvents.status, receivedAt: webhookEvents.receivedAt }).from(webhookEvents).where(eq(webhookEvents.id, event.id)).get();
    if (stored?.status === "received" && now - stored.receivedAt > STUCK_AFTER_MS) {
      await s.queues.webhooks.send(message);
      return ok({ received: true, duplicate: true, requeued: true });
    }
    return ok({ received: true, duplicate: true });
  }
  try {
    await s.queues.webhooks.send(message);
  } catch (e) {
    // Forget the event so Stripe's retry of this delivery stores and queues it again.
    await db.delete(webhookEvents).where(and(eq(webhookEvents.id, event.id), eq(webhookEvents.status, "received")));
    s.log.error("stripe event could not be queued", { eventId: event.id, error: String(e) });
    return fail("unavailable", "the event could not be queued; Stripe will deliver it again");
  }
  return ok({ received: true });
}
