// The Prometheus exposition of /metrics: the families the runbook names, stored counters and histograms (written through
// src/platform/metrics.ts in the batch of the change they count) and the gauges computed from D1 at scrape time.
import { and, count, isNull, ne } from "drizzle-orm";
import type { Db } from "../../db/client";
import { metricCounters, notifications, subscriptions } from "../../db/schema";
import { currencyExponent, formatMinor } from "../../domain/money";
import { DEFAULT_GRACE_MS, isDue } from "../subscriptions/due";
import { canonicalLabels, escapeValue, parseLabels, type Labels } from "../../platform/metrics";

type Family = {
  name: string;
  type: "counter" | "gauge" | "histogram";
  help: string;
  /** Counters: the labels exposed; stored series are summed over any others (so the runbook's ratios match one to one). */
  labels?: readonly string[];
};

/** The families the exposition always describes (the runbook's, plus the success counter its dashboard reads). */
export const METRIC_FAMILIES: readonly Family[] = [
  { name: "billing_revenue_total", type: "counter", help: "Total revenue processed, in major units of the currency label (never summed across currencies)", labels: ["currency", "gateway", "plan"] },
  { name: "billing_payments_total", type: "counter", help: "Payment attempts sent to a gateway", labels: ["gateway"] },
  { name: "billing_payments_success_total", type: "counter", help: "Payment attempts that succeeded", labels: ["gateway"] },
  { name: "billing_payments_failed_total", type: "counter", help: "Payment attempts that failed", labels: ["gateway"] },
  { name: "billing_payment_duration_seconds", type: "histogram", help: "Payment processing duration" },
  { name: "billing_refunds_total", type: "counter", help: "Total refunds processed", labels: ["reason", "gateway"] },
  { name: "billing_http_request_duration_seconds", type: "histogram", help: "HTTP request duration" },
  { name: "billing_subscriptions_active", type: "gauge", help: "Number of subscriptions by plan and status (canceled excluded)" },
  { name: "billing_subscription_queue_size", type: "gauge", help: "Subscriptions overdue for their renewal, resume or scheduled change" },
  { name: "billing_notifications", type: "gauge", help: "Customer notifications by delivery status (queued, sent, failed)" },
];

type Row = { name: string; labels: string; value: number };
type Sample = { name: string; labels: Labels; value: string };

const labelText = (labels: Labels) => {
  const { le, ...rest } = labels;
  const parts = Object.keys(rest)
    .sort()
    .map((k) => `${k}="${escapeValue(rest[k]!)}"`);
  if (le !== undefined) parts.push(`le="${escapeValue(le)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

const line = (s: Sample) => `${s.name}${labelText(s.labels)} ${s.value}`;

/** Stored counter rows projected onto `keep` and summed. */
function project(rows: Row[], keep: readonly string[] | undefined): { labels: Labels; value: number }[] {
  const sums = new Map<string, { labels: Labels; value: number }>();
  for (const r of rows) {
    const all = parseLabels(r.labels);
    const labels = keep ? Object.fromEntries(keep.filter((k) => k in all).map((k) => [k, all[k]!])) : all;
    const key = canonicalLabels(labels);
    const hit = sums.get(key);
    if (hit) hit.value += r.value;
    else sums.set(key, { labels, value: r.value });
  }
  return [...sums.values()].sort((a, b) => canonicalLabels(a.labels).localeCompare(canonicalLabels(b.labels)));
}

function revenueValue(minor: number, currency: string | undefined): string {
  return currency && currencyExponent(currency) !== undefined ? formatMinor(minor, currency) : String(minor);
}

/** A histogram's series: buckets ascending (a bucket a series never stored carries the next lower one's count, or 0), then sum and count. */
function histogramLines(name: string, rows: Row[]): string[] {
  const series = new Map<string, { labels: Labels; buckets: Map<string, number>; sumMilli: number; count: number }>();
  const bounds = new Map<string, number>();
  const seriesOf = (labels: Labels) => {
    const key = canonicalLabels(labels);
    let s = series.get(key);
    if (!s) series.set(key, (s = { labels, buckets: new Map(), sumMilli: 0, count: 0 }));
    return s;
  };
  for (const r of rows) {
    const { le, ...labels } = parseLabels(r.labels);
    if (r.name === `${name}_bucket` && le !== undefined) {
      seriesOf(labels).buckets.set(le, r.value);
      bounds.set(le, le === "+Inf" ? Infinity : Number(le));
    } else if (r.name === `${name}_sum` || r.name === `${name}_sum_milli`) seriesOf(labels).sumMilli += r.value;
    else if (r.name === `${name}_count`) seriesOf(labels).count = r.value;
  }
  const les = [...bounds.entries()].sort((a, b) => a[1] - b[1]).map(([text]) => text);
  const out: string[] = [];
  for (const key of [...series.keys()].sort()) {
    const s = series.get(key)!;
    let carried = 0;
    for (const le of les) {
      carried = s.buckets.get(le) ?? carried;
      out.push(line({ name: `${name}_bucket`, labels: { ...s.labels, le }, value: String(carried) }));
    }
    out.push(line({ name: `${name}_sum`, labels: s.labels, value: String(s.sumMilli / 1000) }));
    out.push(line({ name: `${name}_count`, labels: s.labels, value: String(s.count) }));
  }
  return out;
}

async function gauges(db: Db, now: number): Promise<Map<string, Sample[]>> {
  const real = isNull(subscriptions.testClockId);
  const [active, queue, notices] = await Promise.all([
    db
      .select({ plan: subscriptions.planId, status: subscriptions.status, n: count() })
      .from(subscriptions)
      .where(and(real, ne(subscriptions.status, "canceled")))
      .groupBy(subscriptions.planId, subscriptions.status)
      .orderBy(subscriptions.planId, subscriptions.status)
      .all(),
    // The hourly run's own "due" predicate: what it has not caught up with yet.
    db.select({ n: count() }).from(subscriptions).where(isDue(now, DEFAULT_GRACE_MS)).get(),
    db.select({ status: notifications.status, n: count() }).from(notifications).groupBy(notifications.status).all(),
  ]);
  const byStatus = new Map(notices.map((r) => [r.status, r.n]));
  return new Map<string, Sample[]>([
    ["billing_subscriptions_active", active.map((r) => ({ name: "billing_subscriptions_active", labels: { plan: r.plan, status: r.status }, value: String(r.n) }))],
    ["billing_subscription_queue_size", [{ name: "billing_subscription_queue_size", labels: {}, value: String(queue?.n ?? 0) }]],
    ["billing_notifications", (["queued", "sent", "failed"] as const).map((status) => ({ name: "billing_notifications", labels: { status }, value: String(byStatus.get(status) ?? 0) }))],
  ]);
}

/** The text exposition format (version 0.0.4) of every stored counter and histogram plus the live gauges. */
export async function renderPrometheus(db: Db, now: number): Promise<string> {
  const [rows, live] = await Promise.all([db.select().from(metricCounters).orderBy(metricCounters.name, metricCounters.labels).all(), gauges(db, now)]);
  const byName = new Map<string, Row[]>();
  for (const r of rows) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  const claimed = new Set<string>();
  const out: string[] = [];

  for (const f of METRIC_FAMILIES) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type === "gauge") {
      out.push(...(live.get(f.name) ?? []).map(line));
    } else if (f.type === "histogram") {
      // `_sum_milli` is accepted as a synonym of `_sum` (both hold thousandths).
      const names = [`${f.name}_bucket`, `${f.name}_sum`, `${f.name}_sum_milli`, `${f.name}_count`];
      names.forEach((n) => claimed.add(n));
      out.push(...histogramLines(f.name, names.flatMap((n) => byName.get(n) ?? [])));
    } else {
      // Without stored rows, the success counter is derived: the succeeded part of billing_payments_total.
      const stored = byName.get(f.name) ?? [];
      const source =
        f.name === "billing_payments_success_total" && stored.length === 0
          ? (byName.get("billing_payments_total") ?? []).filter((r) => parseLabels(r.labels).status === "succeeded")
          : stored;
      claimed.add(f.name);
      for (const s of project(source, f.labels)) {
        const value = f.name === "billing_revenue_total" ? revenueValue(s.value, s.labels.currency) : String(s.value);
        out.push(line({ name: f.name, labels: s.labels, value }));
      }
    }
  }
  // Anything else a module counts is still exposed, untyped, as stored.
  for (const [name, list] of byName) {
    if (claimed.has(name)) continue;
    out.push(`# TYPE ${name} untyped`, ...list.map((r) => line({ name, labels: parseLabels(r.labels), value: String(r.value) })));
  }
  return `${out.join("\n")}\n`;
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
