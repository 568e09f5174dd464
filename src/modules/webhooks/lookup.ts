import { and, desc, eq, inArray } from "drizzle-orm";
import type { Db } from "../../db/client";
import { payments } from "../../db/schema";

export type PaymentRow = typeof payments.$inferSelect;

/** What an event says about the payment it concerns: gateway ids (intent, charge) and the metadata we sent with it. */
export type PaymentRefs = { ids: (string | null | undefined)[]; metadata?: Record<string, string> | null | undefined };

/**
 * The local payment an event is about: by gateway id first (what the charge call recorded), else by the
 * idempotency key our gateway puts in the intent's metadata, else by metadata invoiceId + attempt.
 */
export async function findPayment(db: Db, refs: PaymentRefs): Promise<PaymentRow | undefined> {
  const ids = refs.ids.filter((x): x is string => typeof x === "string" && x.length > 0);
  if (ids.length) {
    const byRef = await db.select().from(payments).where(inArray(payments.gatewayPaymentId, ids)).orderBy(desc(payments.updatedAt)).limit(1).get();
    if (byRef) return byRef;
  }
  const m = refs.metadata ?? {};
  if (m.idempotencyKey) {
    const byKey = await db.select().from(payments).where(eq(payments.idempotencyKey, m.idempotencyKey)).get();
    if (byKey) return byKey;
  }
  const attempt = Number(m.attempt);
  if (m.invoiceId && Number.isInteger(attempt) && attempt > 0) {
    return db.select().from(payments).where(and(eq(payments.invoiceId, m.invoiceId), eq(payments.attempt, attempt))).get();
  }
  return undefined;
}

/** A Stripe expandable field (`"ch_…"` or `{ id: "ch_…", … }`) → its id. */
export const idOf = (v: unknown): string | null =>
  typeof v === "string" ? v : v && typeof v === "object" && typeof (v as { id?: unknown }).id === "string" ? (v as { id: string }).id : null;
