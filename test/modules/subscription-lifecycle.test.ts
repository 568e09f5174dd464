import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { dbOf } from "../../src/db/client";
import { subscriptions, type SubscriptionStatus } from "../../src/db/schema";
import { IllegalTransition } from "../../src/domain/lifecycle";
import { commit } from "../../src/platform/change-set";
import { commitSubscriptionChange } from "../../src/modules/subscriptions/commit";
import { subscriptionAfterPayment, subscriptionJsonSql, subscriptionLifecycle } from "../../src/modules/subscriptions/transitions";
import { toSubscription } from "../../src/modules/subscriptions/serialize";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { trialWillEndPage } from "../../src/modules/subscriptions/billing-run";
import { api, createCustomer, createPlan, createSubscription, messageServicesOf } from "../helpers";

const statuses: SubscriptionStatus[] = ["trialing", "active", "past_due", "paused", "canceled"];
/** The declared table, spelled out here so a change to it is a deliberate change to this test too. */
const legal: Record<SubscriptionStatus, SubscriptionStatus[]> = {
  trialing: ["active", "paused", "canceled"],
  active: ["past_due", "paused", "canceled"],
  past_due: ["active", "paused", "canceled"],
  paused: ["active", "trialing", "canceled"],
  canceled: [],
};
const edges = statuses.flatMap((from) => statuses.filter((to) => to !== from).map((to) => ({ from, to, ok: legal[from].includes(to) })));

type EventRecord = { id: string; type: string; object_type: string; customer_id: string | null; livemode: number; data: string };
async function eventsOf(objectId: string) {
  const r = await env.DB.prepare("SELECT * FROM events WHERE object_id = ? ORDER BY rowid").bind(objectId).all<EventRecord>();
  return r.results.map((e) => ({ ...e, data: JSON.parse(e.data) as { object: any; previousAttributes: Record<string, unknown> | null } }));
}
const db = () => dbOf(env);
const ctx = () => ({ actor: SYSTEM_ACTOR, now: Date.now() });
const rowOf = async (id: string) => (await db().select().from(subscriptions).where(eq(subscriptions.id, id)).get())!;
/** A subscription in `status` (set directly: the fixture, not the move under test). */
async function inState(status: SubscriptionStatus) {
  const sub = await createSubscription({ trialDays: 14 });
  await env.DB.prepare("UPDATE subscriptions SET status = ? WHERE id = ?").bind(status, sub.id).run();
  return rowOf(sub.id);
}

describe("subscription lifecycle table", () => {
  it("declares exactly the moves the code makes", () => {
    for (const s of statuses) expect([...subscriptionLifecycle.next(s)].sort()).toEqual([...legal[s]].sort());
    expect(subscriptionLifecycle.terminal()).toEqual(["canceled"]);
  });

  it.each(edges)("$from → $to: allowed $ok, through the owner, with its event", async ({ from, to, ok }) => {
    const sub = await inState(from);
    const change = () => commitSubscriptionChange(db(), sub, { status: to }, [], [], ctx());
    if (!ok) {
      await expect(change()).rejects.toBeInstanceOf(IllegalTransition);
      expect((await rowOf(sub.id)).status).toBe(from);
      expect(await eventsOf(sub.id)).toHaveLength(1); // created only
      return;
    }
    expect(await change()).toBe(true);
    expect((await rowOf(sub.id)).status).toBe(to);
    const last = (await eventsOf(sub.id)).at(-1)!;
    const type = to === "canceled" ? "deleted" : to === "paused" ? "paused" : from === "paused" ? "resumed" : "updated";
    expect(last.type).toBe(`customer.subscription.${type}`);
    expect(last.data.previousAttributes).toEqual({ status: from });
    expect(last.data.object).toEqual((await api("GET", `/api/v1/subscriptions/${sub.id}`)).body);
  });

  it("an illegal move through the API is a 409 problem naming the current state", async () => {
    const active = await createSubscription();
    const resumed = await api("POST", `/api/v1/subscriptions/${active.id}/resume`, { body: {} });
    expect(resumed.status).toBe(409);
    expect(resumed.headers.get("content-type")).toContain("application/problem+json");
    expect(resumed.body.detail).toContain("active");

    const canceled = await api("POST", `/api/v1/subscriptions/${active.id}/cancel`, { body: { reason: "test", cancelAtPeriodEnd: false } });
    expect(canceled.status).toBe(200);
    const paused = await api("POST", `/api/v1/subscriptions/${active.id}/pause`, { body: { reason: "test" } });
    expect(paused.status).toBe(409);
    expect(paused.headers.get("content-type")).toContain("application/problem+json");
    expect(paused.body.detail).toContain("canceled");
    expect(paused.body.errors).toEqual([{ path: "status", message: "is canceled" }]);
    expect((await eventsOf(active.id)).map((e) => e.type)).toEqual(["customer.subscription.created", "customer.subscription.deleted"]);
  });
});

describe("subscriptionAfterPayment", () => {
  it("moves active → past_due → active with customer.subscription.updated each time, and is a no-op elsewhere", async () => {
    const sub = await createSubscription();
    await commit(db(), subscriptionAfterPayment(db(), sub.id, "failed_final", ctx()), ctx());
    expect((await rowOf(sub.id)).status).toBe("past_due");
    let evs = await eventsOf(sub.id);
    expect(evs.map((e) => e.type)).toEqual(["customer.subscription.created", "customer.subscription.updated"]);
    expect(evs[1]!.data.previousAttributes).toEqual({ status: "active" });
    expect(evs[1]!.data.object).toEqual((await api("GET", `/api/v1/subscriptions/${sub.id}`)).body);
    expect(evs[1]!.customer_id).toBe(sub.customerId);

    // A second final failure finds it past_due already: nothing changes, no event.
    await commit(db(), subscriptionAfterPayment(db(), sub.id, "failed_final", ctx()), ctx());
    expect(await eventsOf(sub.id)).toHaveLength(2);

    await commit(db(), subscriptionAfterPayment(db(), sub.id, "succeeded", ctx()), ctx());
    evs = await eventsOf(sub.id);
    expect((await rowOf(sub.id)).status).toBe("active");
    expect(evs.map((e) => e.type).slice(2)).toEqual(["customer.subscription.updated"]);
    expect(evs[2]!.data.previousAttributes).toEqual({ status: "past_due" });
    expect(evs[2]!.data.object).toEqual((await api("GET", `/api/v1/subscriptions/${sub.id}`)).body);
  });

  it("the SQL form of the REST object equals toSubscription for a row with every field set", async () => {
    const sub = await createSubscription({ trialDays: 10, metadata: { team: "a\"b", plan: "x" }, discountPercent: "12.5", paymentMethod: "pm_card_visa" });
    await env.DB.prepare(
      "UPDATE subscriptions SET cancel_at_period_end = 1, canceled_at = 1700000000007, paused_until = 1800000000999, pause_reason = 'vacation', cancel_reason = 'r', cancel_feedback = 'f', ended_at = 1700000000000, discount_until = 1900000000001, pending_plan_id = 'plan_x', pending_plan_version = 3, pending_quantity = NULL, pending_change_at = 1750000000123, pending_invoice_now = 1 WHERE id = ?",
    )
      .bind(sub.id)
      .run();
    for (const id of [sub.id, (await createSubscription()).id]) {
      const row = await rowOf(id);
      const got = await db().select({ j: subscriptionJsonSql() }).from(subscriptions).where(eq(subscriptions.id, id)).get();
      expect(JSON.parse(got!.j as string)).toEqual(toSubscription(row));
    }
    // Leave no made-up plan change behind for the billing run of later tests.
    await env.DB.prepare("UPDATE subscriptions SET pending_plan_id = NULL, pending_change_at = NULL, paused_until = NULL WHERE id = ?").bind(sub.id).run();
  });
});

describe("customer.subscription.* events", () => {
  it("create → pause → resume → change plan → cancel, in order, each with the subscription as GET returned it then", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const bigger = await createPlan({ name: "Bigger" });
    const snapshots: unknown[] = [];
    const get = async (id: string) => snapshots.push((await api("GET", `/api/v1/subscriptions/${id}`)).body);

    const sub = await createSubscription({ customerId: customer.id, planId: plan.id });
    await get(sub.id);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/pause`, { body: { reason: "holiday" } })).status).toBe(200);
    await get(sub.id);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/resume`, { body: {} })).status).toBe(200);
    await get(sub.id);
    expect((await api("PUT", `/api/v1/subscriptions/${sub.id}/plan`, { body: { newPlanId: bigger.id, quantity: 2 } })).status).toBe(200);
    await get(sub.id);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "done", cancelAtPeriodEnd: true } })).status).toBe(200);
    await get(sub.id);

    const evs = await eventsOf(sub.id);
    expect(evs.map((e) => e.type)).toEqual([
      "customer.subscription.created",
      "customer.subscription.paused",
      "customer.subscription.resumed",
      "customer.subscription.updated",
      "customer.subscription.updated",
    ]);
    expect(evs.map((e) => e.data.object)).toEqual(snapshots);
    expect(evs.every((e) => e.object_type === "subscription" && e.customer_id === customer.id)).toBe(true);
    expect(evs[1]!.data.previousAttributes).toEqual({ status: "active", pauseReason: null });
    expect(evs[2]!.data.previousAttributes).toMatchObject({ status: "paused", pauseReason: "holiday" });
    expect(evs[3]!.data.previousAttributes).toMatchObject({ planId: plan.id, quantity: 1 });
    expect(evs[4]!.data.previousAttributes).toMatchObject({ cancelAtPeriodEnd: false });
  });

  it("a discount change is customer.subscription.updated with the old discount", async () => {
    const sub = await createSubscription();
    const r = await api("PUT", `/api/v1/subscriptions/${sub.id}/discount`, { body: { discountPercent: "15" } });
    expect(r.status).toBe(200);
    const last = (await eventsOf(sub.id)).at(-1)!;
    expect(last.type).toBe("customer.subscription.updated");
    expect(last.data.previousAttributes).toEqual({ discountPercent: null, discount: null });
    expect(last.data.object).toEqual(r.body);
  });

  it("on a test clock: trial conversion and renewals are customer.subscription.updated, the period-end cancel .deleted, none live", async () => {
    const clock = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: "2021-01-01T00:00:00Z" } });
    expect(clock.status).toBe(201);
    const customer = await createCustomer({ testClockId: clock.body.id });
    const plan = await createPlan({ prices: [{ type: "flat", amount: "10.00" }] });
    const sub = await createSubscription({ customerId: customer.id, planId: plan.id, trialDays: 7 });
    expect((await api("POST", `/api/v1/test-clocks/${clock.body.id}/advance`, { body: { frozenTime: "2021-01-09T00:00:00Z" } })).status).toBe(200);
    expect((await api("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { body: { reason: "bye", cancelAtPeriodEnd: true } })).status).toBe(200);
    expect((await api("POST", `/api/v1/test-clocks/${clock.body.id}/advance`, { body: { frozenTime: "2021-03-01T00:00:00Z" } })).status).toBe(200);
    const evs = await eventsOf(sub.id);
    expect(evs.map((e) => e.type)).toEqual([
      "customer.subscription.created",
      "customer.subscription.trial_will_end", // three days before the trial's end, in the clock's time
      "customer.subscription.updated", // trial converted
      "customer.subscription.updated", // cancelAtPeriodEnd
      "customer.subscription.deleted", // at the period end
    ]);
    const createdAt = await env.DB.prepare("SELECT created_at AS t FROM events WHERE object_id = ? ORDER BY rowid").bind(sub.id).all<{ t: number }>();
    expect(createdAt.results.map((r) => new Date(r.t).toISOString())).toEqual([
      "2021-01-01T00:00:00.000Z",
      "2021-01-05T00:00:00.000Z",
      "2021-01-08T00:00:00.000Z",
      "2021-01-09T00:00:00.000Z",
      "2021-02-08T00:00:00.000Z",
    ]);
    expect(evs[1]!.data.object).toMatchObject({ id: sub.id, status: "trialing", trialEnd: "2021-01-08T00:00:00.000Z" });
    expect(evs[2]!.data.previousAttributes).toMatchObject({ status: "trialing" });
    expect(evs[4]!.data.previousAttributes).toMatchObject({ status: "active" });
    expect(evs[4]!.data.object).toEqual((await api("GET", `/api/v1/subscriptions/${sub.id}`)).body);
    expect(evs.every((e) => e.livemode === 0)).toBe(true);
  });
});

describe("customer events", () => {
  it("customer.created and customer.updated (with the changed fields' old values) carry the REST customer", async () => {
    const c = await createCustomer({ name: "Ada" });
    let evs = await eventsOf(c.id);
    expect(evs.map((e) => e.type)).toEqual(["customer.created"]);
    expect(evs[0]!.data.object).toEqual(c);
    expect(evs[0]!.customer_id).toBe(c.id);

    const r = await api("PATCH", `/api/v1/customers/${c.id}`, { body: { name: "Ada L", metadata: { tier: "gold" } } });
    expect(r.status).toBe(200);
    evs = await eventsOf(c.id);
    expect(evs.map((e) => e.type)).toEqual(["customer.created", "customer.updated"]);
    expect(evs[1]!.data.previousAttributes).toEqual({ name: "Ada", metadata: {} });
    expect(evs[1]!.data.object).toEqual((await api("GET", `/api/v1/customers/${c.id}`)).body);
  });
});

describe("customer.subscription.trial_will_end (real time)", () => {
  it("the hourly run emits it once for a trial ending within three days, not for a longer one", async () => {
    const soon = await createSubscription({ trialDays: 2 });
    const later = await createSubscription({ trialDays: 14 });
    await trialWillEndPage(messageServicesOf(), Date.now());
    await trialWillEndPage(messageServicesOf(), Date.now());
    const evs = await eventsOf(soon.id);
    expect(evs.map((e) => e.type)).toEqual(["customer.subscription.created", "customer.subscription.trial_will_end"]);
    expect(evs[1]!.data.object).toEqual((await api("GET", `/api/v1/subscriptions/${soon.id}`)).body);
    expect((await eventsOf(later.id)).map((e) => e.type)).toEqual(["customer.subscription.created"]);
  });
});

// Who may write each status column is checked for all owners in test/architecture.test.ts.
