import { eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { invoices, testClocks } from "../db/schema";
import type { AuditContext } from "./audit";

/** A test clock's frozen time; null off a clock (or for a clock that no longer exists). */
export async function clockTimeOf(db: Db, testClockId: string | null): Promise<number | null> {
  if (!testClockId) return null;
  const clock = await db.select({ t: testClocks.frozenTime }).from(testClocks).where(eq(testClocks.id, testClockId)).get();
  return clock?.t ?? null;
}

/** "Now" for an object: its test clock's frozen time, or the real time. */
export async function nowFor(db: Db, testClockId: string | null, realNow = Date.now()): Promise<number> {
  return (await clockTimeOf(db, testClockId)) ?? realNow;
}

/**
 * The request's context in the time of an object on `testClockId`: a route acting on a test-clock object (void,
 * refund, credit note) does so in the clock's time, as the clock's own work does. A context whose `now` a caller
 * already set (not the request's wall clock) is left alone.
 */
export async function inClockOf<C extends AuditContext>(db: Db, ctx: C, testClockId: string | null): Promise<C> {
  if (!testClockId || ctx.wallClock !== ctx.now) return ctx;
  return { ...ctx, now: await nowFor(db, testClockId, ctx.now) };
}

/** As `inClockOf`, for an object that belongs to an invoice (a payment, a refund, a credit note). */
export async function inClockOfInvoice<C extends AuditContext>(db: Db, ctx: C, invoiceId: string): Promise<C> {
  if (ctx.wallClock !== ctx.now) return ctx;
  const inv = await db.select({ testClockId: invoices.testClockId }).from(invoices).where(eq(invoices.id, invoiceId)).get();
  return inClockOf(db, ctx, inv?.testClockId ?? null);
}
