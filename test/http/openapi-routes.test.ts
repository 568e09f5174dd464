import { describe, expect, it } from "vitest";
import { env, exports } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import entry from "../../src/index";
import { app } from "../../src/app";
import { api, createApiKey, createPlan, createSubscription, tokenFor, unique } from "../helpers";
import { drainTasks, recordingEnv } from "../scale";

const worker: ExportedHandler<Env> = entry;

// Served on purpose without an entry in the document, each for a reason.
const UNDOCUMENTED: Record<string, string> = {
  "GET /openapi.json": "the document itself",
  "GET /docs": "the HTML reference rendered from the document",
  "GET /docs/assets/*": "the reference's renderer and fonts (static assets)",
  "GET /console": "the operator console (a single-page app from static assets)",
  "GET /console/*": "the console's bundles and its deep links (static assets)",
};

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/** Hono's `/:id` or `/:id{[0-9]+}` → OpenAPI's `/{id}`. */
const openApiPath = (honoPath: string) => honoPath.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?/g, "{$1}");

/** Every method and path a handler is registered for (middleware is registered as ALL). */
function servedRoutes(): Set<string> {
  return new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${openApiPath(r.path)}`));
}

async function documentedRoutes(): Promise<Set<string>> {
  const doc = (await api("GET", "/openapi.json")).body as { paths: Record<string, Record<string, unknown>> };
  const out = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) for (const m of Object.keys(item)) if (METHODS.includes(m)) out.add(`${m.toUpperCase()} ${path}`);
  return out;
}

describe("/openapi.json matches the routes the app serves", () => {
  it("documents every served route at its real path and method", async () => {
    const documented = await documentedRoutes();
    const missing = [...servedRoutes()].filter((r) => !documented.has(r) && !(r in UNDOCUMENTED)).sort();
    expect(missing).toEqual([]);
  });

  it("serves every documented path and method (a placeholder filled in reaches a handler, not the not-found answer)", async () => {
    const served = servedRoutes();
    const documented = [...(await documentedRoutes())].sort();
    expect(documented.length).toBeGreaterThan(50);
    expect(documented.filter((r) => !served.has(r))).toEqual([]);
    // And through the worker: the router finds a handler for each (the handler then answers whatever it answers).
    const unrouted: string[] = [];
    for (const route of documented) {
      const [method, path] = route.split(" ") as [string, string];
      const r = await api(method, path.replace(/\{[^}]+\}/g, "x_placeholder"));
      if (r.status === 404 && typeof r.body?.detail === "string" && r.body.detail.startsWith("no route for")) unrouted.push(route);
    }
    expect(unrouted).toEqual([]);
  });

  it("documents usage ingestion where it is served", async () => {
    const documented = await documentedRoutes();
    expect(documented.has("POST /api/v1/usage")).toBe(true);
    expect([...documented].filter((r) => r.includes("/api/v1/usage/api/v1/usage"))).toEqual([]);
  });
});

// --- Live GET responses against their documented schemas (ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses) ---

type Doc = { paths: Record<string, Record<string, Operation>>; components: Record<string, unknown> };
type Operation = { parameters?: { name: string; in: string; required?: boolean }[]; responses: Record<string, { content?: Record<string, { schema?: unknown }> }> };

/** Runs one payment attempt of `invoiceId` through the payments queue consumer, as the queue would deliver it. */
async function payInvoice(invoiceId: string) {
  const batch = createMessageBatch("billing-payments", [{ id: unique("msg"), timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId, attempt: 1 } }]);
  const ctx = createExecutionContext();
  await worker.queue!(batch, env, ctx);
  await getQueueResult(batch, ctx);
}

const ok = <T = any>(r: { status: number; body: T }, status: number, what: string): T => {
  if (r.status !== status) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

/** One object of every kind a GET can name, so each GET below answers a real object (not a 404 or an empty list). */
async function seed() {
  const sub = await createSubscription({ paymentMethod: "pm_card_visa" });
  const today = new Date().toISOString().slice(0, 10);
  ok(await api("POST", "/api/v1/usage", { body: { subscriptionId: sub.id, meterId: "api_calls", quantity: 5, eventId: unique("ev") } }), 202, "usage");
  ok(await api("POST", `/api/v1/subscriptions/${sub.id}/usage-alerts`, { body: { meterId: "api_calls", threshold: "1000" } }), 201, "usage alert");
  const invoice = ok(await api("GET", `/api/v1/invoices?subscriptionId=${sub.id}`), 200, "invoices").data[0];
  await payInvoice(invoice.id);
  const payment = ok(await api("GET", `/api/v1/payments?invoiceId=${invoice.id}`), 200, "payments").data[0];
  const refund = ok(await api("POST", "/api/v1/refunds", { body: { paymentId: payment.id, amount: "1.00", reason: "requested_by_customer" } }), 201, "refund");
  const bulk = ok(await api("POST", "/api/v1/refunds/bulk", { body: { paymentIds: [payment.id] } }), 202, "bulk refund");
  const clock = ok(await api("POST", "/api/v1/test-clocks", { body: { frozenTime: "2030-01-01T00:00:00Z" } }), 201, "test clock");
  const endpoint = ok(await api("POST", "/api/v1/webhook-endpoints", { body: { url: "https://example.com/hook", enabledEvents: ["*"] } }), 201, "webhook endpoint");
  ok(await api("POST", `/api/v1/webhook-endpoints/${endpoint.id}/test`), 200, "test delivery");
  const event = ok(await api("GET", "/api/v1/events?limit=1"), 200, "events").data[0];
  ok(await api("PUT", "/admin/features/conformance-flag", { body: { enabled: true, percentage: 50 } }), 200, "feature flag");
  ok(await api("PUT", "/api/v1/tax/rates", { body: { jurisdiction: "US-CA", rate: "0.0725", effectiveDate: "2024-01-01" } }), 200, "tax rate");
  const exported = ok(await api("POST", "/api/v1/audit/export", { body: { startDate: today, endDate: today } }), 201, "audit export");
  // Lists that would otherwise be empty: a trial ending soon, an exemption without certificate, an overdue invoice's
  // reminder, stored exchange rates, a backup, an API key.
  await createSubscription({ trialDays: 7 });
  ok(await api("POST", "/api/v1/customers", { body: { email: `${unique("x")}@example.com`, currency: "USD", taxExempt: true } }), 201, "exempt customer");
  const declined = await createSubscription({ paymentMethod: "pm_card_chargeDeclined" });
  const open = ok(await api("GET", `/api/v1/invoices?subscriptionId=${declined.id}`), 200, "invoices").data[0];
  await env.DB.prepare("UPDATE invoices SET due_at = ? WHERE id = ?").bind(Date.now() - 86_400_000, open.id).run();
  ok(await api("POST", "/api/v1/invoices/send-reminders", { body: { daysOverdue: 0 } }), 200, "reminders");
  ok(await api("PUT", "/admin/exchange-rates", { body: { base: "USD", rates: { EUR: "0.92" } } }), 200, "exchange rates");
  ok(await api("POST", "/admin/backups"), 201, "backup");
  await createApiKey();
  // Documents, credit notes, coupons and credit grants.
  const coupon = ok(await api("POST", "/api/v1/coupons", { body: { id: unique("CONF").toUpperCase(), percentOff: "10", duration: "once" } }), 201, "coupon");
  const code = ok(await api("POST", "/api/v1/promotion-codes", { body: { couponId: coupon.id, code: unique("CODE").toUpperCase() } }), 201, "promotion code");
  ok(await api("POST", `/api/v1/subscriptions/${sub.id}/discount`, { body: { coupon: coupon.id } }), 200, "discount");
  const grant = ok(await api("POST", `/api/v1/customers/${sub.customerId}/credit-grants`, { body: { amount: "5.00", currency: "USD", category: "promotional" } }), 201, "credit grant");
  const paid = ok(await api("GET", `/api/v1/invoices/${invoice.id}`), 200, "invoice");
  const creditNote = ok(
    await api("POST", "/api/v1/credit-notes", { body: { invoiceId: invoice.id, lines: [{ invoiceLineId: paid.lines[0].id, amount: "1.00" }], reason: "order_change", creditBalance: { amount: "1.00" } } }),
    201,
    "credit note",
  );
  const link = ok(await api("POST", `/api/v1/invoices/${invoice.id}/hosted-link`), 201, "hosted link");
  const token = String(link.hostedUrl).split("/").pop()!;
  const otherPlan = await createPlan();
  const stripeEvent = unique("evt");
  await env.DB.prepare("INSERT INTO webhook_events (id, source, type, payload, status, received_at) VALUES (?, 'stripe', 'charge.succeeded', '{}', 'failed', ?)")
    .bind(stripeEvent, Date.now())
    .run();
  // A reconciliation run, driven to completion (its full documented shape).
  const recording = recordingEnv();
  const reconRun = ok(await api("POST", "/api/v1/reconciliation/runs", { body: { date: today, gateway: "sandbox" }, env: recording.env }), 202, "reconciliation run");
  await drainTasks(recording);
  // A retention archive record (its R2 objects are absent: verification answers ok: false, a documented body).
  const archiveKey = `retention/events/2020-01-01/${unique("evt")}_x.ndjson`;
  await env.DB.prepare(
    "INSERT INTO retention_archives (key, kind, manifest_key, run_id, rows, bytes, sha256, from_at, to_at, first_ref, last_ref, created_at) VALUES (?1, 'events', ?1 || '.manifest.json', 'ret_conf', 1, 2, 'x', 0, 0, 'a', 'b', ?2)",
  )
    .bind(archiveKey, Date.now())
    .run();
  return {
    params: {
      "/api/v1/customers/{id}": { id: sub.customerId },
      "/api/v1/plans/{id}": { id: sub.planId },
      "/api/v1/subscriptions/{id}": { id: sub.id },
      "/api/v1/subscriptions/{id}/usage-alerts": { id: sub.id },
      "/api/v1/usage/{subscriptionId}/summary": { subscriptionId: sub.id },
      "/api/v1/usage/{subscriptionId}/events": { subscriptionId: sub.id },
      "/api/v1/audit/exports/{key}": { key: String(exported.download).split("/").pop()! },
      "/api/v1/invoices/{id}": { id: invoice.id },
      "/api/v1/test-clocks/{id}": { id: clock.id },
      "/api/v1/payments/{id}": { id: payment.id },
      "/api/v1/refunds/bulk/{bulkId}": { bulkId: bulk.bulkId },
      "/api/v1/refunds/{id}": { id: refund.id },
      "/api/v1/events/{id}": { id: event.id },
      "/api/v1/webhook-endpoints/{id}": { id: endpoint.id },
      "/api/v1/webhook-endpoints/{id}/deliveries": { id: endpoint.id },
      "/admin/webhooks/events/{id}": { id: stripeEvent },
      "/api/v1/reconciliation/stripe/{date}": { date: today },
      "/api/v1/reconciliation/runs/{id}": { id: reconRun.id },
      "/admin/features/{name}": { name: "conformance-flag" },
      "/admin/features/{name}/evaluate": { name: "conformance-flag" },
      "/api/v1/subscriptions/{id}/discount": { id: sub.id },
      "/api/v1/subscriptions/{id}/plan/preview": { id: sub.id },
      "/api/v1/invoices/{id}/pdf": { id: invoice.id },
      "/api/v1/credit-notes/{id}": { id: creditNote.id },
      "/api/v1/credit-notes/{id}/pdf": { id: creditNote.id },
      "/i/{token}": { token },
      "/i/{token}/pdf": { token },
      "/api/v1/coupons/{id}": { id: coupon.id },
      "/api/v1/promotion-codes/{id}": { id: code.id },
      "/api/v1/customers/{id}/credit-grants": { id: sub.customerId },
      "/api/v1/customers/{id}/credit-grants/{grantId}": { id: sub.customerId, grantId: grant.id },
      "/api/v1/customers/{id}/credit-balance": { id: sub.customerId },
    } as Record<string, Record<string, string>>,
    query: {
      "/api/v1/tax/rates": "jurisdiction=US-CA",
      "/api/v1/refunds/report": `startDate=${today}`,
      "/api/v1/reconciliation/stripe/{date}": "gateway=sandbox",
      "/admin/features/{name}/evaluate": "subjectId=cus_123",
      "/api/v1/subscriptions/{id}/plan/preview": `newPlanId=${otherPlan.id}`,
      "/openmeter/api/v1/events": `subject=${sub.customerId}`,
      "/admin/retention/archives/verify": `key=${encodeURIComponent(archiveKey)}`,
    } as Record<string, string>,
  };
}

describe("live GET responses conform to /openapi.json", () => {
  it("every documented GET answers, with a seeded object, a body its documented schema accepts", async () => {
    const doc = (await api("GET", "/openapi.json")).body as Doc;
    const { params, query } = await seed();
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ $id: "openapi.json", components: doc.components });
    const local = (schema: unknown) => JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi.json#/components/'));

    const failures: string[] = [];
    let checked = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      const op = item.get;
      if (!op) continue;
      const needs = (op.parameters ?? []).filter((p) => p.in === "path").map((p) => p.name);
      if (needs.length && !params[path]) {
        failures.push(`GET ${path}: no seeded value for ${needs.join(", ")} (add it to seed())`);
        continue;
      }
      const url = path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(params[path]![name]!)) + (query[path] ? `?${query[path]}` : "");
      const res = await exports.default.fetch(new Request(`http://localhost${url}`, { headers: { authorization: `Bearer ${await tokenFor("admin")}` } }));
      const documented = op.responses[String(res.status)];
      if (!documented || res.status >= 300) {
        failures.push(`GET ${url}: ${res.status} ${(await res.text()).slice(0, 200)}`);
        continue;
      }
      const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
      const media = documented.content?.[type];
      if (!media) {
        failures.push(`GET ${url}: answered ${type}, documented ${Object.keys(documented.content ?? {}).join(", ")}`);
        continue;
      }
      if (type !== "application/json") {
        await res.text();
        checked++;
        continue;
      }
      const body = await res.json();
      const validate = ajv.compile(local(media.schema ?? {}));
      if (!validate(body)) failures.push(`GET ${url}: ${ajv.errorsText(validate.errors, { dataVar: "body" })}`);
      if (Array.isArray((body as { data?: unknown[] }).data) && (body as { data: unknown[] }).data.length === 0 && path !== "/admin/dlq" && path !== "/api/v1/payments/retry-queue" && path !== "/api/v1/reconciliation/discrepancies") {
        failures.push(`GET ${url}: an empty list checks no item (seed one)`);
      }
      checked++;
    }
    expect(failures).toEqual([]);
    expect(checked).toBeGreaterThan(60);
  });
});
