import { and, eq, sql } from "drizzle-orm";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import type { AuditContext } from "../../platform/audit";
import { change, commit } from "../../platform/change-set";
import type { EventDraft } from "../../platform/events";
import { newestFirstPage } from "../../platform/pagination";
import { customers, subscriptions, testClocks } from "../../db/schema";
import { assertChanged, isAssertionFailure, isUniqueViolation } from "../../db/assert";
import { ApiError, invalid, notFound } from "../../platform/errors";
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
  ...(row.testClockId ? { livemode: false } : {}),
});

/** The REST fields that differ (updatedAt aside), with their old values. */
function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(after)) if (k !== "updatedAt" && JSON.stringify(before[k]) !== JSON.stringify(after[k])) out[k] = before[k];
  return out;
}

export async function createCustomer(db: Db, input: z.infer<typeof CreateCustomer>, ctx: AuditContext) {
  const id = input.id ?? newId("cus");
  if (input.id && (await db.select({ id: customers.id }).from(customers).where(eq(customers.id, id)).get())) {
    throw new ApiError("conflict", `customer ${id} already exists`, [{ path: "id", message: "already exists" }]);
  }
  if (input.testClockId && !(await db.select({ id: testClocks.id }).from(testClocks).where(eq(testClocks.id, input.testClockId)).get())) {
    throw invalid([{ path: "testClockId", message: `test clock ${input.testClockId} does not exist` }]);
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
    if (isUniqueViolation(e, "customers.id")) throw new ApiError("conflict", `customer ${id} already exists`, [{ path: "id", message: "already exists" }]);
    throw e;
  }
  return toCustomer(row);
}

export async function getCustomerRow(db: Db, id: string): Promise<Row> {
  const row = await db.select().from(customers).where(eq(customers.id, id)).get();
  if (!row) throw notFound("customer", id);
  return row;
}

export async function updateCustomer(db: Db, id: string, input: z.infer<typeof UpdateCustomer>, ctx: AuditContext) {
  const before = await getCustomerRow(db, id);
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
    if (billed) throw new ApiError("conflict", `customer ${id} has subscriptions in ${before.currency}; its currency cannot change`, [{ path: "currency", message: "customer already billed in another currency" }]);
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
    if (isAssertionFailure(e)) throw new ApiError("conflict", `customer ${id} was changed concurrently; retry`);
    throw e;
  }
  return toCustomer(after);
}

export async function listCustomers(db: Db, q: { limit: number; startingAfter?: string | undefined; email?: string | undefined; name?: string | undefined }) {
  // instr(lower(…)) rather than LIKE: a name filter with % or _ matches those characters literally.
  const name = q.name ? sql`instr(lower(${customers.name}), ${q.name.toLowerCase()}) > 0` : undefined;
  return newestFirstPage(db, { table: customers, id: customers.id, createdAt: customers.createdAt }, q, [q.email ? eq(customers.email, q.email) : undefined, name], toCustomer);
}
