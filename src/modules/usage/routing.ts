import { eq, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { customers, plans, subscriptions, type StoredMeteredPrice, type SubscriptionStatus } from "../../db/schema";
import type { MeterConfig } from "./meter-config";
import { objectIdOf, usageMeterOf } from "../../platform/meters";

// Routing for senders that name a customer (a Stripe customer id, a CloudEvents subject) and an event name instead of
// a subscription and a meter. The directory lives in IngestDirectory objects, pushed with each meter configuration;
// the ingestion path reads it through a per-isolate cache, never from D1.

export type RoutedMeter = Pick<StoredMeteredPrice, "meterId" | "aggregation" | "aggregationField" | "valueProperty" | "groupBy"> & { eventName: string };
export type RoutingEntry = { subscriptionId: string; status: SubscriptionStatus; version: number; anchor: number; meters: RoutedMeter[] };
export type CustomerRouting = { customerId: string; stripeCustomerId: string | null; subscriptions: Record<string, RoutingEntry> };

/** The customer metadata key holding the customer's Stripe id (`cus_…` at Stripe). */
export const STRIPE_CUSTOMER_KEY = "stripeCustomerId";

type SubscriptionRow = typeof subscriptions.$inferSelect;
type PlanRow = typeof plans.$inferSelect;

const routedMeter = (m: StoredMeteredPrice): RoutedMeter => ({
  meterId: m.meterId,
  eventName: m.eventName ?? m.meterId,
  aggregation: m.aggregation,
  ...(m.aggregationField !== undefined && { aggregationField: m.aggregationField }),
  ...(m.valueProperty !== undefined && { valueProperty: m.valueProperty }),
  ...(m.groupBy !== undefined && { groupBy: m.groupBy }),
});

export function routingEntryOf(c: Pick<MeterConfig, "subscriptionId" | "status" | "version" | "billingAnchor" | "meters">): RoutingEntry {
  return { subscriptionId: c.subscriptionId, status: c.status, version: c.version, anchor: c.billingAnchor, meters: c.meters.map(routedMeter) };
}

export const directoryStub = (env: Env, name: string) => env.INGEST_DIRECTORY.get(objectIdOf(env.INGEST_DIRECTORY, name));

/** Called by pushMeterConfig: the customer's directory learns the subscription's state (and its Stripe id). Throws on failure. */
export async function pushRouting(s: Services, sub: SubscriptionRow, plan: PlanRow, knownCustomer?: { metadata: Record<string, string> }): Promise<void> {
  const { env, db } = s;
  // A caller that already read the customer (a renewal) saves the read.
  const customer = knownCustomer ?? (await db.select({ metadata: customers.metadata }).from(customers).where(eq(customers.id, sub.customerId)).get());
  const stripeId = customer?.metadata[STRIPE_CUSTOMER_KEY] || null;
  const entry = routingEntryOf({
    subscriptionId: sub.id,
    status: sub.status,
    version: sub.configVersion,
    billingAnchor: sub.billingAnchor,
    meters: plan.prices.filter((p): p is StoredMeteredPrice => p.type === "metered"),
  });
  await directoryStub(env, `customer:${sub.customerId}`).upsertSubscription(sub.customerId, stripeId, entry);
  if (stripeId) await directoryStub(env, `stripe:${stripeId}`).setAlias(sub.customerId);
  forgetRouting(sub.customerId, stripeId);
}

/**
 * Called when a customer's metadata set its Stripe id: the new id points at the customer, and the customer's record
 * (which has the last word) no longer answers to the old one. A failure is logged, not fatal: the customer's
 * subscriptions are marked behind, and the resync's push carries the id again.
 */
export async function syncStripeCustomerId(s: Services, customerId: string, stripeCustomerId: string | null): Promise<void> {
  try {
    if (stripeCustomerId) await directoryStub(s.env, `stripe:${stripeCustomerId}`).setAlias(customerId);
    await directoryStub(s.env, `customer:${customerId}`).setStripeCustomerId(customerId, stripeCustomerId);
  } catch (e) {
    s.log.error("ingest directory push failed", { customerId, error: String(e) });
    // The customer's subscriptions count as behind, so the hourly resync pushes them, carrying the id again (a plain
    // renewal no longer does). By a new version, not by lowering the acknowledged one: an acknowledgement still on
    // its way (a queue batch's trailing write, platform/trailing-writes.ts) names at most the old version, so it
    // cannot take the mark back. (SQLite computes every SET from the row as it was.) A change racing this one
    // finds the version moved and is retried. A failure here too is only logged: the next change of the customer
    // retries.
    await s.db
      .update(subscriptions)
      .set({ configVersion: sql`${subscriptions.configVersion} + 1`, meterSyncedVersion: sql`min(${subscriptions.meterSyncedVersion}, ${subscriptions.configVersion})` })
      .where(eq(subscriptions.customerId, customerId))
      .catch((err: unknown) => s.log.error("marking subscriptions behind failed", { customerId, error: String(err) }));
  }
  forgetRouting(customerId, stripeCustomerId);
}

// --- the read side (per-isolate cache in front of the directory objects) ---

/** How long an isolate trusts a cached answer; a meter's refusal of a stale route re-reads it sooner (see ingestRouted). */
export const ROUTING_CACHE_MS = 30_000;
const CACHE_MAX = 10_000;
type Cached<T> = { value: T; at: number };
const cache = new Map<string, Cached<unknown>>();

function remember<T>(key: string, value: T, now: number): void {
  cache.delete(key);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, { value, at: now });
}

export function forgetRouting(customerId: string, stripeCustomerId: string | null): void {
  cache.delete(`customer:${customerId}`);
  if (stripeCustomerId) cache.delete(`stripe:${stripeCustomerId}`);
}

/** POST /admin/config/reload and tests: every subject is read from its directory again. */
export function dropRoutingCache(): number {
  const n = cache.size;
  cache.clear();
  return n;
}

/** What a sender named, and how to read it: each way in turn until one knows it (e.g. a Stripe id, else our customer id). */
export type SubjectKind = "customer" | "stripe" | "subscription";
export type Subject = { id: string; via: readonly SubjectKind[] };
export type Resolved = { customerId: string | null; entries: RoutingEntry[]; fetchedAt: number };

type SubscriptionRoute = { customerId: string; entry: RoutingEntry } | null;
/** Answers by cache key: `stripe:<id>` → customer id, `customer:<id>` → CustomerRouting, `subscription:<id>` → SubscriptionRoute. */
type Lookup = (key: string) => Cached<unknown> | undefined;
/** A cache key the resolver needs and the lookup lacks: loaded, then resolution runs again. */
type Miss = { miss: string };

/**
 * One way of reading a subject, from answers already at hand; `at` is when the oldest answer it used was fetched
 * (also when it knows nothing).
 */
function resolveAs(get: Lookup, kind: SubjectKind, id: string, now: number): { r: Resolved | null; at: number } | Miss {
  if (kind === "subscription") {
    const hit = get(`subscription:${id}`) as Cached<SubscriptionRoute> | undefined;
    if (!hit) return { miss: `subscription:${id}` };
    return { r: hit.value ? { customerId: hit.value.customerId, entries: [hit.value.entry], fetchedAt: hit.at } : null, at: hit.at };
  }
  let customerId = id;
  let at = now;
  if (kind === "stripe") {
    const alias = get(`stripe:${id}`) as Cached<string | null> | undefined;
    if (!alias) return { miss: `stripe:${id}` };
    if (!alias.value) return { r: null, at: alias.at };
    customerId = alias.value;
    at = alias.at;
  }
  const routing = get(`customer:${customerId}`) as Cached<CustomerRouting | null> | undefined;
  if (!routing) return { miss: `customer:${customerId}` };
  at = Math.min(at, routing.at);
  const r = routing.value;
  // The customer's own record decides: an alias left behind by a changed Stripe id resolves to nothing.
  if (!r || (kind === "stripe" && r.stripeCustomerId !== id)) return { r: null, at };
  const entries = Object.values(r.subscriptions);
  return { r: entries.length ? { customerId, entries, fetchedAt: at } : null, at };
}

function resolveWith(get: Lookup, subject: Subject, now: number): Resolved | Miss {
  let oldest = now;
  for (const kind of subject.via) {
    const one = resolveAs(get, kind, subject.id, now);
    if ("miss" in one) return one;
    if (one.r) return one.r;
    oldest = Math.min(oldest, one.at);
  }
  return { customerId: null, entries: [], fetchedAt: oldest };
}

/** The isolate cache's answers younger than ROUTING_CACHE_MS. */
const fromCache =
  (now: number): Lookup =>
  (key) => {
    const hit = cache.get(key);
    return hit && now - hit.at <= ROUTING_CACHE_MS ? hit : undefined;
  };

/** Reads one cache key's answer from its directory (or, for a subscription, its meter). */
async function load(env: Env, key: string): Promise<unknown> {
  const colon = key.indexOf(":");
  const kind = key.slice(0, colon);
  const id = key.slice(colon + 1);
  if (kind === "subscription") {
    const config = await usageMeterOf(env, id).getConfig();
    return config ? ({ customerId: config.customerId, entry: routingEntryOf(config) } satisfies SubscriptionRoute) : null;
  }
  return kind === "stripe" ? directoryStub(env, key).alias() : directoryStub(env, key).routing();
}

/**
 * The subject's subscriptions when the isolate cache holds every answer needed (no await: the hot path's usual
 * case), else undefined.
 */
export function resolveCached(subject: Subject, now: number): Resolved | undefined {
  const r = resolveWith(fromCache(now), subject, now);
  return "miss" in r ? undefined : r;
}

/**
 * The subscriptions a subject stands for (none when no way in knows it); `fetchedAt` is the age of the oldest cached
 * answer used, so a caller can tell a fresh "unknown" from a stale one. `fresh` skips the isolate cache: every
 * answer is read from its directory again (and cached).
 */
export async function resolveSubject(env: Env, subject: Subject, now: number, fresh = false): Promise<Resolved> {
  const loaded = new Map<string, Cached<unknown>>();
  const cached = fromCache(now);
  const get: Lookup = fresh ? (key) => loaded.get(key) : (key) => loaded.get(key) ?? cached(key);
  // Each round loads the one answer the resolution stopped at: at most one per way in and step (three ways, two steps).
  for (;;) {
    const r = resolveWith(get, subject, now);
    if (!("miss" in r)) return r;
    const value = await load(env, r.miss);
    remember(r.miss, value, now);
    loaded.set(r.miss, { value, at: now });
  }
}

const ACCEPTS_USAGE: ReadonlySet<SubscriptionStatus> = new Set(["trialing", "active", "past_due"]);

/**
 * The subscription and meter an event name reaches among a subject's subscriptions: one that accepts usage first
 * (the newest by billing anchor), else the newest that carries the meter (its meter then says why it refuses).
 */
export function pickRoute(entries: RoutingEntry[], eventName: string): { subscriptionId: string; meter: RoutedMeter } | null {
  let best: { entry: RoutingEntry; meter: RoutedMeter } | null = null;
  for (const entry of entries) {
    const meter = entry.meters.find((m) => m.eventName === eventName);
    if (!meter) continue;
    if (!best) {
      best = { entry, meter };
      continue;
    }
    const a = ACCEPTS_USAGE.has(entry.status);
    const b = ACCEPTS_USAGE.has(best.entry.status);
    if ((a && !b) || (a === b && (entry.anchor > best.entry.anchor || (entry.anchor === best.entry.anchor && entry.subscriptionId > best.entry.subscriptionId)))) best = { entry, meter };
  }
  return best ? { subscriptionId: best.entry.subscriptionId, meter: best.meter } : null;
}
