import { describe, expect, it } from "vitest";
import { api, createSubscription } from "../helpers";

describe("GET /metrics", () => {
  it("needs a token and serves the runbook's metrics in Prometheus text format", async () => {
    expect((await api("GET", "/metrics", { as: null })).status).toBe(401);
    await createSubscription();
    await api("GET", "/health/live", { as: null });
    const r = await api("GET", "/metrics", { as: "viewer" });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/plain");
    const text = r.body as string;
    for (const name of ["billing_revenue_total", "billing_subscriptions_active", "billing_payment_duration_seconds", "billing_refunds_total", "billing_payments_total", "billing_payments_failed_total", "billing_subscription_queue_size"]) {
      expect(text).toContain(`# TYPE ${name}`);
    }
    expect(text).toMatch(/billing_subscriptions_active\{[^}]*status="active"[^}]*\} [1-9]/);
  });
});
