import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import { and, eq, sql } from "drizzle-orm";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import entry from "../../src/index";
import type { AuditContext } from "../../src/platform/audit";
import { isAssertionFailure } from "../../src/db/assert";
import { dbOf } from "../../src/db/client";
import { events, invoices, invoiceStatuses, payments, paymentStatuses, type InvoiceStatus, type PaymentStatus } from "../../src/db/schema";
import { IllegalTransition } from "../../src/domain/lifecycle";
import { newId } from "../../src/lib/ids";
import { commit, type ChangeSet } from "../../src/platform/change-set";
import { finalizeInvoice } from "../../src/modules/invoices/finalize";
import { invoiceLifecycle, invoiceMarkedUncollectible, invoicePaid, invoicePaymentFailed, invoiceVoided } from "../../src/modules/invoices/lifecycle";
import { paymentFailed, paymentLifecycle, paymentParked, paymentProcessing, paymentSucceeded, releaseParkedPage } from "../../src/modules/payments/lifecycle";
import { api, createCustomer, servicesOf, tokenFor, unique } from "../helpers";

type InvoiceRow = typeof invoices.$inferSelect;
const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue">> = entry;
const ctx = (): AuditContext => ({ actor: { id: "test-lifecycle", kind: "user", role: "admin", scopes: [] }, now: Date.now(), requestId: "req_lifecycle" });

// The declared tables, restated here: a change to either is a decision, and this test makes it visible.
const INVOICE_EDGES: Record<InvoiceStatus, InvoiceStatus[]> = {
  draft: ["open", "paid", "void"],
  open: ["paid", "void", "uncollectible"],
  uncollectible: ["paid", "void"],
  paid: [],
  void: [],
};
const PAYMENT_EDGES: Record<PaymentStatus, PaymentStatus[]> = {
  pending: ["parked", "processing", "succeeded", "failed"],
  parked: ["pending", "processing"],
  processing: ["succeeded", "failed"],
  failed: ["succeeded"],
  succeeded: [],
  canceled: [],
};
const pairs = <S extends string>(states: readonly S[]) => states.flatMap((from) => states.filter((to) => to !== from).map((to) => [from, to] as [S, S]));

describe("transition tables", () => {
  it.each(pairs(invoiceStatuses))("invoice %s → %s is allowed exactly when declared", (from, to) => {
    const legal = INVOICE_EDGES[from].includes(to);
    expect(invoiceLifecycle.canMove(from, to)).toBe(legal);
    if (legal) expect(() => invoiceLifecycle.assertMove("inv_x", from, to)).not.toThrow();
    else expect(() => invoiceLifecycle.assertMove("inv_x", from, to)).toThrow(IllegalTransition);
  });

  it.each(pairs(paymentStatuses))("payment %s → %s is allowed exactly when declared", (from, to) => {
    const legal = PAYMENT_EDGES[from].includes(to);
    expect(paymentLifecycle.canMove(from, to)).toBe(legal);
    if (!legal) expect(() => paymentLifecycle.assertMove("pay_x", from, to)).toThrow(IllegalTransition);
  });

  it("paid and void invoices, succeeded and canceled payments are terminal", () => {
    expect(invoiceLifecycle.terminal().sort()).toEqual(["paid", "void"]);
    expect(paymentLifecycle.terminal().sort()).toEqual(["canceled", "succeeded"]);
  });
});

/** An invoice row in any state, for a customer that exists (total 2500, nothing paid yet). */
async function invoiceIn(status: InvoiceStatus, over: Partial<InvoiceRow> = {}): Promise<InvoiceRow> {
  const customer = await createCustomer();
  const now = Date.now();
  const row: InvoiceRow = {
    id: newId("inv"),
    number: status === "draft" ? null : unique("INV-T"),
    customerId: customer.id,
    subscriptionId: null,
    status,
    billingReason: "manual",
    currency: "USD",
    periodStart: now,
    periodEnd: now,
    subtotal: 2500,
    discount: 0,
    tax: 0,
    total: 2500,
    amountPaid: status === "paid" ? 2500 : 0,
    creditApplied: 0,
    amountDue: status === "paid" || status === "void" ? 0 : 2500,
    taxJurisdiction: null,
    taxRate: null,
    dueAt: null,
    finalizedAt: status === "draft" ? null : now,
    paidAt: status === "paid" ? now : null,
    voidedAt: null,
    voidReason: null,
    attemptCount: 0,
    lastError: null,
    generationKey: newId("gen"),
    archiveKey: null,
    archivedAt: null,
    testClockId: null,
    hostedToken: null,
    createdAt: now,
    updatedAt: now,
    ...over,
  };
  await dbOf(env).insert(invoices).values(row);
  return row;
}

const reload = async (id: string) => (await dbOf(env).select().from(invoices).where(eq(invoices.id, id)).get())!;
const eventsOf = (id: string) => dbOf(env).select().from(events).where(eq(events.objectId, id)).orderBy(sql`rowid`).all();
const finalizeEnv = () => ({ ...env, PAYMENT_QUEUE: { send: async () => undefined, sendBatch: async () => undefined } }) as unknown as Env;

/** Moves the invoice to `to` through its owner, as the engine does; resolves to the change committed (or throws). */
async function moveTo(inv: InvoiceRow, to: InvoiceStatus): Promise<void> {
  const db = dbOf(env);
  const c = ctx();
  let cs: ChangeSet;
  if (to === "open" || (to === "paid" && inv.status === "draft")) {
    if (to === "paid") await db.update(invoices).set({ amountDue: 0, total: 0, subtotal: 0 }).where(eq(invoices.id, inv.id));
    invoiceLifecycle.assertMove(inv.id, inv.status, to);
    await finalizeInvoice(servicesOf(c, finalizeEnv()), inv.id);
    return;
  }
  if (to === "paid") cs = await invoicePaid(db, inv, { id: newId("pay"), amount: inv.amountDue, attempt: 1 }, c);
  else if (to === "void") cs = (await invoiceVoided(db, inv, "test", c)).change;
  else if (to === "uncollectible") cs = await invoiceMarkedUncollectible(db, inv, "test", c);
  else throw new IllegalTransition("invoice", inv.id, inv.status, to);
  await commit(db, cs, c);
}

const EVENT_OF: Record<InvoiceStatus, string[]> = { draft: [], open: ["invoice.finalized"], paid: ["invoice.paid"], void: ["invoice.voided"], uncollectible: ["invoice.marked_uncollectible"] };

describe("invoice transitions against D1", () => {
  const legal = pairs(invoiceStatuses).filter(([f, t]) => INVOICE_EDGES[f].includes(t));
  const illegal = pairs(invoiceStatuses).filter(([f, t]) => !INVOICE_EDGES[f].includes(t));

  it.each(legal)("%s → %s moves the invoice and emits its event with the REST object", async (from, to) => {
    const inv = await invoiceIn(from);
    await moveTo(inv, to);
    const after = await reload(inv.id);
    expect(after.status).toBe(to);
    const evs = await eventsOf(inv.id);
    const expected = from === "draft" && to === "paid" ? ["invoice.finalized", "invoice.paid"] : EVENT_OF[to];
    expect(evs.map((e) => e.type)).toEqual(expected);
    const body = (await api("GET", `/api/v1/invoices/${inv.id}`)).body;
    expect(evs.at(-1)!.data.object).toEqual(body);
    expect(evs.at(-1)!.data.previousAttributes).toMatchObject({ status: from });
    expect(evs.at(-1)!.customerId).toBe(inv.customerId);
  });

  it.each(illegal)("%s → %s is refused: the invoice and the event stream stay as they were", async (from, to) => {
    const inv = await invoiceIn(from);
    // A payment that lands on a paid or void invoice is recorded on the payment alone: the invoice owner gives back
    // no change rather than refusing (the money moved). Every other illegal move throws IllegalTransition.
    const settledElsewhere = to === "paid" && (from === "void" || from === "paid");
    if (settledElsewhere) await moveTo(inv, to);
    else await expect(moveTo(inv, to)).rejects.toThrow(IllegalTransition);
    expect(await reload(inv.id)).toEqual(inv);
    expect(await eventsOf(inv.id)).toEqual([]);
  });

  it("through the API: voiding a paid or a void invoice is 409 problem+json naming its state", async () => {
    for (const status of ["paid", "void"] as const) {
      const inv = await invoiceIn(status);
      const r = await fetchRaw("POST", `/api/v1/invoices/${inv.id}/void`, { reason: "mistake" });
      expect(r.status).toBe(409);
      expect(r.headers.get("content-type")).toContain("application/problem+json");
      expect(r.body.detail).toContain(`is ${status}`);
      expect(r.body.errors).toEqual([{ path: "status", message: `is ${status}` }]);
    }
  });

  it("through the API: voiding an uncollectible invoice works and emits invoice.voided", async () => {
    const inv = await invoiceIn("uncollectible");
    const r = await api("POST", `/api/v1/invoices/${inv.id}/void`, { body: { reason: "written off by mistake" } });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("void");
    expect((await eventsOf(inv.id)).map((e) => e.type)).toEqual(["invoice.voided"]);
  });
});

describe("payment transitions against D1", () => {
  type PaymentRow = typeof payments.$inferSelect;
  async function paymentIn(status: PaymentStatus): Promise<PaymentRow> {
    const inv = await invoiceIn("open");
    const now = Date.now();
    const row: PaymentRow = { id: newId("pay"), invoiceId: inv.id, customerId: inv.customerId, attempt: 1, amount: 2500, currency: "USD", status, gateway: "sandbox", gatewayPaymentId: null, paymentMethod: "pm_card_visa", idempotencyKey: newId("key"), failureCode: null, failureMessage: null, amountRefunded: 0, nextRetryAt: null, latencyMs: null, createdAt: now, updatedAt: now };
    await dbOf(env).insert(payments).values(row);
    return row;
  }
  const movePayment = async (p: PaymentRow, to: PaymentStatus) => {
    const db = dbOf(env);
    const c = ctx();
    if (to === "pending") return void (await releaseParkedPage(db, 100, c.now));
    const cs =
      to === "processing" ? paymentProcessing(db, p, { paymentMethod: p.paymentMethod, gateway: p.gateway }, c)
      : to === "parked" ? paymentParked(db, p, c)
      : to === "succeeded" ? paymentSucceeded(db, p, { gatewayPaymentId: "ch_test" }, c)
      : to === "failed" ? paymentFailed(db, p, { failureCode: "card_declined", failureMessage: "declined" }, c)
      : (() => { throw new IllegalTransition("payment", p.id, p.status, to); })();
    await commit(db, cs.change, c);
  };
  const legal = pairs(paymentStatuses).filter(([f, t]) => PAYMENT_EDGES[f].includes(t));
  const illegal = pairs(paymentStatuses).filter(([f, t]) => !PAYMENT_EDGES[f].includes(t) && t !== "pending");

  it.each(legal)("%s → %s moves the payment; a settled one emits its payment.* event with the REST object", async (from, to) => {
    const p = await paymentIn(from);
    await movePayment(p, to);
    const after = (await dbOf(env).select().from(payments).where(eq(payments.id, p.id)).get())!;
    expect(after.status).toBe(to);
    const evs = await eventsOf(p.id);
    expect(evs.map((e) => e.type)).toEqual(to === "succeeded" ? ["payment.succeeded"] : to === "failed" ? ["payment.failed"] : []);
    if (evs.length) {
      expect(evs[0]!.data.object).toEqual((await api("GET", `/api/v1/payments/${p.id}`)).body);
      expect(evs[0]!.data.previousAttributes).toEqual({ status: from });
    }
  });

  it.each(illegal)("%s → %s is refused and changes nothing", async (from, to) => {
    const p = await paymentIn(from);
    await expect(movePayment(p, to)).rejects.toThrow(IllegalTransition);
    expect(await dbOf(env).select().from(payments).where(eq(payments.id, p.id)).get()).toEqual(p);
    expect(await eventsOf(p.id)).toEqual([]);
  });

  it("only parked payments are released to pending", async () => {
    const others = await Promise.all((["processing", "failed", "succeeded"] as const).map(paymentIn));
    await releaseParkedPage(dbOf(env), 100, Date.now());
    for (const p of others) expect((await dbOf(env).select().from(payments).where(eq(payments.id, p.id)).get())!.status).toBe(p.status);
  });
});

async function fetchRaw(method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${await tokenFor("admin")}`, "content-type": "application/json" };
  const c = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }), env, c);
  await waitOnExecutionContext(c);
  return { status: res.status, headers: res.headers, body: await res.json<any>() };
}

describe("property: random operations on an invoice keep its invariants", () => {
  type Op = "pay" | "void" | "uncollectible" | "fail";
  it("a paid invoice never changes amount, amountPaid ≤ total, one invoice.paid per paid invoice, no event without its change", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom<Op>("pay", "void", "uncollectible", "fail"), { minLength: 1, maxLength: 6 }), fc.boolean(), async (ops, fromDraft) => {
        const db = dbOf(env);
        let inv = await invoiceIn(fromDraft ? "draft" : "open");
        if (fromDraft) {
          await finalizeInvoice(servicesOf(ctx(), finalizeEnv()), inv.id);
          inv = await reload(inv.id);
        }
        let attempt = 0;
        for (const op of ops) {
          const before = await reload(inv.id);
          const eventsBefore = (await eventsOf(inv.id)).length;
          const c = ctx();
          try {
            const cs =
              op === "pay"
                ? await invoicePaid(db, before, { id: newId("pay"), amount: before.amountDue, attempt: ++attempt }, c)
                : op === "fail"
                  ? await invoicePaymentFailed(db, before, { attempt: ++attempt, error: "card_declined: declined" }, c)
                  : op === "void"
                    ? (await invoiceVoided(db, before, "prop", c)).change
                    : await invoiceMarkedUncollectible(db, before, "prop", c);
            await commit(db, cs, c);
          } catch (e) {
            if (!(e instanceof IllegalTransition) && !isAssertionFailure(e)) throw e;
          }
          const after = await reload(inv.id);
          const evs = await eventsOf(inv.id);
          // No event without its change, no change without its event.
          const changed = after.status !== before.status || after.attemptCount !== before.attemptCount || after.lastError !== before.lastError;
          expect(evs.length - eventsBefore).toBe(changed ? 1 : 0);
          if (before.status === "paid") expect(after).toEqual(before);
          expect(after.amountPaid).toBeLessThanOrEqual(after.total);
          expect(invoiceLifecycle.states).toContain(after.status);
          if (after.status !== before.status) expect(invoiceLifecycle.canMove(before.status, after.status)).toBe(true);
        }
        const final = await reload(inv.id);
        const paidEvents = (await eventsOf(inv.id)).filter((e) => e.type === "invoice.paid");
        expect(paidEvents).toHaveLength(final.status === "paid" ? 1 : 0);
        if (final.status === "paid") expect(final.amountPaid).toBe(final.total);
        else expect(final.amountPaid).toBe(0);
      }),
      { numRuns: 30 },
    );
  }, 120_000);
});

describe("a subscription's first invoice, end to end", () => {
  it("emits invoice.created, invoice.finalized, invoice.paid, payment.succeeded in that order, each object as the REST API shows it", async () => {
    const sent: unknown[] = [];
    const spy = { send: async (b: unknown) => void sent.push(b), sendBatch: async (m: { body: unknown }[]) => void sent.push(...m.map((x) => x.body)) } as unknown as Queue;
    const testEnv = { ...env, PAYMENT_QUEUE: spy } as Env;
    const call = async (method: string, path: string, body?: unknown) => {
      const c = createExecutionContext();
      const res = await worker.fetch(
        new Request(`http://localhost${path}`, { method, headers: { authorization: `Bearer ${await tokenFor("admin")}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) }),
        testEnv,
        c,
      );
      await waitOnExecutionContext(c);
      return { status: res.status, body: await res.json<any>() };
    };
    const customer = await call("POST", "/api/v1/customers", { email: `${unique("lc")}@example.com`, currency: "USD" });
    const plan = await call("POST", "/api/v1/plans", { name: "Lifecycle", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "25.00" }] });
    const sub = await call("POST", "/api/v1/subscriptions", { customerId: customer.body.id, planId: plan.body.id, paymentMethod: "pm_card_visa" });
    expect(sub.status).toBe(201);
    const invoice = (await call("GET", `/api/v1/invoices?subscriptionId=${sub.body.id}`)).body.data[0];
    expect(sent).toContainEqual({ type: "payment.attempt", invoiceId: invoice.id, attempt: 1 });

    const batch = createMessageBatch("billing-payments", [{ id: unique("m"), timestamp: new Date(), attempts: 1, body: { type: "payment.attempt", invoiceId: invoice.id, attempt: 1 } }]);
    const c = createExecutionContext();
    await worker.queue(batch, testEnv, c);
    expect((await getQueueResult(batch, c)).explicitAcks).toHaveLength(1);

    const payment = (await call("GET", `/api/v1/payments?invoiceId=${invoice.id}`)).body.data[0];
    const rows = await dbOf(env)
      .select()
      .from(events)
      .where(and(sql`${events.objectId} IN (${invoice.id}, ${payment.id})`))
      .orderBy(sql`rowid`)
      .all();
    expect(rows.map((r) => r.type)).toEqual(["invoice.created", "invoice.finalized", "invoice.paid", "payment.succeeded"]);
    const body = (await call("GET", `/api/v1/invoices/${invoice.id}`)).body;
    expect(body.status).toBe("paid");
    // The hosted link is made in the finalizing batch: events carry the same hostedUrl as GET (a draft has none).
    expect(body.hostedUrl).toMatch(/^\/i\/[0-9a-f]{64}$/);
    expect(rows[2]!.data.object).toEqual(body);
    expect(rows[2]!.data.previousAttributes).toMatchObject({ status: "open" });
    // The earlier events carry the same object as it was then: same shape, the states it passed through.
    // A draft has nothing to credit yet (credit notes apply to open or paid invoices).
    const zero = { amount: "0.00", amountMinor: 0, currency: "USD" };
    const draftLines = body.lines.map((l: any) => ({ ...l, creditable: { amount: zero, tax: zero } }));
    expect(rows[0]!.data.object).toEqual({ ...body, hostedUrl: null, pdfUrl: null, status: "draft", number: null, finalizedAt: null, dueAt: null, paidAt: null, amountPaid: { amount: "0.00", amountMinor: 0 }, amountDue: body.total, attemptCount: 0, creditable: { total: zero }, lines: draftLines });
    expect(rows[1]!.data.object).toEqual({ ...body, status: "open", paidAt: null, dueAt: expect.any(String), amountPaid: { amount: "0.00", amountMinor: 0 }, amountDue: body.total, attemptCount: 0 });
    expect(rows[3]!.data.object).toEqual((await call("GET", `/api/v1/payments/${payment.id}`)).body);
    expect(rows.every((r) => r.customerId === customer.body.id)).toBe(true);
  });
});

// Who may write each status column is checked for all owners in test/architecture.test.ts.
