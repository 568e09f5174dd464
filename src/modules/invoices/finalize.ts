import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import type { AuditContext } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { invoiceNumberSequences, invoices } from "../../db/schema";
import type { JobMessage, PaymentMessage } from "../../../queues/messages";
import { commit } from "../../platform/change-set";
import { invoiceFinalized } from "./lifecycle";

export { PAYMENT_TERMS_MS } from "./lifecycle";
const MAX_ATTEMPTS = 10;

export const invoiceNumber = (year: number, n: number) => `INV-${year}-${String(n).padStart(6, "0")}`;

/**
 * draft → open (or paid when nothing is due), taking the next number of the finalization year: the invoice owner's
 * transition (invoices/lifecycle.ts, with its events). The counter moves in the same batch, guarded on its previous
 * value, so numbers are sequential and gap-free even under races.
 */
export async function finalizeInvoice(env: Env, db: Db, invoiceId: string, ctx: AuditContext): Promise<typeof invoices.$inferSelect | null> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const inv = await db.select().from(invoices).where(eq(invoices.id, invoiceId)).get();
    if (!inv || inv.status !== "draft") return null;
    const year = new Date(ctx.now).getUTCFullYear();
    const seq = await db.select().from(invoiceNumberSequences).where(eq(invoiceNumberSequences.year, year)).get();
    const last = seq?.lastNumber ?? 0;
    const number = invoiceNumber(year, last + 1);
    const { change: cs, after } = await invoiceFinalized(
      db,
      inv,
      number,
      [
        db.insert(invoiceNumberSequences).values({ year, lastNumber: 0 }).onConflictDoNothing(),
        db
          .update(invoiceNumberSequences)
          .set({ lastNumber: last + 1 })
          .where(and(eq(invoiceNumberSequences.year, year), eq(invoiceNumberSequences.lastNumber, last))),
        assertChanged(db),
      ],
      ctx,
    );
    const paid = after.status === "paid";
    try {
      await commit(db, cs, ctx);
    } catch (e) {
      if (isAssertionFailure(e)) continue; // another finalization took the number, or this invoice: look again
      throw e;
    }
    // The document is rendered after the commit, on the jobs queue (GET …/pdf renders it on demand if this is lost).
    await env.JOB_QUEUE.send({ type: "invoice.document", invoiceId } satisfies JobMessage).catch((e) =>
      console.log(JSON.stringify({ level: "error", msg: "document enqueue failed; GET /api/v1/invoices/:id/pdf renders it", invoiceId, error: String(e) })),
    );
    if (!paid) {
      await env.PAYMENT_QUEUE.send({ type: "payment.attempt", invoiceId, attempt: 1 } satisfies PaymentMessage).catch((e) =>
        console.log(JSON.stringify({ level: "error", msg: "payment enqueue failed; retry-failed will pick it up", invoiceId, error: String(e) })),
      );
    }
    return after;
  }
  throw new Error(`invoice ${invoiceId}: could not take a number after ${MAX_ATTEMPTS} attempts`);
}

/** Drafts left by an interrupted run (or made by generation) are finalized by the next run. */
export async function finalizeDrafts(env: Env, db: Db, ctx: AuditContext, where: { subscriptionIds?: string[]; testClockId?: string | null } = {}) {
  const rows = await db
    .select({ id: invoices.id })
    .from(invoices)
    .where(
      and(
        eq(invoices.status, "draft"),
        sql`${invoices.billingReason} != 'manual'`,
        where.testClockId === undefined ? undefined : where.testClockId === null ? sql`${invoices.testClockId} IS NULL` : eq(invoices.testClockId, where.testClockId),
      ),
    )
    .all();
  const done = [];
  for (const r of rows) {
    const f = await finalizeInvoice(env, db, r.id, ctx);
    if (f) done.push(f);
  }
  return done;
}
