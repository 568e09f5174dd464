import { and, eq, isNull, lte, sql, type SQL, type SQLWrapper } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { env as workerEnv } from "cloudflare:workers";
import type { Db } from "../../db/client";
import { batchAssertions, events, subscriptions, type SubscriptionStatus } from "../../db/schema";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { assertChanged } from "../../db/assert";
import { builtOnce, updateWhere } from "../../db/prepared";
import { defineLifecycle } from "../../domain/lifecycle";
import { change, commit, type ChangeSet } from "../../platform/change-set";
import type { EventDraft, EventType } from "../../platform/events";
import { eventsCommitted } from "../../platform/events";
import { newId } from "../../lib/ids";
import { DAY_MS } from "../../lib/time";
import { isAssertionFailure } from "../../db/assert";
import { toSubscription } from "./serialize";

type SubscriptionRow = typeof subscriptions.$inferSelect;

/**
 * The subscription lifecycle (owner: this module). Every edge is a move the code makes:
 * trialing → active (trial converts at its end), → paused, → canceled (now, or at the trial's end);
 * active ⇄ past_due (a payment's final failure; its later success); active | past_due → paused, → canceled;
 * paused → active | trialing (resumed: trialing while the trial has time left), → canceled.
 * No trialing → past_due: a trial converts to active before its first invoice is charged.
 */
export const subscriptionLifecycle = defineLifecycle<SubscriptionStatus>("subscription", {
  trialing: ["active", "paused", "canceled"],
  active: ["past_due", "paused", "canceled"],
  past_due: ["active", "paused", "canceled"],
  paused: ["active", "trialing", "canceled"],
  canceled: [],
});

/** Test-clock subscriptions are never live; otherwise the environment decides (production). */
const livemodeOf = (sub: Pick<SubscriptionRow, "testClockId">) => (sub.testClockId ? false : undefined);

/** The event a change of `before` into `after` is: a status move names itself, anything else is an update. */
function eventTypeOf(before: SubscriptionStatus, after: SubscriptionStatus): EventType {
  if (before === after) return "customer.subscription.updated";
  if (after === "canceled") return "customer.subscription.deleted";
  if (after === "paused") return "customer.subscription.paused";
  if (before === "paused") return "customer.subscription.resumed";
  return "customer.subscription.updated";
}

/** The REST fields that differ, with their old values (Stripe's previous_attributes). */
function previousAttributes(before: Record<string, unknown>, after: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(after)) if (JSON.stringify(before[k]) !== JSON.stringify(after[k])) out[k] = before[k];
  return out;
}

/**
 * A change of a subscription as read: the guard (a status change must be a declared edge), the update guarded by
 * the row's configVersion (bumped, so the meter learns of it) with an assertion that aborts the batch when another
 * writer moved first, `extra` statements and audit rows, and the event: `.paused`, `.resumed`, `.deleted` for
 * those moves, `.updated` for any other change a client can see. Commit it with `commit()`.
 */
export function subscriptionChange(
  db: Db,
  sub: SubscriptionRow,
  patch: Partial<SubscriptionRow>,
  extra: { statements?: BatchItem<"sqlite">[]; audit?: AuditEntry[] },
  ctx: AuditContext,
): ChangeSet {
  if (patch.status !== undefined && patch.status !== sub.status) subscriptionLifecycle.assertMove(sub.id, sub.status, patch.status);
  const next: SubscriptionRow = { ...sub, ...patch, configVersion: sub.configVersion + 1, updatedAt: ctx.now };
  const before = toSubscription(sub);
  const object = toSubscription(next);
  const changed = previousAttributes(before, object);
  const events: EventDraft[] = Object.keys(changed).length
    ? [{ type: eventTypeOf(sub.status, next.status), objectType: "subscription", objectId: sub.id, customerId: sub.customerId, object, previousAttributes: changed, livemode: livemodeOf(sub), testClockId: sub.testClockId }]
    : [];
  return change({
    statements: [
      // Prepared SQL (src/db/prepared.ts): every renewal makes it.
      updateWhere(db, subscriptions, { ...patch, configVersion: next.configVersion, updatedAt: ctx.now }, { id: sub.id, configVersion: sub.configVersion }),
      assertChanged(db),
      ...(extra.statements ?? []),
    ],
    audit: extra.audit ?? [],
    events,
  });
}

/** A new subscription: its insert, `extra` statements (the first invoice), audit rows, customer.subscription.created. */
export function subscriptionCreated(db: Db, row: SubscriptionRow, extra: { statements?: BatchItem<"sqlite">[]; audit?: AuditEntry[] }): ChangeSet {
  return change({
    statements: [db.insert(subscriptions).values(row), ...(extra.statements ?? [])],
    audit: extra.audit ?? [],
    events: [{ type: "customer.subscription.created", objectType: "subscription", objectId: row.id, customerId: row.customerId, object: toSubscription(row), livemode: livemodeOf(row), testClockId: row.testClockId }],
  });
}

// ---- The REST object in SQL, for moves built without reading the row (a payment's effect in its owner's batch). ----

const c = subscriptions;
const isoSql = (col: SQLWrapper) =>
  sql`CASE WHEN ${col} IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%S', ${col} / 1000, 'unixepoch') || '.' || printf('%03d', ${col} % 1000) || 'Z' END`;

/**
 * `toSubscription` of the row as it is when the statement runs, as a SQL JSON expression (same fields, same
 * formats; test/modules/subscription-lifecycle.test.ts holds the two equal).
 */
export function subscriptionJsonSql(): SQL {
  return sql`json_object(
    'id', ${c.id}, 'customerId', ${c.customerId}, 'planId', ${c.planId}, 'planVersion', ${c.planVersion}, 'status', ${c.status},
    'quantity', ${c.quantity}, 'currency', ${c.currency}, 'paymentMethod', ${c.paymentMethod},
    'billingAnchor', ${isoSql(c.billingAnchor)}, 'currentPeriodStart', ${isoSql(c.currentPeriodStart)}, 'currentPeriodEnd', ${isoSql(c.currentPeriodEnd)},
    'trialEnd', ${isoSql(c.trialEnd)}, 'cancelAtPeriodEnd', json(CASE WHEN ${c.cancelAtPeriodEnd} THEN 'true' ELSE 'false' END),
    'canceledAt', ${isoSql(c.canceledAt)}, 'pausedUntil', ${isoSql(c.pausedUntil)}, 'pauseReason', ${c.pauseReason},
    'cancelReason', ${c.cancelReason}, 'cancelFeedback', ${c.cancelFeedback}, 'endedAt', ${isoSql(c.endedAt)},
    'discountPercent', ${c.discountPercent}, 'discountUntil', ${isoSql(c.discountUntil)}, 'discount', json(${c.discount}),
    'pendingChange', json(CASE WHEN ${c.pendingPlanId} IS NOT NULL AND ${c.pendingChangeAt} IS NOT NULL
      THEN json_object('planId', ${c.pendingPlanId}, 'planVersion', coalesce(${c.pendingPlanVersion}, 1), 'quantity', coalesce(${c.pendingQuantity}, ${c.quantity}), 'effectiveAt', ${isoSql(c.pendingChangeAt)},
        'prorationBehavior', CASE WHEN ${c.pendingInvoiceNow} THEN 'always_invoice' WHEN ${c.pendingProrate} = 0 THEN 'none' ELSE 'create_prorations' END)
      ELSE NULL END),
    'testClockId', ${c.testClockId}, 'metadata', json(${c.metadata}), 'createdAt', ${isoSql(c.createdAt)})`;
}

/**
 * The event of a status move made by a guarded UPDATE just before it in the batch: inserted only when that
 * UPDATE changed the row (`changes()`), with the row as it is after the move.
 */
// Built by drizzle once per isolate (the subscription's JSON is a long expression; every charge writes this event).
const statusEventQuery = builtOnce((db: Db) => {
  const p = (name: string) => sql.placeholder(name);
  return [
    db
      .insert(events)
      .select(
        sql`SELECT ${p("id")}, ${p("type")}, 'subscription', ${c.id}, ${c.customerId}, CASE WHEN ${c.testClockId} IS NULL THEN ${p("live")} ELSE 0 END, ${p("requestId")},
        json_object('object', ${subscriptionJsonSql()}, 'previousAttributes', json_object('status', ${p("from")})), ${p("now")}
        FROM ${subscriptions} WHERE ${c.id} = ${p("subscriptionId")} AND changes() > 0`,
      ),
  ] as const;
});

function statusEventIfChanged(db: Db, subscriptionId: string, type: EventType, from: SubscriptionStatus, ctx: AuditContext, id = newId("evt")): BatchItem<"sqlite"> {
  const live = (workerEnv as Partial<Env>).ENVIRONMENT === "production" ? 1 : 0;
  return statusEventQuery(db, { id, type, live, requestId: ctx.requestId ?? null, from, now: ctx.now, subscriptionId })[0];
}

/**
 * A payment's effect on its subscription, for the payment owner's change set: a final failure moves an active
 * subscription to past_due; a success moves a past_due one back to active. Guarded by the state it leaves, so it is
 * a no-op (no update, no event) when the subscription is elsewhere; when it applies, customer.subscription.updated
 * with the subscription after the move and previousAttributes { status }.
 */
export function subscriptionAfterPayment(db: Db, subscriptionId: string, outcome: "succeeded" | "failed_final", ctx: AuditContext): ChangeSet {
  const [from, to]: [SubscriptionStatus, SubscriptionStatus] = outcome === "succeeded" ? ["past_due", "active"] : ["active", "past_due"];
  subscriptionLifecycle.assertMove(subscriptionId, from, to);
  const eventId = newId("evt");
  return change({
    statements: [
      // Prepared SQL (src/db/prepared.ts): every successful charge of a subscription's invoice makes it.
      updateWhere(db, subscriptions, { status: to, updatedAt: ctx.now }, { id: subscriptionId, status: from }),
      statusEventIfChanged(db, subscriptionId, "customer.subscription.updated", from, ctx, eventId),
    ],
    // Handed to delivery after the commit; an id whose row was not written (the move did not apply) is skipped there.
    after: [async () => eventsCommitted([eventId])],
  });
}

/** Stripe's rule: customer.subscription.trial_will_end three days before the trial ends. */
export const TRIAL_WILL_END_BEFORE_MS = 3 * DAY_MS;
const TRIAL_WILL_END: EventType = "customer.subscription.trial_will_end";

/**
 * customer.subscription.trial_will_end for a trialing subscription, at most once per subscription: a guard in the
 * batch aborts it when the event exists already (the events table is the record; no column needed).
 */
export function trialWillEnd(db: Db, sub: SubscriptionRow): ChangeSet {
  const exists = sql`SELECT 1 FROM ${events} WHERE ${events.objectId} = ${sub.id} AND ${events.type} = ${TRIAL_WILL_END}`;
  return change({
    statements: [db.insert(batchAssertions).select(sql`SELECT 0 WHERE EXISTS (${exists})`)],
    events: [{ type: TRIAL_WILL_END, objectType: "subscription", objectId: sub.id, customerId: sub.customerId, object: toSubscription(sub), livemode: livemodeOf(sub), testClockId: sub.testClockId }],
  });
}

/**
 * Emits trial_will_end for the trialing subscriptions (real-time ones, or one test clock's) whose trial ends within
 * three days of `now`, each once, at `trialEnd − 3 days` (or its creation, for a shorter trial) capped at `now`. Reads
 * pages of `PAGE` candidates that have no such event yet (the status index, then the events' object index), so each
 * run touches only subscriptions still owed the event. Returns how many were emitted.
 */
export async function emitTrialWillEnd(db: Db, now: number, scope: { testClockId: string | null }, ctx: Omit<AuditContext, "now">, maxPages = Infinity, PAGE = 100): Promise<{ emitted: number; more: boolean }> {
  let emitted = 0;
  for (let page = 0; ; page++) {
    // Bounded callers (one invocation per page) continue in a fresh invocation.
    if (page >= maxPages) return { emitted, more: true };
    const owed = await db
      .select()
      .from(subscriptions)
      .where(
        and(
          eq(subscriptions.status, "trialing"),
          scope.testClockId === null ? isNull(subscriptions.testClockId) : eq(subscriptions.testClockId, scope.testClockId),
          lte(subscriptions.trialEnd, now + TRIAL_WILL_END_BEFORE_MS),
          sql`NOT EXISTS (SELECT 1 FROM ${events} WHERE ${events.objectId} = ${subscriptions.id} AND ${events.type} = ${TRIAL_WILL_END})`,
        ),
      )
      .limit(PAGE)
      .all();
    let progressed = false;
    for (const sub of owed) {
      const at = Math.min(now, Math.max(sub.createdAt, (sub.trialEnd ?? now) - TRIAL_WILL_END_BEFORE_MS));
      try {
        await commit(db, trialWillEnd(db, sub), { ...ctx, now: at });
        emitted++;
        progressed = true;
      } catch (e) {
        if (!isAssertionFailure(e)) throw e;
        progressed = true; // a concurrent run emitted it
      }
    }
    if (owed.length < PAGE || !progressed) return { emitted, more: false };
  }
}
