import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

import { notificationEventCount, unique, api, created as createdWith, attemptPayment } from "../helpers";

// Runbook "High Churn Rate": churn analysis, at-risk customers, retention offers. Storage belongs to this file, so
// figures are exact. Order matters: the at-risk and campaign tests use the data of beforeAll; the churn test (last)
// adds EUR subscriptions whose cancellations would otherwise show in nothing else.

type Role = "admin" | "finance" | "support" | "viewer";

/** Queue messages are kept, not delivered: the tests decide what runs. */
let webhookSent: unknown[] = [];
const spyPayments = { send: async () => {}, sendBatch: async () => {} } as unknown as Queue;
const spyWebhooks = {
  send: async (body: unknown) => void webhookSent.push(body),
  sendBatch: async (msgs: { body: unknown }[]) => void webhookSent.push(...msgs.map((m) => m.body)),
} as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spyPayments, WEBHOOK_QUEUE: spyWebhooks }) as Env;

/** `form` sends the body the way the runbook's `curl -d` does: as application/x-www-form-urlencoded. */
const call = (method: string, path: string, body?: unknown, opts: { role?: Role | null; form?: string } = {}) =>
  api(method, path, { body, as: opts.role, form: opts.form, env: testEnv() });

const created = (path: string, body: unknown) => createdWith(path, body, { env: testEnv() });

const pay = async (invoiceId: string) => void (await attemptPayment(invoiceId, 1, { env: testEnv() }));

const DAY = 86_400_000;
const setRow = (table: string, id: string, cols: Record<string, unknown>) =>
  env.DB.prepare(`UPDATE ${table} SET ${Object.keys(cols).map((k) => `${k} = ?`).join(", ")} WHERE id = ?`)
    .bind(...Object.values(cols), id)
    .run();
const invoiceOf = async (subscriptionId: string) => (await call("GET", `/api/v1/invoices?subscriptionId=${subscriptionId}`)).body.data[0];
const customer = (currency = "USD", extra: Record<string, unknown> = {}) => created("/api/v1/customers", { email: `${unique("rt")}@example.com`, currency, ...extra });
const subscribe = (customerId: string, planId: string, extra: Record<string, unknown> = {}) =>
  created("/api/v1/subscriptions", { customerId, planId, paymentMethod: "pm_card_visa", ...extra });
const cancel = async (id: string, reason: string, opts: { feedback?: string; atPeriodEnd?: boolean } = {}) => {
  const r = await call("POST", `/api/v1/subscriptions/${id}/cancel`, { reason, cancelAtPeriodEnd: opts.atPeriodEnd ?? false, ...(opts.feedback ? { feedback: opts.feedback } : {}) });
  expect(r.status).toBe(200);
};
const rollup = (subscriptionId: string, periodStart: number, value: string, closed: boolean) =>
  env.DB.prepare("INSERT INTO usage_rollups (subscription_id, meter_id, period_start, period_end, value, event_count, closed, updated_at) VALUES (?, 'api_calls', ?, ?, ?, 1, ?, ?)")
    .bind(subscriptionId, periodStart, periodStart + 30 * DAY, value, closed ? 1 : 0, periodStart + 30 * DAY)
    .run();
const m = (amount: string, amountMinor: number, currency = "USD") => ({ amount, amountMinor, currency });
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

const w: Record<string, any> = {};

beforeAll(async () => {
  const now = Date.now();
  w.pro = await created("/api/v1/plans", { name: "Risk Pro", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "50.00" }] });
  w.basic = await created("/api/v1/plans", { name: "Risk Basic", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "20.00" }] });

  // A: past_due after its card was declined → past_due 30 + payment_failed 25.
  w.a = await customer("USD", { name: "Declined Co" });
  w.subA = await subscribe(w.a.id, w.pro.id, { paymentMethod: "pm_card_chargeDeclined" });
  w.invA = await invoiceOf(w.subA.id);
  await pay(w.invA.id);
  await setRow("subscriptions", w.subA.id, { status: "past_due" });
  // B: set to cancel at period end → 40.
  w.b = await customer();
  w.subB = await subscribe(w.b.id, w.pro.id);
  await cancel(w.subB.id, "too_expensive", { atPeriodEnd: true });
  // C: downgraded Pro → Basic today → 15. C2 upgraded: no signal.
  w.c = await customer();
  w.subC = await subscribe(w.c.id, w.pro.id);
  expect((await call("PUT", `/api/v1/subscriptions/${w.subC.id}/plan`, { newPlanId: w.basic.id, prorate: true })).status).toBe(200);
  const c2 = await customer();
  const subC2 = await subscribe(c2.id, w.basic.id);
  expect((await call("PUT", `/api/v1/subscriptions/${subC2.id}/plan`, { newPlanId: w.pro.id, prorate: true })).status).toBe(200);
  // D: usage fell from 1000 to 400 → 15 (the open period does not count). D2 fell to exactly half: no signal.
  w.d = await customer();
  w.subD = await subscribe(w.d.id, w.basic.id);
  await rollup(w.subD.id, now - 90 * DAY, "1000", true);
  await rollup(w.subD.id, now - 60 * DAY, "400", true);
  await rollup(w.subD.id, now - 30 * DAY, "5", false);
  const subD2 = await subscribe((await customer()).id, w.basic.id);
  await rollup(subD2.id, now - 90 * DAY, "1000", true);
  await rollup(subD2.id, now - 60 * DAY, "500", true);
  // E: trial ends in 3 days without a payment method → 20. E2 has one; E3's trial ends in 10 days: no signal.
  w.e = await customer();
  w.subE = await subscribe(w.e.id, w.basic.id, { trialDays: 14, paymentMethod: undefined });
  await setRow("subscriptions", w.subE.id, { trial_end: now + 3 * DAY });
  const subE2 = await subscribe((await customer()).id, w.basic.id, { trialDays: 14 });
  await setRow("subscriptions", subE2.id, { trial_end: now + 3 * DAY });
  const subE3 = await subscribe((await customer()).id, w.basic.id, { trialDays: 14, paymentMethod: undefined });
  await setRow("subscriptions", subE3.id, { trial_end: now + 10 * DAY });
  // F: healthy. A test-clock customer past_due: simulated, in no figure.
  await subscribe((await customer()).id, w.basic.id);
  const clock = await created("/api/v1/test-clocks", { frozenTime: new Date().toISOString() });
  const sim = await subscribe((await customer("USD", { testClockId: clock.id })).id, w.basic.id);
  await setRow("subscriptions", sim.id, { status: "past_due" });
});

beforeEach(() => {
  webhookSent = [];
});

describe("GET /api/v1/analytics/at-risk-customers", () => {
  it("scores customers by weighted signals, explains each, with MRR at risk per currency", async () => {
    const r = await call("GET", "/api/v1/analytics/at-risk-customers", undefined, { role: "finance" });
    expect(r.status).toBe(200);
    expect(r.body.weights).toEqual({ cancel_at_period_end: 40, past_due: 30, payment_failed: 25, trial_ending_without_payment_method: 20, downgrade: 15, usage_drop: 15 });
    expect(r.body.method).toContain("each signal counted once per customer");
    expect(r.body).toMatchObject({ total: 5, hasMore: false });
    const [a, b, e, ...tied] = r.body.customers;
    expect(a).toEqual({
      customerId: w.a.id,
      email: w.a.email,
      name: "Declined Co",
      score: 55,
      signals: [
        { name: "past_due", weight: 30, detail: `subscription ${w.subA.id} is past_due` },
        { name: "payment_failed", weight: 25, detail: expect.stringMatching(/^invoice INV-\d{4}-\d{6}: attempt 1 failed \(card_declined\) on \d{4}-\d{2}-\d{2}$/) },
      ],
      mrrAtRisk: [m("50.00", 5000)],
    });
    expect(b).toMatchObject({ customerId: w.b.id, score: 40, mrrAtRisk: [m("50.00", 5000)] });
    expect(b.signals).toEqual([{ name: "cancel_at_period_end", weight: 40, detail: expect.stringMatching(new RegExp(`^subscription ${w.subB.id} cancels on \\d{4}-\\d{2}-\\d{2} \\(reason: too_expensive\\)$`)) }]);
    expect(e).toEqual({
      customerId: w.e.id,
      email: w.e.email,
      name: null,
      score: 20,
      signals: [{ name: "trial_ending_without_payment_method", weight: 20, detail: `trial of subscription ${w.subE.id} ends on ${day(Date.now() + 3 * DAY)} and no payment method is set` }],
      mrrAtRisk: [m("20.00", 2000)], // a trial counts at the price it converts to
    });
    // C and D tie at 15: ordered by customer id.
    expect(tied.map((x: any) => x.customerId)).toEqual([w.c.id, w.d.id].sort());
    const c = tied.find((x: any) => x.customerId === w.c.id);
    expect(c).toMatchObject({ score: 15, mrrAtRisk: [m("20.00", 2000)] });
    expect(c.signals).toEqual([{ name: "downgrade", weight: 15, detail: `subscription ${w.subC.id}: Risk Pro → Risk Basic on ${day(Date.now())}, 50.00 → 20.00 USD a month` }]);
    const d = tied.find((x: any) => x.customerId === w.d.id);
    expect(d.signals).toEqual([{ name: "usage_drop", weight: 15, detail: expect.stringContaining(`subscription ${w.subD.id}, meter api_calls: 400 in the period ending`) }]);
    expect(d.signals[0].detail).toContain("1000 in the one before");
  });

  it("limit pages the highest scores; bad limits are 400", async () => {
    const r = await call("GET", "/api/v1/analytics/at-risk-customers?limit=2", undefined, { role: "admin" });
    expect(r.body.customers.map((x: any) => x.customerId)).toEqual([w.a.id, w.b.id]);
    expect(r.body).toMatchObject({ total: 5, hasMore: true });
    expect((await call("GET", "/api/v1/analytics/at-risk-customers?limit=0")).status).toBe(400);
    expect((await call("GET", "/api/v1/analytics/at-risk-customers?limit=501")).status).toBe(400);
  });
});

describe("POST /api/v1/campaigns/retention", () => {
  const runbookBody = '{\n  "targetSegment": "at_risk",\n  "offerType": "discount",\n  "discountPercent": 25,\n  "validityDays": 30\n}';

  it("queues one offer per customer scoring ≥ 30 and audits the campaign (runbook curl -d)", async () => {
    const before = Date.now();
    const r = await call("POST", "/api/v1/campaigns/retention", undefined, { role: "finance", form: runbookBody });
    expect(r.status).toBe(200);
    const { campaignId, offers } = r.body;
    expect(campaignId).toMatch(/^cmp_/);
    expect(r.body).toMatchObject({ targeted: 2, minScore: 30, skipped: { holdingOffer: 0, overLimit: 0 } });
    expect(r.body.offer).toMatchObject({ type: "discount", discountPercent: 25, validityDays: 30 });
    const expiresAt = Date.parse(r.body.offer.expiresAt);
    expect(expiresAt - before).toBeGreaterThanOrEqual(30 * DAY);
    expect(expiresAt - Date.now()).toBeLessThanOrEqual(30 * DAY);
    expect(offers.map((o: any) => [o.customerId, o.email, o.score])).toEqual([
      [w.a.id, w.a.email, 55],
      [w.b.id, w.b.email, 40],
    ]);
    for (const o of offers) {
      expect(o.offerCode).toMatch(/^RET-[2-9A-HJ-NP-Z]{10}$/);
      expect(o.expiresAt).toBe(r.body.offer.expiresAt);
    }
    expect(offers[0].offerCode).not.toBe(offers[1].offerCode);

    const rows = (
      await env.DB.prepare("SELECT id, kind, template, customer_id AS customerId, invoice_id AS invoiceId, dedupe_key AS dedupeKey, status, payload FROM notifications WHERE kind = 'retention.offer' ORDER BY json_extract(payload, '$.score') DESC").all<any>()
    ).results;
    expect(rows.map(({ payload, ...rest }) => rest)).toEqual(
      offers.map((o: any) => ({ id: o.notificationId, kind: "retention.offer", template: "retention_offer", customerId: o.customerId, invoiceId: null, dedupeKey: `retention:${o.customerId}:${campaignId}`, status: "queued" })),
    );
    expect(JSON.parse(rows[0].payload)).toEqual({
      campaignId,
      customerEmail: w.a.email,
      customerName: "Declined Co",
      offer: { type: "discount", discountPercent: 25, validityDays: 30 },
      offerCode: offers[0].offerCode,
      expiresAt: r.body.offer.expiresAt,
      score: 55,
      signals: ["past_due", "payment_failed"],
    });
    for (const o of offers) expect(await notificationEventCount(o.notificationId)).toBe(1);

    const audit = await env.DB.prepare("SELECT action, target_type AS targetType, actor, actor_role AS role, after FROM audit_log WHERE target_id = ?").bind(campaignId).all<any>();
    expect(audit.results).toHaveLength(1);
    expect(audit.results[0]).toMatchObject({ action: "campaign.retention_sent", targetType: "campaign", actor: "test-finance", role: "finance" });
    expect(JSON.parse(audit.results[0].after)).toEqual({
      segment: "at_risk",
      minScore: 30,
      offer: { type: "discount", discountPercent: 25, validityDays: 30, expiresAt: r.body.offer.expiresAt },
      customerIds: [w.a.id, w.b.id],
    });
    // Nothing was applied: the subscriptions keep no discount.
    for (const sub of [w.subA, w.subB]) expect((await call("GET", `/api/v1/subscriptions/${sub.id}`)).body.discountPercent).toBeNull();
  });

  it("a second campaign skips customers still holding an offer; defaults fill segment and offer type", async () => {
    const r = await call("POST", "/api/v1/campaigns/retention", { discountPercent: 10, validityDays: 7 }, { role: "admin" });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ targeted: 0, offers: [], skipped: { holdingOffer: 2, overLimit: 0 } });
    // Once A's offer has expired, A is offered again under the new campaign.
    const a = await env.DB.prepare("SELECT id, payload FROM notifications WHERE kind = 'retention.offer' AND customer_id = ?").bind(w.a.id).first<any>();
    await env.DB.prepare("UPDATE notifications SET payload = json_set(payload, '$.expiresAt', ?) WHERE id = ?").bind(new Date(Date.now() - 1000).toISOString(), a.id).run();
    const again = await call("POST", "/api/v1/campaigns/retention", { discountPercent: 10, validityDays: 7, discountDays: 60 }, { role: "finance" });
    expect(again.body).toMatchObject({ targeted: 1, skipped: { holdingOffer: 1 }, offer: { discountPercent: 10, discountDays: 60 } });
    const sent = await env.DB.prepare("SELECT json_extract(payload, '$.offer.discountDays') AS days FROM notifications WHERE id = ?").bind(again.body.offers[0].notificationId).first<{ days: number }>();
    expect(sent!.days).toBe(60);
    expect(again.body.offers[0]).toMatchObject({ customerId: w.a.id });
    expect(await notificationEventCount(again.body.offers[0].notificationId)).toBe(1);
  });

  it("validates the offer: unsupported types are 422 naming the field; ranges and unknown fields 400", async () => {
    const post = (form: string) => call("POST", "/api/v1/campaigns/retention", undefined, { role: "finance", form });
    const freeMonth = await post('{"targetSegment": "at_risk", "offerType": "free_month", "discountPercent": 25, "validityDays": 30}');
    expect(freeMonth.status).toBe(422);
    expect(freeMonth.body.errors).toEqual([{ path: "offerType", message: expect.stringContaining('only "discount"') }]);
    const segment = await post('{"targetSegment": "everyone", "discountPercent": 25, "validityDays": 30}');
    expect(segment.status).toBe(422);
    expect(segment.body.errors[0].path).toBe("targetSegment");
    for (const [body, path] of [
      ['{"discountPercent": 0, "validityDays": 30}', "discountPercent"],
      ['{"discountPercent": 101, "validityDays": 30}', "discountPercent"],
      ['{"discountPercent": 12.5, "validityDays": 30}', "discountPercent"],
      ['{"discountPercent": 25, "validityDays": 0}', "validityDays"],
      ['{"discountPercent": 25, "validityDays": 366}', "validityDays"],
      ['{"discountPercent": 25}', "validityDays"],
      ['{"discountPercent": 25, "validityDays": 30, "discountPercnt": 30}', "discountPercnt"],
    ] as const) {
      const r = await post(body);
      expect(r.status, body).toBe(400);
      expect(r.body.errors.map((e: any) => e.path), body).toContain(path);
    }
    expect((await post("{discountPercent: 25")).status).toBe(400);
    expect(webhookSent).toEqual([]);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'campaign.retention_sent'").first<{ n: number }>())!.n).toBe(3);
  });
});

describe("POST /api/v1/campaigns/retention/redeem", () => {
  const offerOf = async (customerId: string) =>
    (await env.DB.prepare("SELECT id, json_extract(payload, '$.offerCode') AS code, json_extract(payload, '$.offer.discountPercent') AS pct FROM notifications WHERE kind = 'retention.offer' AND customer_id = ? AND json_extract(payload, '$.expiresAt') > ? ORDER BY created_at DESC LIMIT 1").bind(customerId, new Date().toISOString()).first<{ id: string; code: string; pct: number }>())!;
  const redeem = (offerCode: string, subscriptionId: string, role: Role = "support") => call("POST", "/api/v1/campaigns/retention/redeem", { offerCode, subscriptionId }, { role });

  it("applies the offer's discount to the customer's subscription once, audited", async () => {
    const { code, pct } = await offerOf(w.a.id);
    const r = await redeem(code, w.subA.id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ offerCode: code, discountPercent: String(pct), subscription: { id: w.subA.id, discountPercent: String(pct) } });
    expect((await call("GET", `/api/v1/subscriptions/${w.subA.id}`)).body.discountPercent).toBe(String(pct));
    const audit = await env.DB.prepare("SELECT action FROM audit_log WHERE target_id IN (?, ?) AND action IN ('campaign.offer_redeemed', 'subscription.discount_changed')").bind(w.subA.id, r.body.campaignId).all<{ action: string }>();
    expect(audit.results.map((a) => a.action).sort()).toEqual(["campaign.offer_redeemed", "subscription.discount_changed"]);

    const again = await redeem(code, w.subA.id);
    expect(again.status).toBe(409);
    expect(again.body.errors[0]).toMatchObject({ path: "offerCode", message: "already redeemed" });
  });

  it("an offer with discountDays discounts the invoices of that many days from the redemption", async () => {
    const c = await customer("USD", { name: "Timed offer" });
    const sub = await subscribe(c.id, w.pro.id);
    const campaignId = unique("cmp");
    const code = `RET-${unique("T").slice(-10).toUpperCase()}`;
    await env.DB.prepare("INSERT INTO notifications (id, kind, customer_id, template, payload, dedupe_key, status, created_at) VALUES (?, 'retention.offer', ?, 'retention_offer', ?, ?, 'sent', ?)")
      .bind(unique("ntf"), c.id, JSON.stringify({ campaignId, offerCode: code, offer: { type: "discount", discountPercent: 30, validityDays: 7, discountDays: 90 }, expiresAt: new Date(Date.now() + 7 * DAY).toISOString() }), `retention:${c.id}:${campaignId}`, Date.now())
      .run();
    // A standing 10 % would end when the 90-day offer does: refused until it is removed.
    await call("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { discountPercent: 10 });
    const longer = await redeem(code, sub.id);
    expect(longer.status).toBe(409);
    expect(longer.body.errors[0]).toMatchObject({ path: "subscriptionId", message: "has a longer-lasting discount" });
    await call("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { discountPercent: null });
    const before = Date.now();
    const r = await redeem(code, sub.id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const until = Date.parse(r.body.subscription.discountUntil);
    expect(until - before).toBeGreaterThanOrEqual(90 * DAY);
    expect(until - Date.now()).toBeLessThanOrEqual(90 * DAY);
    expect(r.body.subscription.discountPercent).toBe("30");
  });

  it("refuses a code sent to someone else, an unknown or expired code, a smaller discount, and roles that cannot change subscriptions", async () => {
    const b = await offerOf(w.b.id);
    expect((await redeem(b.code, w.subA.id)).status).toBe(404); // b's offer, a's subscription
    expect((await redeem("RET-NOPE", w.subB.id)).body.errors[0].path).toBe("offerCode");
    expect((await redeem(b.code, w.subB.id, "finance")).status).toBe(403);

    const discounted = await call("PUT", `/api/v1/subscriptions/${w.subB.id}/discount`, { discountPercent: 50, reason: "goodwill" });
    expect(discounted.status, JSON.stringify(discounted.body)).toBe(200);
    const smaller = await redeem(b.code, w.subB.id);
    expect(smaller.status).toBe(409);
    expect(smaller.body.errors[0].path).toBe("subscriptionId");

    await env.DB.prepare("UPDATE notifications SET payload = json_set(payload, '$.expiresAt', ?) WHERE id = ?").bind(new Date(Date.now() - 1000).toISOString(), b.id).run();
    await call("PUT", `/api/v1/subscriptions/${w.subB.id}/discount`, { discountPercent: null });
    const expired = await redeem(b.code, w.subB.id);
    expect(expired.status).toBe(422);
    expect(expired.body.errors[0]).toMatchObject({ path: "offerCode", message: "expired" });
  });
});

describe("POST /api/v1/analytics/churn-analysis", () => {
  it("churn of the period by plan, tenure and type, with ranked reasons and feedback, stored in R2 (runbook curl -d)", async () => {
    const now = Date.now();
    const ago = (days: number) => now - days * DAY;
    const eurPro = await created("/api/v1/plans", { name: "EUR Pro", currency: "EUR", interval: "month", prices: [{ type: "flat", amount: "100.00" }] });
    const eurBasic = await created("/api/v1/plans", { name: "EUR Basic", currency: "EUR", interval: "month", prices: [{ type: "flat", amount: "20.00" }] });
    const k2c = await customer("EUR");
    const k1 = await subscribe((await customer("EUR")).id, eurPro.id); // >12 months, voluntary
    const k2 = await subscribe(k2c.id, eurBasic.id); // 1-3 months, voluntary; its customer keeps k7
    const k3 = await subscribe((await customer("EUR")).id, eurBasic.id); // 3-12 months, canceled while past_due
    const k4 = await subscribe((await customer("EUR")).id, eurPro.id, { paymentMethod: "pm_card_chargeDeclined" }); // <1 month, collection failed
    const k5 = await subscribe((await customer("EUR")).id, eurBasic.id); // ended before the window
    const k6 = await subscribe((await customer("EUR")).id, eurPro.id, { trialDays: 14 }); // canceled in trial: not churn
    const k7 = await subscribe(k2c.id, eurBasic.id); // active throughout
    const k8 = await subscribe((await customer("EUR")).id, eurBasic.id); // active throughout
    await pay((await invoiceOf(k4.id)).id);
    await setRow("subscriptions", k3.id, { status: "past_due" });
    await cancel(k1.id, "too_expensive", { feedback: "Too pricey" });
    await cancel(k2.id, "missing_features", { feedback: "Needs SSO" });
    await cancel(k3.id, "non_payment");
    await cancel(k4.id, "too_expensive", { feedback: "Card kept failing" });
    await cancel(k5.id, "too_expensive", { feedback: "Old, outside the window" });
    await cancel(k6.id, "trial_not_needed", { feedback: "Only evaluating" });
    await setRow("subscriptions", k1.id, { created_at: ago(400), ended_at: ago(5), canceled_at: ago(5) });
    await setRow("subscriptions", k2.id, { created_at: ago(45), ended_at: ago(10), canceled_at: ago(10) });
    await setRow("subscriptions", k3.id, { created_at: ago(200), ended_at: ago(3), canceled_at: ago(3) });
    await setRow("subscriptions", k4.id, { created_at: ago(20) }); // ended now, after its failed invoice
    await setRow("subscriptions", k5.id, { created_at: ago(100), ended_at: ago(40), canceled_at: ago(40) });
    await setRow("subscriptions", k7.id, { created_at: ago(100) });
    await setRow("subscriptions", k8.id, { created_at: ago(60) });

    const r = await call("POST", "/api/v1/analytics/churn-analysis", undefined, { role: "finance", form: '{"period": "last_30_days", "includeReasons": true}' });
    expect(r.status).toBe(200);
    const date = new Date().toISOString().slice(0, 10);
    expect(r.body.key).toBe(`reports/churn/last_30_days-${date}.json`);
    const report = r.body.report;
    expect(report.period).toBe("last_30_days");
    expect(Date.parse(report.window.to) - Date.parse(report.window.from)).toBe(30 * DAY);
    // At the start: k1, k2, k3, k7, k8 (the USD subscriptions of beforeAll are new). Churned: k1-k3 of those five;
    // k4 was created 20 days ago and canceled since: counted apart (newAndCanceled), not in the rate.
    expect(report.subscriptions).toMatchObject({ activeAtStart: 5, canceled: 3, newAndCanceled: 1, churnRate: "0.6000" });
    // Customers at the start: k1's, k2's (= k7's), k3's, k8's; churned: k1's, k3's (k4's came after the start).
    expect(report.customers).toEqual({ activeAtStart: 4, churned: 2, churnRate: "0.5000" });
    // Revenue churn never exceeds what there was at the start: k1 + k2 + k3 = 140 of 180 (k4's 100 came later).
    expect(report.revenue).toEqual([{ currency: "EUR", mrrAtStart: m("180.00", 18000, "EUR"), mrrLost: m("140.00", 14000, "EUR"), churnRate: "0.7778" }]);
    expect(report.trials).toMatchObject({ canceledDuringTrial: 1 });
    expect(report.byPlan).toEqual([
      { currency: "EUR", planId: eurPro.id, planName: "EUR Pro", subscriptions: 2, mrrLost: m("200.00", 20000, "EUR") },
      { currency: "EUR", planId: eurBasic.id, planName: "EUR Basic", subscriptions: 2, mrrLost: m("40.00", 4000, "EUR") },
    ]);
    expect(report.byTenure).toEqual([
      { bucket: "<1 month", subscriptions: 1, mrrLost: [m("100.00", 10000, "EUR")] },
      { bucket: "1-3 months", subscriptions: 1, mrrLost: [m("20.00", 2000, "EUR")] },
      { bucket: "3-12 months", subscriptions: 1, mrrLost: [m("20.00", 2000, "EUR")] },
      { bucket: ">12 months", subscriptions: 1, mrrLost: [m("100.00", 10000, "EUR")] },
    ]);
    expect(report.byType).toEqual({
      voluntary: { subscriptions: 2, mrrLost: [m("120.00", 12000, "EUR")] }, // k1, k2
      involuntary: { subscriptions: 2, mrrLost: [m("120.00", 12000, "EUR")] }, // k3 (past_due), k4 (failed collection)
      unclassified: { subscriptions: 0, mrrLost: [] },
    });
    expect(report.reasons.ranked).toEqual([
      { reason: "too_expensive", count: 2, share: "0.5000" },
      { reason: "missing_features", count: 1, share: "0.2500" },
      { reason: "non_payment", count: 1, share: "0.2500" },
    ]);
    expect(report.reasons.recentFeedback.map((f: any) => [f.subscriptionId, f.reason, f.feedback])).toEqual([
      [k4.id, "too_expensive", "Card kept failing"],
      [k1.id, "too_expensive", "Too pricey"],
      [k2.id, "missing_features", "Needs SSO"],
    ]);
    expect(report.method).toContain("involuntary: canceled while past_due");
    expect(JSON.parse(await (await env.ARCHIVE.get(r.body.key))!.text())).toEqual(report);

    // Without reasons; other periods; the 40-day-old churn shows in the 90 days.
    const quarter = await call("POST", "/api/v1/analytics/churn-analysis", { period: "last_90_days" }, { role: "admin" });
    expect(quarter.body.key).toBe(`reports/churn/last_90_days-${date}.json`);
    expect(quarter.body.report.reasons).toBeNull();
    // 90 days back k1, k3, k5 were paying and churned since; k2 (45 days) and k4 (20 days) came and went inside it.
    expect(quarter.body.report.subscriptions).toMatchObject({ canceled: 3, newAndCanceled: 2 });
    expect(quarter.body.report.byTenure[2]).toEqual({ bucket: "3-12 months", subscriptions: 1, mrrLost: [m("20.00", 2000, "EUR")] }); // k5: 60 days → 1-3 months
    for (const period of ["last_12_months", "month", "quarter"]) {
      const x = await call("POST", "/api/v1/analytics/churn-analysis", undefined, { role: "finance", form: JSON.stringify({ period }) });
      expect(x.status, period).toBe(200);
      expect(x.body.key).toBe(`reports/churn/${period}-${date}.json`);
    }
    const empty = await call("POST", "/api/v1/analytics/churn-analysis", undefined, { role: "finance", form: "" });
    expect(empty.body.report.period).toBe("last_30_days");
    expect((await call("POST", "/api/v1/analytics/churn-analysis", undefined, { form: '{"period": "last_week"}' })).status).toBe(400);
    expect((await call("POST", "/api/v1/analytics/churn-analysis", undefined, { form: '{"includeReasons": "yes"}' })).status).toBe(400);
    expect((await call("POST", "/api/v1/analytics/churn-analysis", undefined, { form: "period=last_30_days" })).status).toBe(400);
  });
});

describe("retention: access", () => {
  it.each([
    ["POST", "/api/v1/analytics/churn-analysis", '{"period": "last_30_days"}'],
    ["GET", "/api/v1/analytics/at-risk-customers", undefined],
    ["POST", "/api/v1/campaigns/retention", '{"discountPercent": 25, "validityDays": 30}'],
  ] as const)("%s %s: token required; admin and finance only", async (method, path, form) => {
    expect((await call(method, path, undefined, { role: null, form })).status).toBe(401);
    for (const role of ["admin", "finance", "support", "viewer"] as const) {
      expect((await call(method, path, undefined, { role, form })).status).toBe(role === "admin" || role === "finance" ? 200 : 403);
    }
  });
});

describe("retention: OpenAPI", () => {
  it("documents the three routes, with their JSON request bodies (curl -d still works) and the weights", async () => {
    const doc = (await call("GET", "/openapi.json", undefined, { role: null })).body;
    const churn = doc.paths["/api/v1/analytics/churn-analysis"].post;
    const campaign = doc.paths["/api/v1/campaigns/retention"].post;
    const atRisk = doc.paths["/api/v1/analytics/at-risk-customers"].get;
    const body = (op: any) => op.requestBody.content["application/json"].schema;
    expect(body(churn).properties.period.enum).toContain("last_12_months");
    expect(body(campaign).required).toEqual(expect.arrayContaining(["discountPercent", "validityDays"]));
    expect(campaign.description).toContain("POST /api/v1/campaigns/retention/redeem");
    expect(body(doc.paths["/api/v1/campaigns/retention/redeem"].post)).toBeDefined();
    expect(atRisk.description).toContain("cancel_at_period_end 40");
    expect(atRisk.parameters.map((p: any) => p.name)).toContain("limit");
  });
});
