import { and, eq, inArray, isNull, ne, notExists, sql } from "drizzle-orm";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import type { Services } from "../../platform/services";
import { change, commit } from "../../platform/change-set";
import type { EventDraft } from "../../platform/events";
import { newestFirstPage } from "../../platform/pagination";
import { customers, invoices, subscriptions, testClocks } from "../../db/schema";
import { assertChanged, isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { conflict, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { formatMinor } from "../../domain/money";
import type { CreateCustomer, Customer, UpdateCustomer } from "./schemas";

type Row = typeof customers.$inferSelect;

export function toCustomer(r: Row): z.infer<typeof Customer> {
  return {
    id: r.id,
    email: r.email,
    name: r.name,
    currency: r.currency,
    country: r.country,
    region: r.region,
    taxExempt: r.taxExempt,
    taxCertificate: r.taxCertificateId ? { id: r.taxCertificateId, expiresAt: iso(r.taxCertificateExpiresAt) } : null,
    metadata: r.metadata,
    creditBalance: { amount: formatMinor(r.creditBalance, r.currency), amountMinor: r.creditBalance },
    testClockId: r.testClockId,
    deleted: r.deletedAt !== null,
    deletedAt: iso(r.deletedAt),
    createdAt: iso(r.createdAt),
    updatedAt: iso(r.updatedAt),
  };
}

const ms = (d: string | null | undefined) => (d ? Date.parse(d) : null);

/** A customer event: the REST customer; test-clock customers are never live. */
const customerEvent = (type: EventDraft["type"], row: Row, previousAttributes?: Record<string, unknown>): EventDraft => ({
  type,
  objectType: "customer",
  objectId: row.id,
  customerId: row.id,
  object: toCustomer(row),
  ...(previousAttributes ? { previousAttributes } : {}),
  testClockId: row.testClockId,
});

/** The REST fields that differ (updatedAt aside), with their old values. */
function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(after)) if (k !== "updatedAt" && JSON.stringify(before[k]) !== JSON.stringify(after[k])) out[k] = before[k];
  return out;
}

const alreadyExists = (id: string) => conflict(`customer ${id} already exists`, [{ path: "id", message: "already exists" }]);

export async function createCustomer(s: Services, input: z.infer<typeof CreateCustomer>): Promise<Outcome<z.infer<typeof Customer>, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const id = input.id ?? newId("cus");
  if (input.id && (await db.select({ id: customers.id }).from(customers).where(eq(customers.id, id)).get())) return alreadyExists(id);
  if (input.testClockId && !(await db.select({ id: testClocks.id }).from(testClocks).where(eq(testClocks.id, input.testClockId)).get())) {
    return invalid([{ path: "testClockId", message: `test clock ${input.testClockId} does not exist` }]);
  }
  const row: Row = {
    id,
    email: input.email,
    name: input.name ?? null,
    currency: input.currency,
    country: input.country ?? null,
    region: input.region ?? null,
    taxExempt: input.taxExempt ?? false,
    creditBalance: 0,
    taxCertificateId: input.taxCertificate?.id ?? null,
    taxCertificateExpiresAt: ms(input.taxCertificate?.expiresAt),
    metadata: input.metadata ?? {},
    testClockId: input.testClockId ?? null,
    createdAt: ctx.now,
    updatedAt: ctx.now,
    deletedAt: null,
  };
  try {
    await commit(
      db,
      change({
        statements: [db.insert(customers).values(row)],
        audit: [{ action: "customer.created", targetType: "customer", targetId: id, after: toCustomer(row) }],
        events: [customerEvent("customer.created", row)],
      }),
      ctx,
    );
  } catch (e) {
    // A concurrent request with the same client-supplied id won the insert.
    if (isUniqueViolation(e, "customers.id")) return alreadyExists(id);
    throw e;
  }
  return ok(toCustomer(row));
}

export async function getCustomerRow(db: Db, id: string): Promise<Outcome<Row, "not_found">> {
  const row = await db.select().from(customers).where(eq(customers.id, id)).get();
  return row ? ok(row) : notFound("customer", id);
}

/** The customer, unless it is deleted (409): it is kept for its history only. */
export function notDeleted(row: Row): Outcome<Row, "conflict"> {
  return row.deletedAt === null ? ok(row) : conflict(`customer ${row.id} is deleted`, [{ path: "customerId", message: "is deleted" }]);
}

export async function updateCustomer(s: Services, id: string, input: z.infer<typeof UpdateCustomer>): Promise<Outcome<z.infer<typeof Customer>, "not_found" | "conflict">> {
  const { db, audit: ctx } = s;
  const found = await getCustomerRow(db, id);
  if (!found.ok) return found;
  const live = notDeleted(found.value);
  if (!live.ok) return live;
  const before = live.value;
  const patch: Partial<Row> = { updatedAt: ctx.now };
  if (input.email !== undefined) patch.email = input.email;
  if (input.name !== undefined) patch.name = input.name;
  if (input.currency !== undefined) patch.currency = input.currency;
  if (input.country !== undefined) patch.country = input.country;
  if (input.region !== undefined) patch.region = input.region;
  if (input.taxExempt !== undefined) patch.taxExempt = input.taxExempt;
  if (input.taxCertificate !== undefined) {
    patch.taxCertificateId = input.taxCertificate?.id ?? null;
    patch.taxCertificateExpiresAt = ms(input.taxCertificate?.expiresAt);
  }
  // Stripe's convention: a key set to "" is removed.
  if (input.metadata !== undefined) patch.metadata = Object.fromEntries(Object.entries({ ...before.metadata, ...input.metadata }).filter(([, v]) => v !== ""));
  if (input.currency !== undefined && input.currency !== before.currency) {
    const billed = await db.select({ id: subscriptions.id }).from(subscriptions).where(eq(subscriptions.customerId, id)).limit(1).get();
    if (billed) return conflict(`customer ${id} has subscriptions in ${before.currency}; its currency cannot change`, [{ path: "currency", message: "customer already billed in another currency" }]);
  }
  const after = { ...before, ...patch };
  const changed = changedFields(toCustomer(before), toCustomer(after));
  // Guard on updatedAt so a concurrent update cannot be silently overwritten (nor audited as applied).
  try {
    await commit(
      db,
      change({
        statements: [db.update(customers).set(patch).where(and(eq(customers.id, id), eq(customers.updatedAt, before.updatedAt))), assertChanged(db)],
        audit: [{ action: "customer.updated", targetType: "customer", targetId: id, before: toCustomer(before), after: toCustomer(after) }],
        events: Object.keys(changed).length ? [customerEvent("customer.updated", after, changed)] : [],
      }),
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`customer ${id} was changed concurrently; retry`);
    throw e;
  }
  return ok(toCustomer(after));
}

export async function listCustomers(db: Db, q: { limit: number; startingAfter?: string | undefined; email?: string | undefined; name?: string | undefined; includeDeleted?: boolean | undefined }) {
  // instr(lower(…)) rather than LIKE: a name filter with % or _ matches those characters literally.
  const name = q.name ? sql`instr(lower(${customers.name}), ${q.name.toLowerCase()}) > 0` : undefined;
  const live = q.includeDeleted ? undefined : isNull(customers.deletedAt);
  return newestFirstPage(db, { table: customers, id: customers.id, createdAt: customers.createdAt }, q, [q.email ? eq(customers.email, q.email) : undefined, name, live], toCustomer);
}

/** What keeps a customer from being deleted: subscriptions not canceled, and draft or open invoices. */
const BLOCKING_INVOICES = ["draft", "open"] as const;
const blockingSubscriptions = (db: Db, id: string) =>
  db.select({ id: subscriptions.id }).from(subscriptions).where(and(eq(subscriptions.customerId, id), ne(subscriptions.status, "canceled")));
const blockingInvoices = (db: Db, id: string) =>
  db.select({ id: invoices.id }).from(invoices).where(and(eq(invoices.customerId, id), inArray(invoices.status, [...BLOCKING_INVOICES])));

/**
 * Soft-deletes a customer (Stripe's DELETE /v1/customers/:id, without its silent cancellations): refused with 409
 * naming what blocks it (subscriptions not canceled, draft or open invoices), which the caller cancels, pays or voids
 * first. The guarded UPDATE re-checks both in the batch, so a subscription created meanwhile aborts the deletion.
 * Deleting a deleted customer changes nothing and emits nothing (DELETE is idempotent).
 */
export async function deleteCustomer(s: Services, id: string): Promise<Outcome<z.infer<typeof Customer>, "not_found" | "conflict">> {
  const { db, audit: ctx } = s;
  const found = await getCustomerRow(db, id);
  if (!found.ok) return found;
  const before = found.value;
  if (before.deletedAt !== null) return ok(toCustomer(before));
  const [subs, invs] = await Promise.all([blockingSubscriptions(db, id).limit(5).all(), blockingInvoices(db, id).limit(5).all()]);
  const blockers = [...subs.map((s) => `subscription ${s.id} is not canceled`), ...invs.map((i) => `invoice ${i.id} is draft or open`)];
  if (blockers.length) {
    return conflict(
      `customer ${id} cannot be deleted: ${blockers.join("; ")}. Cancel its subscriptions and pay or void its invoices first.`,
      [...subs.map((s) => ({ path: "subscriptions", message: `${s.id} is not canceled` })), ...invs.map((i) => ({ path: "invoices", message: `${i.id} is draft or open` }))],
    );
  }
  const after: Row = { ...before, deletedAt: ctx.now, updatedAt: ctx.now };
  try {
    await commit(
      db,
      change({
        statements: [
          db
            .update(customers)
            .set({ deletedAt: ctx.now, updatedAt: ctx.now })
            .where(and(eq(customers.id, id), isNull(customers.deletedAt), notExists(blockingSubscriptions(db, id)), notExists(blockingInvoices(db, id)))),
          assertChanged(db),
        ],
        audit: [{ action: "customer.deleted", targetType: "customer", targetId: id, before: toCustomer(before), after: toCustomer(after) }],
        events: [customerEvent("customer.deleted", after, { deleted: false, deletedAt: null })],
      }),
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`customer ${id} changed while it was being deleted (a new subscription or invoice?); retry`);
    throw e;
  }
  return ok(toCustomer(after));
}
