import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer, createPlan, unique } from "../helpers";

const count = async () => (await env.DB.prepare("SELECT count(*) AS n FROM customers").first<{ n: number }>())!.n;
const paths = (r: { body: any }) => (r.body.errors ?? []).map((e: any) => e.path);

describe("POST /api/v1/customers", () => {
  it("creates a customer with defaults and the documented shape", async () => {
    const email = `${unique("c")}@example.com`;
    const r = await api("POST", "/api/v1/customers", { body: { email } });
    expect(r.status).toBe(201);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    expect(r.body).toEqual({
      id: expect.stringMatching(/^cus_[0-9A-Za-z]{20}$/),
      email,
      name: null,
      currency: "USD",
      country: null,
      region: null,
      taxExempt: false,
      taxCertificate: null,
      metadata: {},
      creditBalance: { amount: "0.00", amountMinor: 0 },
      testClockId: null,
      deleted: false,
      deletedAt: null,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(new Date(r.body.createdAt).toISOString()).toBe(r.body.createdAt);
    const got = await api("GET", `/api/v1/customers/${r.body.id}`, { as: "viewer" });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(r.body);
    const row = await env.DB.prepare("SELECT * FROM customers WHERE id = ?").bind(r.body.id).first<Record<string, any>>();
    expect(row).toMatchObject({ email, currency: "USD", created_at: Date.parse(r.body.createdAt) });
  });

  it("normalises currency, country and region to upper case; keeps tax certificate", async () => {
    const r = await api("POST", "/api/v1/customers", {
      body: {
        email: `${unique("c")}@example.com`,
        name: "Acme",
        currency: "eur",
        country: "de",
        region: "by",
        taxExempt: true,
        taxCertificate: { id: "CERT-1", expiresAt: "2030-01-31" },
        metadata: { crm: "42" },
      },
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      currency: "EUR",
      country: "DE",
      region: "BY",
      taxExempt: true,
      taxCertificate: { id: "CERT-1", expiresAt: "2030-01-31T00:00:00.000Z" },
      metadata: { crm: "42" },
    });
  });

  it.each([
    ["missing email", {}, "email"],
    ["invalid email", { email: "not-an-email" }, "email"],
    ["email of the wrong type", { email: 42 }, "email"],
    ["unknown currency", { email: "x@example.com", currency: "XYZ" }, "currency"],
    ["currency of the wrong type", { email: "x@example.com", currency: 840 }, "currency"],
    ["bad country", { email: "x@example.com", country: "Germany" }, "country"],
    ["taxExempt as a string", { email: "x@example.com", taxExempt: "yes" }, "taxExempt"],
    ["metadata value not a string", { email: "x@example.com", metadata: { a: 1 } }, "metadata.a"],
    ["client id with the wrong prefix", { id: "customer_1", email: "x@example.com" }, "id"],
  ])("%s → 400 naming the field, nothing stored", async (_name, body, path) => {
    const before = await count();
    const r = await api("POST", "/api/v1/customers", { body });
    expect(r.status).toBe(400);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect(paths(r)).toContain(path);
    expect(await count()).toBe(before);
  });

  it("more than 50 metadata keys → 400", async () => {
    const metadata = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"]));
    const r = await api("POST", "/api/v1/customers", { body: { email: "m@example.com", metadata } });
    expect(r.status).toBe(400);
    expect(paths(r)).toContain("metadata");
  });

  it("takes a client-supplied id; a duplicate is a 409 naming id and changes nothing", async () => {
    const id = `cus_${unique("client")}`;
    const r = await api("POST", "/api/v1/customers", { body: { id, email: "first@example.com" } });
    expect(r.status).toBe(201);
    expect(r.body.id).toBe(id);
    const before = await count();
    const dup = await api("POST", "/api/v1/customers", { body: { id, email: "second@example.com" } });
    expect(dup.status).toBe(409);
    expect(dup.headers.get("content-type")).toBe("application/problem+json");
    expect(paths(dup)).toEqual(["id"]);
    expect(await count()).toBe(before);
    expect((await api("GET", `/api/v1/customers/${id}`)).body.email).toBe("first@example.com");
  });

  it("two concurrent creations with the same client id: one 201, one 409", async () => {
    const id = `cus_${unique("race")}`;
    const [a, b] = await Promise.all([
      api("POST", "/api/v1/customers", { body: { id, email: "a@example.com" } }),
      api("POST", "/api/v1/customers", { body: { id, email: "b@example.com" } }),
    ]);
    expect([a.status, b.status].sort()).toEqual([201, 409]);
    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE target_id = ?").bind(id).first<{ n: number }>();
    expect(audit!.n).toBe(1);
  });

  it("GET an unknown customer → 404 problem+json", async () => {
    const r = await api("GET", "/api/v1/customers/cus_nope");
    expect(r.status).toBe(404);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect(r.body.detail).toContain("cus_nope");
  });
});

describe("PATCH /api/v1/customers/:id", () => {
  it("merges metadata, keeps untouched fields, and is audited with before/after", async () => {
    const c = await createCustomer({ name: "Old", metadata: { a: "1", b: "2" } });
    const r = await api("PATCH", `/api/v1/customers/${c.id}`, { as: "support", body: { metadata: { b: "3", c: "4" }, country: "fr" } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: c.id, name: "Old", email: c.email, country: "FR", metadata: { a: "1", b: "3", c: "4" } });
    expect(Date.parse(r.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(c.updatedAt));
    expect(r.body.createdAt).toBe(c.createdAt);

    const got = await api("GET", `/api/v1/customers/${c.id}`);
    expect(got.body).toEqual(r.body);

    const audit = await api("GET", `/api/v1/audit/search?target=${c.id}&action=customer.updated`);
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({
      actor: "test-support",
      before: { metadata: { a: "1", b: "2" }, country: null },
      after: { metadata: { a: "1", b: "3", c: "4" }, country: "FR" },
    });
  });

  it("can clear a nullable field with null", async () => {
    const c = await createCustomer({ name: "Named" });
    const r = await api("PATCH", `/api/v1/customers/${c.id}`, { body: { name: null } });
    expect(r.status).toBe(200);
    expect(r.body.name).toBeNull();
    expect((await api("GET", `/api/v1/customers/${c.id}`)).body.name).toBeNull();
  });

  it("rejects invalid fields with 400 and leaves the customer unchanged", async () => {
    const c = await createCustomer();
    const r = await api("PATCH", `/api/v1/customers/${c.id}`, { body: { email: "bad", metadata: { x: "y" } } });
    expect(r.status).toBe(400);
    expect(paths(r)).toContain("email");
    const got = await api("GET", `/api/v1/customers/${c.id}`);
    expect(got.body).toEqual(c);
    const audit = await api("GET", `/api/v1/audit/search?target=${c.id}&action=customer.updated`);
    expect(audit.body.data).toHaveLength(0);
  });

  it("unknown customer → 404; viewer → 403", async () => {
    expect((await api("PATCH", "/api/v1/customers/cus_missing", { body: { name: "x" } })).status).toBe(404);
    const c = await createCustomer();
    expect((await api("PATCH", `/api/v1/customers/${c.id}`, { as: "viewer", body: { name: "x" } })).status).toBe(403);
    expect((await api("GET", `/api/v1/customers/${c.id}`)).body.name).toBeNull();
  });
});

describe("GET /api/v1/customers", () => {
  it("pages newest first; the cursor chain visits every customer exactly once", async () => {
    const created: any[] = [];
    for (let i = 0; i < 5; i++) created.push(await createCustomer());
    const total = await count();
    const seen: any[] = [];
    let cursor: string | null = null;
    for (let guard = 0; guard < 200; guard++) {
      const page: any = await api("GET", `/api/v1/customers?limit=2${cursor ? `&startingAfter=${cursor}` : ""}`, { as: "viewer" });
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data);
      if (!page.body.hasMore) {
        expect(page.body.nextCursor).toBeNull();
        break;
      }
      expect(page.body.data).toHaveLength(2);
      expect(page.body.nextCursor).toBe(page.body.data[1].id);
      cursor = page.body.nextCursor;
    }
    const ids = seen.map((c) => c.id);
    expect(ids).toHaveLength(total);
    expect(new Set(ids).size).toBe(total);
    for (const c of created) expect(ids).toContain(c.id);
    // Newest first: createdAt never increases; equal timestamps are ordered by id, descending.
    for (let i = 1; i < seen.length; i++) {
      const [a, b] = [seen[i - 1], seen[i]];
      expect(Date.parse(a.createdAt)).toBeGreaterThanOrEqual(Date.parse(b.createdAt));
      if (a.createdAt === b.createdAt) expect(a.id > b.id).toBe(true);
    }
    // Later creations come first.
    for (let i = 1; i < created.length; i++) {
      if (created[i].createdAt > created[i - 1].createdAt) expect(ids.indexOf(created[i].id)).toBeLessThan(ids.indexOf(created[i - 1].id));
    }
    expect(ids[0]).toBe([...created].sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1))[0].id);
  });

  it("filters by email", async () => {
    const email = `${unique("filter")}@example.com`;
    const c = await createCustomer({ email });
    await createCustomer();
    const r = await api("GET", `/api/v1/customers?email=${encodeURIComponent(email)}`);
    expect(r.body.data.map((x: any) => x.id)).toEqual([c.id]);
    expect(r.body.hasMore).toBe(false);
  });

  it("rejects bad limits and an unknown startingAfter with 400", async () => {
    for (const q of ["limit=0", "limit=101", "limit=abc"]) {
      const r = await api("GET", `/api/v1/customers?${q}`);
      expect(r.status).toBe(400);
      expect(paths(r)).toContain("limit");
    }
    const r = await api("GET", "/api/v1/customers?startingAfter=cus_unknown");
    expect(r.status).toBe(400);
    expect(paths(r)).toEqual(["startingAfter"]);
  });
});

describe("DELETE /api/v1/customers/:id", () => {
  const eventsOf = async (id: string, type: string) => (await api("GET", `/api/v1/events?objectId=${id}&type=${type}`)).body.data as any[];

  it("soft-deletes: customer.deleted in the same change, still readable, not listed unless asked, audited, idempotent", async () => {
    const c = await createCustomer({ name: "Leaving" });
    const key = unique("idem");
    const r = await api("DELETE", `/api/v1/customers/${c.id}`, { as: "support", headers: { "idempotency-key": key } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ id: c.id, deleted: true, deletedAt: expect.any(String), name: "Leaving" });

    const events = await eventsOf(c.id, "customer.deleted");
    expect(events).toHaveLength(1);
    expect(events[0].data).toEqual({ object: r.body, previousAttributes: { deleted: false, deletedAt: null } });
    expect(events[0].createdAt).toBe(r.body.deletedAt);

    // The same key replays the answer; a plain second DELETE changes nothing: one event in all.
    const replay = await api("DELETE", `/api/v1/customers/${c.id}`, { as: "support", headers: { "idempotency-key": key } });
    expect(replay.body).toEqual(r.body);
    expect((await api("DELETE", `/api/v1/customers/${c.id}`)).body).toEqual(r.body);
    expect(await eventsOf(c.id, "customer.deleted")).toHaveLength(1);

    expect((await api("GET", `/api/v1/customers/${c.id}`, { as: "viewer" })).body).toEqual(r.body);
    const listed = async (q: string) => ((await api("GET", `/api/v1/customers?email=${encodeURIComponent(c.email)}${q}`)).body.data as any[]).map((x) => x.id);
    expect(await listed("")).toEqual([]);
    expect(await listed("&includeDeleted=true")).toEqual([c.id]);

    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'customer.deleted' AND target_id = ?").bind(c.id).first<{ n: number }>();
    expect(audit!.n).toBe(1);

    // A deleted customer takes no changes and no new subscriptions.
    const patch = await api("PATCH", `/api/v1/customers/${c.id}`, { body: { name: "Back" } });
    expect(patch.status).toBe(409);
    expect(patch.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    const plan = await createPlan({ prices: [{ type: "flat", amount: "5.00" }] });
    expect((await api("POST", "/api/v1/subscriptions", { body: { customerId: c.id, planId: plan.id } })).status).toBe(409);
  });

  it("refuses with 409 naming the subscriptions and invoices that block it, and deletes once they are settled", async () => {
    const c = await createCustomer();
    const plan = await createPlan({ prices: [{ type: "flat", amount: "5.00" }] });
    const sub = await api("POST", "/api/v1/subscriptions", { body: { customerId: c.id, planId: plan.id, paymentMethod: "pm_card_chargeDeclined" } });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    const r = await api("DELETE", `/api/v1/customers/${c.id}`);
    expect(r.status).toBe(409);
    expect(r.body.detail).toContain(sub.body.id);
    expect(r.body.errors).toContainEqual({ path: "subscriptions", message: `${sub.body.id} is not canceled` });
    expect((await api("GET", `/api/v1/customers/${c.id}`)).body.deleted).toBe(false);
    expect(await eventsOf(c.id, "customer.deleted")).toEqual([]);

    expect((await api("POST", `/api/v1/subscriptions/${sub.body.id}/cancel`, { body: { cancelAtPeriodEnd: false, reason: "leaving" } })).status).toBe(200);
    const open = ((await api("GET", `/api/v1/invoices?customerId=${c.id}&limit=100`)).body.data as any[]).filter((i) => i.status === "open" || i.status === "draft");
    if (open.length) {
      const blocked = await api("DELETE", `/api/v1/customers/${c.id}`);
      expect(blocked.status).toBe(409);
      expect(blocked.body.errors.map((e: any) => e.path)).toEqual(open.map(() => "invoices"));
      for (const inv of open) expect((await api("POST", `/api/v1/invoices/${inv.id}/void`, { body: { reason: "leaving" } })).status).toBe(200);
    }
    expect((await api("DELETE", `/api/v1/customers/${c.id}`)).status).toBe(200);
  });

  it("unknown customer → 404; viewer → 403", async () => {
    expect((await api("DELETE", "/api/v1/customers/cus_nope")).status).toBe(404);
    const c = await createCustomer();
    expect((await api("DELETE", `/api/v1/customers/${c.id}`, { as: "viewer" })).status).toBe(403);
  });
});
