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
  | { index: number; eventId: string | null; status: "accepted"; periodStart: number }
  | { index: number; eventId: string | null; status: "duplicate" }
  | { index: number; eventId: string | null; status: "rejected"; reason: RejectReason; detail: string; retryable?: boolean };

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
