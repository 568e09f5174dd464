import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import { MAX_BODY_BYTES } from "../../src/app";
import { api, tokenFor } from "../helpers";

type R = { status: number; body: any; headers: Headers };

/** Every error: problem+json, RFC 9457 members, the request id in body and header. */
function expectProblem(r: R, status: number) {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  const id = r.headers.get("x-request-id");
  expect(id).toBeTruthy();
  expect(r.body).toMatchObject({ type: expect.stringMatching(/^https:\/\//), title: expect.any(String), status, detail: expect.any(String), requestId: id });
  expect(typeof r.body.instance).toBe("string");
  expect(JSON.stringify(r.body)).not.toMatch(/\n\s+at |\.ts:\d+/);
}

describe("problem+json errors", () => {
  it("unknown route → 404", async () => {
    const r = await api("GET", "/no/such/route", { as: null });
    expectProblem(r, 404);
    expect(r.body.instance).toBe("/no/such/route");
    expect(r.body.detail).toContain("/no/such/route");
  });

  it("unknown route under /api and an unsupported method → 404", async () => {
    expectProblem(await api("GET", "/api/v1/nothing-here"), 404);
    expectProblem(await api("DELETE", "/api/v1/customers"), 404);
  });

  it("malformed JSON → 400 and nothing is created", async () => {
    const before = (await env.DB.prepare("SELECT count(*) AS n FROM customers").first<{ n: number }>())!.n;
    const r = await api("POST", "/api/v1/customers", { rawBody: '{"email": "a@example.com",' });
    expectProblem(r, 400);
    expect(r.body.errors?.[0]?.path).toBe("(body)");
    expect((await env.DB.prepare("SELECT count(*) AS n FROM customers").first<{ n: number }>())!.n).toBe(before);
  });

  it("a JSON body that is not an object → 400", async () => {
    expectProblem(await api("POST", "/api/v1/customers", { rawBody: "[1,2,3]" }), 400);
    expectProblem(await api("POST", "/api/v1/customers", { rawBody: "null" }), 400);
  });

  it("validation failures list every field path", async () => {
    const r = await api("POST", "/api/v1/plans", { body: { currency: "USD", interval: "hourly", prices: [] } });
    expectProblem(r, 400);
    expect(r.body.type).toContain("validation");
    const paths = r.body.errors.map((e: any) => e.path);
    expect(paths).toEqual(expect.arrayContaining(["name", "interval", "prices"]));
    for (const e of r.body.errors) expect(typeof e.message).toBe("string");
  });

  it("a body over 2 MB → 413 and nothing is created", async () => {
    const before = (await env.DB.prepare("SELECT count(*) AS n FROM customers").first<{ n: number }>())!.n;
    const big = JSON.stringify({ email: "big@example.com", name: "x".repeat(MAX_BODY_BYTES) });
    const r = await api("POST", "/api/v1/customers", { rawBody: big });
    expectProblem(r, 413);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM customers").first<{ n: number }>())!.n).toBe(before);
  });

  it("a streamed body over 2 MB without Content-Length → 413", async () => {
    const chunk = new TextEncoder().encode("x".repeat(256 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > MAX_BODY_BYTES + chunk.length) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const res = await worker.fetch(
      new Request("http://localhost/api/v1/customers", {
        method: "POST",
        headers: { authorization: `Bearer ${await tokenFor("admin")}`, "content-type": "application/json" },
        body: stream,
      }),
      env,
      createExecutionContext(),
    );
    expect(res.status).toBe(413);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });

  it("a body just under the limit is not rejected for its size", async () => {
    const body = JSON.stringify({ email: "fits@example.com", name: "x".repeat(MAX_BODY_BYTES - 100) });
    const r = await api("POST", "/api/v1/customers", { rawBody: body });
    // The name is longer than allowed: a validation error, not a 413.
    expectProblem(r, 400);
    expect(r.body.errors.map((e: any) => e.path)).toContain("name");
  });

  it("401, 403, 404, 409 and 422 all carry the request id", async () => {
    const responses: [R, number][] = [
      [await api("GET", "/api/v1/customers", { as: null }), 401],
      [await api("POST", "/api/v1/customers", { as: "viewer", body: { email: "v@example.com" } }), 403],
      [await api("GET", "/api/v1/customers/cus_missing"), 404],
      [await api("DELETE", "/admin/api-keys/key_missing"), 404],
      [await api("POST", "/api/v1/subscriptions", { body: { customerId: "cus_missing", planId: "plan_missing" } }), 422],
    ];
    const dupId = `cus_dup${Date.now()}`;
    await api("POST", "/api/v1/customers", { body: { id: dupId, email: "d@example.com" } });
    responses.push([await api("POST", "/api/v1/customers", { body: { id: dupId, email: "d@example.com" } }), 409]);
    for (const [r, status] of responses) expectProblem(r, status);
    const ids = responses.map(([r]) => r.body.requestId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("successful responses carry X-Request-Id too", async () => {
    const r = await api("GET", "/api/v1/customers");
    expect(r.status).toBe(200);
    expect(r.headers.get("x-request-id")).toMatch(/^req_/);
  });

  it("a sane client-supplied X-Request-Id is echoed in header and body", async () => {
    const r = await api("GET", "/api/v1/customers/cus_missing", { headers: { "x-request-id": "client-trace.42:abc" } });
    expectProblem(r, 404);
    expect(r.headers.get("x-request-id")).toBe("client-trace.42:abc");
    expect(r.body.requestId).toBe("client-trace.42:abc");
    const ok = await api("GET", "/health/live", { as: null, headers: { "x-request-id": "trace-ok" } });
    expect(ok.headers.get("x-request-id")).toBe("trace-ok");
  });

  it("an unsafe client X-Request-Id is replaced by a generated one", async () => {
    for (const bad of ["has spaces in it", "x".repeat(200), "<script>"]) {
      const r = await api("GET", "/api/v1/customers/cus_missing", { headers: { "x-request-id": bad } });
      expect(r.headers.get("x-request-id")).toMatch(/^req_/);
      expect(r.body.requestId).toBe(r.headers.get("x-request-id"));
    }
  });

  it("a client X-Request-Id that reads as a card number is replaced, so it is never echoed, logged or audited", async () => {
    for (const pan of ["4242-4242-4242-4242", "4242424242424242", "trace-378282246310005"]) {
      const r = await api("GET", "/api/v1/customers/cus_missing", { headers: { "x-request-id": pan } });
      expect(r.headers.get("x-request-id")).toMatch(/^req_/);
      expect(JSON.stringify(r.body)).not.toContain(pan);
    }
  });

  it("an unexpected failure is a 500 problem without internals", async () => {
    const brokenDb = {
      prepare() {
        throw new Error("D1_ERROR: secret internal detail");
      },
      batch() {
        throw new Error("D1_ERROR: secret internal detail");
      },
    } as unknown as D1Database;
    const ctx = createExecutionContext();
    const res = await worker.fetch(
      new Request("http://localhost/api/v1/customers", { headers: { authorization: `Bearer ${await tokenFor("admin")}`, "x-request-id": "boom-1" } }),
      { ...env, DB: brokenDb },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    const text = await res.text();
    expect(res.status).toBe(500);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(text).not.toContain("secret internal detail");
    expect(text).not.toContain("D1_ERROR");
    expect(JSON.parse(text)).toMatchObject({ status: 500, requestId: "boom-1" });
  });
});

describe("OpenAPI and docs", () => {
  it("/openapi.json is an OpenAPI 3.1 document listing the routes", async () => {
    const r = await api("GET", "/openapi.json", { as: null });
    expect(r.status).toBe(200);
    expect(r.body.openapi).toMatch(/^3\.1\./);
    expect(r.body.info.title).toBeTruthy();
    const paths = r.body.paths;
    const expected: [string, string][] = [
      ["/api/v1/customers", "post"],
      ["/api/v1/customers", "get"],
      ["/api/v1/customers/{id}", "get"],
      ["/api/v1/customers/{id}", "patch"],
      ["/api/v1/plans", "post"],
      ["/api/v1/plans/{id}", "get"],
      ["/api/v1/plans/{id}/versions", "post"],
      ["/api/v1/subscriptions", "post"],
      ["/api/v1/subscriptions", "get"],
      ["/api/v1/subscriptions/{id}", "get"],
      ["/api/v1/audit/search", "get"],
      ["/api/v1/audit/verify-integrity", "get"],
      ["/admin/api-keys", "post"],
      ["/admin/api-keys", "get"],
      ["/admin/api-keys/{id}", "delete"],
    ];
    for (const [path, method] of expected) {
      expect(paths[path]?.[method], `${method.toUpperCase()} ${path}`).toBeDefined();
    }
    // Error responses are documented as problem+json.
    expect(paths["/api/v1/customers"].post.responses["400"].content["application/problem+json"]).toBeDefined();
    expect(paths["/api/v1/customers"].post.requestBody.content["application/json"].schema).toBeDefined();
    expect(r.body.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    expect(r.body.components.schemas).toHaveProperty("Customer");
    expect(r.body.components.schemas).toHaveProperty("Plan");
    expect(r.body.components.schemas).toHaveProperty("Problem");
  });

  it("/docs is a self-contained HTML page that loads /openapi.json", async () => {
    const r = await api("GET", "/docs", { as: null });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^text\/html/);
    const html = r.body as string;
    expect(html).toMatch(/<!doctype html>/i);
    expect(html).toContain("/openapi.json");
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/src=["']\/\//); // no protocol-relative assets either
  });
});
