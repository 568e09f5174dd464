import { describe, expect, it } from "vitest";
import { api, createApiKey, createSubscription } from "../helpers";

// Read scopes let an integration read one area with an API key instead of an admin JWT.
describe("API key read scopes", () => {
  const get = (key: string, path: string) => api("GET", path, { auth: `Bearer ${key}` });

  it("each area's read scope opens that area's list and detail, and only those", async () => {
    const sub = await createSubscription();
    const areas: [string, string, string][] = [
      ["customers:read", "/api/v1/customers", `/api/v1/customers/${sub.customerId}`],
      ["plans:read", "/api/v1/plans", `/api/v1/plans/${sub.planId}`],
      ["subscriptions:read", "/api/v1/subscriptions", `/api/v1/subscriptions/${sub.id}`],
      ["invoices:read", "/api/v1/invoices", "/api/v1/invoices"],
      ["payments:read", "/api/v1/payments", "/api/v1/payments"],
      ["refunds:read", "/api/v1/refunds", "/api/v1/refunds"],
    ];
    for (const [scope, list, detail] of areas) {
      const { key } = await createApiKey([scope]);
      expect((await get(key, list)).status, `${scope} on ${list}`).toBe(200);
      expect((await get(key, detail)).status, `${scope} on ${detail}`).toBe(200);
      // Another area's read is refused with a problem naming the scope it needs.
      const [otherScope, otherList] = areas.find(([s]) => s !== scope)!;
      const refused = await get(key, otherList);
      expect(refused.status).toBe(403);
      expect(refused.headers.get("content-type")).toContain("application/problem+json");
      expect(refused.body.detail).toContain(otherScope);
    }
  }, 60_000);

  it("a read scope never writes: a customers:read key cannot create a customer", async () => {
    const { key } = await createApiKey(["customers:read"]);
    const r = await api("POST", "/api/v1/customers", { auth: `Bearer ${key}`, body: { email: "x@example.com", currency: "USD" } });
    expect(r.status).toBe(403);
  });

  it("usage:read opens usage summaries and events; usage:write alone does not", async () => {
    const sub = await createSubscription();
    const reader = (await createApiKey(["usage:read"])).key;
    expect((await get(reader, `/api/v1/usage/${sub.id}/summary`)).status).toBe(200);
    expect((await get(reader, `/api/v1/usage/${sub.id}/events`)).status).toBe(200);
    const writer = (await createApiKey(["usage:write"])).key;
    const refused = await get(writer, `/api/v1/usage/${sub.id}/summary`);
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toContain("usage:read");
  });

  it("an unknown scope is refused when the key is created", async () => {
    const r = await api("POST", "/admin/api-keys", { body: { name: "x", scopes: ["customers:write"] } });
    expect(r.status).toBe(400);
  });
});
