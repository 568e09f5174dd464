import { and, eq, gte, sql } from "drizzle-orm";
import { assertChanged } from "../../db/assert";
import type { Db } from "../../db/client";
import { customers } from "../../db/schema";
import { change, type ChangeSet } from "../../platform/change-set";

// Today's customer credit is one balance per customer (customers.creditBalance, in the customer's currency) that
// invoices consume. Credit notes touch it only through these two functions, so the credits work (grants with
// categories and expiry) can rewire them to "grant" and "void the grant" in one place.

/** Adds `amount` (minor units, the customer's currency) to the customer's credit, audited. */
export function grantCustomerCredit(db: Db, customerId: string, amount: number, currency: string, source: { creditNoteId: string }): ChangeSet {
  return change({
    statements: [db.update(customers).set({ creditBalance: sql`${customers.creditBalance} + ${amount}` }).where(eq(customers.id, customerId)), assertChanged(db)],
    audit: [{ action: "customer.credit_granted", targetType: "customer", targetId: customerId, after: { amountMinor: amount, currency, creditNoteId: source.creditNoteId } }],
  });
}

/** Takes `amount` back from the customer's credit; aborts the batch when less than that is left (it was used). */
export function revokeCustomerCredit(db: Db, customerId: string, amount: number, currency: string, source: { creditNoteId: string }): ChangeSet {
  return change({
    statements: [
      db
        .update(customers)
        .set({ creditBalance: sql`${customers.creditBalance} - ${amount}` })
        .where(and(eq(customers.id, customerId), gte(customers.creditBalance, amount))),
      assertChanged(db),
    ],
    audit: [{ action: "customer.credit_revoked", targetType: "customer", targetId: customerId, after: { amountMinor: amount, currency, creditNoteId: source.creditNoteId } }],
  });
}

/** The customer's available credit (minor units) and its currency. */
export async function customerCredit(db: Db, customerId: string): Promise<{ amount: number; currency: string } | null> {
  const c = await db.select({ amount: customers.creditBalance, currency: customers.currency }).from(customers).where(eq(customers.id, customerId)).get();
  return c ?? null;
}
