import type { Aggregation } from "../../domain/aggregation";
import type { MeterConfig } from "./meter-config";

/** An event as the worker hands it to a meter: validated, quantity as an exact decimal string. */
export type IngestEvent = {
  index: number;
  /** Dedup key: the client's eventId, or Idempotency-Key + index, or a generated one. */
  eventKey: string;
  eventId: string | null;
  meterId: string;
  quantity: string;
  /** Event time (epoch ms); null means "now" as the meter sees it. */
  timestamp: number | null;
  metadata: Record<string, string | number | boolean | null> | null;
};

export type RejectReason =
  | "invalid_event"
  | "unknown_subscription"
  | "subscription_canceled"
  | "subscription_paused"
  | "unknown_meter"
  | "timestamp_in_future"
  | "before_subscription_start"
  | "period_closed"
  | "missing_unique_field"
  | "invalid_quantity"
  | "meter_unavailable";

export type IngestOutcome =
  | { index: number; eventId: string | null; status: "accepted" }
  | { index: number; eventId: string | null; status: "duplicate" }
  | { index: number; eventId: string | null; status: "rejected"; reason: RejectReason; detail: string; retryable?: boolean };

/**
 * A meter's answer to an ingest: the positions (in the events it was sent) of the accepted events, and the outcome of
 * every other event. Accepted events are most of them and need no more than their position: cloning an outcome object
 * per event back to the caller cost more than a sixth of a 100-event batch.
 */
export type IngestReply = { accepted: number[]; others: IngestOutcome[] };

export type MeterAggregate = {
  meterId: string;
  aggregation: Aggregation;
  value: string;
  eventCount: number;
  periodStart: number;
  periodEnd: number;
  closed: boolean;
  resetAt: number | null;
};

export type PeriodSelector = { kind: "current" } | { kind: "previous" } | { kind: "at"; start: number };

export type SummaryOutcome =
  | { ok: true; config: MeterConfig; periodStart: number; periodEnd: number; meters: MeterAggregate[] }
  | { ok: false; error: "unknown_subscription" | "no_such_period" };

export type ResetOutcome =
  | { ok: true; before: MeterAggregate; after: MeterAggregate }
  | { ok: false; error: "unknown_subscription" | "unknown_meter" | "no_such_period" };

/** One stored event as support sees it; `dedupeKey` is what made it unique (eventId, Idempotency-Key + index, or generated). */
export type StoredEvent = {
  eventId: string | null;
  dedupeKey: string;
  meterId: string;
  quantity: string;
  timestamp: number;
  receivedAt: number;
  metadata: Record<string, string | number | boolean | null> | null;
};

/** Position after the last event of a page: newest first by arrival, then by insertion order. */
export type EventCursor = { receivedAt: number; seq: number };

export type EventsOutcome =
  | { ok: true; periodStart: number; periodEnd: number; events: StoredEvent[]; next: EventCursor | null }
  | { ok: false; error: "unknown_subscription" | "no_such_period" };
