import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";
import { tokenFor, unique } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue">> = entry;
let jobs: any[] = [];
const spy = (into: any[]) => ({ send: async (body: unknown) => void into.push(body), sendBatch: async (m: { body: unknown }[]) => void into.push(...m.map((x) => x.body)) }) as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spy([]), WEBHOOK_QUEUE: spy([]), JOB_QUEUE: spy(jobs) }) as Env;

async function call(method: string, path: string, body?: unknown, role: "admin" | "finance" | "viewer" | null = "admin") {
  const headers: Record<string, string> = role ? { authorization: `Bearer ${await tokenFor(role)}` } : {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }), testEnv(), ctx);
  await waitOnExecutionContext(ctx);
  const type = res.headers.get("content-type") ?? "";
  const text = type.startsWith("application/pdf") ? new TextDecoder("latin1").decode(await res.arrayBuffer()) : await res.text();
  return { status: res.status, text, body: type.includes("json") ? JSON.parse(text) : null, headers: res.headers };
}

async function runJobs() {
  const batch = createMessageBatch("billing-jobs", jobs.splice(0).map((body, i) => ({ id: `j${Date.now()}${i}`, timestamp: new Date(), attempts: 1, body })));
  const ctx = createExecutionContext();
  await worker.queue(batch, testEnv(), ctx);
  return getQueueResult(batch, ctx);
}

/** A finalized (open) invoice from a new subscription, with the jobs its finalization queued. */
async function openInvoice() {
  const customer = (await call("POST", "/api/v1/customers", { email: `${unique("doc")}@example.com`, name: "Hooli", currency: "USD" })).body;
  const plan = (await call("POST", "/api/v1/plans", { name: "Docs", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "19.99" }] })).body;
  const sub = (await call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId: plan.id })).body;
  return (await call("GET", `/api/v1/invoices?subscriptionId=${sub.id}`)).body.data[0];
}

describe("invoice documents", () => {
  it("a draft has no document: its PDF and a hosted link are refused (409, declared) with the same detail as before", async () => {
    const inv = await openInvoice();
    // Put back in draft in place: only the routes' refusal is under test here.
    await env.DB.prepare("UPDATE invoices SET status = 'draft' WHERE id = ?").bind(inv.id).run();
    const pdf = await call("GET", `/api/v1/invoices/${inv.id}/pdf`, undefined, "viewer");
    expect(pdf.status).toBe(409);
    expect(pdf.body).toMatchObject({ detail: `invoice ${inv.id} is a draft: its document exists once it is finalized`, errors: [{ path: "status", message: "is draft" }] });
    const link = await call("POST", `/api/v1/invoices/${inv.id}/hosted-link`, {}, "finance");
    expect(link.status).toBe(409);
    expect(link.body).toMatchObject({ detail: `invoice ${inv.id} is a draft: finalize it before sharing it`, errors: [{ path: "status", message: "is draft" }] });
  });

  it("finalization queues the document job; the job stores the PDF in R2 and gives the invoice a hosted link", async () => {
    jobs = [];
    const inv = await openInvoice();
    expect(jobs).toContainEqual({ type: "invoice.document", invoiceId: inv.id });
    const result = await runJobs();
    expect(result.explicitAcks.length + result.retryMessages.length).toBeGreaterThan(0);
    expect(result.retryMessages).toEqual([]);
    const stored = await env.ARCHIVE.list({ prefix: `documents/invoices/${inv.id}/` });
    expect(stored.objects.map((o) => o.key)).toEqual([expect.stringMatching(new RegExp(`^documents/invoices/${inv.id}/open-\\d+\\.pdf$`))]);
    const got = await call("GET", `/api/v1/invoices/${inv.id}`, undefined, "viewer");
    expect(got.body.pdfUrl).toBe(`/api/v1/invoices/${inv.id}/pdf`);
    expect(got.body.hostedUrl).toMatch(/^\/i\/[0-9a-f]{64}$/);
    // The page opens without credentials and shows the number; its PDF is the stored one.
    const page = await call("GET", got.body.hostedUrl, undefined, null);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("x-robots-tag")).toContain("noindex");
    expect(page.text).toContain(got.body.number);
    expect(page.text).toContain("$19.99");
    const pdf = await call("GET", `${got.body.hostedUrl}/pdf`, undefined, null);
    expect(pdf.status).toBe(200);
    expect(pdf.text.startsWith("%PDF-")).toBe(true);
  }, 60_000);

  it("hostedUrl is set at finalization: the same link in GET, in lists and in the events' objects, signed with HOSTED_LINK_SECRET", async () => {
    jobs = [];
    const inv = await openInvoice(); // no document job run: the link exists from the finalizing batch on
    expect(inv.hostedUrl).toMatch(/^\/i\/[0-9a-f]{64}$/);
    const got = await call("GET", `/api/v1/invoices/${inv.id}`, undefined, "viewer");
    expect(got.body.hostedUrl).toBe(inv.hostedUrl);
    const listed = (await call("GET", `/api/v1/invoices?customerId=${inv.customerId}`, undefined, "viewer")).body.data;
    expect(listed.map((i: any) => i.hostedUrl)).toEqual([inv.hostedUrl]);
    const evts = await env.DB.prepare("SELECT type, data FROM events WHERE object_id = ? ORDER BY created_at, rowid").bind(inv.id).all<{ type: string; data: string }>();
    const finalized = evts.results.find((e) => e.type === "invoice.finalized")!;
    expect(JSON.parse(finalized.data).object.hostedUrl).toBe(inv.hostedUrl);
    expect((await call("GET", inv.hostedUrl, undefined, null)).status).toBe(200);
    // The token is HMAC-SHA-256(HOSTED_LINK_SECRET, "invoice-link:" + link id): rotating JWT_SECRET leaves it alone.
    const link = (await env.DB.prepare("SELECT id FROM invoice_links WHERE invoice_id = ? AND revoked_at IS NULL").bind(inv.id).first<{ id: string }>())!;
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(env.HOSTED_LINK_SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`invoice-link:${link.id}`)));
    expect(inv.hostedUrl).toBe(`/i/${[...mac].map((b) => b.toString(16).padStart(2, "0")).join("")}`);
  }, 60_000);

  it("paying or voiding an invoice queues its document job: the PAID / VOID PDF is in R2 before anyone asks for it", async () => {
    const paid = await openInvoice();
    const voided = await openInvoice();
    await runJobs();
    jobs = [];
    const pay = createMessageBatch("billing-payments", [{ id: unique("pay"), timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId: paid.id, attempt: 1 } }]);
    const ctx = createExecutionContext();
    await worker.queue(pay, testEnv(), ctx);
    await getQueueResult(pay, ctx);
    expect((await call("GET", `/api/v1/invoices/${paid.id}`, undefined, "viewer")).body.status).toBe("paid");
    expect((await call("POST", `/api/v1/invoices/${voided.id}/void`, { reason: "duplicate" })).status).toBe(200);
    // One job per transition (bounded: no fan-out), sent after the commit.
    expect(jobs).toEqual(expect.arrayContaining([{ type: "invoice.document", invoiceId: paid.id }, { type: "invoice.document", invoiceId: voided.id }]));
    expect(jobs.filter((j) => j.invoiceId === paid.id || j.invoiceId === voided.id)).toHaveLength(2);
    expect((await runJobs()).retryMessages).toEqual([]);
    const keys = async (id: string) => (await env.ARCHIVE.list({ prefix: `documents/invoices/${id}/` })).objects.map((o) => o.key.split("/").pop());
    expect(await keys(paid.id)).toEqual(expect.arrayContaining([expect.stringMatching(/^paid-\d+\.pdf$/)]));
    expect(await keys(voided.id)).toEqual(expect.arrayContaining([expect.stringMatching(/^void-\d+\.pdf$/)]));
  }, 60_000);

  it("the PDF route needs a token, answers 404 for unknown invoices, and renders once when the stored copy is missing", async () => {
    const inv = await openInvoice();
    expect((await call("GET", `/api/v1/invoices/${inv.id}/pdf`, undefined, null)).status).toBe(401);
    const r = await call("GET", `/api/v1/invoices/${inv.id}/pdf`, undefined, "viewer");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/pdf");
    expect(r.text.startsWith("%PDF-")).toBe(true);
    expect((await env.ARCHIVE.list({ prefix: `documents/invoices/${inv.id}/` })).objects).toHaveLength(1);
    expect((await call("GET", "/api/v1/invoices/inv_missing/pdf", undefined, "viewer")).status).toBe(404);
  }, 60_000);

  it("expired, revoked and unknown tokens are the same 404, and a link can be rotated", async () => {
    const inv = await openInvoice();
    const unknown = await call("GET", `/i/${"a".repeat(64)}`, undefined, null);
    const malformed = await call("GET", "/i/not-a-token", undefined, null);
    expect(unknown.status).toBe(404);
    expect(malformed.status).toBe(404);
    expect(malformed.text).toBe(unknown.text);

    const first = await call("POST", `/api/v1/invoices/${inv.id}/hosted-link`, { expiresInDays: 7 }, "finance");
    expect(first.status).toBe(201);
    expect(Date.parse(first.body.expiresAt) - Date.now()).toBeGreaterThan(6.9 * 86_400_000);
    expect((await call("GET", first.body.hostedUrl, undefined, null)).status).toBe(200);
    // invoice_links keeps only the token's hash (the invoice row carries the live token, as its events do).
    const token = first.body.hostedUrl.slice(3);
    const rows = await env.DB.prepare("SELECT token_hash FROM invoice_links WHERE invoice_id = ?").bind(inv.id).all<{ token_hash: string }>();
    expect(rows.results.some((r) => r.token_hash === token)).toBe(false);

    const second = await call("POST", `/api/v1/invoices/${inv.id}/hosted-link`, {}, "finance");
    const rotatedAway = await call("GET", first.body.hostedUrl, undefined, null);
    expect(rotatedAway.status).toBe(404);
    expect(rotatedAway.text).toBe(unknown.text);

    await env.DB.prepare("UPDATE invoice_links SET expires_at = ? WHERE invoice_id = ? AND revoked_at IS NULL").bind(Date.now() - 1, inv.id).run();
    const expired = await call("GET", second.body.hostedUrl, undefined, null);
    expect(expired.status).toBe(404);
    expect(expired.text).toBe(unknown.text);
    expect((await call("GET", `${second.body.hostedUrl}/pdf`, undefined, null)).status).toBe(404);
    // The invoice still names its (expired) link, as Stripe's hosted_invoice_url stays on the invoice.
    expect((await call("GET", `/api/v1/invoices/${inv.id}`, undefined, "viewer")).body.hostedUrl).toBe(second.body.hostedUrl);

    const third = await call("POST", `/api/v1/invoices/${inv.id}/hosted-link`, undefined, "finance");
    expect(third.status).toBe(201);
    const revoked = await call("DELETE", `/api/v1/invoices/${inv.id}/hosted-link`, undefined, "finance");
    expect(revoked.body).toEqual({ invoiceId: inv.id, revoked: 1 });
    const gone = await call("GET", third.body.hostedUrl, undefined, null);
    expect(gone.status).toBe(404);
    expect(gone.text).toBe(unknown.text);
    expect((await call("GET", `/api/v1/invoices/${inv.id}`, undefined, "viewer")).body.hostedUrl).toBeNull();
    expect((await call("POST", `/api/v1/invoices/${inv.id}/hosted-link`, {}, "viewer")).status).toBe(403);
  }, 60_000);

  it("the seller block comes from /admin/config/documents", async () => {
    const put = await call("PUT", "/admin/config/documents", { seller: { legalName: "Pied Piper Inc.", address: ["5230 Newell Road", "Palo Alto, CA 94303"], taxId: "US 11-1111111" }, publicBaseUrl: "https://billing.example.com" });
    expect(put.status).toBe(200);
    const inv = await openInvoice();
    const link = await call("POST", `/api/v1/invoices/${inv.id}/hosted-link`, {}, "finance");
    expect(link.body.hostedUrl).toMatch(/^https:\/\/billing\.example\.com\/i\/[0-9a-f]{64}$/);
    const page = await call("GET", new URL(link.body.hostedUrl).pathname, undefined, null);
    expect(page.text).toContain("Pied Piper Inc.");
    expect(page.text).toContain("US 11-1111111");
    await call("PUT", "/admin/config/documents", { seller: { legalName: "Billing Engine Ltd" } });
  }, 60_000);
});
