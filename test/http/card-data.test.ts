import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer, createPlan, createSubscription, unique } from "../helpers";

const ADVICE = "send a payment-method token, never a card number";
const count = async (table: string) => (await env.DB.prepare(`SELECT count(*) AS n FROM ${table}`).first<{ n: number }>())!.n;

/** A 422 that names `path`, gives the advice, and never echoes a digit group of the number. */
function expectRefused(r: { status: number; body: any; headers: Headers }, path: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(422);
  expect(r.headers.get("content-type")).toContain("application/problem+json");
  expect(r.body.detail).toContain(ADVICE);
  expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
  expect(JSON.stringify(r.body)).not.toMatch(/4242|6011|0566|8282/);
}

describe("card numbers in requests", () => {
  it("refuses a customer whose metadata holds a card number, naming the field, and writes nothing", async () => {
    const id = unique("cus_pan");
    const [customers, audit] = [await count("customers"), await count("audit_log")];
    const r = await api("POST", "/api/v1/customers", { body: { id, email: "pan@example.com", metadata: { note: "card 4242 4242 4242 4242 exp 12/30" } } });
    expectRefused(r, "metadata.note");
    expect((await api("GET", `/api/v1/customers/${id}`)).status).toBe(404);
    expect([await count("customers"), await count("audit_log")]).toEqual([customers, audit]);
  });

  it("refuses a subscription whose paymentMethod is a card number, in any usual writing", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const before = await count("subscriptions");
    for (const paymentMethod of ["4242424242424242", "4000-0566-5566-5556", "3782 822463 10005", "6011111111111117"]) {
      expectRefused(await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, paymentMethod } }), "paymentMethod");
    }
    expect(await count("subscriptions")).toBe(before);
    // A token is what it takes.
    expect((await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id, paymentMethod: "pm_card_visa" } })).status).toBe(201);
  });

  it("refuses a usage event with a card number in a property (single and batch), and counts nothing", async () => {
    const sub = await createSubscription();
    const event = { subscriptionId: sub.id, meterId: "api_calls", quantity: 5 };
    expectRefused(await api("POST", "/api/v1/usage", { body: { ...event, metadata: { card: "4242424242424242" } } }), "metadata.card");
    expectRefused(await api("POST", "/api/v1/usage", { rawBody: JSON.stringify({ ...event, metadata: { card: 1 } }).replace('"card":1', '"card":4242424242424242') }), "metadata.card");
    const batch = await api("POST", "/api/v1/usage", { body: { events: [event, { ...event, metadata: { note: "paid by 4242-4242-4242-4242" } }] } });
    expectRefused(batch, "events.1.metadata.note");
    const summary = await api("GET", `/api/v1/usage/${sub.id}/summary`);
    expect(summary.body.meters.find((m: { meterId: string }) => m.meterId === "api_calls").eventCount).toBe(0);
  });

  it("accepts legitimate long numbers: Luhn-valid epoch milliseconds and byte counts", async () => {
    // A byte count, priced per byte (so 4.2e15 bytes stay within what a price may bill: 424,242,424.24 USD).
    const plan = await createPlan({ prices: [{ type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.0000001" }] });
    const sub = await createSubscription({ planId: plan.id });
    // 1764505200006 passes Luhn; it is a timestamp (2025-11-30T12:20:00.006Z), and so is its string.
    const r = await api("POST", "/api/v1/usage", {
      body: { events: [{ subscriptionId: sub.id, meterId: "api_calls", quantity: 4242424242424242, timestamp: new Date().toISOString(), metadata: { sentAtMs: 1764505200006, sentAt: "1764505200006", requestId: "550e8400-e29b-41d4-a716-446655440000" } }] },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.accepted).toBe(1);
    const c = await api("POST", "/api/v1/customers", { body: { email: "ok@example.com", metadata: { createdAtMs: "1764505200006", phone: "+1 415 555 0100" } } });
    expect(c.status).toBe(201);
  });

  it("refuses card numbers in object keys, query strings and the Idempotency-Key, and on /admin routes", async () => {
    const r = await api("POST", "/api/v1/customers", { body: { email: "k@example.com", metadata: { "4242424242424242": "visa" } } });
    expectRefused(r, "metadata");
    expectRefused(await api("GET", "/api/v1/customers?email=4242424242424242"), "query.email");
    expectRefused(await api("POST", "/api/v1/customers", { body: { email: "i@example.com" }, headers: { "idempotency-key": "4242 4242 4242 4242" } }), "Idempotency-Key");
    expectRefused(await api("PUT", "/admin/features/pan-flag", { body: { enabled: true, criteria: { plan: "6011111111111117" } } }), "criteria.plan");
  });

  it("leaves Stripe's signed webhooks to their own verification", async () => {
    const r = await api("POST", "/webhooks/stripe", { as: null, body: { note: "4242424242424242" }, headers: { "stripe-signature": "t=1,v1=00" } });
    expect(r.status).not.toBe(422);
  });
});
