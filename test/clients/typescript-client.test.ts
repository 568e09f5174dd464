// The typed client (clients/typescript) against the real worker: its types come from the served document, and its
// wrapper (token, Idempotency-Key, problem+json errors, pagination) behaves as docs/typescript.md says.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ApiProblem, createBillingClient, idempotencyKey, listAll, unwrap } from "../../clients/typescript/src/index";
import { tokenFor, unique } from "../helpers";

const worker = (request: Request) => exports.default.fetch(request);
const clientAs = async (role: "admin" | "viewer" | null) =>
  createBillingClient({ baseUrl: "http://localhost/", fetch: worker, ...(role ? { token: await tokenFor(role) } : {}) });

describe("the TypeScript client", () => {
  it("creates and reads objects with typed bodies, sending the token", async () => {
    const api = await clientAs("admin");
    const email = `${unique("ts")}@example.com`;
    const created = await unwrap(api.POST("/api/v1/customers", { body: { email, name: "Typed", currency: "EUR" } }));
    expect(created.id).toMatch(/^cus_/);
    const read = await unwrap(api.GET("/api/v1/customers/{id}", { params: { path: { id: created.id } } }));
    expect(read).toMatchObject({ id: created.id, email, currency: "EUR" });
  });

  it("throws ApiProblem with the problem+json body, status, kind and request id", async () => {
    const api = await clientAs("admin");
    const missing = await unwrap(api.GET("/api/v1/customers/{id}", { params: { path: { id: "cus_does_not_exist" } } })).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ApiProblem);
    const problem = missing as ApiProblem;
    expect(problem.status).toBe(404);
    expect(problem.kind).toBe("not-found");
    expect(problem.requestId).toMatch(/\S/);
    expect(problem.message).toContain("404");

    const invalid = (await unwrap(api.POST("/api/v1/customers", { body: { email: "not-an-email", currency: "USD" } })).catch((e: unknown) => e)) as ApiProblem;
    expect(invalid.status).toBe(400);
    expect(invalid.problem.errors?.map((e) => e.path)).toContain("email");
  });

  it("without a token, or with a role that may not write, the problem says so (401, 403)", async () => {
    const anonymous = await clientAs(null);
    await expect(unwrap(anonymous.GET("/api/v1/customers"))).rejects.toMatchObject({ status: 401 });
    const viewer = await clientAs("viewer");
    await expect(unwrap(viewer.POST("/api/v1/customers", { body: { email: `${unique("v")}@example.com`, currency: "USD" } }))).rejects.toMatchObject({ status: 403 });
  });

  it("idempotencyKey() makes a retried create replay the first answer", async () => {
    const api = await clientAs("admin");
    const headers = idempotencyKey(unique("signup"));
    const body = { email: `${unique("idem")}@example.com`, currency: "USD" };
    const first = await api.POST("/api/v1/customers", { body, headers });
    const again = await api.POST("/api/v1/customers", { body, headers });
    expect(first.response.status).toBe(201);
    expect(again.response.headers.get("idempotent-replayed")).toBe("true");
    expect(again.data?.id).toBe(first.data?.id);
    expect(idempotencyKey()["Idempotency-Key"]).not.toBe(idempotencyKey()["Idempotency-Key"]);
  });

  it("listAll follows nextCursor through every page", async () => {
    const api = await clientAs("admin");
    const tag = unique("page");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await unwrap(api.POST("/api/v1/customers", { body: { email: `${tag}-${i}@example.com`, currency: "USD" } }))).id);
    let pages = 0;
    const all = await listAll((startingAfter) => {
      pages++;
      return unwrap(api.GET("/api/v1/customers", { params: { query: { limit: 2, startingAfter } } }));
    });
    expect(all.map((c) => c.id)).toEqual(expect.arrayContaining(ids));
    expect(new Set(all.map((c) => c.id)).size).toBe(all.length);
    expect(pages).toBeGreaterThanOrEqual(3);
  });
});
