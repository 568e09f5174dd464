import type { Services } from "../../platform/services";
import { commit, change } from "../../platform/change-set";
import { eventsCommitted } from "../../platform/events";
import { customers, invoiceLines, invoices } from "../../db/schema";
import { formatMinor } from "../../domain/money";
import { newId } from "../../lib/ids";
import { grantCredit, type GrantInput, type GrantRow } from "../credits/ledger";
import { finalizeInvoice } from "./finalize";
import { invoiceCreated } from "./lifecycle";

type CustomerRow = typeof customers.$inferSelect;

/**
 * A paid grant: an invoice for its purchase (one line, the grant's amount; no tax — tax is charged on the usage
 * invoices the credit later pays, as for any prepayment) and the grant, pending, in one batch; the invoice is
 * finalized and collected like any other, and its payment makes the grant usable (invoicePaid). A voided purchase
 * invoice voids the grant.
 */
export async function purchaseCredit(s: Services, customer: CustomerRow, input: Omit<GrantInput, "purchaseInvoiceId" | "customerId" | "currency" | "testClockId">): Promise<{ grant: GrantRow; invoiceId: string }> {
  const { db, audit: ctx } = s;
  const invoiceId = newId("inv");
  const inv: typeof invoices.$inferSelect = {
    id: invoiceId,
    number: null,
    customerId: customer.id,
    subscriptionId: null,
    status: "draft",
    billingReason: "manual",
    currency: customer.currency,
    periodStart: ctx.now,
    periodEnd: ctx.now,
    subtotal: input.amount,
    discount: 0,
    tax: 0,
    total: input.amount,
    amountPaid: 0,
    creditApplied: 0,
    amountDue: input.amount,
    taxJurisdiction: null,
    taxRate: null,
    dueAt: null,
    finalizedAt: null,
    paidAt: null,
    voidedAt: null,
    voidReason: null,
    attemptCount: 0,
    lastError: null,
    generationKey: `credit_purchase:${invoiceId}`,
    archiveKey: null,
    archivedAt: null,
    testClockId: customer.testClockId,
    hostedToken: null,
    createdAt: ctx.now,
    updatedAt: ctx.now,
  };
  const line: typeof invoiceLines.$inferSelect = {
    id: newId("il"),
    invoiceId,
    position: 0,
    kind: "flat",
    description: `Prepaid credit${input.name ? `: ${input.name}` : ""}`,
    priceId: null,
    meterId: null,
    quantity: "1",
    unitAmount: formatMinor(input.amount, customer.currency),
    amount: input.amount,
    discountAmount: 0,
    taxAmount: 0,
    periodStart: ctx.now,
    periodEnd: ctx.now,
    computation: `credit purchase of ${formatMinor(input.amount, customer.currency)} ${customer.currency}, usable once this invoice is paid`,
  };
  const created = invoiceCreated(db, inv, [line], ctx);
  const g = grantCredit(db, { ...input, customerId: customer.id, currency: customer.currency, purchaseInvoiceId: invoiceId, testClockId: customer.testClockId }, ctx);
  await commit(
    db,
    change({
      statements: [...created.statements, db.insert(invoiceLines).values(line), ...g.statements],
      audit: [{ action: "invoice.created", targetType: "invoice", targetId: invoiceId, after: { customerId: customer.id, total: input.amount, currency: customer.currency, reason: `purchase of credit grant ${g.grant.id}` } }, ...g.audit],
    }),
    ctx,
  );
  eventsCommitted([...created.eventIds, ...g.eventIds]);
  await finalizeInvoice(s, invoiceId);
  return { grant: g.grant, invoiceId };
}
