import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { classifyDecline, StripeGateway } from "../../src/gateways/stripe";
import type { ChargeRequest } from "../../src/gateways/types";
import { FAKE_STRIPE_BASE, FAKE_STRIPE_KEY, FakeStripe } from "./fake-stripe";

const stripeEnv = { ...env, STRIPE_SECRET_KEY: FAKE_STRIPE_KEY } as Env;

// Nothing in this file may reach the real fetch: every gateway gets the fake, and the global is a tripwire.
const realFetchCalls: string[] = [];
beforeAll(() => {
  vi.stubGlobal("fetch", async (input: RequestInfo | URL) => {
    realFetchCalls.push(String(input instanceof Request ? input.url : input));
    throw new TypeError("global fetch is disabled in this test file");
  });
});
afterAll(() => {
  vi.unstubAllGlobals();
  expect(realFetchCalls).toEqual([]);
});

let fake: FakeStripe;
let gateway: StripeGateway;
let n = 0;
const charge = (over: Partial<ChargeRequest> = {}): ChargeRequest => ({
  amountMinor: 1999,
  currency: "USD",
  customerId: "cus_123",
  paymentMethod: "pm_card_visa",
  invoiceId: "inv_123",
  idempotencyKey: `inv_123:attempt:${++n}`,
  ...over,
});

beforeEach(() => {
  fake = new FakeStripe();
  gateway = new StripeGateway(stripeEnv, { fetch: fake.fetch, apiBase: FAKE_STRIPE_BASE });
});

describe("StripeGateway against a fake Stripe API", () => {
  it("charges with a confirmed off-session PaymentIntent and our idempotency key", async () => {
    const req = charge();
    const r = await gateway.charge(req);
    expect(r).toEqual({ status: "succeeded", gatewayPaymentId: expect.stringMatching(/^pi_/) });
    const [call] = fake.callsTo("POST", "/v1/payment_intents");
    expect(call!.idempotencyKey).toBe(req.idempotencyKey);
    const form = Object.fromEntries(call!.form);
    expect(form).toMatchObject({
      amount: "1999",
      currency: "usd",
      confirm: "true",
      off_session: "true",
      payment_method: "pm_card_visa",
      "metadata[customerId]": "cus_123",
      "metadata[invoiceId]": "inv_123",
    });
    expect(form.customer).toBeUndefined();
    expect(fake.foreignHosts).toEqual([]);
  });

  it("charges a method saved to a Stripe customer with that customer", async () => {
    await gateway.charge(charge({ gatewayCustomerId: "cus_StripeABC" }));
    const [call] = fake.callsTo("POST", "/v1/payment_intents");
    expect(Object.fromEntries(call!.form).customer).toBe("cus_StripeABC");
  });

  it("reports a card decline as failed with the issuer's code, retryable by code", async () => {
    const funds = await gateway.charge(charge({ paymentMethod: "pm_card_chargeDeclinedInsufficientFunds" }));
    expect(funds).toMatchObject({ status: "failed", failureCode: "insufficient_funds", retryable: true, gatewayPaymentId: expect.stringMatching(/^pi_/) });
    const expired = await gateway.charge(charge({ paymentMethod: "pm_card_chargeDeclinedExpiredCard" }));
    expect(expired).toMatchObject({ status: "failed", failureCode: "expired_card", retryable: false, failureMessage: "Your card has expired." });
    const fraud = await gateway.charge(charge({ paymentMethod: "pm_card_chargeDeclinedFraudulent" }));
    expect(fraud).toMatchObject({ status: "failed", failureCode: "fraudulent", retryable: false });
  });

  it("returns the same PaymentIntent for a repeated idempotency key; Stripe created one", async () => {
    const req = charge();
    const first = await gateway.charge(req);
    const again = await gateway.charge(req);
    expect(again).toEqual(first);
    expect(fake.creates).toBe(1);
    const calls = fake.callsTo("POST", "/v1/payment_intents");
    expect(calls.map((c) => c.replayed)).toEqual([false, true]);
    // A replayed decline is the same decline, not a second attempt.
    const declined = charge({ paymentMethod: "pm_card_chargeDeclined" });
    const d1 = await gateway.charge(declined);
    const d2 = await gateway.charge(declined);
    expect(d2).toEqual(d1);
    expect(fake.creates).toBe(2);
  });

  it("maps processing to pending, an unknown payment method to a final failure, and none to a failure without a call", async () => {
    expect(await gateway.charge(charge({ paymentMethod: "pm_card_processing" }))).toMatchObject({ status: "pending" });
    expect(await gateway.charge(charge({ paymentMethod: "pm_nope" }))).toMatchObject({ status: "failed", failureCode: "resource_missing", retryable: false });
    const before = fake.calls.length;
    expect(await gateway.charge(charge({ paymentMethod: null }))).toMatchObject({ status: "failed", failureCode: "missing_payment_method", retryable: false });
    expect(fake.calls.length).toBe(before);
  });

  it("refunds a PaymentIntent (idempotently) and refuses more than was charged", async () => {
    const c = await gateway.charge(charge({ amountMinor: 5000 }));
    const req = { gatewayPaymentId: c.gatewayPaymentId!, amountMinor: 2000, currency: "USD", idempotencyKey: "re-key-1", reason: "requested_by_customer" };
    const r = await gateway.refund(req);
    expect(r).toEqual({ status: "succeeded", gatewayRefundId: expect.stringMatching(/^re_/) });
    expect(await gateway.refund(req)).toEqual(r);
    const [call] = fake.callsTo("POST", "/v1/refunds");
    expect(Object.fromEntries(call!.form)).toMatchObject({ payment_intent: c.gatewayPaymentId, amount: "2000", reason: "requested_by_customer" });
    expect(call!.idempotencyKey).toBe("re-key-1");
    const over = await gateway.refund({ ...req, amountMinor: 4000, idempotencyKey: "re-key-2" });
    expect(over).toMatchObject({ status: "failed", gatewayRefundId: null, failureMessage: expect.stringContaining("amount_too_large") });
  });

  it("retrieves a PaymentIntent with its refunded amount, and null for an unknown id", async () => {
    const req = charge({ amountMinor: 1200, currency: "EUR" });
    const c = await gateway.charge(req);
    await gateway.refund({ gatewayPaymentId: c.gatewayPaymentId!, amountMinor: 200, currency: "EUR", idempotencyKey: "re-r1" });
    expect(await gateway.retrieve(c.gatewayPaymentId!)).toEqual({
      id: c.gatewayPaymentId,
      status: "succeeded",
      amountMinor: 1200,
      currency: "EUR",
      amountRefunded: 200,
      idempotencyKey: req.idempotencyKey,
    });
    const [get] = fake.callsTo("GET", `/v1/payment_intents/${c.gatewayPaymentId}`);
    expect([...get!.query.values()]).toContain("latest_charge");
    expect(await gateway.retrieve("pi_missing")).toBeNull();
  });

  it("lists balance transactions in a window through every page, mapping charges and refunds", async () => {
    const t0 = 1_750_000_000; // seconds
    // 240 charges one second apart, 20 refunds, some fees, and transactions outside the window.
    for (let i = 0; i < 240; i++) {
      const chargeId = `ch_${i}`;
      fake.charges.set(chargeId, { id: chargeId, amount: 100 + i, amount_refunded: 0, currency: "usd", payment_intent: `pi_${i}`, refunded: false });
      fake.txns.push({ id: `txn_c${i}`, type: i % 2 ? "charge" : "payment", amount: 100 + i, currency: "usd", created: t0 + i, source: chargeId });
    }
    for (let i = 0; i < 20; i++) {
      fake.refunds.set(`re_${i}`, { id: `re_${i}`, object: "refund", amount: 50, charge: `ch_${i}`, payment_intent: `pi_${i}`, status: "succeeded" });
      fake.txns.push({ id: `txn_r${i}`, type: "refund", amount: -50, currency: "usd", created: t0 + 100 + i, source: `re_${i}` });
    }
    fake.txns.push({ id: "txn_fee", type: "stripe_fee", amount: -25, currency: "usd", created: t0 + 5, source: null });
    fake.txns.push({ id: "txn_early", type: "charge", amount: 1, currency: "usd", created: t0 - 1, source: "ch_x" });
    fake.txns.push({ id: "txn_late", type: "charge", amount: 1, currency: "usd", created: t0 + 240, source: "ch_y" });

    const list = await gateway.balanceTransactions(t0 * 1000, (t0 + 240) * 1000);
    expect(list).toHaveLength(260);
    const pages = fake.callsTo("GET", "/v1/balance_transactions");
    expect(pages).toHaveLength(3); // 261 in the window (fee included) at 100 a page
    expect(pages[0]!.query.get("created[gte]")).toBe(String(t0));
    expect(pages[0]!.query.get("created[lt]")).toBe(String(t0 + 240));
    expect(pages[0]!.query.get("limit")).toBe("100");
    expect(pages[0]!.query.has("starting_after")).toBe(false);
    expect(pages[1]!.query.get("starting_after")).toMatch(/^txn_/);
    expect(list.find((t) => t.id === "txn_c7")).toEqual({ id: "txn_c7", type: "charge", sourceId: "ch_7", paymentId: "pi_7", amountMinor: 107, currency: "USD", created: (t0 + 7) * 1000 });
    expect(list.find((t) => t.id === "txn_c8")?.type).toBe("charge"); // "payment" is a charge too
    expect(list.find((t) => t.id === "txn_r3")).toEqual({ id: "txn_r3", type: "refund", sourceId: "re_3", paymentId: "pi_3", amountMinor: -50, currency: "USD", created: (t0 + 103) * 1000 });
    expect(list.some((t) => t.id === "txn_fee" || t.id === "txn_early" || t.id === "txn_late")).toBe(false);
  });

  it("lists the same window a page per call (one request each), following `next` through every page", async () => {
    const t0 = 1_750_000_000;
    for (let i = 0; i < 150; i++) {
      fake.charges.set(`ch_${i}`, { id: `ch_${i}`, amount: 100, amount_refunded: 0, currency: "usd", payment_intent: `pi_${i}`, refunded: false });
      fake.txns.push({ id: `txn_c${i}`, type: "charge", amount: 100, currency: "usd", created: t0 + i, source: `ch_${i}` });
    }
    fake.txns.push({ id: "txn_fee", type: "stripe_fee", amount: -25, currency: "usd", created: t0 + 5, source: null });
    const seen: string[] = [];
    let after: string | null = null;
    let calls = 0;
    do {
      const page = await gateway.balanceTransactionsPage(t0 * 1000, (t0 + 150) * 1000, after, 100);
      seen.push(...page.data.map((t) => t.id));
      after = page.next;
      calls++;
    } while (after && calls < 5);
    expect(calls).toBe(2);
    expect(new Set(seen).size).toBe(150);
    expect(seen).not.toContain("txn_fee");
    const pages = fake.callsTo("GET", "/v1/balance_transactions");
    expect(pages).toHaveLength(2);
    expect(pages[0]!.query.has("starting_after")).toBe(false);
    expect(pages[1]!.query.get("starting_after")).toMatch(/^txn_/);
  });

  it("throws on an API outage (after one retry with the same idempotency key) so the caller retries", async () => {
    fake.outage = 500;
    const req = charge();
    await expect(gateway.charge(req)).rejects.toThrow(/unknown error/i);
    const calls = fake.callsTo("POST", "/v1/payment_intents");
    expect(calls).toHaveLength(2);
    expect(new Set(calls.map((c) => c.idempotencyKey))).toEqual(new Set([req.idempotencyKey]));
    const noRetry = new StripeGateway(stripeEnv, { fetch: fake.fetch, apiBase: FAKE_STRIPE_BASE, maxNetworkRetries: 0 });
    await expect(noRetry.refund({ gatewayPaymentId: "pi_1", amountMinor: 1, currency: "USD", idempotencyKey: "k" })).rejects.toThrow();
    await expect(noRetry.retrieve("pi_1")).rejects.toThrow();
    await expect(noRetry.balanceTransactions(0, 1000)).rejects.toThrow();
  });

  it("throws on a bad key rather than reporting a decline", async () => {
    const wrong = new StripeGateway({ ...env, STRIPE_SECRET_KEY: "sk_test_wrong" } as Env, { fetch: fake.fetch, apiBase: FAKE_STRIPE_BASE });
    await expect(wrong.charge(charge())).rejects.toThrow(/Invalid API Key/);
  });

  it("health is a balance round trip with its latency; down during an outage", async () => {
    const up = await gateway.health();
    expect(up).toMatchObject({ ok: true, detail: "stripe test mode" });
    expect(typeof up.latencyMs).toBe("number");
    expect(fake.callsTo("GET", "/v1/balance")).toHaveLength(1);
    fake.outage = 503;
    const fast = new StripeGateway(stripeEnv, { fetch: fake.fetch, apiBase: FAKE_STRIPE_BASE, maxNetworkRetries: 0 });
    expect(await fast.health()).toMatchObject({ ok: false });
  });

  it("reads the API base from STRIPE_API_BASE, and otherwise targets api.stripe.com (refused here: no real network call)", async () => {
    const viaEnv = new StripeGateway({ ...stripeEnv, STRIPE_API_BASE: FAKE_STRIPE_BASE } as Env, { fetch: fake.fetch });
    expect(await viaEnv.charge(charge())).toMatchObject({ status: "succeeded" });

    const defaults = new StripeGateway(stripeEnv, { fetch: fake.fetch, maxNetworkRetries: 0 });
    await expect(defaults.charge(charge())).rejects.toThrow();
    expect(fake.foreignHosts.length).toBeGreaterThan(0);
    expect(new Set(fake.foreignHosts)).toEqual(new Set(["api.stripe.com"]));
  });

  it("refuses to start without a key", () => {
    expect(() => new StripeGateway({ ...env, STRIPE_SECRET_KEY: "" } as Env)).toThrow(/not configured/);
  });
});

describe("classifyDecline", () => {
  it.each([
    [{ code: "card_declined", decline_code: "insufficient_funds" }, "insufficient_funds", true],
    [{ code: "card_declined", decline_code: "generic_decline" }, "generic_decline", true],
    [{ code: "card_declined", decline_code: "stolen_card" }, "stolen_card", false],
    [{ code: "expired_card" }, "expired_card", false],
    [{ code: "authentication_required", decline_code: "authentication_required" }, "authentication_required", false],
    [{ code: "processing_error" }, "processing_error", true],
    [{ code: "card_declined", decline_code: "generic_decline", advice_code: "do_not_try_again" }, "generic_decline", false],
    [{ code: "card_declined", decline_code: "expired_card", advice_code: "try_again_later" }, "expired_card", true],
  ])("%o → %s retryable %s", (d, code, retryable) => {
    expect(classifyDecline(d)).toMatchObject({ failureCode: code, retryable });
  });
});
