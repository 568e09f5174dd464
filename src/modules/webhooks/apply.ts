import { and, eq, inArray } from "drizzle-orm";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import type { Db } from "../../db/client";
import type { Services } from "../../platform/services";
import { webhookEvents } from "../../db/schema";
import { chargeRefunded, disputeCreated } from "./charges";
import { intentFailed, intentSucceeded } from "./intents";
import { settle, WEBHOOK_ACTOR, type Commit, type Decision, type EventStatus, type Handler } from "./types";

export type ApplyResult = { status: "done" } | { status: "retry"; delaySeconds: number; reason: string };
type EventRow = typeof webhookEvents.$inferSelect;

const handlers: Record<string, Handler> = {
  "payment_intent.succeeded": intentSucceeded,
  "payment_intent.payment_failed": intentFailed,
  "charge.refunded": chargeRefunded,
  "charge.dispute.created": disputeCreated,
};

/** An event whose payment has not appeared after this long is given up (marked failed) rather than retried forever. */
export const GIVE_UP_AFTER_MS = 72 * 3600_000;
const MIN_RETRY_SECONDS = 30;
const MAX_RETRY_SECONDS = 3600;

/** Wait about as long again as the event has waited so far: 30 s, 30 s, 1 min, 2 min … capped at an hour. */
export function retryDelayFor(ageMs: number): number {
  return Math.min(MAX_RETRY_SECONDS, Math.max(MIN_RETRY_SECONDS, Math.round(ageMs / 1000)));
}

async function decide(s: Services, row: EventRow, now: number): Promise<Decision> {
  let event: { data?: { object?: unknown } };
  try {
    event = JSON.parse(row.payload);
  } catch {
    return settle("failed", "stored payload is not valid JSON");
  }
  const handler = handlers[row.type];
  if (!handler) return settle("ignored");
  const object = event?.data?.object;
  if (!object || typeof object !== "object" || typeof (object as { id?: unknown }).id !== "string") return settle("failed", "event has no data.object with an id");
  return handler({ s, env: s.env, db: s.db, now, eventId: row.id }, object as Record<string, unknown>);
}

/** The event's new status, only from received (or failed, for a replay): the guard that applies an event once. */
const markEvent = (db: Db, id: string, status: EventStatus, note: string | null, now: number) =>
  db
    .update(webhookEvents)
    .set({ status, error: note, processedAt: now })
    .where(and(eq(webhookEvents.id, id), inArray(webhookEvents.status, ["received", "failed"])));

/**
 * Applies one stored Stripe event (the webhooks queue's `stripe.event`). Idempotent and order-tolerant: a
 * processed or ignored event is a no-op; the state change and the event's new status commit in one batch, so
 * two deliveries cannot both apply it; an event whose payment we do not know yet asks to be retried later
 * (backing off with the event's age) and is marked failed after GIVE_UP_AFTER_MS. A failed event can be replayed
 * (admin): it is applied if what it waited for is there now, else it stays failed.
 */
export async function applyStripeEvent(s: Services, eventId: string): Promise<ApplyResult> {
  const db = s.db;
  const now = s.clock.wall;
  for (let round = 1; ; round++) {
    const row = await db.select().from(webhookEvents).where(eq(webhookEvents.id, eventId)).get();
    if (!row) {
      // Rows are stored before their message is sent; a missing one was cleaned up or never stored.
      s.log.warn("stripe event not found; message dropped", { eventId });
      return { status: "done" };
    }
    if (row.status === "processed" || row.status === "ignored") return { status: "done" };
    let decision: Commit;
    try {
      const decided = await decide(s, row, now);
      if (decided.kind === "wait") {
        const age = now - row.receivedAt;
        // A failed event is here again because an operator replayed it: one look, not another round of retries.
        if (row.status === "failed") {
          decision = settle("failed", `still waiting: ${decided.reason}`);
        } else if (age <= GIVE_UP_AFTER_MS) {
          await db.update(webhookEvents).set({ error: decided.reason }).where(eq(webhookEvents.id, row.id));
          return { status: "retry", delaySeconds: retryDelayFor(age), reason: decided.reason };
        } else {
          decision = settle("failed", `gave up after ${Math.round(age / 3600_000)} h: ${decided.reason}`);
        }
      } else decision = decided;
      await commitWithAudit(db, [...decision.statements, markEvent(db, row.id, decision.status, decision.note, now), assertChanged(db)], decision.audit, { actor: WEBHOOK_ACTOR, now, requestId: row.id });
    } catch (e) {
      // Someone else changed the payment or applied the event meanwhile: look again with what is there now.
      if (isAssertionFailure(e) && round < 3) continue;
      const reason = `applying ${row.type} failed: ${e instanceof Error ? e.message : String(e)}`;
      await db.update(webhookEvents).set({ error: reason.slice(0, 1000) }).where(eq(webhookEvents.id, row.id)).catch(() => undefined);
      return { status: "retry", delaySeconds: retryDelayFor(now - row.receivedAt), reason };
    }
    if (decision.afterCommit) {
      await decision.afterCommit().catch((e: unknown) => s.log.error("stripe event follow-up failed", { eventId, error: String(e) }));
    }
    s.log.info("stripe event applied", { eventId, type: row.type, status: decision.status, note: decision.note });
    return { status: "done" };
  }
}
