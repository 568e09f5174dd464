import { beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import type { BatchItem } from "drizzle-orm/batch";
import { dbOf } from "../../src/db/client";
import { metricCounters } from "../../src/db/schema";
import { canonicalLabels, counterIncrement, histogramObserve, parseLabels } from "../../src/platform/metrics";
import { renderPrometheus } from "../../src/modules/metrics/exposition";
import { createSubscription } from "../helpers";
import { flushHttpMetrics, MAX_FLUSH_STATEMENTS, recordHttpRequest } from "../../src/http/metrics";
import { withLimits } from "../../src/platform/limits";

const db = dbOf(env);
const run = (statements: BatchItem<"sqlite">[]) => db.batch(statements as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
const samples = (text: string, name: string) => text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe("prometheus metrics in D1", () => {
  // The exact figures below are this file's own: counters a previous file's queue work is still adding go first.
  beforeEach(async () => {
    await db.delete(metricCounters);
  });

  it("canonical labels are sorted, escaped, and parse back", () => {
    const labels = { status: "ok", gateway: 'we"ird\\gw\nx' };
    const text = canonicalLabels(labels);
    expect(text).toBe('gateway="we\\"ird\\\\gw\\nx",status="ok"');
    expect(parseLabels(text)).toEqual(labels);
    expect(() => canonicalLabels({ "bad-name": "x" })).toThrow();
  });

  it("counters add up inside the caller's batch, and rows are one per label set", async () => {
    await run([counterIncrement(db, "billing_refunds_total", { gateway: "sandbox", reason: "duplicate" }), counterIncrement(db, "billing_refunds_total", { reason: "duplicate", gateway: "sandbox" }, 2)]);
    await run([counterIncrement(db, "billing_refunds_total", { gateway: "stripe", reason: "fraudulent" })]);
    const rows = await db.select().from(metricCounters).all();
    expect(rows.filter((r) => r.name === "billing_refunds_total")).toHaveLength(2);
    const text = await renderPrometheus(db, Date.now());
    expect(text).toContain("# TYPE billing_refunds_total counter");
    expect(samples(text, "billing_refunds_total")).toEqual(['billing_refunds_total{gateway="sandbox",reason="duplicate"} 3', 'billing_refunds_total{gateway="stripe",reason="fraudulent"} 1']);
    expect(() => counterIncrement(db, "x", {}, -1)).toThrow();
    expect(() => counterIncrement(db, "x", {}, 0.5)).toThrow();
  });

  it("histograms keep cumulative buckets, +Inf, a sum in milliseconds rendered as seconds, and a count", async () => {
    const buckets = [0.1, 0.5, 1];
    const labels = { gateway: "sandbox", status: "succeeded" };
    await run([...histogramObserve(db, "billing_payment_duration_seconds", labels, 0.05, buckets), ...histogramObserve(db, "billing_payment_duration_seconds", labels, 0.3, buckets)]);
    await run(histogramObserve(db, "billing_payment_duration_seconds", labels, 2.5, buckets));
    const text = await renderPrometheus(db, Date.now());
    expect(text).toContain("# TYPE billing_payment_duration_seconds histogram");
    expect(text).toContain("# HELP billing_payment_duration_seconds Payment processing duration");
    const lines = text.split("\n").filter((l) => l.startsWith("billing_payment_duration_seconds_"));
    expect(lines).toEqual([
      'billing_payment_duration_seconds_bucket{gateway="sandbox",status="succeeded",le="0.1"} 1',
      'billing_payment_duration_seconds_bucket{gateway="sandbox",status="succeeded",le="0.5"} 2',
      'billing_payment_duration_seconds_bucket{gateway="sandbox",status="succeeded",le="1"} 2',
      'billing_payment_duration_seconds_bucket{gateway="sandbox",status="succeeded",le="+Inf"} 3',
      'billing_payment_duration_seconds_sum{gateway="sandbox",status="succeeded"} 2.85',
      'billing_payment_duration_seconds_count{gateway="sandbox",status="succeeded"} 3',
    ]);
    // Default buckets: 11 + Inf + sum + count in one statement, under D1's 100 bound parameters.
    expect(histogramObserve(db, "h", { a: "b" }, 0.2)).toHaveLength(1);
  });

  it("renders revenue in major units per currency, payments by gateway (summed over status) and the derived success counter", async () => {
    await run([
      counterIncrement(db, "billing_revenue_total", { currency: "USD", gateway: "sandbox", plan: "plan_a" }, 2999),
      counterIncrement(db, "billing_revenue_total", { currency: "USD", gateway: "sandbox", plan: "plan_a" }, 1),
      counterIncrement(db, "billing_revenue_total", { currency: "JPY", gateway: "sandbox", plan: "plan_a" }, 500),
      counterIncrement(db, "billing_payments_total", { gateway: "sandbox", status: "succeeded" }, 8),
      counterIncrement(db, "billing_payments_total", { gateway: "sandbox", status: "failed" }, 2),
      counterIncrement(db, "billing_payments_failed_total", { gateway: "sandbox" }, 2),
    ]);
    const text = await renderPrometheus(db, Date.now());
    expect(samples(text, "billing_revenue_total")).toEqual(['billing_revenue_total{currency="JPY",gateway="sandbox",plan="plan_a"} 500', 'billing_revenue_total{currency="USD",gateway="sandbox",plan="plan_a"} 30.00']);
    // Same label set on both sides, so the runbook's failed/total alert matches one to one.
    expect(samples(text, "billing_payments_total")).toEqual(['billing_payments_total{gateway="sandbox"} 10']);
    expect(samples(text, "billing_payments_failed_total")).toEqual(['billing_payments_failed_total{gateway="sandbox"} 2']);
    expect(samples(text, "billing_payments_success_total")).toEqual(['billing_payments_success_total{gateway="sandbox"} 8']);
    // Once a writer stores the success counter itself, the stored value is what is exposed.
    await run([counterIncrement(db, "billing_payments_success_total", { gateway: "sandbox" }, 9)]);
    expect(samples(await renderPrometheus(db, Date.now()), "billing_payments_success_total")).toEqual(['billing_payments_success_total{gateway="sandbox"} 9']);
    for (const name of ["billing_revenue_total", "billing_payments_total", "billing_payments_failed_total", "billing_refunds_total", "billing_subscriptions_active", "billing_subscription_queue_size"]) {
      expect(text).toMatch(new RegExp(`^# HELP ${name} .+$`, "m"));
      expect(text).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge)$`, "m"));
    }
    expect(text.endsWith("\n")).toBe(true);
  });

  it("computes the subscription gauges live from D1", async () => {
    const sub = await createSubscription();
    const now = await renderPrometheus(db, Date.now());
    expect(samples(now, "billing_subscriptions_active")).toContain(`billing_subscriptions_active{plan="${sub.planId}",status="${sub.status}"} 1`);
    expect(samples(now, "billing_subscription_queue_size")).toEqual(["billing_subscription_queue_size 0"]);
    // A metered plan's period end waits out the late-usage grace (an hour) before it is due, like the renewal itself.
    const inGrace = await renderPrometheus(db, Date.parse(sub.currentPeriodEnd) + 1);
    expect(samples(inGrace, "billing_subscription_queue_size")).toEqual(["billing_subscription_queue_size 0"]);
    const later = await renderPrometheus(db, Date.parse(sub.currentPeriodEnd) + 3_600_000 + 1);
    expect(samples(later, "billing_subscription_queue_size")).toEqual(["billing_subscription_queue_size 1"]);
  });

  it("counts customer notifications by delivery status, so failed deliveries can alert", async () => {
    const before = await renderPrometheus(db, Date.now());
    const n = (text: string, status: string) => Number(samples(text, "billing_notifications").find((l) => l.includes(`status="${status}"`))!.split(" ")[1]);
    await env.DB.prepare("INSERT INTO notifications (id, kind, customer_id, template, payload, dedupe_key, status, created_at, last_error) VALUES (?, 'invoice.reminder', 'cus_x', 't', '{}', ?, 'failed', ?, 'webhook answered 410')")
      .bind(`ntf_metrics_${Date.now()}`, `metrics:${Date.now()}`, Date.now())
      .run();
    const after = await renderPrometheus(db, Date.now());
    expect(n(after, "failed")).toBe(n(before, "failed") + 1);
    expect(n(after, "sent")).toBe(n(before, "sent"));
    expect(after).toMatch(/^# TYPE billing_notifications gauge$/m);
  });

  it("renders sparse bucket rows written with counterIncrement (and a _sum_milli) as a complete histogram", async () => {
    const name = "billing_http_request_duration_seconds";
    const a = { method: "GET", route: "/a", status: "200" };
    const b = { method: "GET", route: "/b", status: "200" };
    await run([
      counterIncrement(db, `${name}_bucket`, { ...a, le: "0.1" }, 2),
      counterIncrement(db, `${name}_bucket`, { ...a, le: "1" }, 3),
      counterIncrement(db, `${name}_bucket`, { ...a, le: "+Inf" }, 3),
      counterIncrement(db, `${name}_sum_milli`, a, 450),
      counterIncrement(db, `${name}_count`, a, 3),
      counterIncrement(db, `${name}_bucket`, { ...b, le: "1" }, 1),
      counterIncrement(db, `${name}_bucket`, { ...b, le: "+Inf" }, 1),
      counterIncrement(db, `${name}_sum_milli`, b, 700),
      counterIncrement(db, `${name}_count`, b, 1),
    ]);
    const text = await renderPrometheus(db, Date.now());
    const lines = text.split("\n").filter((l) => l.startsWith(`${name}_`) && l.includes('route="/b"'));
    expect(lines).toEqual([
      `${name}_bucket{method="GET",route="/b",status="200",le="0.1"} 0`,
      `${name}_bucket{method="GET",route="/b",status="200",le="1"} 1`,
      `${name}_bucket{method="GET",route="/b",status="200",le="+Inf"} 1`,
      `${name}_sum{method="GET",route="/b",status="200"} 0.7`,
      `${name}_count{method="GET",route="/b",status="200"} 1`,
    ]);
    expect(text).toContain(`${name}_sum{method="GET",route="/a",status="200"} 0.45`);
    expect(text).not.toContain("_sum_milli");
  });

  it("a flush of many request series stays inside the flushing request's D1 budget, and the rest follows in later flushes", async () => {
    // Before: one flush wrote every pending series (up to 13 statements each) in the invocation that triggered it, so
    // an isolate that had served ~100 route/status pairs crossed Cloudflare's 1,000 queries inside some unrelated request.
    await flushHttpMetrics(env); // what earlier files left pending
    await db.delete(metricCounters);
    const routes = Array.from({ length: 120 }, (_, i) => `/flush-bound/${i}`);
    for (const route of routes) for (const seconds of [0.004, 0.02, 0.07, 0.3, 0.7, 2, 4, 9]) recordHttpRequest("GET", route, 200, seconds);
    let rounds = 0;
    for (;;) {
      const r = await withLimits({ ...env, LIMITS: "enforce" } as Env, "GET /some/request", (e) => flushHttpMetrics(e));
      expect(r.statements).toBeLessThanOrEqual(MAX_FLUSH_STATEMENTS);
      rounds++;
      if (r.seriesLeft === 0) break;
    }
    expect(rounds).toBeGreaterThan(1);
    const text = await renderPrometheus(db, Date.now());
    const counts = samples(text, "billing_http_request_duration_seconds_count").filter((l) => l.includes("/flush-bound/"));
    expect(counts).toHaveLength(120);
    for (const line of counts) expect(line.endsWith(" 8")).toBe(true);
  });

  it("exposes counters nobody registered as untyped", async () => {
    await run([counterIncrement(db, "billing_custom_things_total", { kind: "x" }, 4)]);
    const text = await renderPrometheus(db, Date.now());
    expect(text).toContain("# TYPE billing_custom_things_total untyped\nbilling_custom_things_total{kind=\"x\"} 4");
  });
});
