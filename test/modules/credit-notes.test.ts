import { beforeEach, describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import entry from "../../src/index";
import { tokenFor, unique, servicesOf } from "../helpers";
import { systemActor } from "../../src/platform/actor";
import { settlePendingRefunds } from "../../src/modules/refunds/service";
import { dropSettingsCache } from "../../src/platform/settings";

const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue">> = entry;
type Role = "admin" | "finance" | "support" | "viewer";

// Queues are spied (the tests run the consumers themselves).
let jobs: any[] = [];
const spy = (into: any[]) => ({ send: async (body: unknown) => void into.push(body), sendBatch: async (m: { body: unknown }[]) => void into.push(...m.map((x) => x.body)) }) as unknown as Queue;
const testEnv = () => ({ ...env, PAYMENT_QUEUE: spy([]), WEBHOOK_QUEUE: spy([]), JOB_QUEUE: spy(jobs) }) as Env;

async function call(method: string, path: string, body?: unknown, role: Role = "admin") {
  const headers: Record<string, string> = { authorization: `Bearer ${await tokenFor(role)}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }), testEnv(), ctx);
  await waitOnExecutionContext(ctx);
  const text = res.headers.get("content-type") === "application/pdf" ? new TextDecoder("latin1").decode(await res.arrayBuffer()) : await res.text();
  let parsed: any = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {}
  return { status: res.status, body: parsed, headers: res.headers, text };
}

let seq = 0;
async function attempt(invoiceId: string) {
  const batch = createMessageBatch("billing-payments", [{ id: `cn${seq++}`, timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId, attempt: 1 } }]);
  const ctx = createExecutionContext();
  await worker.queue(batch, testEnv(), ctx);
  return getQueueResult(batch, ctx);
}

/** An invoice of 2 × 50.00 USD with 10 % tax (110.00), paid with pm_card_visa when `pay`, else left open. */
async function taxedInvoice(pay: boolean) {
  const region = unique("R").slice(-3).toUpperCase().replace(/[^A-Z0-9]/g, "X");
  expect((await call("PUT", "/api/v1/tax/rates", { jurisdiction: `US-${region}`, rate: "0.1", effectiveDate: "2024-01-01" })).status).toBe(200);
  const customer = (await call("POST", "/api/v1/customers", { email: `${unique("cn")}@example.com`, name: "Initech LLC", currency: "USD", country: "US", region })).body;
  const plan = (await call("POST", "/api/v1/plans", { name: "Seats", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "50.00" }] })).body;
  const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId: plan.id, quantity: 2, paymentMethod: "pm_card_visa" });
  expect(sub.status).toBe(201);
  let invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
  if (pay) await attempt(invoice.id);
  invoice = (await call("GET", `/api/v1/invoices/${invoice.id}`)).body;
  expect(invoice).toMatchObject({ status: pay ? "paid" : "open", subtotal: { amountMinor: 10000 }, tax: { amountMinor: 1000 }, total: { amount: "110.00" } });
  return { customer, invoice, line: invoice.lines[0] };
}

const createNote = (body: Record<string, unknown>, role: Role = "finance") => call("POST", "/api/v1/credit-notes", body, role);
const countNotes = async (invoiceId: string) => (await env.DB.prepare("SELECT COUNT(*) AS n FROM credit_notes WHERE invoice_id = ?").bind(invoiceId).first<{ n: number }>())!.n;
const eventsOf = async (objectId: string) => (await env.DB.prepare("SELECT type FROM events WHERE object_id = ? ORDER BY created_at, rowid").bind(objectId).all<{ type: string }>()).results.map((r) => r.type);

beforeEach(async () => {
  await call("POST", "/admin/emergency/resume-payments");
  jobs = [];
});

describe("worked example: a credit note on a paid invoice, split between a refund and credit, with tax", () => {
  it("credits one of two seats (50.00 + 5.00 tax): 30.00 refunded to the card, 25.00 to the credit balance", async () => {
    const { customer, invoice, line } = await taxedInvoice(true);
    const payment = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];

    const r = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "product_unsatisfactory", memo: "One seat was never used", refund: { amount: "30.00" }, creditBalance: { amount: 25 } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      object: "credit_note",
      invoiceId: invoice.id,
      customerId: customer.id,
      status: "issued",
      reason: "product_unsatisfactory",
      memo: "One seat was never used",
      subtotal: { amount: "50.00", amountMinor: 5000 },
      tax: { amount: "5.00", amountMinor: 500 },
      total: { amount: "55.00", amountMinor: 5500 },
      invoiceCredit: { amountMinor: 0 },
      refund: { amount: "30.00", amountMinor: 3000 },
      creditBalance: { amount: "25.00", amountMinor: 2500 },
      taxRate: "0.1",
      lines: [{ invoiceLineId: line.id, quantity: "1", amount: { amountMinor: 5000 }, tax: { amountMinor: 500 }, total: { amount: "55.00" } }],
    });
    expect(r.body.number).toMatch(/^CN-\d{4}-\d{6}$/);
    expect(r.body.refund.refundId).toMatch(/^re_/);

    // The refund went through the refund ledger and the gateway; the credit is on the customer.
    expect((await call("GET", `/api/v1/payments/${payment.id}`)).body).toMatchObject({ amountRefundedMinor: 3000 });
    expect((await call("GET", `/api/v1/refunds/${r.body.refund.refundId}`)).body).toMatchObject({ status: "succeeded", amountMinor: 3000, reason: "credit_note" });
    expect((await call("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance).toEqual({ amount: "25.00", amountMinor: 2500 });
    expect(await eventsOf(r.body.id)).toEqual(["credit_note.created"]);
    const audit = await env.DB.prepare("SELECT action FROM audit_log WHERE target_id IN (?, ?) ORDER BY seq").bind(r.body.id, customer.id).all<{ action: string }>();
    expect(audit.results.map((a) => a.action)).toEqual(expect.arrayContaining(["credit_note.created", "customer.credit_granted"]));

    // The same line has 50.00 left: a second seat by quantity 2 is too much; what is left of the invoice is 55.00.
    const tooMuch = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 2 }], reason: "order_change" });
    expect(tooMuch.status).toBe(422);
    expect(tooMuch.body.errors[0]).toMatchObject({ path: "lines.0.quantity", message: expect.stringContaining("more than the 50.00 USD left") });
    const rest = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "50.00" }], reason: "order_change" });
    expect(rest.status).toBe(201);
    expect(rest.body).toMatchObject({ total: { amountMinor: 5500 }, tax: { amountMinor: 500 }, creditBalance: { amountMinor: 5500 }, refund: { amountMinor: 0 } });
    // Gap-free numbering: the next number.
    const n1 = Number(r.body.number.slice(-6));
    expect(rest.body.number).toBe(`${r.body.number.slice(0, 8)}${String(n1 + 1).padStart(6, "0")}`);
    const none = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "0.01" }], reason: "order_change" });
    expect(none.status).toBe(422);
    expect(none.body.errors[0].message).toContain("already fully credited");

    // Refunded money cannot be un-refunded: the first note stays; the second (credit only, unused) can be voided.
    const v1 = await call("POST", `/api/v1/credit-notes/${r.body.id}/void`, undefined, "finance");
    expect(v1.status).toBe(409);
    expect(v1.body.detail).toContain("a refund cannot be undone");
    const v2 = await call("POST", `/api/v1/credit-notes/${rest.body.id}/void`, undefined, "finance");
    expect(v2.status).toBe(200);
    expect(v2.body).toMatchObject({ status: "void" });
    expect((await call("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance.amountMinor).toBe(2500);
    expect(await eventsOf(rest.body.id)).toEqual(["credit_note.created", "credit_note.voided"]);
    expect((await call("POST", `/api/v1/credit-notes/${rest.body.id}/void`, undefined, "finance")).status).toBe(409);

    // Lists and the PDF.
    const list = await call("GET", `/api/v1/credit-notes?invoiceId=${invoice.id}`, undefined, "viewer");
    expect(list.body.data.map((n: any) => n.id)).toEqual([rest.body.id, r.body.id]);
    const pdf = await call("GET", `/api/v1/credit-notes/${r.body.id}/pdf`, undefined, "viewer");
    expect(pdf.status).toBe(200);
    expect(pdf.headers.get("content-type")).toBe("application/pdf");
    expect(pdf.text.startsWith("%PDF-")).toBe(true);
  }, 60_000);

  it("refuses a refund larger than the payment can give and the whole note while payments are frozen (423, nothing written)", async () => {
    const { invoice, line } = await taxedInvoice(true);
    await call("POST", "/admin/emergency/freeze-payments", { reason: "Security incident detected" });
    const frozen = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "duplicate", refund: { amount: "55.00" } });
    expect(frozen.status).toBe(423);
    expect(await countNotes(invoice.id)).toBe(0);
    await call("POST", "/admin/emergency/resume-payments");
    const split = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "duplicate", refund: { amount: "30.00" }, creditBalance: { amount: "30.00" } });
    expect(split.status).toBe(422);
    expect(split.body.detail).toContain("must equal the note's total 55.00 USD");
    expect(await countNotes(invoice.id)).toBe(0);
  }, 30_000);
});

describe("the refund of a credit note runs after the note committed", () => {
  /** Refunds the sandbox made for a charge: each is one call that reached the gateway and moved money. */
  const gatewayRefunds = async (gatewayPaymentId: string) =>
    (await env.DB.prepare("SELECT amount FROM sandbox_ledger WHERE kind = 'refund' AND charge_id = ?").bind(gatewayPaymentId).all<{ amount: number }>()).results;

  it("two notes racing for the same remaining amount: exactly one is issued and only its refund reaches the gateway", async () => {
    const { invoice, line } = await taxedInvoice(true);
    const payment = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
    // Each note credits the whole invoice (110.00), half refunded: the payment could give both refunds (55 + 55 ≤ 110),
    // only the invoice's creditable amount tells them apart.
    const body = { invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 2 }], reason: "duplicate", refund: { amount: "55.00" }, creditBalance: { amount: "55.00" } };
    const [a, b] = await Promise.all([createNote(body), createNote(body)]);
    expect(await gatewayRefunds(payment.gatewayPaymentId)).toEqual([{ amount: 5500 }]);
    expect([a.status, b.status].sort()).toEqual([201, 422]);
    const won = a.status === 201 ? a.body : b.body;
    const lost = a.status === 201 ? b.body : a.body;
    expect(lost.detail).toMatch(/already fully credited|remaining creditable amount/);
    expect(await countNotes(invoice.id)).toBe(1);
    const refunds = (await env.DB.prepare("SELECT id, status FROM refunds WHERE payment_id = ?").bind(payment.id).all<{ id: string; status: string }>()).results;
    expect(refunds).toEqual([{ id: won.refund.refundId, status: "succeeded" }]);
    expect((await call("GET", `/api/v1/payments/${payment.id}`)).body).toMatchObject({ amountRefundedMinor: 5500 });
  }, 60_000);

  it("a refund the gateway declines is recorded failed (the payment gets the amount back) and its note can be voided", async () => {
    const { customer, invoice, line } = await taxedInvoice(true);
    const payment = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
    // The gateway's own ledger says the charge was refunded elsewhere: it declines another refund.
    await env.DB.prepare("INSERT INTO sandbox_ledger (id, kind, idempotency_key, charge_id, amount, currency, status, failure_code, payment_method, created_at) VALUES (?, 'refund', ?, ?, 11000, 'USD', 'succeeded', NULL, NULL, ?)")
      .bind(unique("re_elsewhere"), unique("key"), payment.gatewayPaymentId, Date.now())
      .run();
    const r = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "duplicate", refund: { amount: "55.00" } });
    expect(r.status).toBe(201);
    expect((await call("GET", `/api/v1/refunds/${r.body.refund.refundId}`)).body).toMatchObject({ status: "failed" });
    expect((await call("GET", `/api/v1/payments/${payment.id}`)).body).toMatchObject({ amountRefundedMinor: 0 });
    const voided = await call("POST", `/api/v1/credit-notes/${r.body.id}/void`, undefined, "finance");
    expect(voided.status, JSON.stringify(voided.body)).toBe(200);
    expect(voided.body.status).toBe("void");
    expect((await call("GET", `/api/v1/customers/${customer.id}`)).body.creditBalance.amountMinor).toBe(0);
  }, 60_000);

  it("a gateway that does not answer leaves the note issued and its refund pending for the hourly sweep (same key, one refund)", async () => {
    const { invoice, line } = await taxedInvoice(true);
    const payment = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
    await env.DB.prepare("INSERT OR REPLACE INTO settings (key, value, updated_by, updated_at) VALUES ('gateways.sandbox.faults', '{\"failureRate\":1}', 'test', 0)").run();
    dropSettingsCache();
    let r;
    try {
      r = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "duplicate", refund: { amount: "55.00" } });
    } finally {
      await env.DB.prepare("DELETE FROM settings WHERE key = 'gateways.sandbox.faults'").run();
      dropSettingsCache();
    }
    expect(r.status).toBe(201);
    const refund = (await call("GET", `/api/v1/refunds/${r.body.refund.refundId}`)).body;
    expect(refund).toMatchObject({ status: "pending", amountMinor: 5500 });
    expect(await gatewayRefunds(payment.gatewayPaymentId)).toEqual([]);
    // The sweep (hourly cron) asks the gateway again with the refund's own key.
    const out = await settlePendingRefunds(servicesOf({ actor: systemActor("test"), now: Date.now() }), 0);
    expect(out.settled).toBeGreaterThanOrEqual(1);
    expect((await call("GET", `/api/v1/refunds/${r.body.refund.refundId}`)).body.status).toBe("succeeded");
    expect(await gatewayRefunds(payment.gatewayPaymentId)).toEqual([{ amount: 5500 }]);
  }, 60_000);
});

describe("credit notes on an open invoice", () => {
  it("take the total off the amount due, can be voided while the invoice is open, and a full credit pays it", async () => {
    const { invoice, line } = await taxedInvoice(false);
    const r = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "20.00" }], reason: "order_change" });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ total: { amountMinor: 2200 }, tax: { amountMinor: 200 }, invoiceCredit: { amountMinor: 2200 }, refund: { amountMinor: 0 }, creditBalance: { amountMinor: 0 } });
    expect((await call("GET", `/api/v1/invoices/${invoice.id}`)).body).toMatchObject({ status: "open", amountDue: { amount: "88.00" } });
    expect(await eventsOf(invoice.id)).toContain("invoice.updated");

    const refundOnOpen = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "1.00" }], reason: "order_change", refund: { amount: "1.10" } });
    expect(refundOnOpen.status).toBe(422);
    expect(refundOnOpen.body.errors[0].path).toBe("refund");

    const voided = await call("POST", `/api/v1/credit-notes/${r.body.id}/void`, undefined, "finance");
    expect(voided.status).toBe(200);
    expect((await call("GET", `/api/v1/invoices/${invoice.id}`)).body.amountDue.amount).toBe("110.00");

    const full = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 2 }], reason: "duplicate" });
    expect(full.status).toBe(201);
    expect(full.body.total.amount).toBe("110.00");
    expect((await call("GET", `/api/v1/invoices/${invoice.id}`)).body).toMatchObject({ status: "paid", amountDue: { amountMinor: 0 } });
    // Applied: the invoice is paid by it now, so the note cannot be voided.
    const late = await call("POST", `/api/v1/credit-notes/${full.body.id}/void`, undefined, "finance");
    expect(late.status).toBe(409);
    expect(late.body.detail).toContain("was applied");
  }, 30_000);

  it("the invoice says what is left to credit (creditable), in GET, lists and events, and the notes obey it", async () => {
    const { invoice, line } = await taxedInvoice(false);
    const usd = (minor: number) => ({ amount: (minor / 100).toFixed(2), amountMinor: minor, currency: "USD" });
    expect(invoice.creditable).toEqual({ total: usd(11000) });
    expect(invoice.lines[0].creditable).toEqual({ amount: usd(10000), tax: usd(1000) });
    const r = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "20.00" }], reason: "order_change" });
    expect(r.status).toBe(201);
    // 110.00 − 22.00 (20.00 + 2.00 tax) is left; on the line 80.00 and 8.00 of tax.
    const got = (await call("GET", `/api/v1/invoices/${invoice.id}`)).body;
    expect(got.creditable).toEqual({ total: usd(8800) });
    expect(got.lines[0].creditable).toEqual({ amount: usd(8000), tax: usd(800) });
    const listed = (await call("GET", `/api/v1/invoices?customerId=${invoice.customerId}`)).body.data.find((i: any) => i.id === invoice.id);
    expect(listed.creditable).toEqual({ total: usd(8800) });
    const updated = await env.DB.prepare("SELECT data FROM events WHERE object_id = ? AND type = 'invoice.updated' ORDER BY created_at DESC, rowid DESC LIMIT 1").bind(invoice.id).first<{ data: string }>();
    const object = JSON.parse(updated!.data).object;
    expect(object.creditable).toEqual({ total: usd(8800) });
    expect(object.lines[0].creditable).toEqual({ amount: usd(8000), tax: usd(800) });
    // One cent more than the line has left is refused, exactly what is left is taken.
    const over = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "80.01" }], reason: "order_change" });
    expect(over.status).toBe(422);
    expect(over.body.errors[0].message).toContain("80.00 USD left to credit");
    expect((await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "80.00" }], reason: "order_change" })).status).toBe(201);
    const after = (await call("GET", `/api/v1/invoices/${invoice.id}`)).body;
    expect(after).toMatchObject({ status: "paid", creditable: { total: usd(0) } });
    expect(after.lines[0].creditable).toEqual({ amount: usd(0), tax: usd(0) });
  }, 30_000);

  it("a charge after a partial note pays what is left, and its invoice.paid event says what is left to credit", async () => {
    const { invoice, line } = await taxedInvoice(false);
    const usd = (minor: number) => ({ amount: (minor / 100).toFixed(2), amountMinor: minor, currency: "USD" });
    expect((await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "20.00" }], reason: "order_change" })).status).toBe(201);
    await attempt(invoice.id);
    const paid = await env.DB.prepare("SELECT data FROM events WHERE object_id = ? AND type = 'invoice.paid'").bind(invoice.id).first<{ data: string }>();
    const object = JSON.parse(paid!.data).object;
    // Paid 88.00 (110.00 less the note's 22.00): what is left to credit is the paid amount, 80.00 + 8.00 on the line.
    expect(object).toMatchObject({ status: "paid", amountPaid: { amountMinor: 8800 }, creditable: { total: usd(8800) } });
    expect(object.lines[0].creditable).toEqual({ amount: usd(8000), tax: usd(800) });
  }, 30_000);

  it("refuses drafts, void invoices, unknown lines and roles without finance access", async () => {
    const { invoice, line } = await taxedInvoice(false);
    expect((await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: "il_nope", amount: 1 }], reason: "duplicate" })).body.errors[0]).toMatchObject({ path: "lines.0.invoiceLineId" });
    expect((await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: 1 }], reason: "duplicate" }, "support")).status).toBe(403);
    expect((await createNote({ invoiceId: "inv_missing", lines: [{ invoiceLineId: line.id, amount: 1 }], reason: "duplicate" })).status).toBe(404);
    await call("POST", `/api/v1/invoices/${invoice.id}/void`, { reason: "mistake" });
    const onVoid = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: 1 }], reason: "duplicate" });
    expect(onVoid.status).toBe(409);
    expect(onVoid.body.detail).toContain("credit notes apply to open or paid invoices");
  });

  it("the paid-invoice void error points at the credit note route", async () => {
    const { invoice } = await taxedInvoice(true);
    const r = await call("POST", `/api/v1/invoices/${invoice.id}/void`, { reason: "too late" });
    expect(r.status).toBe(409);
    expect(r.body.detail).toContain("POST /api/v1/credit-notes");
  });
});

describe("credit notes on an archived invoice", () => {
  it("work like on any finalized invoice (Stripe's rule): the archived lines are read back from R2", async () => {
    const { invoice, line } = await taxedInvoice(true);
    const old = Date.now() - 400 * 86_400_000;
    await env.DB.prepare("UPDATE invoices SET created_at = ?, finalized_at = ?, paid_at = ? WHERE id = ?").bind(old, old, old, invoice.id).run();
    const archived = await call("POST", "/admin/invoices/archive", { olderThan: new Date(old + 86_400_000).toISOString().slice(0, 10) });
    expect(archived.body.invoiceIds).toContain(invoice.id);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM invoice_lines WHERE invoice_id = ?").bind(invoice.id).first<{ n: number }>())!.n).toBe(0);

    const r = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "order_change", refund: { amount: "55.00" } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ total: { amountMinor: 5500 }, tax: { amountMinor: 500 }, refund: { amountMinor: 5500 }, lines: [{ invoiceLineId: line.id, description: line.description }] });
    // What is left on the archived line is known too.
    const tooMuch = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, amount: "50.01" }], reason: "order_change" });
    expect(tooMuch.status).toBe(422);
    expect(tooMuch.body.errors[0].message).toContain("more than the 50.00 USD left");
  }, 60_000);
});

describe("reports account for credit notes", () => {
  it("revenue is net of the note, the tax report nets it out in its period, reconciliation lists its refund and non-cash part", async () => {
    const { customer, invoice, line } = await taxedInvoice(true);
    const note = await createNote({ invoiceId: invoice.id, lines: [{ invoiceLineId: line.id, quantity: 1 }], reason: "order_change", refund: { amount: "30.00" } });
    expect(note.status).toBe(201);

    const breakdown = await call("GET", "/api/v1/analytics/revenue/breakdown?groupBy=customer&period=month&limit=1000", undefined, "finance");
    expect(breakdown.body.groups.find((g: any) => g.key === customer.id)).toMatchObject({ invoiced: { amount: "55.00" }, collected: { amount: "110.00" } });

    // The invoice's billing period ends next month; the note is issued this month: this month's report holds only the note, negative.
    const month = new Date().toISOString().slice(0, 7);
    const tax = await call("POST", "/api/v1/tax/report", { period: month, jurisdiction: invoice.taxJurisdiction, format: "json" }, "finance");
    expect(tax.status).toBe(200);
    expect(tax.body.rows).toEqual([expect.objectContaining({ jurisdiction: invoice.taxJurisdiction, currency: "USD", invoiceCount: 0, taxableAmount: { amount: "-50.00", amountMinor: -5000 }, tax: { amount: "-5.00", amountMinor: -500 } })]);

    const rec = await call("GET", `/api/v1/reconciliation/stripe/${new Date().toISOString().slice(0, 10)}?gateway=sandbox`, undefined, "finance");
    expect(rec.status).toBe(200);
    expect(rec.body.creditNotes.USD.issued).toBeGreaterThanOrEqual(1);
    expect(rec.body.creditNotes.USD.refunded.amountMinor).toBeGreaterThanOrEqual(3000);
    expect(rec.body.creditNotes.USD.nonCash.amountMinor).toBeGreaterThanOrEqual(2500);
    expect(rec.body.creditNotes.USD.unmatchedRefundIds).toEqual([]);
  }, 60_000);
});
