import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer, createPlan, createSubscription, unique } from "../helpers";

const count = async () => (await env.DB.prepare("SELECT count(*) AS n FROM plans").first<{ n: number }>())!.n;
const auditCount = async () => (await env.DB.prepare("SELECT count(*) AS n FROM audit_log").first<{ n: number }>())!.n;
const paths = (r: { body: any }) => (r.body.errors ?? []).map((e: any) => e.path);

const flat = (amount: unknown) => ({ type: "flat", amount });
const metered = (over: Record<string, unknown> = {}) => ({ type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001", ...over });
const plan = (over: Record<string, unknown> = {}) => ({ name: "Pro", currency: "USD", interval: "month", prices: [flat("29.99")], ...over });

/** Posts a plan that must be rejected with `status`, and checks nothing (plan or audit row) was stored. */
async function rejected(body: unknown, status: number) {
  const [plans, audits] = [await count(), await auditCount()];
  const r = await api("POST", "/api/v1/plans", { body });
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  expect(await count()).toBe(plans);
  expect(await auditCount()).toBe(audits);
  return r;
}

describe("POST /api/v1/plans", () => {
  it("creates version 1 with exact money: amount string, amountMinor and currency", async () => {
    const r = await api("POST", "/api/v1/plans", {
      body: plan({ prices: [flat(99.99), metered({ unitAmount: "0.000123456789" })], trialDays: 14, metadata: { tier: "gold" } }),
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      id: expect.stringMatching(/^plan_/),
      name: "Pro",
      currency: "USD",
      interval: "month",
      intervalCount: 1,
      trialDays: 14,
      version: 1,
      metadata: { tier: "gold" },
    });
    expect(r.body.prices[0]).toEqual({ id: expect.stringMatching(/^price_/), type: "flat", amount: "99.99", amountMinor: 9999, currency: "USD", billing: "advance" });
    expect(r.body.prices[1]).toMatchObject({ type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.000123456789" });
    const got = await api("GET", `/api/v1/plans/${r.body.id}`, { as: "viewer" });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(r.body);
    const row = await env.DB.prepare("SELECT prices FROM plans WHERE id = ?").bind(r.body.id).first<{ prices: string }>();
    expect(JSON.parse(row!.prices)[0].amountMinor).toBe(9999);
  });

  it.each([
    ["JPY", "1500", 1500, "1500"],
    ["BHD", "1.234", 1234, "1.234"],
    ["USD", "0.1", 10, "0.10"],
    ["usd", 10, 1000, "10.00"],
  ])("%s amount %s → %s minor units", async (currency, amount, minor, shown) => {
    const r = await api("POST", "/api/v1/plans", { body: plan({ currency, prices: [flat(amount)] }) });
    expect(r.status).toBe(201);
    expect(r.body.prices[0]).toMatchObject({ amountMinor: minor, amount: shown, currency: currency.toUpperCase() });
  });

  it.each([
    ["missing name", { name: undefined }, "name"],
    ["missing interval", { interval: undefined }, "interval"],
    ["unknown interval", { interval: "fortnight" }, "interval"],
    ["name of the wrong type", { name: 42 }, "name"],
    ["intervalCount not an integer", { intervalCount: 1.5 }, "intervalCount"],
    ["unknown currency", { currency: "XYZ" }, "currency"],
    ["no prices", { prices: [] }, "prices"],
    ["unknown price type", { prices: [{ type: "bogus", amount: "1" }] }, "prices.0.type"],
    ["flat price without amount", { prices: [{ type: "flat" }] }, "prices.0.amount"],
    ["amount of the wrong type", { prices: [flat(true)] }, "prices.0.amount"],
    ["unknown aggregation", { prices: [metered({ aggregation: "avg" })] }, "prices.0.aggregation"],
    ["bad meter id", { prices: [metered({ meterId: "API Calls" })] }, "prices.0.meterId"],
    ["bad client plan id", { id: "premium" }, "id"],
  ])("%s → 400 naming the field, nothing stored", async (_name, over, path) => {
    const r = await rejected(plan(over), 400);
    expect(paths(r)).toContain(path);
  });

  it.each([
    ["negative flat price", [flat("-5")], "prices.0.amount"],
    ["negative flat price (number)", [flat(-0.01)], "prices.0.amount"],
    ["more decimals than USD allows", [flat("9.999")], "prices.0.amount"],
    ["not a decimal", [flat("12abc")], "prices.0.amount"],
    ["negative unit price", [flat("1"), metered({ unitAmount: "-0.01" })], "prices.1.unitAmount"],
    ["per_unit without unitAmount", [metered({ unitAmount: undefined })], "prices.0.unitAmount"],
    ["package without size", [metered({ pricingModel: "package", unitAmount: undefined, packageAmount: "5" })], "prices.0.packageSize"],
    ["unique_count without aggregationField", [metered({ aggregation: "unique_count" })], "prices.0.aggregationField"],
    ["duplicate meterId", [metered(), metered({ unitAmount: "0.002" })], "prices.1.meterId"],
    ["duplicate price id", [{ ...flat("1"), id: "price_same" }, { ...flat("2"), id: "price_same" }], "prices.1.id"],
  ])("%s → 422 with the price path", async (_name, prices, path) => {
    const r = await rejected(plan({ prices }), 422);
    expect(paths(r)).toContain(path);
    expect(r.body.detail).toContain(path);
  });

  it("more decimals than JPY allows → 422", async () => {
    const r = await rejected(plan({ currency: "JPY", prices: [flat("1.5")] }), 422);
    expect(paths(r)).toEqual(["prices.0.amount"]);
    expect(r.body.errors[0].message).toMatch(/JPY/);
  });

  it("overlapping tiers → 422 at the overlapping tier's upTo", async () => {
    const tiers = [
      { upTo: 100, unitAmount: "0.01" },
      { upTo: 50, unitAmount: "0.005" },
      { upTo: null, unitAmount: "0.001" },
    ];
    const r = await rejected(plan({ prices: [metered({ pricingModel: "graduated", unitAmount: undefined, tiers })] }), 422);
    expect(paths(r)).toEqual(["prices.0.tiers.1.upTo"]);
  });

  it("a closed last tier and an open middle tier → 422 at each", async () => {
    const tiers = [
      { upTo: null, unitAmount: "0.01" },
      { upTo: 1000, unitAmount: "0.005" },
    ];
    const r = await rejected(plan({ prices: [flat("1"), metered({ pricingModel: "volume", unitAmount: undefined, tiers })] }), 422);
    expect(paths(r).sort()).toEqual(["prices.1.tiers.0.upTo", "prices.1.tiers.1.upTo"]);
  });

  it("valid graduated tiers, package and unique_count prices are accepted", async () => {
    const r = await api("POST", "/api/v1/plans", {
      body: plan({
        prices: [
          flat("0"),
          metered({ pricingModel: "graduated", unitAmount: undefined, tiers: [{ upTo: 1000, unitAmount: "0", flatAmount: "0" }, { upTo: null, unitAmount: "0.0006" }] }),
          metered({ meterId: "storage_gb", aggregation: "max", pricingModel: "package", unitAmount: undefined, packageSize: 100, packageAmount: "5" }),
          metered({ meterId: "active_users", aggregation: "unique_count", aggregationField: "user_id", unitAmount: "2" }),
        ],
      }),
    });
    expect(r.status).toBe(201);
    expect(r.body.prices[1].tiers).toEqual([{ upTo: 1000, unitAmount: "0", flatAmount: "0" }, { upTo: null, unitAmount: "0.0006" }]);
    expect(r.body.prices[3]).toMatchObject({ aggregation: "unique_count", aggregationField: "user_id" });
  });

  it("takes a client-supplied id (plan_premium); a duplicate is a 409 and changes nothing", async () => {
    const r = await api("POST", "/api/v1/plans", { body: plan({ id: "plan_premium", name: "Premium" }) });
    expect(r.status).toBe(201);
    expect(r.body.id).toBe("plan_premium");
    const dup = await rejected(plan({ id: "plan_premium", name: "Other" }), 409);
    expect(paths(dup)).toEqual(["id"]);
    expect(dup.body.detail).toContain("/versions");
    expect((await api("GET", "/api/v1/plans/plan_premium")).body.name).toBe("Premium");
  });

  it("two concurrent creations with the same client id: one 201, one 409", async () => {
    const id = `plan_${unique("race")}`;
    const [a, b] = await Promise.all([api("POST", "/api/v1/plans", { body: plan({ id }) }), api("POST", "/api/v1/plans", { body: plan({ id }) })]);
    expect([a.status, b.status].sort()).toEqual([201, 409]);
    const n = await env.DB.prepare("SELECT count(*) AS n FROM plans WHERE id = ?").bind(id).first<{ n: number }>();
    expect(n!.n).toBe(1);
  });

  it("GET an unknown plan or version → 404", async () => {
    expect((await api("GET", "/api/v1/plans/plan_nope")).status).toBe(404);
    const p = await createPlan();
    const r = await api("GET", `/api/v1/plans/${p.id}?version=9`);
    expect(r.status).toBe(404);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect((await api("GET", `/api/v1/plans/${p.id}?version=0`)).status).toBe(400);
  });
});

describe("plan versions", () => {
  it("publishing a version keeps the old one readable and existing subscriptions on it", async () => {
    const p = await createPlan({ name: "Basic" });
    const customer = await createCustomer();
    const oldSub = await createSubscription({ customerId: customer.id, planId: p.id });
    expect(oldSub.planVersion).toBe(1);

    const v2 = await api("POST", `/api/v1/plans/${p.id}/versions`, { body: plan({ name: "Basic v2", prices: [flat("49")] }) });
    expect(v2.status).toBe(201);
    expect(v2.body).toMatchObject({ id: p.id, version: 2, name: "Basic v2" });
    expect(v2.body.prices[0].amountMinor).toBe(4900);

    const latest = await api("GET", `/api/v1/plans/${p.id}`);
    expect(latest.body).toMatchObject({ version: 2, name: "Basic v2" });
    const v1 = await api("GET", `/api/v1/plans/${p.id}?version=1`);
    expect(v1.status).toBe(200);
    expect(v1.body).toEqual(p);

    // The existing subscription keeps version 1; a new one gets version 2.
    expect((await api("GET", `/api/v1/subscriptions/${oldSub.id}`)).body.planVersion).toBe(1);
    const newSub = await createSubscription({ customerId: customer.id, planId: p.id });
    expect(newSub.planVersion).toBe(2);

    // The list shows each plan once, at its latest version.
    const all: any[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await api("GET", `/api/v1/plans?limit=100${cursor ? `&startingAfter=${cursor}` : ""}`);
      all.push(...page.body.data);
      cursor = page.body.nextCursor;
    } while (cursor);
    const mine = all.filter((x) => x.id === p.id);
    expect(mine).toHaveLength(1);
    expect(mine[0].version).toBe(2);

    const v3 = await api("POST", `/api/v1/plans/${p.id}/versions`, { body: plan({ name: "Basic v3" }) });
    expect(v3.body.version).toBe(3);
    expect((await api("GET", `/api/v1/plans/${p.id}?version=2`)).body.name).toBe("Basic v2");
    const latestRows = await env.DB.prepare("SELECT version FROM plans WHERE id = ? AND is_latest = 1").bind(p.id).all<{ version: number }>();
    expect(latestRows.results).toEqual([{ version: 3 }]);
  });

  it("an invalid version is rejected and nothing is published", async () => {
    const p = await createPlan();
    const bad = await api("POST", `/api/v1/plans/${p.id}/versions`, { body: plan({ prices: [flat("9.999")] }) });
    expect(bad.status).toBe(422);
    expect(paths(bad)).toEqual(["prices.0.amount"]);
    expect((await api("GET", `/api/v1/plans/${p.id}`)).body.version).toBe(1);
    const missing = await api("POST", `/api/v1/plans/${p.id}/versions`, { body: { name: "x" } });
    expect(missing.status).toBe(400);
  });

  it("a version of an unknown plan → 404; support may not publish (403)", async () => {
    expect((await api("POST", "/api/v1/plans/plan_ghost/versions", { body: plan() })).status).toBe(404);
    const p = await createPlan();
    expect((await api("POST", `/api/v1/plans/${p.id}/versions`, { as: "support", body: plan() })).status).toBe(403);
    expect((await api("GET", `/api/v1/plans/${p.id}`)).body.version).toBe(1);
  });

  it("concurrent publishers: versions stay gap-free with a single latest", async () => {
    const p = await createPlan();
    const results = await Promise.all([1, 2].map((i) => api("POST", `/api/v1/plans/${p.id}/versions`, { body: plan({ name: `v-${i}` }) })));
    const ok = results.filter((r) => r.status === 201);
    for (const r of results) expect([201, 409]).toContain(r.status);
    const rows = await env.DB.prepare("SELECT version, is_latest FROM plans WHERE id = ? ORDER BY version").bind(p.id).all<{ version: number; is_latest: number }>();
    expect(rows.results.map((r) => r.version)).toEqual(Array.from({ length: 1 + ok.length }, (_, i) => i + 1));
    expect(rows.results.filter((r) => r.is_latest).map((r) => r.version)).toEqual([1 + ok.length]);
  });
});

describe("GET /api/v1/plans", () => {
  it("pages newest first without repeats", async () => {
    for (let i = 0; i < 5; i++) await createPlan();
    const total = (await env.DB.prepare("SELECT count(*) AS n FROM plans WHERE is_latest = 1").first<{ n: number }>())!.n;
    const seen: any[] = [];
    let cursor: string | null = null;
    for (let guard = 0; guard < 200; guard++) {
      const page: any = await api("GET", `/api/v1/plans?limit=2${cursor ? `&startingAfter=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.data);
      cursor = page.body.nextCursor;
      expect(cursor !== null).toBe(page.body.hasMore);
      if (!cursor) break;
    }
    expect(seen).toHaveLength(total);
    expect(new Set(seen.map((p) => p.id)).size).toBe(total);
    for (let i = 1; i < seen.length; i++) expect(seen[i - 1].createdAt >= seen[i].createdAt).toBe(true);
  });
});

describe("plan failures as problem+json", () => {
  it("an unknown plan or version names what was looked for", async () => {
    const p = await createPlan();
    const r = await api("GET", `/api/v1/plans/${p.id}?version=9`);
    expect([r.status, r.body.detail]).toEqual([404, `plan ${p.id} version 9 does not exist`]);
    const v = await api("POST", "/api/v1/plans/plan_ghost/versions", { body: { name: "Ghost", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "1.00" }] } });
    expect([v.status, v.body.detail]).toEqual([404, "plan plan_ghost does not exist"]);
  });
});
