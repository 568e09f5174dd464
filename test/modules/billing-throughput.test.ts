import { beforeEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, runInDurableObject } from "cloudflare:test";
import entry from "../../src/index";
import { dbOf } from "../../src/db/client";
import { countD1 } from "../../src/db/round-trips";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { runDue } from "../../src/modules/subscriptions/renewal";
import { collectInvoice } from "../../src/modules/payments/collect";
import { GuardLease } from "../../src/modules/payments/guard";
import { CHARGES_IN_FLIGHT } from "../../queues/payments";
import { dropSettingsCache } from "../../src/platform/settings";
import { api, servicesOf, spyQueue, unique, type SentMessage } from "../helpers";
import { messageServices, servicesFor, trailingWritesFor } from "../../src/platform/services";
import { consumer } from "../../queues/dispatch";
import { resyncMeters } from "../../src/modules/usage/meter-config";

const worker: Required<Pick<ExportedHandler<Env>, "queue">> = entry as never;
let sent: SentMessage[] = [];
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyQueue(sent) }) as Env;
const call = (method: string, path: string, body?: unknown) => api(method, path, { body, env: testEnv() });
const ctx = () => ({ actor: SYSTEM_ACTOR, now: Date.now() });

const plan = async () =>
  (
    await call("POST", "/api/v1/plans", {
      name: "Throughput",
      currency: "USD",
      interval: "month",
      prices: [
        { type: "flat", amount: "20.00", billing: "arrears" },
        { type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.01" },
      ],
    })
  ).body;

/**
 * A subscription with `units` of usage (recorded now) whose period ends a minute from now: `runAt()` is a time past
 * its end and the late-usage grace window, as if the month had gone by.
 */
async function dueSubscription(planId: string, units: number) {
  const customer = (await call("POST", "/api/v1/customers", { email: `${unique("t")}@example.com`, currency: "USD" })).body;
  const sub = (await call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId, paymentMethod: "pm_card_visa" })).body;
  const u = await call("POST", "/api/v1/usage", { subscriptionId: sub.id, meterId: "api_calls", quantity: units, eventId: unique("e") });
  expect(u.status, JSON.stringify(u.body)).toBe(202);
  // The meter keys periods by their start: the period keeps its start (the subscription's creation), only its end moves.
  const end = Date.now() + 60_000;
  await env.DB.prepare("UPDATE subscriptions SET current_period_end = ?, config_version = config_version + 1, meter_synced_version = config_version + 1 WHERE id = ?").bind(end, sub.id).run();
  const stub = env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id));
  const cfg = (await stub.getConfig())!;
  await stub.configure({ ...cfg, currentPeriodEnd: end, version: cfg.version + 1 });
  return sub.id as string;
}

const runAt = () => Date.now() + 3 * 3_600_000;
const cycleInvoiceOf = (subscriptionId: string) =>
  env.DB.prepare("SELECT id, number, status, total FROM invoices WHERE subscription_id = ? AND billing_reason = 'subscription_cycle'").bind(subscriptionId).first<{ id: string; number: string; status: string; total: number }>();
const ledgerCharges = async (invoiceIds: string[]) =>
  (await env.DB.prepare(`SELECT count(*) AS n FROM sandbox_ledger WHERE kind = 'charge' AND (${invoiceIds.map(() => "idempotency_key LIKE ?").join(" OR ")})`).bind(...invoiceIds.map((id) => `${id}:%`)).first<{ n: number }>())!.n;
const paymentStatus = async (invoiceId: string) => (await env.DB.prepare("SELECT status FROM payments WHERE invoice_id = ?").bind(invoiceId).first<{ status: string }>())?.status ?? null;

beforeEach(async () => {
  sent = [];
  await call("POST", "/admin/emergency/resume-payments");
  await env.DB.prepare("DELETE FROM settings WHERE key = 'gateways.sandbox.faults'").run();
  dropSettingsCache();
});

describe("a renewal and its charge", () => {
  it("take at most 6 D1 round trips together (the charge 3), and bill the usage exactly", { timeout: 30_000 }, async () => {
    const p = await plan();
    const db = dbOf(env);
    const lease = new GuardLease(env);
    // A first renewal and charge warm the isolate's caches (settings: gateway routing and sandbox faults, 30 s), as
    // on a consumer that has been running; the second is counted.
    const warm = await dueSubscription(p.id, 1);
    const warmed = await runDue(servicesOf(ctx(), testEnv()), warm, runAt());
    await collectInvoice(servicesOf(ctx(), testEnv()), warmed[0]!.invoiceId!, { attempt: 1, direct: false, lease });
    const id = await dueSubscription(p.id, 1234);
    const renewal = await countD1(() => runDue(servicesOf(ctx(), testEnv()), id, runAt()));
    // The closed period's rollup came with the renewal's batch, and the meter knows it was written (no write of its own).
    expect(await env.DB.prepare("SELECT value, closed FROM usage_rollups WHERE subscription_id = ? AND meter_id = 'api_calls'").bind(id).first()).toEqual({ value: "1234", closed: 1 });
    const meter = env.USAGE_METER.get(env.USAGE_METER.idFromName(id));
    const revs = await runInDurableObject(meter, (_i, state) => state.storage.sql.exec<{ rev: number; flushed_rev: number }>("SELECT rev, flushed_rev FROM aggregates").toArray());
    expect(revs.length).toBeGreaterThan(0);
    expect(revs.filter((r) => r.flushed_rev !== r.rev)).toEqual([]);
    const invoiceId = renewal.value[0]?.invoiceId;
    expect(invoiceId).toBeDefined();
    expect(sent).toContainEqual({ body: { type: "payment.attempt", invoiceId, attempt: 1 } });
    const charge = await countD1(() => collectInvoice(servicesOf(ctx(), testEnv()), invoiceId!, { attempt: 1, direct: false, lease }));
    await lease.release();
    expect(charge.value.outcome).toBe("succeeded");
    const trips = { renewal: renewal.count.roundTrips, charge: charge.count.roundTrips };
    // The charge: its read (with the invoice's credited lines), the attempt row, the outcome.
    expect(trips.charge, JSON.stringify(trips)).toBe(3);
    expect(trips.renewal + trips.charge, JSON.stringify(trips)).toBeLessThanOrEqual(6);
    const inv = (await call("GET", `/api/v1/invoices/${invoiceId}`)).body;
    expect(inv.status).toBe("paid");
    expect(inv.number).toMatch(/^INV-\d{4}-\d{6}$/);
    const usage = inv.lines.find((l: any) => l.kind === "usage");
    expect({ quantity: usage.quantity, amountMinor: usage.amount.amountMinor }).toEqual({ quantity: "1234", amountMinor: 1234 });
    // The outbox has the number too: invoice.finalized carries it although the batch allocated it.
    const events = (await call("GET", `/api/v1/events?type=invoice.finalized&limit=100`)).body.data as any[];
    expect(events.find((e) => e.data.object.id === invoiceId)?.data.object.number).toBe(inv.number);
  });

  it("concurrent renewals take consecutive invoice numbers, each once, without retries", { timeout: 30_000 }, async () => {
    const p = await plan();
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await dueSubscription(p.id, 10 + i));
    const before = (await env.DB.prepare("SELECT last_number FROM invoice_number_sequences WHERE year = ?").bind(new Date().getUTCFullYear()).first<{ last_number: number }>())?.last_number ?? 0;
    const counted = await Promise.all(ids.map((id) => countD1(() => runDue(servicesOf(ctx(), testEnv()), id, runAt()))));
    // No renewal read the counter or went round again: each took its three round trips.
    expect(counted.map((c) => c.count.roundTrips)).toEqual(ids.map(() => 3));
    const numbers = (await Promise.all(ids.map(cycleInvoiceOf))).map((i) => Number(i!.number.slice(-6))).sort((a, b) => a - b);
    expect(numbers).toEqual(ids.map((_, i) => before + 1 + i));
  });
});

describe("a jobs batch of renewals", () => {
  it("writes its meters' acknowledgements together once its renewals are done: two round trips a renewal, one for the batch", { timeout: 30_000 }, async () => {
    const p = await plan();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await dueSubscription(p.id, 100 + i));
    const trailing = trailingWritesFor(testEnv());
    const synced = async () =>
      (await env.DB.prepare(`SELECT count(*) AS n FROM subscriptions WHERE id IN (${ids.map(() => "?").join(",")}) AND meter_synced_version = config_version`).bind(...ids).first<{ n: number }>())!.n;
    const counted = await Promise.all(ids.map((id) => countD1(() => runDue(servicesFor(testEnv(), ctx(), {}, trailing), id, runAt()))));
    expect(counted.map((c) => c.count.roundTrips)).toEqual(ids.map(() => 2));
    expect(counted.every((c) => c.value[0]?.invoiceId)).toBe(true);
    // Each meter holds its new period already; D1 learns it with the batch's flush.
    expect(await synced()).toBe(0);
    const flushed = await countD1(() => trailing.flush());
    expect(flushed).toMatchObject({ value: 5, count: { roundTrips: 1, statements: 5 } });
    expect(await synced()).toBe(5);
  });

  it("the consumer writes them after the batch's messages; lost ones (a batch that died first) are redone by the hourly resync", { timeout: 30_000 }, async () => {
    const p = await plan();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await dueSubscription(p.id, 7));
    const behind = async (of: string[]) =>
      (await env.DB.prepare(`SELECT count(*) AS n FROM subscriptions WHERE id IN (${of.map(() => "?").join(",")}) AND meter_synced_version < config_version`).bind(...of).first<{ n: number }>())!.n;
    const renew = consumer<{ type: "renew"; id: string }>("test-jobs", { renew: async (m, s) => (await runDue(s, m.id, runAt()), { status: "done" }) }, { services: messageServices });
    const batch = createMessageBatch("test-jobs", ids.slice(0, 2).map((id, i) => ({ id: unique(`tw${i}`), timestamp: new Date(), attempts: 1, body: { type: "renew", id } })));
    await renew(batch, testEnv());
    expect(await behind(ids.slice(0, 2))).toBe(0);

    // Renewed, but the batch's writes never flushed: D1 says the meters are behind, though they hold the new period.
    const lost = trailingWritesFor(testEnv());
    for (const id of ids.slice(2)) expect((await runDue(servicesFor(testEnv(), ctx(), {}, lost), id, runAt()))[0]?.invoiceId).toBeDefined();
    expect(await behind(ids.slice(2))).toBe(2);
    const resync = await resyncMeters(servicesOf(ctx(), testEnv()), 1_000);
    expect(resync.failed).toBe(0);
    expect(await behind(ids.slice(2))).toBe(0);
    for (const id of ids.slice(2)) {
      const held = await env.USAGE_METER.get(env.USAGE_METER.idFromName(id)).getConfig();
      const row = await env.DB.prepare("SELECT config_version, current_period_start FROM subscriptions WHERE id = ?").bind(id).first<{ config_version: number; current_period_start: number }>();
      expect({ version: held?.version, start: held?.currentPeriodStart }).toEqual({ version: row!.config_version, start: row!.current_period_start });
    }
  });
});

describe("GuardLease against a slow guard", () => {
  /** A PaymentGuard whose leases start expired (its answer came after the window) and whose releases wait on a latch. */
  function slowGuard() {
    const granted: string[] = [];
    const released: string[] = [];
    let openReleases!: () => void;
    const releasesOpen = new Promise<void>((r) => (openReleases = r));
    const guard = {
      lease: async () => {
        const token = `t${granted.length + 1}`;
        granted.push(token);
        return { admitted: true, token, mode: "normal", startBy: 0 };
      },
      release: async (token: string) => {
        await releasesOpen;
        released.push(token);
      },
    };
    const e = { ...env, PAYMENT_GUARD: { idFromName: () => ({}), get: () => guard } } as unknown as Env;
    return { e, granted, released, openReleases };
  }

  it("concurrent charges waiting on one request use the lease it returns, even past its window: one request, no loop", async () => {
    const g = slowGuard();
    g.openReleases();
    const lease = new GuardLease(g.e);
    const ran: number[] = [];
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => lease.run(`charge ${i}`, async () => ran.push(i))));
    await lease.release();
    expect(results.every((r) => r.admitted)).toBe(true);
    expect(ran.sort()).toEqual([1, 2, 3, 4, 5]);
    expect(g.granted).toEqual(["t1"]);
    expect(g.released).toEqual(["t1"]);
  });

  it("a lease asked for while the expired one is being given back is the only new one, and both are released", async () => {
    const g = slowGuard();
    const lease = new GuardLease(g.e);
    await lease.run("first", async () => undefined); // t1, expired at once; still held (nothing retired it yet)
    // Three charges: the first retires t1 (its release waits) and asks for t2; the other two wait on that request.
    const running = Promise.all(["a", "b", "c"].map((w) => lease.run(w, async () => undefined)));
    g.openReleases();
    await running;
    await lease.release();
    expect(g.granted).toEqual(["t1", "t2"]);
    expect(g.released.sort()).toEqual(["t1", "t2"]);
  });
});

describe("PaymentGuard admission for a consumer batch", () => {
  it("one lease covers a batch of charges: not an admit/release pair per charge", { timeout: 30_000 }, async () => {
    const p = await plan();
    const invoiceIds = [];
    for (let i = 0; i < 5; i++) {
      const id = await dueSubscription(p.id, 5);
      await runDue(servicesOf(ctx(), testEnv()), id, runAt());
      invoiceIds.push((await cycleInvoiceOf(id))!.id);
    }
    const lease = new GuardLease(env);
    for (const id of invoiceIds) expect((await collectInvoice(servicesOf(ctx(), testEnv()), id, { attempt: 1, direct: false, lease })).outcome).toBe("succeeded");
    await lease.release();
    expect(lease.calls).toBe(2); // one lease, one release
    expect((await call("GET", "/admin/emergency/status")).body.inFlight).toBe(0);
  });

  it("charges running concurrently (as a consumer batch runs them) share one lease request, and all complete", { timeout: 30_000 }, async () => {
    const p = await plan();
    const invoiceIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = await dueSubscription(p.id, 5);
      await runDue(servicesOf(ctx(), testEnv()), id, runAt());
      invoiceIds.push((await cycleInvoiceOf(id))!.id);
    }
    const lease = new GuardLease(env);
    const outcomes = await Promise.all(invoiceIds.map((id) => collectInvoice(servicesOf(ctx(), testEnv()), id, { attempt: 1, direct: false, lease })));
    await lease.release();
    expect(outcomes.map((o) => o.outcome)).toEqual(invoiceIds.map(() => "succeeded"));
    expect(lease.calls).toBe(2); // one lease asked for by the first charge and waited on by the others, one release
    expect((await call("GET", "/admin/emergency/status")).body.inFlight).toBe(0);
  });

  it("a freeze racing a leased batch: each charge completed before the freeze returned, or never reached the gateway", async () => {
    const p = await plan();
    const invoiceIds: string[] = [];
    // More charges than a batch runs at once (CHARGES_IN_FLIGHT), so some have not started when the freeze lands.
    for (let i = 0; i < CHARGES_IN_FLIGHT + 4; i++) {
      const id = await dueSubscription(p.id, 7);
      await runDue(servicesOf(ctx(), testEnv()), id, runAt());
      invoiceIds.push((await cycleInvoiceOf(id))!.id);
    }
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES ('gateways.sandbox.faults', '{\"latencyMs\":1500}', 'test', 0)").run();
    dropSettingsCache();
    const batch = createMessageBatch(
      "billing-payments",
      invoiceIds.map((invoiceId, i) => ({ id: unique(`fr${i}`), timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId, attempt: 1 } })),
    );
    const running = worker.queue(batch, testEnv(), createExecutionContext());
    // The first charges are at the gateway (attempt started, the slow gateway not answered yet): freeze now, while the
    // batch's lease is held and the charges after the first CHARGES_IN_FLIGHT have not started.
    await vi.waitFor(async () => expect((await Promise.all(invoiceIds.map(paymentStatus))).filter((s) => s === "processing").length).toBeGreaterThanOrEqual(1), { timeout: 10_000, interval: 5 });
    const frozen = await call("POST", "/admin/emergency/freeze-payments", { reason: "race test" });
    expect(frozen.status).toBe(200);
    expect(frozen.body.drained).toBe(true);
    const chargedAtFreeze = await ledgerCharges(invoiceIds);
    const succeededAtFreeze = (await Promise.all(invoiceIds.map(paymentStatus))).filter((s) => s === "succeeded").length;
    await running;
    const statuses = await Promise.all(invoiceIds.map(paymentStatus));
    // Nothing reached the gateway after the freeze returned, and what had reached it was complete (recorded) by then.
    expect(await ledgerCharges(invoiceIds)).toBe(chargedAtFreeze);
    expect(succeededAtFreeze).toBe(chargedAtFreeze);
    expect(statuses.filter((s) => s === "succeeded")).toHaveLength(chargedAtFreeze);
    expect(statuses.filter((s) => s === "parked")).toHaveLength(invoiceIds.length - chargedAtFreeze);
    expect(chargedAtFreeze).toBeGreaterThanOrEqual(1);
    expect(chargedAtFreeze).toBeLessThan(invoiceIds.length);
    expect((await call("GET", "/admin/emergency/status")).body.inFlight).toBe(0);
  }, 60_000);
});
