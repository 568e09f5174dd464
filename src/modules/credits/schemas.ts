import { z } from "@hono/zod-openapi";
import { closedObject } from "../../lib/schema";
import { Metadata } from "../customers/schemas";
import { creditGrantStatuses } from "../../db/schema";

const MoneyOut = z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() });

export const CreateCreditGrant = closedObject({
  amount: z.union([z.string(), z.number()]).transform(String).openapi({ type: "string", example: "50.00", description: "Major units, exact for the currency" }),
  currency: z.string().regex(/^[A-Z]{3}$/).openapi({ example: "USD", description: "Must be the customer's currency" }),
  category: z.enum(["paid", "promotional"]).openapi({ description: "paid: bought — an invoice for it is issued and the grant is usable once it is paid; promotional: given, usable at once" }),
  name: z.string().max(200).optional(),
  expiresAt: z.iso.datetime({ offset: true }).optional().openapi({ description: "Unused credit expires then (a movement in the ledger)" }),
  priority: z.number().int().min(0).max(100).optional().openapi({ description: "0 is used first, 100 last; default 50 (migrated balances and negative-invoice credit use 100)" }),
  appliesTo: closedObject({ meterIds: z.array(z.string().min(1)).min(1).max(50) }).optional().openapi({ description: "Only usage lines of these meters" }),
  metadata: Metadata.optional(),
}).openapi("CreateCreditGrant");

export const CreditGrant = z
  .object({
    id: z.string(),
    object: z.literal("credit_grant"),
    customerId: z.string(),
    name: z.string().nullable(),
    category: z.enum(["paid", "promotional"]),
    source: z.string().openapi({ description: "api, invoice_balance (a negative invoice, or migrated customer credit), credit_note" }),
    sourceId: z.string().nullable(),
    amount: MoneyOut,
    remaining: MoneyOut,
    priority: z.number().int(),
    expiresAt: z.string().nullable(),
    appliesTo: z.object({ meterIds: z.array(z.string()) }).nullable(),
    status: z.enum(creditGrantStatuses),
    usable: z.boolean(),
    purchaseInvoiceId: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    voidedAt: z.string().nullable(),
    expiredAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi("CreditGrant");

export const CreditTransaction = z
  .object({
    id: z.string(),
    object: z.literal("credit_balance_transaction"),
    customerId: z.string(),
    grantId: z.string(),
    type: z.enum(["granted", "applied", "returned", "expired", "voided"]),
    amount: MoneyOut.openapi({ description: "Signed: positive adds to the balance" }),
    invoiceId: z.string().nullable(),
    at: z.string(),
    createdAt: z.string(),
  })
  .openapi("CreditBalanceTransaction");

export const CreditBalance = z
  .object({
    object: z.literal("credit_balance"),
    customerId: z.string(),
    available: MoneyOut.openapi({ description: "Usable now: active grants, not expired" }),
    byCategory: z.object({ paid: MoneyOut, promotional: MoneyOut }),
    pending: MoneyOut.openapi({ description: "Paid grants waiting for their purchase invoice" }),
    transactions: z.object({ data: z.array(CreditTransaction), hasMore: z.boolean(), nextCursor: z.string().nullable() }).openapi({ description: "Every movement, newest first" }),
  })
  .openapi("CreditBalance");

export const VoidCreditGrant = closedObject({ reason: z.string().min(1).max(200).optional() }).openapi("VoidCreditGrant");
