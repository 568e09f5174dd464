import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

import { api, advance, attemptPayment, clockAt, spyQueue, unique } from "../helpers";

// Events caused by work under a test clock are stamped in the clock's frozen time (as Stripe's are).

const testEnv = () => ({ PAYMENT_QUEUE: spyQueue(), WEBHOOK_QUEUE: spyQueue(), JOB_QUEUE: spyQueue() }) as Partial<Env>;
const call = (method: string, path: string, body?: unknown) => api(method, path, { body, env: testEnv() });
const eventsOfCustomer = async (customerId: string) => (await call("GET", `/api/v1/events?customerId=${customerId}&limit=100`)).body.data as any[];

describe("events under a test clock", () => {
  it("carry the clock's time, before and after an advance, whichever route caused them", async () => {
    const clock = await clockAt("2025-01-01T00:00:00Z");
    const customer = (await call("POST", "/api/v1/customers", { email: `${unique("k")}@example.com`, currency: "USD", testClockId: clock })).body;
    const plan = (await call("POST", "/api/v1/plans", { name: "Clocked", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10.00" }] })).body;
    const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId: plan.id });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    await advance(clock, "2025-02-01T06:00:00Z");
    expect((await call("PATCH", `/api/v1/customers/${customer.id}`, { name: "Renamed" })).status).toBe(200);
    const open = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}&status=open`)).body.data[0];
    if (open) expect((await call("POST", `/api/v1/invoices/${open.id}/void`, { reason: "test" })).status).toBe(200);
    const cancel = await call("POST", `/api/v1/subscriptions/${sub.body.id}/cancel`, { cancelAtPeriodEnd: false, reason: "testing" });
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);

    const events = await eventsOfCustomer(customer.id);
    const at = (type: string) => events.filter((e) => e.type === type).map((e) => e.createdAt);
    expect(at("customer.created")).toEqual(["2025-01-01T00:00:00.000Z"]);
    expect(at("customer.subscription.created")).toEqual(["2025-01-01T00:00:00.000Z"]);
    expect(at("customer.updated")).toEqual(["2025-02-01T06:00:00.000Z"]);
    expect(at("customer.subscription.updated")).toEqual(["2025-02-01T00:00:00.000Z"]);
    expect(at("invoice.voided")).toEqual(["2025-02-01T06:00:00.000Z"]);
    expect(at("customer.subscription.deleted")).toEqual(["2025-02-01T06:00:00.000Z"]);
    expect(events.filter((e) => e.type === "invoice.created").length).toBeGreaterThanOrEqual(2);
    // Nothing in real time: the renewal at 2025-02-01T00:00 happened during the advance, in the clock's time then,
    // and its invoice.upcoming 7 days before it.
    expect(at("invoice.upcoming")).toEqual(["2025-01-25T00:00:00.000Z"]);
    expect(new Set(events.map((e) => e.createdAt))).toEqual(new Set(["2025-01-01T00:00:00.000Z", "2025-01-25T00:00:00.000Z", "2025-02-01T00:00:00.000Z", "2025-02-01T06:00:00.000Z"]));
    expect(events.every((e) => e.livemode === false)).toBe(true);
    // Newest first, and id order agrees with it.
    const ids = events.map((e) => e.id);
    expect(ids).toEqual([...ids].sort().reverse());
  });
});

describe("payments, refunds and credit notes of a test-clock invoice", () => {
  it("are stamped in the clock's time", async () => {
    const clock = await clockAt("2025-03-01T00:00:00Z");
    const customer = (await call("POST", "/api/v1/customers", { email: `${unique("k")}@example.com`, currency: "USD", testClockId: clock })).body;
    const plan = (await call("POST", "/api/v1/plans", { name: "Clocked", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10.00" }] })).body;
    const sub = (await call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId: plan.id })).body;
    const invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.id}`)).body.data[0];
    await advance(clock, "2025-03-02T00:00:00Z");
    await attemptPayment(invoice.id, 1, { env: testEnv() });
    const payment = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}&limit=1`)).body.data[0];
    expect(payment.status).toBe("succeeded");
    const refund = await call("POST", "/api/v1/refunds", { paymentId: payment.id, amount: "1.00", reason: "requested_by_customer" });
    expect(refund.status, JSON.stringify(refund.body)).toBe(201);

    const events = await eventsOfCustomer(customer.id);
    const late = events.filter((e) => e.createdAt > "2025-03-02T00:00:00.000Z" || e.createdAt < "2025-03-01T00:00:00.000Z");
    expect(late.map((e) => `${e.type} ${e.createdAt}`)).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["payment.succeeded", "invoice.paid", "refund.created"]));
  });
});
