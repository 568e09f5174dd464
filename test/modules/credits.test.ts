import { describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { api, createCustomer, createPlan, advance, clockAt, invoicesOf } from "../helpers";
import { dbOf } from "../../src/db/client";
import { invoices } from "../../src/db/schema";
import { expireGrant, grantsByIds, returnCredits } from "../../src/modules/credits/ledger";

const grant = (customerId: string, body: Record<string, unknown>) => api("POST", `/api/v1/customers/${customerId}/credit-grants`, { as: "finance", body: { currency: "USD", ...body } });
const balance = async (customerId: string) => (await api("GET", `/api/v1/customers/${customerId}/credit-balance?limit=100`)).body;

describe("prepaid credits", () => {
  it("a promotional grant expiring half-used: the first invoice uses half, the expiry takes the rest, the ledger shows each movement", async () => {
    const clock = await clockAt("2024-01-01T00:00:00Z", "credits");
    const customer = await createCustomer({ testClockId: clock });
    const g = await grant(customer.id, { amount: "40.00", category: "promotional", expiresAt: "2024-01-20T00:00:00Z" });
    expect(g.status, JSON.stringify(g.body)).toBe(201);
    expect(g.body).toMatchObject({ status: "active", usable: true, remaining: { amountMinor: 4000 } });
    const plan = await createPlan({ name: "F", interval: "month", prices: [{ type: "flat", amount: "20.00", billing: "advance" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const [first] = await invoicesOf(sub.id);
    expect(first).toMatchObject({ total: { amountMinor: 2000 }, creditApplied: { amountMinor: 2000 }, amountDue: { amountMinor: 0 }, status: "paid" });
    expect((await balance(customer.id)).available.amountMinor).toBe(2000);

    await advance(clock, "2024-02-01T00:00:00Z");
    const [, second] = await invoicesOf(sub.id);
    // Expired on the 20th: nothing left for February's invoice.
    expect(second).toMatchObject({ total: { amountMinor: 2000 }, creditApplied: { amountMinor: 0 }, amountDue: { amountMinor: 2000 } });
    const b = await balance(customer.id);
    expect(b.available.amountMinor).toBe(0);
    expect(b.transactions.data.map((t: any) => [t.type, t.amount.amountMinor, t.invoiceId])).toEqual([
      ["expired", -2000, null],
      ["applied", -2000, first.id],
      ["granted", 4000, null],
    ]);
    expect(b.transactions.data[0].at).toBe("2024-01-20T00:00:00.000Z");
    expect((await api("GET", `/api/v1/customers/${customer.id}/credit-grants/${g.body.id}`)).body).toMatchObject({ status: "expired", remaining: { amountMinor: 0 }, usable: false });
    expect((await api("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance.amountMinor).toBe(0);
    const events = await env.DB.prepare("SELECT type FROM events WHERE customer_id = ? AND type LIKE 'billing.%' ORDER BY created_at, id").bind(customer.id).all<{ type: string }>();
    expect(new Set(events.results.map((e) => e.type))).toEqual(new Set(["billing.credit_grant.created", "billing.credit_grant.updated", "billing.credit_balance_transaction.created"]));
  });

  it("uses grants by priority then earliest expiry, a meter-scoped grant only on its usage lines", async () => {
    const customer = await createCustomer();
    const later = await grant(customer.id, { amount: "5.00", category: "promotional", expiresAt: "2099-01-01T00:00:00Z" });
    const sooner = await grant(customer.id, { amount: "5.00", category: "promotional", expiresAt: "2098-01-01T00:00:00Z" });
    const scoped = await grant(customer.id, { amount: "50.00", category: "promotional", priority: 0, appliesTo: { meterIds: ["api_calls"] } });
    const plan = await createPlan({ name: "F", interval: "month", prices: [{ type: "flat", amount: "8.00", billing: "advance" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const [inv] = await invoicesOf(sub.id);
    expect(inv).toMatchObject({ creditApplied: { amountMinor: 800 }, amountDue: { amountMinor: 0 } });
    const remaining = async (id: string) => (await api("GET", `/api/v1/customers/${customer.id}/credit-grants/${id}`)).body.remaining.amountMinor;
    expect([await remaining(scoped.body.id), await remaining(sooner.body.id), await remaining(later.body.id)]).toEqual([5000, 0, 200]);
  });

  it("a paid grant issues an invoice for its purchase and becomes usable when that invoice is paid; void removes what is left", async () => {
    const customer = await createCustomer();
    const g = await grant(customer.id, { amount: "25.00", category: "paid" });
    expect(g.status, JSON.stringify(g.body)).toBe(201);
    expect(g.body).toMatchObject({ status: "pending", usable: false, purchaseInvoiceId: expect.stringMatching(/^inv_/) });
    expect((await balance(customer.id)).pending.amountMinor).toBe(2500);
    const inv = (await api("GET", `/api/v1/invoices/${g.body.purchaseInvoiceId}`)).body;
    expect(inv).toMatchObject({ total: { amountMinor: 2500 }, tax: { amountMinor: 0 } });
    await vi.waitFor(async () => expect((await api("GET", `/api/v1/customers/${customer.id}/credit-grants/${g.body.id}`)).body.status).toBe("active"), { timeout: 20_000, interval: 200 });
    const b = await balance(customer.id);
    expect(b).toMatchObject({ available: { amountMinor: 2500 }, byCategory: { paid: { amountMinor: 2500 } }, pending: { amountMinor: 0 } });
    const voided = await api("POST", `/api/v1/customers/${customer.id}/credit-grants/${g.body.id}/void`, { as: "finance", body: { reason: "goodwill reversed" } });
    expect(voided.body).toMatchObject({ status: "voided", remaining: { amountMinor: 0 } });
    expect((await balance(customer.id)).transactions.data.map((t: any) => [t.type, t.amount.amountMinor])).toEqual([
      ["voided", -2500],
      ["granted", 2500],
    ]);
  });
});

describe("a credit return racing the grant's expiry", () => {
  it("the void's return, prepared while the grant was active, is recorded as restored and expired again when the expiry committed first", async () => {
    const customer = await createCustomer();
    const g = await grant(customer.id, { amount: "30.00", category: "promotional", expiresAt: "2099-01-01T00:00:00Z" });
    const plan = await createPlan({ name: "F", interval: "month", prices: [{ type: "flat", amount: "50.00", billing: "advance" }] });
    const sub = (await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } })).body;
    const [inv] = await invoicesOf(sub.id);
    expect(inv).toMatchObject({ status: "open", creditApplied: { amountMinor: 3000 } });
    const db = dbOf(env);
    const ctx = { now: Date.now() };
    const row = (await db.select().from(invoices).where(eq(invoices.id, inv.id)).get())!;

    // The void reads the grant active and prepares its return; the expiry of the (now empty) grant commits first.
    const back = await returnCredits(db, row, ctx);
    const drained = (await grantsByIds(db, [g.body.id]))[0]!;
    expect(drained).toMatchObject({ status: "active", remaining: 0 });
    const expiry = expireGrant(db, drained, ctx);
    await db.batch(expiry.statements as [any, ...any[]]);
    await db.batch(back.statements as [any, ...any[]]);

    // Stripe's rule: credit returned to an expired grant is not restored, and the ledger says so.
    const after = (await grantsByIds(db, [g.body.id]))[0]!;
    expect(after).toMatchObject({ status: "expired", remaining: 0 });
    const moves = (await env.DB.prepare("SELECT type, amount FROM credit_ledger WHERE grant_id = ? ORDER BY created_at, id").bind(g.body.id).all<{ type: string; amount: number }>()).results;
    expect(moves.map((m) => [m.type, m.amount])).toEqual([
      ["granted", 3000],
      ["applied", -3000],
      ["returned", 3000],
      ["expired", -3000],
    ]);
    expect(moves.reduce((s, m) => s + m.amount, 0)).toBe(after.remaining);
    expect((await api("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance.amountMinor).toBe(0);
  });
});

describe("credit grant failures as problem+json", () => {
  it("an unknown grant: 404; a grant in another currency: 422 on currency; voiding a voided grant: 409", async () => {
    const customer = await createCustomer();
    const nope = await api("GET", `/api/v1/customers/${customer.id}/credit-grants/cgr_nope`);
    expect([nope.status, nope.body.detail]).toEqual([404, "credit grant cgr_nope does not exist"]);
    const voidNope = await api("POST", `/api/v1/customers/${customer.id}/credit-grants/cgr_nope/void`, { as: "finance", body: {} });
    expect([voidNope.status, voidNope.body.detail]).toEqual([404, "credit grant cgr_nope does not exist"]);
    const eur = await grant(customer.id, { amount: "5.00", category: "promotional", currency: "EUR" });
    expect([eur.status, eur.body.errors]).toEqual([422, [{ path: "currency", message: "must be the customer's currency (USD)" }]]);
    const g = await grant(customer.id, { amount: "5.00", category: "promotional" });
    expect((await api("POST", `/api/v1/customers/${customer.id}/credit-grants/${g.body.id}/void`, { as: "finance", body: {} })).status).toBe(200);
    const again = await api("POST", `/api/v1/customers/${customer.id}/credit-grants/${g.body.id}/void`, { as: "finance", body: {} });
    expect([again.status, again.body.detail, again.body.errors]).toEqual([409, `credit grant ${g.body.id} is voided`, [{ path: "id", message: "voided" }]]);
  });
});
