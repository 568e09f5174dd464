import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { and, eq } from "drizzle-orm";
import worker from "../../src/index";
import { dbOf } from "../../src/db/client";
import { auditLog, payments, sandboxLedger, settings } from "../../src/db/schema";
import { chargeGateway, gatewayByName, ROUTING_KEY } from "../../src/gateways";
import { dropSettingsCache } from "../../src/platform/settings";
import { dropGatewayHealthCache } from "../../src/modules/gateways/service";
import { newId } from "../../src/lib/ids";
import { api, tokenFor } from "../helpers";
import type { Role } from "../../src/http/auth";
import { FAKE_STRIPE_BASE, FAKE_STRIPE_KEY, FakeStripe } from "../gateways/fake-stripe";

const db = dbOf(env);
// The environment of a deployment with Stripe configured (the test default has STRIPE_SECRET_KEY = "").
const withStripe = { ...env, STRIPE_SECRET_KEY: FAKE_STRIPE_KEY, STRIPE_API_BASE: FAKE_STRIPE_BASE } as Env;

/** Calls the worker with a patched env; `contentType: null` sends the body as the runbook's `curl -d` does (no JSON type). */
async function callWith(patched: Env, method: string, path: string, opts: { as?: Role; body?: unknown; contentType?: string | null } = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${await tokenFor(opts.as ?? "admin")}` };
  // curl -d without -H sends application/x-www-form-urlencoded.
  if (opts.body !== undefined) headers["content-type"] = opts.contentType === null ? "application/x-www-form-urlencoded" : (opts.contentType ?? "application/json");
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) }), patched, ctx);
  await waitOnExecutionContext(ctx);
  return { status: res.status, body: (await res.json()) as any };
}

async function resetRouting() {
  await db.delete(settings).where(eq(settings.key, ROUTING_KEY));
  dropSettingsCache();
  dropGatewayHealthCache();
}

afterEach(async () => {
  vi.unstubAllGlobals();
  await api("POST", "/admin/emergency/resume-payments");
  await db.delete(settings).where(eq(settings.key, "gateways.test"));
  await resetRouting();
  await api("PUT", "/admin/gateways/sandbox/faults", { body: { latencyMs: 0, failureRate: 0 } });
});

describe("GET /api/v1/gateways/status", () => {
  it("lists each configured gateway with role, up/down, latency and the routing (no token needed, as in the runbook)", async () => {
    const r = await api("GET", "/api/v1/gateways/status", { as: null });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("ok");
    expect(r.body.routing).toMatchObject({ primary: "sandbox", backup: null, primaryDown: false, activeGateway: "sandbox" });
    expect(r.body.gateways).toHaveLength(1);
    expect(r.body.gateways[0]).toMatchObject({ name: "sandbox", role: "primary", configured: true, mode: "embedded", status: "up", markedDown: false, receivingCharges: true });
    expect(typeof r.body.gateways[0].latencyMs).toBe("number");
  });

  it("with Stripe configured, health is a real round trip to (the fake) Stripe", async () => {
    const fake = new FakeStripe();
    vi.stubGlobal("fetch", fake.fetch);
    dropGatewayHealthCache();
    const r = await callWith(withStripe, "GET", "/api/v1/gateways/status");
    expect(r.status).toBe(200);
    const stripe = r.body.gateways.find((g: any) => g.name === "stripe");
    expect(stripe).toMatchObject({ role: "primary", mode: "test", status: "up", detail: "stripe test mode" });
    expect(r.body.gateways.find((g: any) => g.name === "sandbox")).toMatchObject({ role: "standby" });
    expect(fake.callsTo("GET", "/v1/balance")).toHaveLength(1);
    expect(fake.foreignHosts).toEqual([]);
  });
});

describe("POST /api/v1/gateways/test", () => {
  const ledgerRows = async () => (await env.DB.prepare("SELECT count(*) AS n FROM sandbox_ledger").first<{ n: number }>())!.n;
  const testedRows = async () => (await db.select().from(auditLog).where(eq(auditLog.action, "gateway.tested")).all()).length;

  it("runs a sandbox charge with the test method and refunds it at once, audited with the actor", async () => {
    const r = await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: 1, currency: "USD" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ gateway: "sandbox", ok: true, amount: "1.00", amountMinor: 100, currency: "USD", paymentMethod: "pm_card_visa" });
    expect(r.body.charge).toMatchObject({ status: "succeeded", id: expect.any(String) });
    expect(r.body.refund).toMatchObject({ status: "succeeded", id: expect.any(String) });
    expect(typeof r.body.latencyMs).toBe("number");
    expect(typeof r.body.charge.latencyMs).toBe("number");
    const ledger = await db.select().from(sandboxLedger).where(eq(sandboxLedger.chargeId, r.body.charge.id)).all();
    expect(ledger).toMatchObject([{ kind: "refund", amount: 100, status: "succeeded" }]);
    const sandbox = await gatewayByName(env, db, "sandbox");
    expect(await sandbox.retrieve(r.body.charge.id)).toMatchObject({ amountMinor: 100, amountRefunded: 100, status: "succeeded" });
    const audit = await db.select().from(auditLog).where(and(eq(auditLog.action, "gateway.tested"), eq(auditLog.targetId, "sandbox"))).all();
    const row = audit.find((a) => a.after?.includes(r.body.idempotencyKey));
    expect(row).toMatchObject({ actor: "test-finance", actorRole: "finance" });
    expect(JSON.parse(row!.after!)).toMatchObject({ ok: true, paymentMethod: "pm_card_visa", amountMinor: 100, refund: { status: "succeeded" } });
    // Each test uses a fresh key: a second run is a second round trip, not a replay. The amount defaults to 1.
    const again = await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: "0.50", currency: "USD" } });
    expect(again.body.charge.id).not.toBe(r.body.charge.id);
    expect(again.body.amountMinor).toBe(50);
    expect((await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox" } })).body).toMatchObject({ ok: true, amountMinor: 100, currency: "USD" });
  });

  it("is refused with 423 while payments are frozen, and nothing reaches the gateway", async () => {
    await api("POST", "/admin/emergency/freeze-payments", { body: { reason: "card testing attack" } });
    const [ledgerBefore, auditBefore] = [await ledgerRows(), await testedRows()];
    const r = await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: 1, currency: "USD" } });
    expect(r.status).toBe(423);
    expect(r.headers.get("content-type")).toContain("application/problem+json");
    expect(r.body.detail).toContain("frozen");
    expect(r.body.detail).toContain("card testing attack");
    expect(await ledgerRows()).toBe(ledgerBefore);
    expect(await testedRows()).toBe(auditBefore);
    // The accessor itself asks the guard: a gateway obtained by name refuses to move money while frozen.
    const sandbox = await gatewayByName(env, db, "sandbox");
    await expect(sandbox.charge({ amountMinor: 100, currency: "USD", customerId: "c", paymentMethod: "pm_card_visa", invoiceId: "i", idempotencyKey: newId("k") })).rejects.toMatchObject({ status: 423 });
    expect(await ledgerRows()).toBe(ledgerBefore);
  });

  it("is refused with 423 in queue mode (a test charge is never parked)", async () => {
    await api("POST", "/admin/emergency/queue-mode", { body: { reason: "maintenance" } });
    const ledgerBefore = await ledgerRows();
    const r = await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: 1, currency: "USD" } });
    expect(r.status).toBe(423);
    expect(r.body.detail).toContain("queue mode");
    expect(await ledgerRows()).toBe(ledgerBefore);
  });

  it("caps the amount (1.00 by default, configurable) and refuses a caller-supplied payment method", async () => {
    const ledgerBefore = await ledgerRows();
    const big = await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: 100, currency: "USD" } });
    expect(big.status).toBe(422);
    expect(big.body.errors).toEqual([{ path: "amount", message: expect.stringContaining("1.00") }]);
    const pm = await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: 1, currency: "USD", paymentMethod: "pm_card_visa" } });
    expect(pm.status).toBe(422);
    expect(pm.body.errors).toEqual([{ path: "paymentMethod", message: expect.stringContaining("test payment method") }]);
    expect(await ledgerRows()).toBe(ledgerBefore);

    const set = await api("PUT", "/admin/gateways/test-config", { body: { maxAmount: "5" } });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ maxAmount: "5" });
    expect((await api("GET", "/admin/gateways/test-config", { as: "viewer" })).status).toBe(403);
    expect((await api("PUT", "/admin/gateways/test-config", { as: "finance", body: { maxAmount: "1000" } })).status).toBe(403);
    expect((await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: "5.00", currency: "USD" } })).body.ok).toBe(true);
    expect((await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: "5.01", currency: "USD" } })).status).toBe(422);
    // The cap is in major units of the request's currency.
    expect((await api("POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "sandbox", amount: 6, currency: "JPY" } })).status).toBe(422);
    expect((await api("PUT", "/admin/gateways/test-config", { body: { maxAmount: "-1" } })).status).toBe(400);
  });

  it("reports a decline without refunding (Stripe with a configured declining test method)", async () => {
    const fake = new FakeStripe();
    vi.stubGlobal("fetch", fake.fetch);
    await api("PUT", "/admin/gateways/test-config", { body: { stripePaymentMethod: "pm_card_chargeDeclinedExpiredCard" } });
    const r = await callWith(withStripe, "POST", "/api/v1/gateways/test", { body: { gateway: "stripe", amount: 1, currency: "USD" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ok: false, paymentMethod: "pm_card_chargeDeclinedExpiredCard", charge: { status: "failed", failureCode: "expired_card" }, refund: null });
    expect(fake.callsTo("POST", "/v1/refunds")).toHaveLength(0);
  });

  it("answers 422 for a gateway that is not configured (stripe without a key, paypal) and for bad amounts", async () => {
    const stripe = await api("POST", "/api/v1/gateways/test", { body: { gateway: "stripe", amount: 1, currency: "USD" } });
    expect(stripe.status).toBe(422);
    expect(stripe.body.detail).toContain("stripe is not configured");
    expect((await api("POST", "/api/v1/gateways/test", { body: { gateway: "paypal", amount: 1, currency: "USD" } })).status).toBe(422);
    expect((await api("POST", "/api/v1/gateways/test", { body: { gateway: "sandbox", amount: "0.001", currency: "USD" } })).status).toBe(422);
    expect((await api("POST", "/api/v1/gateways/test", { body: { gateway: "sandbox", amount: 0, currency: "USD" } })).status).toBe(422);
    expect((await api("POST", "/api/v1/gateways/test", { body: { gateway: "sandbox", amount: 1, currency: "XYZ" } })).status).toBe(400);
  });

  it("runs the same round trip against (the fake) Stripe in test mode with pm_card_visa", async () => {
    const fake = new FakeStripe();
    vi.stubGlobal("fetch", fake.fetch);
    const r = await callWith(withStripe, "POST", "/api/v1/gateways/test", { as: "finance", body: { gateway: "stripe", amount: 1, currency: "USD" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ gateway: "stripe", ok: true, paymentMethod: "pm_card_visa", charge: { status: "succeeded" }, refund: { status: "succeeded" } });
    expect(fake.creates).toBe(1);
    const [refund] = fake.callsTo("POST", "/v1/refunds");
    expect(Object.fromEntries(refund!.form)).toMatchObject({ payment_intent: r.body.charge.id, amount: "100" });
    expect(fake.foreignHosts).toEqual([]);
  });

  it("with a live Stripe key, needs a configured test method (and customer) and charges only that", async () => {
    const live = { ...withStripe, STRIPE_SECRET_KEY: "sk_live_0123" } as Env;
    const fake = new FakeStripe(live.STRIPE_SECRET_KEY);
    vi.stubGlobal("fetch", fake.fetch);
    const none = await callWith(live, "POST", "/api/v1/gateways/test", { body: { gateway: "stripe", amount: 1, currency: "USD" } });
    expect(none.status).toBe(422);
    expect(none.body.errors).toEqual([{ path: "gateway", message: expect.stringContaining("stripePaymentMethod") }]);
    expect(fake.creates).toBe(0);
    await api("PUT", "/admin/gateways/test-config", { body: { stripePaymentMethod: "pm_card_visa", stripeCustomerId: "cus_ops" } });
    const r = await callWith(live, "POST", "/api/v1/gateways/test", { body: { gateway: "stripe", amount: 1, currency: "USD" } });
    expect(r.body).toMatchObject({ ok: true, paymentMethod: "pm_card_visa" });
    const [create] = fake.callsTo("POST", "/v1/payment_intents");
    expect(Object.fromEntries(create!.form)).toMatchObject({ payment_method: "pm_card_visa", customer: "cus_ops", amount: "100" });
  });
});

describe("GET /api/v1/gateways/metrics", () => {
  it("computes attempts, outcomes, success rate, latency percentiles and per-currency volume over the window", async () => {
    const now = Date.now();
    const row = (gateway: string, status: "succeeded" | "failed" | "processing", amount: number, currency: string, latencyMs: number | null, ageMs: number) => {
      const id = newId("pay");
      return { id, invoiceId: newId("inv"), customerId: "cus_m", attempt: 1, amount, currency, status, gateway, gatewayPaymentId: null, paymentMethod: null, idempotencyKey: id, failureCode: null, failureMessage: null, amountRefunded: 0, nextRetryAt: null, latencyMs, createdAt: now - ageMs, updatedAt: now - ageMs };
    };
    const recent = 10 * 60_000;
    const rows = [
      // Sandbox, last hour: 8 succeeded (latencies 10..80), 2 failed (90, 100), one in flight.
      ...Array.from({ length: 8 }, (_, i) => row("sandbox", "succeeded", 1000, i < 6 ? "USD" : "EUR", (i + 1) * 10, recent)),
      row("sandbox", "failed", 1000, "USD", 90, recent),
      row("sandbox", "failed", 1000, "USD", 100, recent),
      row("sandbox", "processing", 1000, "USD", null, recent),
      // Sandbox, 3 hours ago: outside 1h, inside 24h.
      row("sandbox", "succeeded", 2500, "USD", 500, 3 * 3_600_000),
      // Stripe, 2 days ago: only in 7d.
      row("stripe", "failed", 700, "JPY", 40, 2 * 86_400_000),
      // 8 days ago: in no window.
      row("sandbox", "succeeded", 99999, "USD", 1, 8 * 86_400_000),
    ];
    await db.batch(rows.map((r) => db.insert(payments).values(r)) as [any, ...any[]]);

    const hour = await api("GET", "/api/v1/gateways/metrics?window=1h", { as: "viewer" });
    expect(hour.status).toBe(200);
    expect(hour.body.window).toBe("1h");
    const sb = hour.body.gateways.find((g: any) => g.gateway === "sandbox");
    expect(sb).toMatchObject({ attempts: 11, succeeded: 8, failed: 2, inFlight: 1, successRate: "0.8000" });
    expect(sb.latencyMs).toEqual({ samples: 10, p50: 50, p95: 100, p99: 100 });
    expect(sb.volume).toEqual([
      { currency: "EUR", amount: "20.00", amountMinor: 2000, payments: 2 },
      { currency: "USD", amount: "60.00", amountMinor: 6000, payments: 6 },
    ]);

    const day = await api("GET", "/api/v1/gateways/metrics?window=24h");
    const sbDay = day.body.gateways.find((g: any) => g.gateway === "sandbox");
    expect(sbDay).toMatchObject({ attempts: 12, succeeded: 9, failed: 2, successRate: "0.8182" });
    expect(sbDay.latencyMs).toEqual({ samples: 11, p50: 60, p95: 500, p99: 500 });
    expect(sbDay.volume.find((v: any) => v.currency === "USD")).toEqual({ currency: "USD", amount: "85.00", amountMinor: 8500, payments: 7 });
    expect(day.body.gateways.some((g: any) => g.gateway === "stripe")).toBe(false);

    const week = await api("GET", "/api/v1/gateways/metrics?window=7d");
    expect(week.body.gateways.find((g: any) => g.gateway === "stripe")).toMatchObject({ attempts: 1, succeeded: 0, failed: 1, successRate: "0.0000", volume: [] });
    expect(week.body.gateways.find((g: any) => g.gateway === "sandbox").attempts).toBe(12);

    expect((await api("GET", "/api/v1/gateways/metrics")).body.window).toBe("24h");
    expect((await api("GET", "/api/v1/gateways/metrics?window=30d")).status).toBe(400);
    expect((await api("GET", "/api/v1/gateways/metrics", { as: null })).status).toBe(401);
  });
});

describe("failover and restore", () => {
  it("failover sends new charges to the backup, restore back to the primary; both audited", async () => {
    // The runbook's command: `curl -X POST … -d '{"primary": "stripe", "backup": …}'`, no Content-Type.
    const down = await callWith(withStripe, "POST", "/admin/gateways/failover", { body: { primary: "stripe", backup: "sandbox", reason: "stripe 5xx" }, contentType: null });
    expect(down.status).toBe(200);
    expect(down.body).toMatchObject({ primary: "stripe", backup: "sandbox", primaryDown: true, downReason: "stripe 5xx", activeGateway: "sandbox" });
    expect(Date.parse(down.body.downSince)).toBeGreaterThan(0);
    expect((await chargeGateway(withStripe, db)).name).toBe("sandbox");

    const fake = new FakeStripe();
    vi.stubGlobal("fetch", fake.fetch);
    const status = await callWith(withStripe, "GET", "/api/v1/gateways/status");
    expect(status.body.status).toBe("degraded");
    expect(status.body.gateways.find((g: any) => g.name === "stripe")).toMatchObject({ role: "primary", markedDown: true, receivingCharges: false });
    expect(status.body.gateways.find((g: any) => g.name === "sandbox")).toMatchObject({ role: "backup", receivingCharges: true });

    const up = await callWith(withStripe, "POST", "/admin/gateways/restore", { body: {} });
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ primary: "stripe", backup: "sandbox", primaryDown: false, downReason: null, downSince: null, activeGateway: "stripe" });
    expect((await chargeGateway(withStripe, db)).name).toBe("stripe");

    const audit = await db.select().from(auditLog).where(and(eq(auditLog.targetType, "setting"), eq(auditLog.targetId, ROUTING_KEY))).all();
    expect(audit.map((a) => a.reason)).toEqual(expect.arrayContaining([expect.stringContaining("failover: stripe → sandbox"), expect.stringContaining("restore: stripe")]));
  });

  it("refuses gateways that are not configured, the same gateway twice, and the sandbox behind a live key", async () => {
    const paypal = await callWith(withStripe, "POST", "/admin/gateways/failover", { body: { primary: "stripe", backup: "paypal" } });
    expect(paypal.status).toBe(422);
    expect(paypal.body.errors).toEqual([{ path: "backup", message: "not a configured gateway" }]);
    expect((await callWith(withStripe, "POST", "/admin/gateways/failover", { body: { primary: "stripe", backup: "stripe" } })).status).toBe(422);
    expect((await api("POST", "/admin/gateways/failover", { body: { primary: "stripe", backup: "sandbox" } })).status).toBe(422);
    const live = { ...withStripe, STRIPE_SECRET_KEY: "sk_live_0123" } as Env;
    const r = await callWith(live, "POST", "/admin/gateways/failover", { body: { primary: "stripe", backup: "sandbox" } });
    expect(r.status).toBe(422);
    expect(r.body.detail).toContain("live");
    expect((await callWith(withStripe, "POST", "/admin/gateways/failover", { body: { primary: "stripe" } })).status).toBe(400);
  });
});

describe("sandbox faults", () => {
  it("failureRate 1 makes every sandbox charge throw; the test route reports it; 0 restores", async () => {
    const set = await api("PUT", "/admin/gateways/sandbox/faults", { body: { latencyMs: 0, failureRate: 1 } });
    expect(set.status).toBe(200);
    expect(set.body).toEqual({ latencyMs: 0, failureRate: 1 });
    const sandbox = await gatewayByName(env, db, "sandbox");
    await expect(sandbox.charge({ amountMinor: 100, currency: "USD", customerId: "c", paymentMethod: "pm_card_visa", invoiceId: "i", idempotencyKey: newId("k") })).rejects.toThrow(/injected/);

    const test = await api("POST", "/api/v1/gateways/test", { body: { gateway: "sandbox", amount: 1, currency: "USD" } });
    expect(test.body).toMatchObject({ ok: false, charge: { status: "error", error: expect.stringContaining("injected") }, refund: null });
    const status = await api("GET", "/api/v1/gateways/status", { as: null });
    expect(status.body.gateways[0].faults).toEqual({ latencyMs: 0, failureRate: 1 });

    await api("PUT", "/admin/gateways/sandbox/faults", { body: { failureRate: 0 } });
    const ok = await gatewayByName(env, db, "sandbox");
    expect(await ok.charge({ amountMinor: 100, currency: "USD", customerId: "c", paymentMethod: "pm_card_visa", invoiceId: "i", idempotencyKey: newId("k") })).toMatchObject({ status: "succeeded" });
    expect((await api("PUT", "/admin/gateways/sandbox/faults", { body: { failureRate: 2 } })).status).toBe(400);
  });
});

describe("roles", () => {
  it("viewer and support may not run tests or change routing; viewer may read metrics", async () => {
    const body = { gateway: "sandbox", amount: 1, currency: "USD" };
    expect((await api("POST", "/api/v1/gateways/test", { as: "viewer", body })).status).toBe(403);
    expect((await api("POST", "/api/v1/gateways/test", { as: "support", body })).status).toBe(403);
    expect((await api("POST", "/api/v1/gateways/test", { as: null, body })).status).toBe(401);
    expect((await api("POST", "/admin/gateways/failover", { as: "viewer", body: { primary: "sandbox", backup: "sandbox" } })).status).toBe(403);
    expect((await api("POST", "/admin/gateways/failover", { as: "finance", body: { primary: "sandbox", backup: "sandbox" } })).status).toBe(403);
    expect((await api("POST", "/admin/gateways/restore", { as: "viewer", body: {} })).status).toBe(403);
    expect((await api("PUT", "/admin/gateways/sandbox/faults", { as: "viewer", body: { failureRate: 1 } })).status).toBe(403);
    expect((await api("GET", "/api/v1/gateways/metrics", { as: "viewer" })).status).toBe(200);
  });
});

describe("OpenAPI", () => {
  it("documents every gateway route, with status public", async () => {
    const doc = await api("GET", "/openapi.json", { as: null });
    expect(doc.status).toBe(200);
    const paths = doc.body.paths;
    expect(paths["/api/v1/gateways/status"].get.security).toEqual([]);
    expect(paths["/api/v1/gateways/test"].post).toBeDefined();
    expect(paths["/api/v1/gateways/metrics"].get.parameters.map((p: any) => p.name)).toContain("window");
    expect(paths["/admin/gateways/failover"].post).toBeDefined();
    expect(paths["/admin/gateways/restore"].post).toBeDefined();
    expect(paths["/admin/gateways/sandbox/faults"].put).toBeDefined();
  });
});
