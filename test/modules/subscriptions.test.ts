import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { meterStub } from "../../src/modules/usage/meter-config";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import { api, createCustomer, createPlan, createSubscription, tokenFor } from "../helpers";

const DAY = 86_400_000;
const count = async () => (await env.DB.prepare("SELECT count(*) AS n FROM subscriptions").first<{ n: number }>())!.n;
const paths = (r: { body: any }) => (r.body.errors ?? []).map((e: any) => e.path);

describe("POST /api/v1/subscriptions", () => {
  it("starts an active subscription on the plan's latest version with a current period", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const r = await api("POST", "/api/v1/subscriptions", { as: "support", body: { customerId: customer.id, planId: plan.id, quantity: 3, paymentMethod: "pm_card_visa" } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      id: expect.stringMatching(/^sub_/),
      customerId: customer.id,
      planId: plan.id,
      planVersion: 1,
      status: "active",
      quantity: 3,
      currency: "USD",
      paymentMethod: "pm_card_visa",
      trialEnd: null,
      cancelAtPeriodEnd: false,
      pausedUntil: null,
    });
    const start = Date.parse(r.body.currentPeriodStart);
    const end = Date.parse(r.body.currentPeriodEnd);
    const created = Date.parse(r.body.createdAt);
    expect(start).toBeLessThanOrEqual(created);
    expect(end).toBeGreaterThan(created);
    expect(end - start).toBeGreaterThanOrEqual(28 * DAY);
    expect(end - start).toBeLessThanOrEqual(31 * DAY);
    const got = await api("GET", `/api/v1/subscriptions/${r.body.id}`, { as: "viewer" });
    expect(got.body).toEqual(r.body);
  });

  it("trialDays makes it trialing, with the trial as the first period", async () => {
    const r = await createSubscription({ trialDays: 14 });
    expect(r.status).toBe("trialing");
    const created = Date.parse(r.createdAt);
    expect(Date.parse(r.trialEnd)).toBe(created + 14 * DAY);
    expect(r.currentPeriodStart).toBe(r.createdAt);
    expect(r.currentPeriodEnd).toBe(r.trialEnd);
    expect(r.billingAnchor).toBe(r.trialEnd);
  });

  it("the plan's trialDays apply by default, and trialDays: 0 overrides them", async () => {
    const plan = await createPlan({ trialDays: 7 });
    const customer = await createCustomer();
    const trial = await createSubscription({ customerId: customer.id, planId: plan.id });
    expect(trial.status).toBe("trialing");
    expect(Date.parse(trial.trialEnd) - Date.parse(trial.createdAt)).toBe(7 * DAY);
    const noTrial = await createSubscription({ customerId: customer.id, planId: plan.id, trialDays: 0 });
    expect(noTrial.status).toBe("active");
    expect(noTrial.trialEnd).toBeNull();
  });

  it("a future billingAnchor: the first period runs from now up to the anchor", async () => {
    const anchor = new Date(Date.now() + 10 * DAY);
    anchor.setUTCMilliseconds(0);
    const r = await createSubscription({ billingAnchor: anchor.toISOString() });
    expect(r.status).toBe("active");
    expect(r.billingAnchor).toBe(anchor.toISOString());
    // Never a period that began before the subscription existed.
    expect(r.currentPeriodStart).toBe(r.createdAt);
    expect(r.currentPeriodEnd).toBe(anchor.toISOString());
  });

  it("a past billingAnchor: the current period is the anchor's, starting no earlier than now", async () => {
    const anchor = new Date(Date.UTC(2025, 0, 31, 12));
    const r = await createSubscription({ billingAnchor: anchor.toISOString() });
    const created = Date.parse(r.createdAt);
    expect(Date.parse(r.currentPeriodStart)).toBe(created);
    const end = new Date(r.currentPeriodEnd);
    expect(end.getTime()).toBeGreaterThan(created);
    expect(end.getTime() - created).toBeLessThanOrEqual(31 * DAY);
    expect(end.getUTCHours()).toBe(12);
    // Anchored on the 31st: the period ends on the 31st or, in shorter months, on the month's last day.
    const lastDay = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() + 1, 0)).getUTCDate();
    expect(end.getUTCDate()).toBe(Math.min(31, lastDay));
  });

  it("a database failure while looking up the customer is a 500, not a 422 blaming the client", async () => {
    const brokenDb = {
      prepare() {
        throw new Error("D1_ERROR: database unavailable");
      },
    } as unknown as D1Database;
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request("http://localhost/api/v1/subscriptions", {
        method: "POST",
        headers: { authorization: `Bearer ${await tokenFor("admin")}`, "content-type": "application/json" },
        body: JSON.stringify({ customerId: "cus_any", planId: "plan_any" }),
      }),
      { ...env, DB: brokenDb },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(500);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });

  it("pushes its configuration to the subscription's usage meter", async () => {
    const sub = await createSubscription({});
    const config = await meterStub(env, sub.id).getConfig();
    expect(config).toMatchObject({ subscriptionId: sub.id, status: "active", currency: "USD", version: 1 });
    expect(config!.meters.map((m) => m.meterId)).toEqual(["api_calls"]);
    const row = await env.DB.prepare("SELECT config_version, meter_synced_version FROM subscriptions WHERE id = ?").bind(sub.id).first<any>();
    expect(row.meter_synced_version).toBe(row.config_version);
  });

  it.each([
    ["missing customerId", { planId: "plan_x" }, "customerId"],
    ["missing planId", { customerId: "cus_x" }, "planId"],
    ["quantity of the wrong type", { customerId: "cus_x", planId: "plan_x", quantity: "2" }, "quantity"],
    ["quantity zero", { customerId: "cus_x", planId: "plan_x", quantity: 0 }, "quantity"],
    ["negative trialDays", { customerId: "cus_x", planId: "plan_x", trialDays: -1 }, "trialDays"],
    ["billingAnchor not ISO-8601", { customerId: "cus_x", planId: "plan_x", billingAnchor: "next tuesday" }, "billingAnchor"],
  ])("%s → 400 naming the field", async (_name, body, path) => {
    const before = await count();
    const r = await api("POST", "/api/v1/subscriptions", { body });
    expect(r.status).toBe(400);
    expect(paths(r)).toContain(path);
    expect(await count()).toBe(before);
  });

  it("unknown customer → 422 at customerId; unknown plan → 422 at planId; nothing stored", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const before = await count();
    const noCustomer = await api("POST", "/api/v1/subscriptions", { body: { customerId: "cus_ghost", planId: plan.id } });
    expect(noCustomer.status).toBe(422);
    expect(noCustomer.headers.get("content-type")).toBe("application/problem+json");
    expect(paths(noCustomer)).toEqual(["customerId"]);
    const noPlan = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: "plan_ghost" } });
    expect(noPlan.status).toBe(422);
    expect(paths(noPlan)).toEqual(["planId"]);
    expect(await count()).toBe(before);
  });

  it("customer and plan currencies must match → 422", async () => {
    const customer = await createCustomer({ currency: "EUR" });
    const plan = await createPlan({ currency: "USD" });
    const before = await count();
    const r = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } });
    expect(r.status).toBe(422);
    expect(paths(r)).toEqual(["planId"]);
    expect(r.body.errors[0].message).toMatch(/USD/);
    expect(r.body.errors[0].message).toMatch(/EUR/);
    expect(await count()).toBe(before);
    const eurPlan = await createPlan({ currency: "EUR" });
    const ok = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: eurPlan.id } });
    expect(ok.status).toBe(201);
    expect(ok.body.currency).toBe("EUR");
  });

  it("finance and viewer may not create subscriptions (403)", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const before = await count();
    for (const as of ["finance", "viewer"] as const) {
      expect((await api("POST", "/api/v1/subscriptions", { as, body: { customerId: customer.id, planId: plan.id } })).status).toBe(403);
    }
    expect(await count()).toBe(before);
  });

  it("GET an unknown subscription → 404 problem+json", async () => {
    const r = await api("GET", "/api/v1/subscriptions/sub_nope");
    expect(r.status).toBe(404);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
  });
});

describe("GET /api/v1/subscriptions", () => {
  it("filters by customerId and status", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const active = await createSubscription({ customerId: customer.id, planId: plan.id });
    const trialing = await createSubscription({ customerId: customer.id, planId: plan.id, trialDays: 3 });
    const otherCustomer = await createSubscription({ planId: plan.id, customerId: (await createCustomer()).id });

    const mine = await api("GET", `/api/v1/subscriptions?customerId=${customer.id}`, { as: "viewer" });
    expect(mine.status).toBe(200);
    expect(mine.body.data.map((s: any) => s.id).sort()).toEqual([active.id, trialing.id].sort());
    expect(mine.body.data.map((s: any) => s.id)).not.toContain(otherCustomer.id);

    const onlyTrialing = await api("GET", `/api/v1/subscriptions?customerId=${customer.id}&status=trialing`);
    expect(onlyTrialing.body.data.map((s: any) => s.id)).toEqual([trialing.id]);
    const onlyActive = await api("GET", `/api/v1/subscriptions?customerId=${customer.id}&status=active`);
    expect(onlyActive.body.data.map((s: any) => s.id)).toEqual([active.id]);
    const none = await api("GET", `/api/v1/subscriptions?customerId=${customer.id}&status=canceled`);
    expect(none.body).toEqual({ data: [], hasMore: false, nextCursor: null });

    const allTrialing = await api("GET", "/api/v1/subscriptions?status=trialing&limit=100");
    expect(allTrialing.body.data.every((s: any) => s.status === "trialing")).toBe(true);

    const badStatus = await api("GET", "/api/v1/subscriptions?status=sleeping");
    expect(badStatus.status).toBe(400);
    expect(paths(badStatus)).toContain("status");
  });

  it("pages newest first; the cursor chain visits each subscription once", async () => {
    const customer = await createCustomer();
    const plan = await createPlan();
    const created: any[] = [];
    for (let i = 0; i < 5; i++) created.push(await createSubscription({ customerId: customer.id, planId: plan.id }));
    const seen: any[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = await api("GET", `/api/v1/subscriptions?customerId=${customer.id}&limit=2${cursor ? `&startingAfter=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.data);
      expect(page.body.hasMore).toBe(page.body.nextCursor !== null);
      cursor = page.body.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen.map((s) => s.id).sort()).toEqual(created.map((s) => s.id).sort());
    const expected = [...created].sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1));
    expect(seen.map((s) => s.id)).toEqual(expected.map((s) => s.id));

    const unknown = await api("GET", "/api/v1/subscriptions?startingAfter=sub_unknown");
    expect(unknown.status).toBe(400);
    expect(paths(unknown)).toEqual(["startingAfter"]);
  });
});
