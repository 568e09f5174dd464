import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";

import { dbOf } from "../../src/db/client";
import { applyStripeEvent } from "../../src/modules/webhooks/apply";
import { archiveOldEvents, RETENTION_DAYS } from "../../src/modules/events/retention";
import { refundLifecycle } from "../../src/modules/refunds/lifecycle";
import { IllegalTransition } from "../../src/domain/lifecycle";
import { refundStatuses } from "../../src/db/schema";
import { cronTasks, CRON } from "../../src/scheduled";
import { unique, api, attemptPayment, messageServicesOf } from "../helpers";
import { eventInsert, eventRow, type EventType } from "../../src/platform/events";

type Role = "admin" | "finance" | "support" | "viewer";

let jobs: unknown[] = [];
const spy = (into?: unknown[]) => ({ send: async (b: unknown) => void into?.push(b), sendBatch: async (ms: { body: unknown }[]) => void into?.push(...ms.map((m) => m.body)) }) as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spy(), WEBHOOK_QUEUE: spy(), JOB_QUEUE: spy(jobs) }) as Env;

const call = (method: string, path: string, body?: unknown, role: Role | null = "admin") => api(method, path, { body, as: role, env: testEnv() });

/** A stored event, as a lifecycle owner would have written it. */
async function seedEvent(o: { type: string; objectId: string; createdAt: number; id?: string }) {
  const id = o.id ?? unique("evt");
  await env.DB.prepare("INSERT INTO events (id, type, object_type, object_id, customer_id, livemode, request_id, data, created_at) VALUES (?, ?, 'thing', ?, NULL, 0, NULL, ?, ?)")
    .bind(id, o.type, o.objectId, JSON.stringify({ object: { id: o.objectId, n: id }, previousAttributes: null }), o.createdAt)
    .run();
  return id;
}

/** An event row as the engine writes it (sortable id) at `createdAt`. */
const written = (type: string, objectId: string, createdAt: number) =>
  eventRow({ type: type as EventType, objectType: "thing", objectId, object: { id: objectId } }, { now: createdAt });

const eventsOf = async (objectId: string) => (await call("GET", `/api/v1/events?objectId=${objectId}&limit=100`)).body.data as any[];

beforeEach(() => {
  jobs = [];
});

describe("GET /api/v1/events", () => {
  it("lists newest first with filters (exact type, prefix, object, created range), a cursor, and gets one by id", async () => {
    const obj = unique("obj");
    const t0 = Date.parse("2031-01-10T00:00:00Z");
    const a = await seedEvent({ type: "invoice.created", objectId: obj, createdAt: t0 });
    const b = await seedEvent({ type: "invoice.paid", objectId: obj, createdAt: t0 + 1000 });
    const c = await seedEvent({ type: "payment.succeeded", objectId: obj, createdAt: t0 + 2000 });
    const d = await seedEvent({ type: "invoice.voided", objectId: obj, createdAt: t0 + 3000 });

    const all = await call("GET", `/api/v1/events?objectId=${obj}`, undefined, "viewer");
    expect(all.status).toBe(200);
    expect(all.body.data.map((e: any) => e.id)).toEqual([d, c, b, a]);
    expect(all.body.data[0]).toEqual({ id: d, object: "event", type: "invoice.voided", createdAt: "2031-01-10T00:00:03.000Z", livemode: false, requestId: null, data: { object: { id: obj, n: d }, previousAttributes: null } });

    const exact = await call("GET", `/api/v1/events?objectId=${obj}&type=invoice.paid`);
    expect(exact.body.data.map((e: any) => e.id)).toEqual([b]);
    const prefix = await call("GET", `/api/v1/events?objectId=${obj}&type=invoice.*`);
    expect(prefix.body.data.map((e: any) => e.id)).toEqual([d, b, a]);
    const range = await call("GET", `/api/v1/events?objectId=${obj}&createdGte=2031-01-10T00:00:01Z&createdLte=2031-01-10T00:00:02Z`);
    expect(range.body.data.map((e: any) => e.id)).toEqual([c, b]);

    const p1 = await call("GET", `/api/v1/events?objectId=${obj}&limit=3`);
    expect(p1.body).toMatchObject({ hasMore: true, nextCursor: b });
    const p2 = await call("GET", `/api/v1/events?objectId=${obj}&limit=3&startingAfter=${p1.body.nextCursor}`);
    expect(p2.body).toMatchObject({ hasMore: false, nextCursor: null });
    expect(p2.body.data.map((e: any) => e.id)).toEqual([a]);

    const one = await call("GET", `/api/v1/events/${c}`, undefined, "viewer");
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id: c, type: "payment.succeeded", data: { object: { id: obj } } });
  });

  it("keeps the order events were written in when they share a millisecond (their ids sort that way)", async () => {
    const obj = unique("obj");
    const t = Date.parse("2031-02-01T00:00:00Z");
    const [first, second] = [written("refund.created", obj, t), written("refund.succeeded", obj, t)];
    await dbOf(env).batch([eventInsert(dbOf(env), first), eventInsert(dbOf(env), second)]);
    expect(second.id > first.id).toBe(true);
    expect((await eventsOf(obj)).map((e) => e.id)).toEqual([second.id, first.id]);
    const next = await call("GET", `/api/v1/events?objectId=${obj}&limit=1&startingAfter=${second.id}`);
    expect(next.body.data.map((e: any) => e.id)).toEqual([first.id]);
  });

  it("pages in id order, which is createdAt order (events of a frozen clock and live ones mixed)", async () => {
    const obj = unique("obj");
    const base = Date.parse("2031-03-01T00:00:00Z");
    const rows = Array.from({ length: 40 }, (_, i) => written("invoice.updated", obj, base + ((i * 7) % 5) * 1000));
    await dbOf(env).batch(rows.map((r) => eventInsert(dbOf(env), r)) as [ReturnType<typeof eventInsert>]);
    const seen: any[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await call("GET", `/api/v1/events?objectId=${obj}&limit=7${cursor ? `&startingAfter=${cursor}` : ""}`);
      seen.push(...page.body.data);
      cursor = page.body.nextCursor;
    } while (cursor);
    const ids = seen.map((e) => e.id);
    expect(ids).toHaveLength(40);
    expect(ids).toEqual([...ids].sort().reverse());
    expect(seen.map((e) => Date.parse(e.createdAt))).toEqual(seen.map((e) => Date.parse(e.createdAt)).sort((a, b) => b - a));
  });

  it("answers 404 for an unknown event, 400 for an unknown cursor or a bad type pattern, 401 without credentials", async () => {
    const missing = await call("GET", "/api/v1/events/evt_nope");
    expect(missing.status).toBe(404);
    expect((await call("GET", "/api/v1/events?startingAfter=evt_nope")).status).toBe(400);
    expect((await call("GET", "/api/v1/events?type=invoice*")).status).toBe(400);
    expect((await call("GET", "/api/v1/events", undefined, null)).status).toBe(401);
    expect((await call("GET", "/api/v1/events/evt_nope", undefined, null)).status).toBe(401);
  });
});

describe("event retention", () => {
  it(`archives events older than ${RETENTION_DAYS} days to R2 per day, then deletes them; a re-run is a no-op`, async () => {
    const now = Date.parse("2031-06-01T12:00:00Z");
    const objOld = unique("old");
    const old1 = await seedEvent({ type: "invoice.paid", objectId: objOld, createdAt: Date.parse("1999-03-04T10:00:00Z") });
    const old2 = await seedEvent({ type: "invoice.created", objectId: objOld, createdAt: Date.parse("1999-03-04T09:00:00Z") });
    const recent = await seedEvent({ type: "invoice.paid", objectId: objOld, createdAt: now - 29 * 86_400_000 });

    const r = await archiveOldEvents(messageServicesOf(testEnv()), now);
    expect(r.archived).toBeGreaterThanOrEqual(2);
    expect(r.hasMore).toBe(false);
    const listed = await env.ARCHIVE.list({ prefix: "events/1999-03-04/" });
    const lines = (await Promise.all(listed.objects.map(async (o) => (await (await env.ARCHIVE.get(o.key))!.text()).trim().split("\n")))).flat().map((l) => JSON.parse(l));
    const mine = lines.filter((e) => e.data.object.id === objOld);
    expect(mine.map((e) => e.id).sort()).toEqual([old1, old2].sort());
    expect(mine.find((e) => e.id === old1)).toMatchObject({ object: "event", type: "invoice.paid", createdAt: "1999-03-04T10:00:00.000Z" });
    expect((await eventsOf(objOld)).map((e) => e.id)).toEqual([recent]);

    const again = await archiveOldEvents(messageServicesOf(testEnv()), now);
    expect(again.archived).toBe(0);
    expect((await env.ARCHIVE.list({ prefix: "events/1999-03-04/" })).objects.length).toBe(listed.objects.length);
  });

  it("stops after its page budget and queues the rest on the jobs queue", async () => {
    const obj = unique("many");
    for (let i = 0; i < 5; i++) await seedEvent({ type: "invoice.paid", objectId: obj, createdAt: Date.parse("1998-01-01T00:00:00Z") + i });
    const r = await archiveOldEvents(messageServicesOf(testEnv()), Date.parse("2031-06-01T00:00:00Z"), { pageSize: 2, maxPages: 1 });
    expect(r).toMatchObject({ archived: 2, hasMore: true });
    expect(jobs).toEqual([{ type: "events.archive" }]);
    const rest = await archiveOldEvents(messageServicesOf(testEnv()), Date.parse("2031-06-01T00:00:00Z"), { pageSize: 2, maxPages: 5 });
    expect(rest).toMatchObject({ archived: 3, hasMore: false });
    expect(await eventsOf(obj)).toEqual([]);
  });

  it("runs from the daily cron, as the retention policy's events kind (test/modules/data-retention.test.ts)", () => {
    expect(cronTasks[CRON.daily]!.map((t) => t.name)).toContain("retention.run");
  });
});

// ---- refunds --------------------------------------------------------------------------------------------------

const attempt = (invoiceId: string, n: number) => attemptPayment(invoiceId, n, { env: testEnv() });
async function payment(amount = "25.00", paymentMethod = "pm_card_visa") {
  const customer = await call("POST", "/api/v1/customers", { email: `${unique("e")}@example.com`, currency: "USD" });
  const plan = await call("POST", "/api/v1/plans", { name: "Evented", currency: "USD", interval: "month", prices: [{ type: "flat", amount }] });
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod });
  const invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
  await attempt(invoice.id, 1);
  return (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
}

describe("refund lifecycle", () => {
  it("declares pending → succeeded | failed and succeeded → failed; every other move is refused", () => {
    const legal = new Set(["pending>succeeded", "pending>failed", "succeeded>failed"]);
    for (const from of refundStatuses)
      for (const to of refundStatuses) {
        if (from === to) continue;
        expect(refundLifecycle.canMove(from, to), `${from} → ${to}`).toBe(legal.has(`${from}>${to}`));
        if (!legal.has(`${from}>${to}`)) expect(() => refundLifecycle.assertMove("re_x", from, to)).toThrow(IllegalTransition);
      }
    expect(refundLifecycle.terminal()).toEqual(["failed"]);
  });

  it("a refund emits refund.created, then refund.succeeded and charge.refunded with the REST objects", async () => {
    const p = await payment("25.00");
    const r = await call("POST", "/api/v1/refunds", { paymentId: p.id, amount: "10.00" }, "finance");
    expect(r.status).toBe(201);
    const evs = (await eventsOf(r.body.id)).reverse();
    expect(evs.map((e) => e.type)).toEqual(["refund.created", "refund.succeeded"]);
    expect(evs[0].data.object).toMatchObject({ id: r.body.id, status: "pending", amountMinor: 1000 });
    const restRefund = (await call("GET", `/api/v1/refunds/${r.body.id}`)).body;
    expect(evs[1].data).toEqual({ object: restRefund, previousAttributes: { status: "pending" } });

    const charge = await eventsOf(p.id);
    const refunded = charge.filter((e) => e.type === "charge.refunded");
    expect(refunded).toHaveLength(1);
    expect(refunded[0].data.object).toEqual((await call("GET", `/api/v1/payments/${p.id}`)).body);
    expect(refunded[0].data.previousAttributes).toEqual({ amountRefunded: "0.00", amountRefundedMinor: 0 });
    // Written in that order: the charge's event is not older than the refund's.
    const all = (await call("GET", `/api/v1/events?type=refund.*&limit=100`)).body.data as any[];
    expect(all.findIndex((e) => e.id === evs[1].id)).toBeLessThan(all.findIndex((e) => e.id === evs[0].id));
  });

  it("a declined refund emits refund.created then refund.failed, and no charge.refunded", async () => {
    const p = await payment("25.00");
    // Refunded at the gateway behind the engine's back: the sandbox declines the next refund (exceeds the charge).
    await env.DB.prepare("INSERT INTO sandbox_ledger (id, kind, idempotency_key, charge_id, amount, currency, status, created_at) VALUES (?, 'refund', ?, ?, 2500, 'USD', 'succeeded', ?)")
      .bind(unique("re"), unique("k"), p.gatewayPaymentId, Date.now())
      .run();
    const r = await call("POST", "/api/v1/refunds", { paymentId: p.id, amount: "5.00" }, "finance");
    expect(r.status).toBe(422);
    const row = await env.DB.prepare("SELECT id FROM refunds WHERE payment_id = ?").bind(p.id).first<{ id: string }>();
    const evs = (await eventsOf(row!.id)).reverse();
    expect(evs.map((e) => e.type)).toEqual(["refund.created", "refund.failed"]);
    expect(evs[1].data.object).toMatchObject({ status: "failed", failureMessage: "refund exceeds the charge's remaining amount" });
    expect((await eventsOf(p.id)).filter((e) => e.type === "charge.refunded")).toEqual([]);
  });

  it("a Stripe refund that fails after succeeding moves to failed (refund.failed) and gives the amount back", async () => {
    const p = await payment("25.00");
    // As the Stripe gateway leaves it: a stripe charge with a refund Stripe reported succeeded.
    const intentId = unique("pi");
    await env.DB.prepare("UPDATE payments SET gateway = 'stripe', gateway_payment_id = ? WHERE id = ?").bind(intentId, p.id).run();
    const reId = unique("re");
    const charge = (status: string, refunded: number) => ({
      id: unique("ch"),
      object: "charge",
      payment_intent: intentId,
      amount: 2500,
      amount_refunded: refunded,
      currency: "usd",
      metadata: {},
      refunds: { object: "list", data: [{ id: reId, object: "refund", amount: 800, currency: "usd", status, created: Math.floor(Date.now() / 1000), metadata: {} }] },
    });
    const deliver = async (object: unknown) => {
      const id = unique("evt_stripe");
      await env.DB.prepare("INSERT INTO webhook_events (id, source, type, payload, status, received_at) VALUES (?, 'stripe', 'charge.refunded', ?, 'received', ?)")
        .bind(id, JSON.stringify({ id, type: "charge.refunded", data: { object } }), Date.now())
        .run();
      expect(await applyStripeEvent(messageServicesOf(testEnv()), id)).toEqual({ status: "done" });
    };
    await deliver(charge("succeeded", 800));
    const local = await env.DB.prepare("SELECT id, status FROM refunds WHERE gateway_refund_id = ?").bind(reId).first<{ id: string; status: string }>();
    expect(local!.status).toBe("succeeded");
    expect((await eventsOf(local!.id)).reverse().map((e) => e.type)).toEqual(["refund.created", "refund.succeeded"]);
    expect((await eventsOf(p.id)).filter((e) => e.type === "charge.refunded").map((e) => e.data.object.amountRefundedMinor)).toEqual([800]);

    await deliver(charge("failed", 0));
    expect((await env.DB.prepare("SELECT status FROM refunds WHERE id = ?").bind(local!.id).first<{ status: string }>())!.status).toBe("failed");
    expect((await call("GET", `/api/v1/payments/${p.id}`)).body.amountRefundedMinor).toBe(0);
    const evs = (await eventsOf(local!.id)).reverse();
    expect(evs.map((e) => e.type)).toEqual(["refund.created", "refund.succeeded", "refund.failed"]);
    expect(evs[2].data.previousAttributes).toEqual({ status: "succeeded" });
    expect(evs[2].data.object).toMatchObject({ id: local!.id, status: "failed" });

    // Delivered again: nothing moves, nothing is emitted twice.
    await deliver(charge("failed", 0));
    expect((await eventsOf(local!.id)).length).toBe(3);
  });
});

describe("refund invariants", () => {
  it("random refund sequences (some concurrent, some too large) never refund more than captured and emit exactly one event per move", async () => {
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 2; round++) {
      const p = await payment("20.00");
      for (let step = 0; step < 6; step++) {
        const amounts = rand(3) === 0 ? [rand(900) + 1, rand(900) + 1] : [rand(1200) + 1];
        const answers = await Promise.all(amounts.map((a) => call("POST", "/api/v1/refunds", { paymentId: p.id, amount: (a / 100).toFixed(2) }, "finance")));
        for (const a of answers) expect([201, 422]).toContain(a.status);
      }
      const rows = (await env.DB.prepare("SELECT id, amount, status FROM refunds WHERE payment_id = ?").bind(p.id).all<{ id: string; amount: number; status: string }>()).results;
      const pay = (await call("GET", `/api/v1/payments/${p.id}`)).body;
      const held = rows.filter((r) => r.status !== "failed").reduce((s, r) => s + r.amount, 0);
      expect(pay.amountRefundedMinor).toBe(held);
      expect(held).toBeLessThanOrEqual(pay.amountMinor);
      for (const r of rows) {
        const types = (await eventsOf(r.id)).reverse().map((e) => e.type);
        expect(types).toEqual(r.status === "succeeded" ? ["refund.created", "refund.succeeded"] : r.status === "failed" ? ["refund.created", "refund.failed"] : ["refund.created"]);
      }
      const charges = (await eventsOf(p.id)).filter((e) => e.type === "charge.refunded");
      expect(charges).toHaveLength(rows.filter((r) => r.status === "succeeded").length);
      for (const c of charges) expect(c.data.object.amountRefundedMinor).toBeLessThanOrEqual(pay.amountMinor);
    }
  });
});

describe("emergency events", () => {
  afterAll(async () => {
    await call("POST", "/admin/emergency/resume-payments", {});
  });

  it("freeze, queue mode and resume each emit their event with the payment mode", async () => {
    const before = Date.now();
    expect((await call("POST", "/admin/emergency/freeze-payments", { reason: "incident 42" })).status).toBe(200);
    expect((await call("POST", "/admin/emergency/queue-mode", {})).status).toBe(200);
    expect((await call("POST", "/admin/emergency/resume-payments", {})).status).toBe(200);
    const list = (await call("GET", `/api/v1/events?type=payments.*&createdGte=${new Date(before).toISOString()}&limit=10`)).body.data as any[];
    expect(list.map((e) => e.type)).toEqual(["payments.resumed", "payments.queue_mode", "payments.frozen"]);
    expect(list[2].data.object).toMatchObject({ mode: "frozen", reason: "incident 42" });
    expect(list[2].data.previousAttributes).toEqual({ mode: "normal" });
    expect(list[0].data).toMatchObject({ object: { mode: "normal" }, previousAttributes: { mode: "queue" } });
    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'payments.frozen' AND at >= ?").bind(before).first<{ n: number }>();
    expect(audit!.n).toBe(1);
  });
});
