import { and, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit, type AuditContext } from "../../platform/audit";
import { eventsCommitted } from "../../platform/events";
import { newestFirstPage } from "../../platform/pagination";
import { isAssertionFailure } from "../../db/assert";
import { creditGrants, creditLedger, customers } from "../../db/schema";
import { money, toMinor } from "../../domain/money";
import { conflict, invalid, notFound, ok, valueOrThrow, type Outcome } from "../../platform/failure";
import { expireGrant, grantCredit, grantsDueToExpire, toGrant, toTransaction, voidGrant, type GrantInput, type GrantRow } from "./ledger";
import type { CreateCreditGrant } from "./schemas";

type CustomerRow = typeof customers.$inferSelect;

export type GrantRequest = Omit<GrantInput, "customerId" | "currency" | "testClockId" | "purchaseInvoiceId">;

/** The grant input of an API request, checked against the customer: exact money in its currency, a future expiry. */
export function grantInputOf(customer: CustomerRow, body: z.infer<typeof CreateCreditGrant>, now: number): Outcome<GrantRequest, "unprocessable"> {
  const errors: { path: string; message: string }[] = [];
  if (body.currency !== customer.currency) errors.push({ path: "currency", message: `must be the customer's currency (${customer.currency})` });
  const amount = toMinor(body.amount, body.currency);
  if (!amount.ok) errors.push({ path: "amount", message: amount.error });
  else if (amount.value <= 0) errors.push({ path: "amount", message: "must be greater than 0" });
  const expiresAt = body.expiresAt ? Date.parse(body.expiresAt) : null;
  if (expiresAt !== null && expiresAt <= now) errors.push({ path: "expiresAt", message: "must be in the future" });
  if (errors.length) return invalid(errors);
  return ok({
    amount: amount.ok ? amount.value : 0,
    category: body.category,
    source: "api",
    name: body.name ?? null,
    priority: body.priority ?? 50,
    expiresAt,
    appliesToMeterIds: body.appliesTo?.meterIds ?? null,
    metadata: body.metadata ?? {},
  });
}

/** A promotional grant (usable at once) through the API. Paid grants go through purchaseCredit (an invoice first). */
export async function createPromotionalGrant(s: Services, customer: CustomerRow, input: GrantRequest) {
  const { db, audit: ctx } = s;
  const g = grantCredit(db, { ...input, customerId: customer.id, currency: customer.currency, testClockId: customer.testClockId }, ctx);
  await commitWithAudit(db, g.statements, g.audit, ctx);
  eventsCommitted(g.eventIds);
  return g.grant;
}

export async function getGrantRow(db: Db, customerId: string, id: string): Promise<Outcome<GrantRow, "not_found">> {
  const row = await db.select().from(creditGrants).where(and(eq(creditGrants.id, id), eq(creditGrants.customerId, customerId))).get();
  return row ? ok(row) : notFound("credit grant", id);
}

export const listGrants = (db: Db, customerId: string, q: { limit: number; startingAfter?: string | undefined; status?: GrantRow["status"] | undefined }, now: number) =>
  newestFirstPage(db, { table: creditGrants, id: creditGrants.id, createdAt: creditGrants.createdAt }, q, [eq(creditGrants.customerId, customerId), q.status ? eq(creditGrants.status, q.status) : undefined], (r) => toGrant(r, now));

/** Voids a pending or active grant: what is left of it leaves the balance (a `voided` movement). */
export async function voidGrantById(s: Services, customerId: string, id: string, reason: string): Promise<Outcome<ReturnType<typeof toGrant>, "not_found" | "conflict">> {
  const { db, audit: ctx } = s;
  const found = await getGrantRow(db, customerId, id);
  if (!found.ok) return found;
  const g = found.value;
  if (g.status !== "active" && g.status !== "pending") return conflict(`credit grant ${id} is ${g.status}`, [{ path: "id", message: g.status }]);
  if (g.purchaseInvoiceId && g.status === "pending") return conflict(`credit grant ${id} waits for invoice ${g.purchaseInvoiceId}: void that invoice instead`, [{ path: "id", message: "pending purchase" }]);
  const c = voidGrant(db, g, reason, ctx);
  try {
    await commitWithAudit(db, c.statements, c.audit, ctx);
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`credit grant ${id} changed concurrently (used by an invoice, or expired); retry`);
    throw e;
  }
  eventsCommitted(c.eventIds);
  return ok(toGrant(valueOrThrow(await getGrantRow(db, customerId, id)), ctx.now));
}

/** The customer's credit: usable now (by category), pending purchases, and a page of movements, newest first. */
export async function creditBalance(db: Db, customer: CustomerRow, q: { limit: number; startingAfter?: string | undefined }, now: number) {
  const grants = await db.select().from(creditGrants).where(eq(creditGrants.customerId, customer.id)).all();
  const usable = grants.filter((g) => toGrant(g, now).usable);
  const sum = (rows: GrantRow[]) => rows.reduce((s, g) => s + g.remaining, 0);
  const transactions = await newestFirstPage(db, { table: creditLedger, id: creditLedger.id, createdAt: creditLedger.createdAt }, q, [eq(creditLedger.customerId, customer.id)], toTransaction);
  return {
    object: "credit_balance" as const,
    customerId: customer.id,
    available: money(sum(usable), customer.currency),
    byCategory: { paid: money(sum(usable.filter((g) => g.category === "paid")), customer.currency), promotional: money(sum(usable.filter((g) => g.category === "promotional")), customer.currency) },
    pending: money(sum(grants.filter((g) => g.status === "pending")), customer.currency),
    transactions,
  };
}

/**
 * Expires grants whose expiry is due by `now` (live ones from the hourly cron, a test clock's when it advances):
 * each in its own batch (status, an `expired` movement of what was left, events, audit, balance), at most `limit`
 * per run so a run stays bounded; a grant an invoice used meanwhile is skipped and taken by the next run.
 */
/** Grants one call expires: each is a batch of about six statements (grant, movement, balance, event, audit). */
export const EXPIRE_PER_INVOCATION = 100;

export async function expireDueGrants(db: Db, now: number, where: { testClockId?: string | null }, ctx: Omit<AuditContext, "now">, limit = EXPIRE_PER_INVOCATION) {
  const due = await grantsDueToExpire(db, now, where, limit);
  let expired = 0;
  let skipped = 0;
  for (const g of due) {
    const c = expireGrant(db, g, { now, requestId: ctx.requestId });
    try {
      await commitWithAudit(db, c.statements, c.audit, { ...ctx, now });
      eventsCommitted(c.eventIds);
      expired++;
    } catch (e) {
      if (!isAssertionFailure(e)) throw e;
      skipped++;
    }
  }
  return { expired, skipped, hasMore: due.length === limit };
}
