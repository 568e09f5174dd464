import { and, asc, count, eq, gte, inArray, isNull, like, lt, lte, ne, notExists, or, sql, type SQL } from "drizzle-orm";
import { queuesOf, type Producer, type Services } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import { dbOf, type Db } from "../../db/client";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { customers, events, webhookDeliveries, webhookDeliveryAttempts, webhookEndpoints } from "../../db/schema";
import type { Actor } from "../../env";
import { newId } from "../../lib/ids";
import { standardWebhookHeaders } from "../../lib/standard-webhooks";
import { DAY_MS, iso } from "../../lib/time";
import { change, commit } from "../../platform/change-set";
import { onEventsCommitted, toEvent } from "../../platform/events";
import type { HandlerResult } from "../../../queues/dispatch";
import type { WebhookMessage } from "../../../queues/messages";
import { matchesEvent, signingSecrets, toEndpoint, type EndpointRow } from "./service";
import { systemActor } from "../../platform/actor";
import { commitWithAudit, type AuditEntry } from "../../platform/audit";
import { NOTIFICATION_EVENT } from "../notifications/outbox";
import { ensureNotificationEndpoint, isNotificationsEndpoint, isRefusal, NOTIFICATIONS_ENDPOINT_ID, notificationOutcome, notificationTarget, NOTIFIER } from "./notifications";

export type DeliveryRow = typeof webhookDeliveries.$inferSelect;

export const DELIVERY_TIMEOUT_MS = 10_000;
/** A delivery is retried for about three days after it was created (as Stripe does), then `failed`. */
export const RETRY_WINDOW_MS = 3 * DAY_MS;
/** An endpoint whose deliveries have failed without a success for this long is disabled. */
export const AUTO_DISABLE_AFTER_MS = 3 * DAY_MS;
const FIRST_RETRY_SECONDS = 5 * 60;
/** The longest delay one queue message may carry (Cloudflare Queues' limit is 12 h). */
const MAX_HOP_SECONDS = 12 * 60 * 60;
/** While one message POSTs, a duplicate of it finds the delivery not due and drops out. */
const LEASE_MS = 60_000;
/** Pending deliveries this far past due lost their message: the hourly sweep sends another. */
const LOST_AFTER_MS = 15 * 60_000;
/** Events this old without their deliveries missed the fan-out message: the sweep fans them out again. */
const REFAN_AFTER_MS = 5 * 60_000;
const USER_AGENT = "billing-engine-webhooks/1";
const SYSTEM: Actor = systemActor("webhooks");

/** Delay before the next attempt after `attempts` failed ones: 5 min doubling, capped at 12 h. */
export const retryDelaySeconds = (attempts: number) => Math.min(MAX_HOP_SECONDS, FIRST_RETRY_SECONDS * 2 ** Math.max(0, attempts - 1));

const log = (level: string, msg: string, fields: Record<string, unknown>) => console.log(JSON.stringify({ level, msg, ...fields }));
const chunks = <T>(xs: T[], n: number) => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

async function send(queue: Producer<WebhookMessage>, messages: WebhookMessage[], delaySeconds?: number): Promise<void> {
  const failed = (count: number) => (e: unknown) => log("error", "webhook enqueue failed; the hourly sweep sends it again", { count, error: String(e) });
  // A delayed message is a retry of one delivery: sent on its own with its delay.
  if (delaySeconds) for (const m of messages) await queue.send(m, { delaySeconds }).catch(failed(1));
  else for (const batch of chunks(messages, 100)) await queue.sendAll(batch).catch(failed(batch.length));
}

/**
 * Whether any endpoint is enabled, cached per isolate for ENDPOINTS_CACHE_MS: with none (the common case for an
 * engine nobody subscribed to yet), a commit sends no fan-out message at all. An endpoint created in another isolate
 * within that window gets the events it missed from the hourly sweep, which re-fans the last day's events.
 */
const ENDPOINTS_CACHE_MS = 30_000;
let endpointsCache: { any: boolean; at: number } | null = null;

export function forgetEndpointsCache(): void {
  endpointsCache = null;
}

async function anyEnabledEndpoint(env: Env): Promise<boolean> {
  const now = Date.now();
  if (endpointsCache && now - endpointsCache.at < ENDPOINTS_CACHE_MS) return endpointsCache.any;
  // The built-in notifications endpoint only takes customer.notification events, which say so (see enqueueFanout).
  const row = await dbOf(env)
    .select({ id: webhookEndpoints.id })
    .from(webhookEndpoints)
    .where(and(eq(webhookEndpoints.disabled, false), ne(webhookEndpoints.id, NOTIFICATIONS_ENDPOINT_ID)))
    .limit(1)
    .get();
  endpointsCache = { any: row !== undefined, at: now };
  return endpointsCache.any;
}

/** Committed events go to the webhooks queue for fan-out (off the request path; a lost message is swept up hourly). */
export async function enqueueFanout(env: Env, eventIds: string[], types?: readonly string[]): Promise<void> {
  if (!types?.includes(NOTIFICATION_EVENT) && !(await anyEnabledEndpoint(env))) return;
  await send(queuesOf(env).webhooks, chunks(eventIds, 50).map((ids) => ({ type: "events.fanout", eventIds: ids })));
}
onEventsCommitted(enqueueFanout);

const enabledEndpoints = (db: Db) => db.select().from(webhookEndpoints).where(eq(webhookEndpoints.disabled, false)).orderBy(asc(webhookEndpoints.createdAt)).limit(1000).all();

/**
 * The sweep scans at most this many endpoints per run (one query each), a different page each hour, so a run stays
 * far inside the 1,000-queries-per-invocation limit however many endpoints exist.
 */
export const SWEEP_ENDPOINTS_PER_RUN = 200;
const HOUR_MS = 60 * 60_000;

async function endpointsToSweep(db: Db, now: number) {
  const total = (await db.select({ n: count() }).from(webhookEndpoints).where(eq(webhookEndpoints.disabled, false)).get())?.n ?? 0;
  const pages = Math.max(1, Math.ceil(total / SWEEP_ENDPOINTS_PER_RUN));
  const page = Math.floor(now / HOUR_MS) % pages;
  return db
    .select()
    .from(webhookEndpoints)
    .where(eq(webhookEndpoints.disabled, false))
    .orderBy(asc(webhookEndpoints.createdAt), asc(webhookEndpoints.id))
    .limit(SWEEP_ENDPOINTS_PER_RUN)
    .offset(page * SWEEP_ENDPOINTS_PER_RUN)
    .all();
}

/** Deliveries (and their attempts) older than this are deleted by the daily cleanup, like events in D1. */
export const DELIVERY_RETENTION_MS = 30 * DAY_MS;

/** Daily: deliveries finished more than 30 days ago and their attempts, in bounded pages (more left → next day). */
export async function cleanupWebhookDeliveries(db: Db, now: number, pageSize = 500, maxPages = 20): Promise<{ deleted: number; hasMore: boolean }> {
  let deleted = 0;
  for (let page = 0; page < maxPages; page++) {
    const old = await db
      .select({ id: webhookDeliveries.id })
      .from(webhookDeliveries)
      .where(and(ne(webhookDeliveries.status, "pending"), lt(webhookDeliveries.createdAt, now - DELIVERY_RETENTION_MS)))
      .limit(pageSize)
      .all();
    if (!old.length) return { deleted, hasMore: false };
    for (const ids of chunks(old.map((r) => r.id), 90)) {
      await db.batch([db.delete(webhookDeliveryAttempts).where(inArray(webhookDeliveryAttempts.deliveryId, ids)), db.delete(webhookDeliveries).where(inArray(webhookDeliveries.id, ids))]);
    }
    deleted += old.length;
    if (old.length < pageSize) return { deleted, hasMore: false };
  }
  return { deleted, hasMore: true };
}

/** One delivery per (event, endpoint), created once (INSERT OR IGNORE on the pair), each handed to the queue. */
async function createDeliveries(s: Services, pairs: { eventId: string; endpointId: string }[], now: number): Promise<string[]> {
  const { db } = s;
  const created: string[] = [];
  for (const part of chunks(pairs, 50)) {
    const inserts = part.map((p) =>
      db
        .insert(webhookDeliveries)
        .values({ id: newId("wd"), eventId: p.eventId, endpointId: p.endpointId, status: "pending", attempts: 0, nextAttemptAt: now, createdAt: now, updatedAt: now })
        .onConflictDoNothing()
        .returning({ id: webhookDeliveries.id }),
    );
    const results = (await db.batch(inserts as unknown as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]])) as { id: string }[][];
    for (const rows of results) for (const r of rows) created.push(r.id);
  }
  await send(s.queues.webhooks, created.map((deliveryId) => ({ type: "webhook.deliver", deliveryId })));
  return created;
}

/** Deliveries one fan-out message writes: an insert each, in batches of 50, plus its sends. */
export const MAX_PAIRS_PER_FANOUT = 400;

/**
 * `events.fanout`: each event to every enabled endpoint that subscribes to its type and existed when it happened.
 * An event of a customer on a test clock is stamped in the clock's time, which says nothing about when it was
 * written: it goes to the endpoints that exist at its fan-out.
 */
export async function fanOut(s: Services, eventIds: string[]): Promise<HandlerResult> {
  const { db } = s;
  const now = s.clock.wall;
  const rows = eventIds.length
    ? await db
        .select({ id: events.id, type: events.type, createdAt: events.createdAt, testClockId: customers.testClockId })
        .from(events)
        .leftJoin(customers, eq(customers.id, events.customerId))
        .where(inArray(events.id, eventIds))
        .all()
    : [];
  if (!rows.length) return { status: "done" };
  if (rows.some((e) => e.type === NOTIFICATION_EVENT)) await ensureNotificationEndpoint(s, now);
  const endpoints = await enabledEndpoints(db);
  const happened = (e: (typeof rows)[number]) => (e.testClockId ? now : e.createdAt);
  const pairs = rows.flatMap((e) => endpoints.filter((ep) => ep.createdAt <= happened(e) && matchesEvent(ep.enabledEvents, e.type)).map((ep) => ({ eventId: e.id, endpointId: ep.id })));
  if (pairs.length > MAX_PAIRS_PER_FANOUT && rows.length > 1) {
    // More deliveries than one invocation writes (an insert each): the events go on in smaller messages, each of
    // at most MAX_PAIRS_PER_FANOUT deliveries (an event has at most MAX_ENDPOINTS, so one event always fits).
    const perEvent = new Map<string, number>();
    for (const p of pairs) perEvent.set(p.eventId, (perEvent.get(p.eventId) ?? 0) + 1);
    const groups: string[][] = [[]];
    let size = 0;
    for (const e of rows) {
      const n = perEvent.get(e.id) ?? 0;
      if (size + n > MAX_PAIRS_PER_FANOUT && groups.at(-1)!.length) {
        groups.push([]);
        size = 0;
      }
      groups.at(-1)!.push(e.id);
      size += n;
    }
    await send(s.queues.webhooks, groups.map((ids) => ({ type: "events.fanout", eventIds: ids })));
    return { status: "done" };
  }
  await createDeliveries(s, pairs, now);
  return { status: "done" };
}

type Attempted = { delivery: DeliveryRow; attempt: typeof webhookDeliveryAttempts.$inferSelect | null };

/** Closes a delivery that can no longer be attempted (its endpoint was deleted or disabled, its event is gone). */
async function abandon(db: Db, d: DeliveryRow, reason: string, now: number): Promise<Attempted> {
  const patch = { status: "failed" as const, nextAttemptAt: null, lastError: reason, updatedAt: now };
  await db.update(webhookDeliveries).set(patch).where(and(eq(webhookDeliveries.id, d.id), eq(webhookDeliveries.status, "pending")));
  return { delivery: { ...d, ...patch }, attempt: null };
}

/**
 * One signed POST of the event to the endpoint, recorded as an attempt. 2xx: succeeded. Otherwise the next attempt
 * is scheduled with backoff (a delayed queue message) until the retry window closes, then `failed`; a failure also
 * extends the endpoint's failure streak, which disables it after AUTO_DISABLE_AFTER_MS. The caller has claimed `d`.
 * `once`: a failure changes neither the status nor the schedule (a resend of a delivery that already succeeded).
 */
async function attempt(s: Services, d: DeliveryRow, now: number, once = false): Promise<Attempted> {
  const { env, db } = s;
  const [endpoint, event] = await Promise.all([
    db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, d.endpointId)).get(),
    db.select().from(events).where(eq(events.id, d.eventId)).get(),
  ]);
  if (!endpoint) return abandon(db, d, "the endpoint was deleted", now);
  if (endpoint.disabled) return abandon(db, d, "the endpoint is disabled", now);
  if (!event) return abandon(db, d, "the event no longer exists", now);

  // The built-in endpoint posts a customer notification's envelope to NOTIFY_WEBHOOK_URL (see ./notifications.ts).
  const notice = isNotificationsEndpoint(endpoint.id) && event.type === NOTIFICATION_EVENT ? await notificationTarget(s, event, now) : null;
  if (notice?.kind === "gone") return abandon(db, d, "the notification no longer exists", now);
  const target =
    notice?.kind === "post"
      ? notice
      : { url: isNotificationsEndpoint(endpoint.id) ? env.NOTIFY_WEBHOOK_URL : endpoint.url, webhookId: event.id, body: JSON.stringify(toEvent(event)), userAgent: USER_AGENT };
  const timestamp = Math.floor(now / 1000);
  let statusCode: number | null = null;
  let error: string | null = notice?.kind === "refused" ? notice.error : null;
  const started = Date.now();
  if (notice?.kind !== "refused") {
    try {
      const secrets = isNotificationsEndpoint(endpoint.id) ? [env.NOTIFY_WEBHOOK_SECRET] : await signingSecrets(env, endpoint, now);
      const headers = await standardWebhookHeaders(secrets, target.webhookId, timestamp, target.body, target.userAgent);
      const res = await fetch(target.url, { method: "POST", headers, body: target.body, redirect: "manual", signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS) });
      statusCode = res.status;
      const answer = (await res.text().catch(() => "")).slice(0, 200);
      if (!res.ok) error = `answered ${res.status}${answer ? `: ${answer}` : ""}`;
    } catch (e) {
      const name = (e as { name?: string } | null)?.name;
      error = name === "TimeoutError" || name === "AbortError" ? `no answer within ${DELIVERY_TIMEOUT_MS / 1000} s` : `delivery failed: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  const latencyMs = Math.max(0, Date.now() - started);
  const ok = error === null;
  const attempts = d.attempts + 1;
  const delay = retryDelaySeconds(attempts);
  // A notification the receiver refuses (or that cannot be sent: not configured) fails at once; others retry.
  const refused = notice !== null && (notice.kind === "refused" || isRefusal(statusCode));
  const giveUp = !ok && !once && (refused || now + delay * 1000 > d.createdAt + RETRY_WINDOW_MS);
  const patch = {
    status: ok ? ("succeeded" as const) : once ? d.status : giveUp ? ("failed" as const) : ("pending" as const),
    attempts,
    nextAttemptAt: ok || giveUp || once ? null : now + delay * 1000,
    lastStatusCode: statusCode,
    lastError: error,
    updatedAt: now,
  };
  const attemptRow = { id: newId("wda"), deliveryId: d.id, at: now, statusCode, latencyMs, error };
  // The notification's row follows its delivery, in the same batch (with its audit row when it is decided).
  const noticeSide: { statements: BatchItem<"sqlite">[]; audit: AuditEntry[] } =
    notice && !once ? notificationOutcome(db, notice, { ok, giveUp, error, statusCode, attempts }, now) : { statements: [], audit: [] };
  await commitWithAudit(
    db,
    [
      db.insert(webhookDeliveryAttempts).values(attemptRow),
      db.update(webhookDeliveries).set(patch).where(eq(webhookDeliveries.id, d.id)),
      ok
        ? db.update(webhookEndpoints).set({ failingSince: null }).where(and(eq(webhookEndpoints.id, endpoint.id), sql`${webhookEndpoints.failingSince} IS NOT NULL`))
        : db.update(webhookEndpoints).set({ failingSince: sql`coalesce(${webhookEndpoints.failingSince}, ${now})` }).where(eq(webhookEndpoints.id, endpoint.id)),
      ...noticeSide.statements,
    ],
    noticeSide.audit,
    { actor: NOTIFIER, now },
  );
  if (patch.status === "pending") await send(s.queues.webhooks, [{ type: "webhook.deliver", deliveryId: d.id }], delay);
  if (!ok) {
    s.log.warn("webhook delivery failed", { deliveryId: d.id, endpointId: endpoint.id, eventId: event.id, attempts, error, giveUp });
    // The built-in endpoint is never disabled: its failures are failed notifications (CustomerNotificationsFailing).
    if (endpoint.failingSince !== null && now - endpoint.failingSince >= AUTO_DISABLE_AFTER_MS && !isNotificationsEndpoint(endpoint.id)) await disableFailing(db, endpoint, now);
  }
  return { delivery: { ...d, ...patch }, attempt: attemptRow };
}

/** Disables an endpoint whose deliveries kept failing, with a `webhook_endpoint.disabled` event and an audit row. */
async function disableFailing(db: Db, endpoint: EndpointRow, now: number): Promise<void> {
  const reason = `deliveries failing since ${iso(endpoint.failingSince)}`;
  const after: EndpointRow = { ...endpoint, disabled: true, disabledReason: reason, updatedAt: now };
  try {
    await commit(
      db,
      change({
        statements: [
          db.update(webhookEndpoints).set({ disabled: true, disabledReason: reason, updatedAt: now }).where(and(eq(webhookEndpoints.id, endpoint.id), eq(webhookEndpoints.disabled, false))),
          assertChanged(db),
        ],
        audit: [{ action: "webhook_endpoint.disabled", targetType: "webhook_endpoint", targetId: endpoint.id, before: { disabled: false }, after: { disabled: true, disabledReason: reason } }],
        events: [{ type: "webhook_endpoint.disabled", objectType: "webhook_endpoint", objectId: endpoint.id, object: toEndpoint(after), previousAttributes: { disabled: false, disabledReason: null } }],
      }),
      { actor: SYSTEM, now },
    );
    log("warn", "webhook endpoint disabled", { endpointId: endpoint.id, reason });
  } catch (e) {
    if (!isAssertionFailure(e)) throw e; // disabled already (by a racing delivery or an administrator)
  }
}

/** `webhook.deliver`: an attempt when the delivery is pending and due; a duplicate or early message drops out. */
export async function deliverScheduled(s: Services, deliveryId: string): Promise<HandlerResult> {
  const { db } = s;
  const now = s.clock.wall;
  const claimed = await db
    .update(webhookDeliveries)
    .set({ nextAttemptAt: now + LEASE_MS, updatedAt: now })
    .where(and(eq(webhookDeliveries.id, deliveryId), eq(webhookDeliveries.status, "pending"), or(isNull(webhookDeliveries.nextAttemptAt), lte(webhookDeliveries.nextAttemptAt, now + 5_000))))
    .returning()
    .get();
  if (claimed) await attempt(s, claimed, now);
  return { status: "done" };
}

/**
 * An attempt now, whatever the delivery's state or schedule (resend, test event): created if missing. A failure
 * schedules retries as any delivery's would (a delivery past its retry window stays `failed`), except that a
 * delivery that already succeeded stays `succeeded`: the receiver had it.
 */
export async function deliverNow(s: Services, eventId: string, endpointId: string, now: number): Promise<Attempted> {
  const { db } = s;
  await db
    .insert(webhookDeliveries)
    .values({ id: newId("wd"), eventId, endpointId, status: "pending", attempts: 0, nextAttemptAt: now, createdAt: now, updatedAt: now })
    .onConflictDoNothing();
  const pair = and(eq(webhookDeliveries.eventId, eventId), eq(webhookDeliveries.endpointId, endpointId));
  const before = (await db.select({ status: webhookDeliveries.status }).from(webhookDeliveries).where(pair).get())!;
  const succeeded = before.status === "succeeded";
  const claimed = await db
    .update(webhookDeliveries)
    .set({ status: succeeded ? "succeeded" : "pending", nextAttemptAt: succeeded ? null : now + LEASE_MS, updatedAt: now })
    .where(pair)
    .returning()
    .get();
  return attempt(s, claimed!, now, succeeded);
}

/**
 * Hourly, in bounded pages: pending deliveries whose message was lost get another, and events of the last day that
 * an enabled endpoint subscribes to but has no delivery of (their fan-out message was lost) are fanned out again.
 */
export async function sweepWebhookDeliveries(s: Services, now: number, limit = 500): Promise<{ resent: number; refanned: number }> {
  const { db } = s;
  const lost = await db
    .select({ id: webhookDeliveries.id })
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.status, "pending"), lte(webhookDeliveries.nextAttemptAt, now - LOST_AFTER_MS)))
    .orderBy(asc(webhookDeliveries.nextAttemptAt))
    .limit(limit)
    .all();
  await send(s.queues.webhooks, lost.map((r) => ({ type: "webhook.deliver", deliveryId: r.id })));

  const pairs: { eventId: string; endpointId: string }[] = [];
  for (const ep of await endpointsToSweep(db, now)) {
    if (pairs.length >= limit) break;
    const types: SQL | undefined = ep.enabledEvents.includes("*")
      ? undefined
      : or(...ep.enabledEvents.map((p) => (p.endsWith(".*") ? like(events.type, `${p.slice(0, -1)}%`) : eq(events.type, p))));
    const missed = await db
      .select({ id: events.id, type: events.type })
      .from(events)
      .where(
        and(
          gte(events.createdAt, Math.max(now - DAY_MS, ep.createdAt)),
          lte(events.createdAt, now - REFAN_AFTER_MS),
          types,
          notExists(db.select({ one: sql`1` }).from(webhookDeliveries).where(and(eq(webhookDeliveries.eventId, events.id), eq(webhookDeliveries.endpointId, ep.id)))),
        ),
      )
      .orderBy(asc(events.createdAt))
      .limit(limit - pairs.length)
      .all();
    for (const e of missed) if (matchesEvent(ep.enabledEvents, e.type)) pairs.push({ eventId: e.id, endpointId: ep.id });
  }
  const created = await createDeliveries(s, pairs, now);
  return { resent: lost.length, refanned: created.length };
}

