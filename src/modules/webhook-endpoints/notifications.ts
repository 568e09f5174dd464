import { and, eq, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { customers, invoices, notifications, webhookEndpoints, type events } from "../../db/schema";
import type { Actor } from "../../env";
import type { AuditEntry } from "../../platform/audit";
import { systemActor } from "../../platform/actor";
import { conflict, ok, type Outcome } from "../../platform/failure";
import { deliveryProblem, notificationEnvelope } from "../notifications/delivery";
import { adoptNotificationsWithoutEvent, NOTIFICATION_EVENT, NOTIFICATIONS_ENDPOINT_ID } from "../notifications/outbox";
import { ensureLink } from "../documents/links";
import { documentsConfig } from "../documents/store";

/**
 * Customer notifications as a consumer of the event stream: the built-in endpoint `we_notifications` subscribes to
 * `customer.notification` and is delivered, signed, retried and logged like any endpoint; what differs is where it
 * posts (NOTIFY_WEBHOOK_URL, signed with NOTIFY_WEBHOOK_SECRET), what it posts (the notification envelope receivers
 * had before, `webhook-id` the notification id), that a refusal (4xx other than 408/429) fails it at once, and that
 * each outcome is copied into the `notifications` row (status, attempts, lastError) in the attempt's batch.
 */
export { NOTIFICATIONS_ENDPOINT_ID };
export const isNotificationsEndpoint = (id: string) => id === NOTIFICATIONS_ENDPOINT_ID;
const NOTIFIER: Actor = systemActor("notifications");
const USER_AGENT = "billing-engine-notifications/1";

/** PATCH, DELETE and rotate-secret on the built-in endpoint: its configuration is the wrangler secrets. */
export function refuseBuiltin(id: string): Outcome<void, "conflict"> {
  if (isNotificationsEndpoint(id)) {
    return conflict(`webhook endpoint ${id} delivers customer notifications; it is configured by NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET (wrangler secrets), not through the API`, [
      { path: "id", message: "built-in endpoint" },
    ]);
  }
  return ok(undefined);
}

/**
 * Creates the built-in endpoint when missing and keeps its shown URL in step with NOTIFY_WEBHOOK_URL. It is never
 * disabled and existed "from the start" (createdAt 0), so every notification event is fanned out to it.
 */
export async function ensureNotificationEndpoint(s: Services, now: number): Promise<void> {
  const { env, db } = s;
  const url = env.NOTIFY_WEBHOOK_URL ?? "";
  await db
    .insert(webhookEndpoints)
    .values({
      id: NOTIFICATIONS_ENDPOINT_ID,
      url,
      description: "Customer notifications: NOTIFY_WEBHOOK_URL, signed with NOTIFY_WEBHOOK_SECRET (managed by the engine)",
      enabledEvents: [NOTIFICATION_EVENT],
      metadata: {},
      disabled: false,
      disabledReason: null,
      // Signed with NOTIFY_WEBHOOK_SECRET at each attempt: no secret is stored for it.
      secretCiphertext: "",
      createdAt: 0,
      updatedAt: now,
    })
    .onConflictDoUpdate({
      target: webhookEndpoints.id,
      set: { url, enabledEvents: [NOTIFICATION_EVENT], disabled: false, disabledReason: null, updatedAt: now },
      where: sql`${webhookEndpoints.url} IS NOT ${url} OR ${webhookEndpoints.disabled} = 1`,
    });
}

type EventRow = typeof events.$inferSelect;

export type NotificationTarget =
  | { kind: "post"; notificationId: string; status: string; url: string; secrets: string[]; webhookId: string; body: string; userAgent: string }
  /** Not configured: the attempt fails at once, with this reason, without a POST. */
  | { kind: "refused"; notificationId: string; status: string; error: string }
  | { kind: "gone" };

/** What the built-in endpoint POSTs for a `customer.notification` event (the envelope, built at delivery time). */
export async function notificationTarget(s: Services, event: EventRow, now: number): Promise<NotificationTarget> {
  const { env, db } = s;
  const row = await db.select().from(notifications).where(eq(notifications.id, event.objectId)).get();
  if (!row) return { kind: "gone" };
  const problem = deliveryProblem(env);
  if (problem) return { kind: "refused", notificationId: row.id, status: row.status, error: problem };
  const [customer, invoice] = await Promise.all([
    db.select({ id: customers.id, email: customers.email, name: customers.name }).from(customers).where(eq(customers.id, row.customerId)).get(),
    row.invoiceId
      ? db
          .select({ id: invoices.id, number: invoices.number, status: invoices.status, currency: invoices.currency, total: invoices.total, amountDue: invoices.amountDue, dueAt: invoices.dueAt })
          .from(invoices)
          .where(eq(invoices.id, row.invoiceId))
          .get()
      : undefined,
  ]);
  // Every invoice notification links to the invoice's hosted page and PDF (a live link, issued now if it has none).
  let links: { hostedUrl: string; pdfUrl: string } | null = null;
  if (invoice && invoice.status !== "draft") {
    const config = await documentsConfig(db);
    const link = await ensureLink(s.withAudit({ actor: NOTIFIER, now }), invoice.id, config.hostedLinkDays, config.publicBaseUrl);
    links = { hostedUrl: link.url, pdfUrl: link.pdfUrl };
  }
  return {
    kind: "post",
    notificationId: row.id,
    status: row.status,
    url: env.NOTIFY_WEBHOOK_URL,
    secrets: [env.NOTIFY_WEBHOOK_SECRET],
    webhookId: row.id,
    body: JSON.stringify(notificationEnvelope(row, customer, invoice, links)),
    userAgent: USER_AGENT,
  };
}

/** A refusal another attempt cannot change: any 4xx but 408 and 429 (a 3xx counts as a failure worth retrying). */
export const isRefusal = (statusCode: number | null) => statusCode !== null && statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 429;

/**
 * The notification row after an attempt, for the attempt's batch: sent (2xx), failed (given up), or still queued
 * with one more attempt and its error. Only a queued row changes (a duplicate attempt of a sent one leaves it).
 */
export function notificationOutcome(
  db: Db,
  target: { notificationId: string; status: string },
  outcome: { ok: boolean; giveUp: boolean; error: string | null; statusCode: number | null; attempts: number },
  now: number,
): { statements: BatchItem<"sqlite">[]; audit: AuditEntry[] } {
  const stillQueued = and(eq(notifications.id, target.notificationId), eq(notifications.status, "queued"));
  const attempts = sql`${notifications.attempts} + 1`;
  if (!outcome.ok && !outcome.giveUp) {
    return { statements: [db.update(notifications).set({ attempts, lastError: outcome.error }).where(stillQueued)], audit: [] };
  }
  const status = outcome.ok ? ("sent" as const) : ("failed" as const);
  const statements = [db.update(notifications).set({ status, sentAt: outcome.ok ? now : null, attempts, lastError: outcome.ok ? null : outcome.error }).where(stillQueued)];
  if (target.status !== "queued") return { statements, audit: [] };
  const audit: AuditEntry[] = [
    {
      action: outcome.ok ? "notification.sent" : "notification.failed",
      targetType: "notification",
      targetId: target.notificationId,
      before: { status: "queued" },
      after: { status, deliveryAttempts: outcome.attempts, ...(outcome.ok ? { webhookStatus: outcome.statusCode } : { error: outcome.error }) },
    },
  ];
  return { statements, audit };
}

export { NOTIFIER };

/**
 * Hourly (`notifications.sweep`): the built-in endpoint exists and shows the configured URL, and queued
 * notifications without an event (older rows) get one. Lost fan-outs and deliveries are the endpoints' sweep's.
 */
export async function sweepNotifications(s: Services, now: number): Promise<number> {
  await ensureNotificationEndpoint(s, now);
  return adoptNotificationsWithoutEvent(s.db, now);
}
