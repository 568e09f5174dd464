import { and, asc, eq, gt, inArray, isNull, lte, or, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { assertChanged } from "../../db/assert";
import { creditGrants, creditLedger, customers, type creditGrantStatuses } from "../../db/schema";
import { allocateCredits, type CreditableLine } from "../../domain/credits";
import { money } from "../../domain/money";
import { eventInsert, eventInsertIfChanged, eventRow, type EventDraft } from "../../platform/events";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";

export type GrantRow = typeof creditGrants.$inferSelect;
export type LedgerRow = typeof creditLedger.$inferSelect;
type GrantStatus = (typeof creditGrantStatuses)[number];
type Ctx = Pick<AuditContext, "now" | "requestId">;

/** Statements for the caller's batch, the audit rows that go with them, and the events they insert (for delivery after commit). */
export type CreditChange = { statements: BatchItem<"sqlite">[]; audit: AuditEntry[]; eventIds: string[] };
const empty = (): CreditChange => ({ statements: [], audit: [], eventIds: [] });

/**
 * The credit grant lifecycle (owner: this file; only it writes `credit_grants.status`): pending → active (its
 * purchase invoice paid) | voided (that invoice voided, or voided by hand); active → expired (its expiry
 * processed) | voided. Expired and voided are terminal; their remaining credit leaves the balance as a movement.
 */
export const grantMoves: Record<GrantStatus, GrantStatus[]> = { pending: ["active", "voided"], active: ["expired", "voided"], expired: [], voided: [] };

export function toGrant(r: GrantRow, now: number) {
  return {
    id: r.id,
    object: "credit_grant" as const,
    customerId: r.customerId,
    name: r.name,
    category: r.category,
    source: r.source,
    sourceId: r.sourceId,
    amount: money(r.amount, r.currency),
    remaining: money(r.remaining, r.currency),
    priority: r.priority,
    expiresAt: iso(r.expiresAt),
    appliesTo: r.appliesToMeterIds ? { meterIds: r.appliesToMeterIds } : null,
    status: r.status,
    usable: r.status === "active" && (r.expiresAt === null || r.expiresAt > now) && r.remaining > 0,
    purchaseInvoiceId: r.purchaseInvoiceId,
    metadata: r.metadata,
    voidedAt: iso(r.voidedAt),
    expiredAt: iso(r.expiredAt),
    createdAt: iso(r.createdAt),
  };
}

export function toTransaction(r: LedgerRow) {
  return { id: r.id, object: "credit_balance_transaction" as const, customerId: r.customerId, grantId: r.grantId, type: r.type, amount: money(r.amount, r.currency), invoiceId: r.invoiceId, at: iso(r.at), createdAt: iso(r.createdAt) };
}

const grantEvent = (type: "billing.credit_grant.created" | "billing.credit_grant.updated", g: GrantRow, prev: Record<string, unknown> | null, now: number): EventDraft => ({
  type,
  objectType: "credit_grant",
  objectId: g.id,
  customerId: g.customerId,
  object: toGrant(g, now),
  previousAttributes: prev,
  ...(g.testClockId ? { livemode: false } : {}),
});

const movementEvent = (m: LedgerRow, testClockId: string | null): EventDraft => ({
  type: "billing.credit_balance_transaction.created",
  objectType: "credit_balance_transaction",
  objectId: m.id,
  customerId: m.customerId,
  object: toTransaction(m),
  ...(testClockId ? { livemode: false } : {}),
});

let movementSeq = 0;
/**
 * Movement ids sort in the order they were made (wall-clock ms, then a counter, then randomness): the ledger lists
 * newest first by (createdAt, id), and on a test clock many movements share one createdAt.
 */
const movementId = () => `cbt_${Date.now().toString(36).padStart(9, "0")}${(movementSeq++ % 1296).toString(36).padStart(2, "0")}${newId("x", 10).slice(2)}`;

const movement = (g: Pick<GrantRow, "id" | "customerId" | "currency">, type: LedgerRow["type"], amount: number, at: number, now: number, invoiceId: string | null = null): LedgerRow => ({
  id: movementId(),
  customerId: g.customerId,
  grantId: g.id,
  type,
  amount,
  currency: g.currency,
  invoiceId,
  at,
  createdAt: now,
});

/**
 * Keeps `customers.credit_balance` (the customer object's `creditBalance`) equal to the credit its active grants
 * hold: recomputed in every batch that moves credit, so it cannot drift.
 */
export const syncBalance = (db: Db, customerId: string): BatchItem<"sqlite"> =>
  db
    .update(customers)
    .set({ creditBalance: sql`(SELECT coalesce(sum(${creditGrants.remaining}), 0) FROM ${creditGrants} WHERE ${creditGrants.customerId} = ${customerId} AND ${creditGrants.status} = 'active')` })
    .where(eq(customers.id, customerId));

/** Inserts a movement and its event (unconditionally). */
function movementStatements(db: Db, m: LedgerRow, testClockId: string | null, ctx: Ctx, out: CreditChange) {
  const ev = eventRow(movementEvent(m, testClockId), ctx);
  out.statements.push(db.insert(creditLedger).values(m), eventInsert(db, ev));
  out.eventIds.push(ev.id);
}

/** Inserts a movement and its event only if, when the batch runs, the grant's status is `status`. */
function movementIfGrantIs(db: Db, m: LedgerRow, status: GrantStatus, testClockId: string | null, ctx: Ctx, out: CreditChange) {
  const ev = eventRow(movementEvent(m, testClockId), ctx);
  out.statements.push(
    db
      .insert(creditLedger)
      .select(
        sql`SELECT ${m.id}, ${m.customerId}, ${m.grantId}, ${m.type}, ${m.amount}, ${m.currency}, ${m.invoiceId}, ${m.at}, ${m.createdAt} WHERE EXISTS (SELECT 1 FROM ${creditGrants} WHERE ${creditGrants.id} = ${m.grantId} AND ${creditGrants.status} = ${status})`,
      ),
    eventInsertIfChanged(db, ev),
  );
  out.eventIds.push(ev.id);
}

export type GrantInput = {
  customerId: string;
  currency: string;
  amount: number;
  category: "paid" | "promotional";
  /** `api`, `invoice_balance` (a negative invoice's total), `credit_note` (the documents' credit notes). */
  source: string;
  sourceId?: string | null;
  name?: string | null;
  priority?: number;
  expiresAt?: number | null;
  appliesToMeterIds?: string[] | null;
  /** A paid grant waiting for this invoice: pending until it is paid. */
  purchaseInvoiceId?: string | null;
  testClockId?: string | null;
  metadata?: Record<string, string>;
};

/**
 * The one way credit is added to a customer (API grants, a negative invoice's total, a credit note's credit
 * balance): a new grant and, when usable at once, its `granted` movement, the events, the audit row and the
 * customer's balance, all for the caller's batch.
 */
export function grantCredit(db: Db, input: GrantInput, ctx: Ctx): CreditChange & { grant: GrantRow } {
  const pending = !!input.purchaseInvoiceId;
  const grant: GrantRow = {
    id: newId("cgr"),
    customerId: input.customerId,
    currency: input.currency,
    category: input.category,
    source: input.source,
    name: input.name ?? null,
    amount: input.amount,
    remaining: input.amount,
    priority: input.priority ?? (input.source === "api" ? 50 : 100),
    expiresAt: input.expiresAt ?? null,
    appliesToMeterIds: input.appliesToMeterIds ?? null,
    status: pending ? "pending" : "active",
    purchaseInvoiceId: input.purchaseInvoiceId ?? null,
    sourceId: input.sourceId ?? null,
    testClockId: input.testClockId ?? null,
    metadata: input.metadata ?? {},
    voidedAt: null,
    expiredAt: null,
    createdAt: ctx.now,
    updatedAt: ctx.now,
  };
  const out = empty();
  const created = eventRow(grantEvent("billing.credit_grant.created", grant, null, ctx.now), ctx);
  out.statements.push(db.insert(creditGrants).values(grant), eventInsert(db, created));
  out.eventIds.push(created.id);
  if (!pending) movementStatements(db, movement(grant, "granted", grant.amount, ctx.now, ctx.now), grant.testClockId, ctx, out);
  out.statements.push(syncBalance(db, grant.customerId));
  out.audit.push({ action: "credit_grant.created", targetType: "credit_grant", targetId: grant.id, after: { customerId: grant.customerId, amountMinor: grant.amount, currency: grant.currency, category: grant.category, source: grant.source, status: grant.status } });
  return { ...out, grant };
}

/** Active grants of a customer usable at `at` (not expired by then), with credit left. */
export async function usableGrants(db: Db, customerId: string, currency: string, at: number): Promise<GrantRow[]> {
  return db
    .select()
    .from(creditGrants)
    .where(
      and(
        eq(creditGrants.customerId, customerId),
        eq(creditGrants.currency, currency),
        eq(creditGrants.status, "active"),
        gt(creditGrants.remaining, 0),
        or(isNull(creditGrants.expiresAt), gt(creditGrants.expiresAt, at)),
      ),
    )
    .all();
}

/**
 * Credit an invoice uses before charging (grants by priority, then earliest expiry, each within its meter scope;
 * see allocateCredits): per grant a guarded decrement (two invoices racing for the same credit cannot both spend
 * it: the loser's batch aborts) and an `applied` movement naming the invoice, for the invoice's own batch.
 */
export async function applyCredits(
  db: Db,
  input: { customerId: string; currency: string; invoiceId: string; at: number; lines: CreditableLine[]; total: number; testClockId: string | null; hasCredit?: boolean },
  ctx: Ctx,
): Promise<CreditChange & { applied: number }> {
  const out = empty();
  if (input.total <= 0 || input.hasCredit === false) return { ...out, applied: 0 };
  const grants = await usableGrants(db, input.customerId, input.currency, input.at);
  const allocation = allocateCredits(input.lines, input.total, grants);
  let applied = 0;
  for (const a of allocation) {
    const g = grants.find((x) => x.id === a.grantId)!;
    out.statements.push(
      db
        .update(creditGrants)
        .set({ remaining: sql`${creditGrants.remaining} - ${a.amount}`, updatedAt: ctx.now })
        .where(and(eq(creditGrants.id, g.id), eq(creditGrants.status, "active"), sql`${creditGrants.remaining} >= ${a.amount}`)),
      assertChanged(db),
    );
    movementStatements(db, movement(g, "applied", -a.amount, input.at, ctx.now, input.invoiceId), input.testClockId, ctx, out);
    applied += a.amount;
  }
  if (applied > 0) {
    out.statements.push(syncBalance(db, input.customerId));
    out.audit.push({ action: "customer.credit_applied", targetType: "customer", targetId: input.customerId, after: { invoiceId: input.invoiceId, amountMinor: applied, currency: input.currency, grants: allocation } });
  }
  return { ...out, applied };
}

/**
 * A voided invoice gives back the credit it used: to each grant it came from (a `returned` movement; a grant
 * voided or expired meanwhile keeps it out of the balance), or, for an invoice from before grants existed, as a
 * new grant. For the void's batch, after its status guard (so it happens exactly once).
 */
export async function returnCredits(db: Db, inv: { id: string; customerId: string; currency: string; creditApplied: number; testClockId: string | null }, ctx: Ctx): Promise<CreditChange> {
  const out = empty();
  if (inv.creditApplied <= 0) return out;
  const rows = await db.select().from(creditLedger).where(eq(creditLedger.invoiceId, inv.id)).all();
  const net = new Map<string, number>();
  for (const r of rows) if (r.type === "applied" || r.type === "returned") net.set(r.grantId, (net.get(r.grantId) ?? 0) - r.amount);
  const grants = await grantsByIds(db, [...net.keys()]);
  let returned = 0;
  for (const [grantId, amount] of net) {
    if (amount <= 0) continue;
    const g = grants.find((x) => x.id === grantId);
    const ref = { id: grantId, customerId: inv.customerId, currency: inv.currency };
    movementStatements(db, movement(ref, "returned", amount, ctx.now, ctx.now, inv.id), inv.testClockId, ctx, out);
    if (g?.status === "active") {
      out.statements.push(db.update(creditGrants).set({ remaining: sql`${creditGrants.remaining} + ${amount}`, updatedAt: ctx.now }).where(and(eq(creditGrants.id, grantId), eq(creditGrants.status, "active"))));
      // Read active, but an expiry or void may commit before this batch: then the UPDATE above restores nothing, and
      // the credit leaves again in the same batch (decided by the grant's status when the batch runs), so every
      // movement of the grant still sums to what it holds.
      for (const gone of ["expired", "voided"] as const) movementIfGrantIs(db, movement(ref, gone, -amount, ctx.now, ctx.now, inv.id), gone, inv.testClockId, ctx, out);
    } else {
      // Stripe's rule: credit of a grant that expired or was voided meanwhile is not restored; the ledger shows it leave again.
      movementStatements(db, movement(ref, g?.status === "voided" ? "voided" : "expired", -amount, ctx.now, ctx.now, inv.id), inv.testClockId, ctx, out);
    }
    returned += amount;
  }
  if (returned < inv.creditApplied) {
    const g = grantCredit(db, { customerId: inv.customerId, currency: inv.currency, amount: inv.creditApplied - returned, category: "paid", source: "invoice_balance", sourceId: inv.id, name: `Credit returned by void of ${inv.id}`, testClockId: inv.testClockId }, ctx);
    out.statements.push(...g.statements);
    out.eventIds.push(...g.eventIds);
  }
  out.statements.push(syncBalance(db, inv.customerId));
  return out;
}

/** A move of one grant guarded on the state (and remaining credit) read, with its movement and events. */
function moveGrant(db: Db, g: GrantRow, to: "active" | "expired" | "voided", at: number, ctx: Ctx, extraWhere: ReturnType<typeof sql> | undefined, reason: string): CreditChange {
  if (!grantMoves[g.status].includes(to)) throw new Error(`credit grant ${g.id}: ${g.status} → ${to} is not a move of its lifecycle`);
  const out = empty();
  const patch = { status: to, updatedAt: ctx.now, ...(to === "active" ? {} : { remaining: 0 }), ...(to === "expired" ? { expiredAt: at } : {}), ...(to === "voided" ? { voidedAt: at } : {}) } as const;
  out.statements.push(
    db
      .update(creditGrants)
      .set(patch)
      .where(and(eq(creditGrants.id, g.id), eq(creditGrants.status, g.status), eq(creditGrants.remaining, g.remaining), extraWhere)),
    assertChanged(db),
  );
  const after: GrantRow = { ...g, ...patch };
  const ev = eventRow(grantEvent("billing.credit_grant.updated", after, { status: g.status, remaining: money(g.remaining, g.currency) }, ctx.now), ctx);
  out.statements.push(eventInsert(db, ev));
  out.eventIds.push(ev.id);
  const amount = to === "active" ? g.remaining : -g.remaining;
  if (g.status === "active" || to === "active") {
    if (amount !== 0) movementStatements(db, movement(g, to === "active" ? "granted" : to, amount, at, ctx.now), g.testClockId, ctx, out);
  }
  out.statements.push(syncBalance(db, g.customerId));
  out.audit.push({ action: `credit_grant.${to === "active" ? "activated" : to}`, targetType: "credit_grant", targetId: g.id, before: { status: g.status, remainingMinor: g.remaining }, after: { status: to, movedMinor: amount }, reason });
  return out;
}

export const voidGrant = (db: Db, g: GrantRow, reason: string, ctx: Ctx) => moveGrant(db, g, "voided", ctx.now, ctx, undefined, reason);

export const expireGrant = (db: Db, g: GrantRow, ctx: Ctx) => moveGrant(db, g, "expired", g.expiresAt ?? ctx.now, ctx, undefined, "expired");

/**
 * A purchase invoice paid: its pending grants become usable, for the payment's batch. Guarded on the invoice being
 * paid when the batch runs (a payment that lost to a void activates nothing).
 */
export async function activatePurchasedGrants(db: Db, invoiceId: string, ctx: Ctx): Promise<CreditChange> {
  const pending = await db.select().from(creditGrants).where(and(eq(creditGrants.purchaseInvoiceId, invoiceId), eq(creditGrants.status, "pending"))).all();
  const out = empty();
  for (const g of pending) {
    const paid = sql`EXISTS (SELECT 1 FROM invoices WHERE id = ${invoiceId} AND status = 'paid')`;
    // Not strict (the payment must commit whatever happens to the grant): the movement and event follow only a move.
    out.statements.push(
      db.update(creditGrants).set({ status: "active", updatedAt: ctx.now }).where(and(eq(creditGrants.id, g.id), eq(creditGrants.status, "pending"), paid)),
    );
    const m = movement(g, "granted", g.amount, ctx.now, ctx.now);
    out.statements.push(db.insert(creditLedger).select(sql`SELECT ${m.id}, ${m.customerId}, ${m.grantId}, ${m.type}, ${m.amount}, ${m.currency}, ${m.invoiceId}, ${m.at}, ${m.createdAt} WHERE changes() > 0`));
    const ev = eventRow(grantEvent("billing.credit_grant.updated", { ...g, status: "active", updatedAt: ctx.now }, { status: "pending" }, ctx.now), ctx);
    out.statements.push(eventInsertIfChanged(db, ev));
    out.eventIds.push(ev.id);
    out.statements.push(syncBalance(db, g.customerId));
    out.audit.push({ action: "credit_grant.activated", targetType: "credit_grant", targetId: g.id, after: { purchaseInvoiceId: invoiceId, amountMinor: g.amount } });
  }
  return out;
}

/** A purchase invoice voided: its pending grants are voided with it (nothing was ever usable). */
export async function voidPurchasedGrants(db: Db, invoiceId: string, ctx: Ctx): Promise<CreditChange> {
  const pending = await db.select().from(creditGrants).where(and(eq(creditGrants.purchaseInvoiceId, invoiceId), eq(creditGrants.status, "pending"))).all();
  const out = empty();
  for (const g of pending) {
    const c = moveGrant(db, g, "voided", ctx.now, ctx, undefined, `purchase invoice ${invoiceId} voided`);
    out.statements.push(...c.statements);
    out.audit.push(...c.audit);
    out.eventIds.push(...c.eventIds);
  }
  return out;
}

/** Grants whose expiry is due by `now`, oldest expiry first, at most `limit` (the expiry task is bounded per run). */
export async function grantsDueToExpire(db: Db, now: number, where: { testClockId?: string | null }, limit: number): Promise<GrantRow[]> {
  return db
    .select()
    .from(creditGrants)
    .where(
      and(
        eq(creditGrants.status, "active"),
        lte(creditGrants.expiresAt, now),
        where.testClockId === undefined ? undefined : where.testClockId === null ? isNull(creditGrants.testClockId) : eq(creditGrants.testClockId, where.testClockId),
      ),
    )
    .orderBy(asc(creditGrants.expiresAt))
    .limit(limit)
    .all();
}

export const grantsByIds = (db: Db, ids: string[]) => (ids.length ? db.select().from(creditGrants).where(inArray(creditGrants.id, ids)).all() : Promise.resolve([]));

/**
 * Today's "add to the customer's credit balance" (a negative invoice, a credit note's `creditBalance` part): a paid,
 * never-expiring grant used after every other (priority 100). The single entry point the integrator points credit
 * notes at; returns statements, audit rows and event ids for the caller's batch.
 */
export const addCustomerCredit = (
  db: Db,
  input: { customerId: string; currency: string; amount: number; source: "invoice_balance" | "credit_note"; sourceId: string; testClockId?: string | null; name?: string },
  ctx: Ctx,
) => grantCredit(db, { ...input, category: "paid", priority: 100 }, ctx);
