import { MAX_METADATA_CHARS, MAX_METADATA_KEYS, quantityText, type ParsedEvent } from "../usage/events";
import { ingestEvents } from "../usage/ingest";
import type { IngestOutcome, RejectReason } from "../usage/meter-types";
import { pickRoute, resolveCached, resolveSubject, type Resolved, type RoutedMeter, type Subject } from "../usage/routing";

// Drop-in senders name a customer (or subscription) and an event name; this turns their events into the native
// ingestion's events (subscription + meter + quantity) and hands them to the same use case as POST /api/v1/usage.

type Scalar = string | number | boolean | null;

/** One foreign event, already checked for shape by its route (Stripe or CloudEvents). */
export type RoutedItem = {
  index: number;
  /** A customer, Stripe customer or subscription id: read by the request's ways in (ingestRouted's `via`). */
  subject: string;
  eventName: string;
  /** The sender's event id (Stripe identifier, CloudEvent id): the dedup key within the subscription's meter. */
  eventId: string;
  /** Epoch ms; null = now as the meter sees it. */
  timestamp: number | null;
  /** Where valueProperty and groupBy are read: a CloudEvent's data, a Stripe payload. */
  data: Record<string, unknown>;
  /** Metadata the route keeps as is (e.g. a Stripe payload's other keys). */
  metadata?: Record<string, Scalar>;
};

export type RoutedOutcome = IngestOutcome & { subscriptionId: string | null; meterId: string | null };

/** Refusals a stale cached route could explain: asked again of the directory (bypassing the isolate cache) once. */
const STALE_REASONS: ReadonlySet<RejectReason> = new Set(["unknown_subscription", "subscription_canceled", "subscription_paused", "unknown_meter"]);
/** A cached route younger than this is not re-read after a refusal (bounds directory reads per subject and isolate). */
const RECHECK_AFTER_MS = 1_000;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

// A path's steps, split once: paths come from meter configurations (a handful), and every event reads one or more.
const STEPS_CACHED = 1_000;
const steps = new Map<string, string[]>();
function stepsOf(path: string): string[] {
  let s = steps.get(path);
  if (!s) {
    if (steps.size >= STEPS_CACHED) steps.clear();
    steps.set(path, (s = path.slice(2).split(".")));
  }
  return s;
}

/** The value at a dotted JSON path (`$.a.b`) of an object; undefined when any step is missing. */
export function valueAt(data: Record<string, unknown>, path: string): unknown {
  let v: unknown = data;
  for (const key of stepsOf(path)) {
    if (!isObject(v) || !Object.hasOwn(v, key)) return undefined;
    v = v[key];
  }
  return v;
}

const hasKeys = (o: object) => {
  for (const _ in o) return true;
  return false;
};

function toEvent(item: RoutedItem, subscriptionId: string, meter: RoutedMeter): ParsedEvent | { reason: RejectReason; detail: string } {
  const path = meter.valueProperty ?? "$.value";
  const raw = valueAt(item.data, path);
  let quantity = "1";
  if (raw === undefined || raw === null) {
    if (meter.aggregation !== "count" && meter.aggregation !== "unique_count") return { reason: "invalid_event", detail: `${path} is required by the meter ${meter.meterId} (its valueProperty)` };
  } else {
    const t = typeof raw === "number" || typeof raw === "string" ? quantityText(raw) : null;
    if (!t) return { reason: "invalid_event", detail: `${path} must be a decimal number` };
    if (!t.ok) return { reason: "invalid_event", detail: t.negative ? `${path} must not be negative` : `${path} must be a decimal number: ${t.error}` };
    quantity = t.text;
  }
  const field = meter.aggregationField;
  // Most events keep nothing (no groupBy, no unique field, no extra Stripe keys): no metadata object to build.
  let kept: Record<string, Scalar> | null = null;
  if (field || meter.groupBy || (item.metadata && hasKeys(item.metadata))) {
    const metadata: Record<string, Scalar> = { ...item.metadata };
    if (meter.groupBy) {
      for (const name in meter.groupBy) {
        const p = meter.groupBy[name]!;
        const v = valueAt(item.data, p);
        if (typeof v === "number" && !Number.isFinite(v)) return { reason: "invalid_event", detail: `${p} must be a finite number` };
        if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") metadata[name] = v;
      }
    }
    // unique_count counts a metadata field: take it from the data's top level when groupBy did not name it. Own
    // properties only: a field named like an Object method ("constructor") must not read the prototype's.
    if (field && !Object.hasOwn(metadata, field) && Object.hasOwn(item.data, field)) {
      const v = item.data[field];
      if (typeof v === "number" && !Number.isFinite(v)) return { reason: "invalid_event", detail: `$.${field} must be a finite number` };
      if (typeof v === "string" || typeof v === "number") metadata[field] = v;
    }
    const keys = Object.keys(metadata);
    if (keys.length > MAX_METADATA_KEYS) return { reason: "invalid_event", detail: `at most ${MAX_METADATA_KEYS} metadata properties` };
    if (keys.length && JSON.stringify(metadata).length > MAX_METADATA_CHARS) return { reason: "invalid_event", detail: `metadata kept must be at most ${MAX_METADATA_CHARS} characters as JSON` };
    if (keys.length) kept = metadata;
  }
  return {
    index: item.index,
    eventKey: `id:${item.eventId}`,
    eventId: item.eventId,
    subscriptionId,
    meterId: meter.meterId,
    quantity,
    timestamp: item.timestamp,
    metadata: kept,
  };
}

type Routed = { events: ParsedEvent[]; refused: RoutedOutcome[] };

type Resolutions = Map<string, Resolved>;

function route(items: RoutedItem[], resolved: Resolutions): Routed {
  const out: Routed = { events: [], refused: [] };
  const refuse = (item: RoutedItem, reason: RejectReason, detail: string, subscriptionId: string | null = null, meterId: string | null = null) =>
    out.refused.push({ index: item.index, eventId: item.eventId, status: "rejected", reason, detail, subscriptionId, meterId });
  for (const item of items) {
    const r = resolved.get(item.subject)!;
    if (!r.entries.length) {
      refuse(item, "unknown_subscription", `no customer or subscription ${item.subject} is known to usage ingestion (a customer needs a subscription with a meter)`);
      continue;
    }
    const picked = pickRoute(r.entries, item.eventName);
    if (!picked) {
      refuse(item, "unknown_meter", `no subscription of ${item.subject} has a meter for the event name ${item.eventName}`);
      continue;
    }
    const ev = toEvent(item, picked.subscriptionId, picked.meter);
    if ("reason" in ev) refuse(item, ev.reason, ev.detail, picked.subscriptionId, picked.meter.meterId);
    else out.events.push(ev);
  }
  return out;
}

/** Each distinct subject's subscriptions: from the isolate cache without an await when it holds them all. */
function resolveAll(env: Env, via: Subject["via"], ids: string[], now: number, fresh: boolean): Resolutions | Promise<Resolutions> {
  const out: Resolutions = new Map();
  const missing = new Set<string>();
  for (const id of ids) {
    if (out.has(id) || missing.has(id)) continue;
    const r = fresh ? undefined : resolveCached({ id, via }, now);
    if (r) out.set(id, r);
    else missing.add(id);
  }
  if (!missing.size) return out;
  return Promise.all([...missing].map(async (id) => out.set(id, await resolveSubject(env, { id, via }, now, fresh)))).then(() => out);
}

async function ingestOnce(env: Env, items: RoutedItem[], resolved: Resolutions, now: number): Promise<RoutedOutcome[]> {
  const r = route(items, resolved);
  if (!r.events.length) return r.refused;
  const outcomes = await ingestEvents(env, r.events, now);
  // Each event's route, by its index; the outcomes are ingestEvents' own fresh objects, completed in place.
  const byIndex: ParsedEvent[] = [];
  for (const e of r.events) byIndex[e.index] = e;
  for (const o of outcomes as RoutedOutcome[]) {
    const e = byIndex[o.index];
    o.subscriptionId = e?.subscriptionId ?? null;
    o.meterId = e?.meterId ?? null;
  }
  for (const o of r.refused) outcomes.push(o);
  return outcomes as RoutedOutcome[];
}

/**
 * Routes each event to its subscription's meter and ingests it with the native use case, in one round of meter calls.
 * Routes come from the per-isolate cache; an event refused for a reason a stale route could explain (the customer's
 * subscription changed since it was cached) is routed again from the directory itself and, if that changes its
 * route, sent once more. `via`: how the route reads its senders' subjects (e.g. a Stripe id, else our customer id).
 * Outcomes are in index order.
 */
export async function ingestRouted(env: Env, via: Subject["via"], items: RoutedItem[], now: number): Promise<RoutedOutcome[]> {
  const resolved = await resolveAll(env, via, items.map((i) => i.subject), now, false);
  const first = await ingestOnce(env, items, resolved, now);
  let itemAt: Map<number, RoutedItem> | undefined; // built only when something was refused
  const suspect = first.filter((o) => {
    if (o.status !== "rejected" || !STALE_REASONS.has(o.reason)) return false;
    itemAt ??= new Map(items.map((i) => [i.index, i]));
    const r = resolved.get(itemAt.get(o.index)!.subject)!;
    return now - r.fetchedAt >= RECHECK_AFTER_MS;
  });
  if (!suspect.length) return first.sort((a, b) => a.index - b.index);
  const again = new Set(suspect.map((o) => o.index));
  const retryItems = items.filter((i) => again.has(i.index));
  const fresh = await resolveAll(env, via, retryItems.map((i) => i.subject), now, true);
  const firstAt = new Map(first.map((o) => [o.index, o]));
  const changed = retryItems.filter((i) => {
    const before = firstAt.get(i.index)!;
    const picked = pickRoute(fresh.get(i.subject)!.entries, i.eventName);
    return (picked?.subscriptionId ?? null) !== before.subscriptionId || (picked?.meter.meterId ?? null) !== before.meterId;
  });
  if (!changed.length) return first.sort((a, b) => a.index - b.index);
  const redone = new Map((await ingestOnce(env, changed, fresh, now)).map((o) => [o.index, o]));
  return first.map((o) => redone.get(o.index) ?? o).sort((a, b) => a.index - b.index);
}
