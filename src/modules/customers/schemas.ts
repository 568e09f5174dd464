import { z } from "@hono/zod-openapi";
import { isCurrency } from "../../domain/money";

export const CurrencyCode = z
  .string()
  .transform((s) => s.toUpperCase())
  .refine(isCurrency, { message: "must be an ISO-4217 currency code such as USD" })
  .openapi({ example: "USD" });

export const Metadata = z.record(z.string().max(40), z.string().max(500)).refine((m) => Object.keys(m).length <= 50, {
  message: "at most 50 keys",
});

const TaxCertificate = z.object({
  id: z.string().min(1).max(100),
  expiresAt: z.iso.datetime({ offset: true }).or(z.iso.date()).nullable().optional(),
});

const CustomerFields = {
  email: z.email(),
  name: z.string().max(200).nullable().optional(),
  currency: CurrencyCode,
  country: z.string().regex(/^[A-Za-z]{2}$/, "must be an ISO 3166-1 alpha-2 country code").transform((s) => s.toUpperCase()).nullable().optional(),
  region: z.string().regex(/^[A-Za-z0-9]{1,3}$/, "must be an ISO 3166-2 subdivision code such as CA").transform((s) => s.toUpperCase()).nullable().optional(),
  taxExempt: z.boolean().optional(),
  taxCertificate: TaxCertificate.nullable().optional(),
  metadata: Metadata.optional(),
};

export const CreateCustomer = z
  .object({
    id: z.string().regex(/^cus_[A-Za-z0-9_]{1,60}$/, "must look like cus_…").optional(),
    ...CustomerFields,
    currency: CustomerFields.currency.default("USD"),
    testClockId: z.string().optional().openapi({ description: "Put the customer (and its subscriptions) on a test clock" }),
  })
  .openapi("CreateCustomer");

export const UpdateCustomer = z.object(CustomerFields).partial().openapi("UpdateCustomer");

export const Customer = z
  .object({
    id: z.string(),
    email: z.string(),
    name: z.string().nullable(),
    currency: z.string(),
    country: z.string().nullable(),
    region: z.string().nullable(),
    taxExempt: z.boolean(),
    taxCertificate: z.object({ id: z.string(), expiresAt: z.string().nullable() }).nullable(),
    metadata: z.record(z.string(), z.string()),
    creditBalance: z.object({ amount: z.string(), amountMinor: z.number().int() }).openapi({ description: "Credit its active grants hold (see GET /api/v1/customers/{id}/credit-balance), used by its next invoices" }),
    testClockId: z.string().nullable(),
    deleted: z.boolean().openapi({ description: "Deleted (DELETE /api/v1/customers/{id}): still readable with its invoices and history, not listed by default" }),
    deletedAt: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Customer");
