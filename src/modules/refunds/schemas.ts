import { z } from "@hono/zod-openapi";
import { refundStatuses } from "../../db/schema";
import { PaginationQuery } from "../../http/openapi";

const Reason = z.string().trim().min(1).max(100).openapi({ example: "customer_request", description: "Free text; also the `reason` label of billing_refunds_total" });

export const CreateRefund = z
  .object({
    paymentId: z.string().min(1).openapi({ example: "pay_123" }),
    amount: z
      .union([z.number(), z.string()])
      .optional()
      .openapi({ example: 99.99, description: "Major units of the payment's currency (number or decimal string); omitted = everything still refundable" }),
    reason: Reason.default("customer_request"),
    notify: z.boolean().default(false).openapi({ description: "Queue a refund.issued notification to the customer" }),
  })
  .openapi("CreateRefund");

export const Refund = z
  .object({
    id: z.string(),
    paymentId: z.string(),
    amount: z.string(),
    amountMinor: z.number().int(),
    currency: z.string(),
    reason: z.string(),
    status: z.enum(refundStatuses),
    gateway: z.string().nullable(),
    gatewayRefundId: z.string().nullable(),
    failureMessage: z.string().nullable(),
    notify: z.boolean(),
    bulkId: z.string().nullable(),
    createdBy: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Refund");

export const RefundWithRemaining = Refund.extend({
  remainingRefundable: z.string().nullable().openapi({ description: "What can still be refunded on the payment (major units)" }),
  remainingRefundableMinor: z.number().int().nullable(),
}).openapi("RefundWithRemaining");

export const ListRefundsQuery = PaginationQuery.extend({
  paymentId: z.string().optional(),
  status: z.enum(refundStatuses).optional(),
  bulkId: z.string().optional(),
});

export const BulkRefundRequest = z
  .object({
    paymentIds: z.array(z.string().min(1).max(100)).min(1).max(1000).openapi({ example: ["pay_123", "pay_124", "pay_125"] }),
    reason: Reason.default("customer_request"),
    notifyCustomers: z.boolean().default(false),
  })
  .openapi("BulkRefundRequest");

export const BulkRefundAccepted = z.object({ bulkId: z.string(), queued: z.number().int() }).openapi("BulkRefundAccepted");

const MoneyTotal = z.object({ currency: z.string(), amount: z.string(), amountMinor: z.number().int() });

export const BulkRefundStatus = z
  .object({
    bulkId: z.string(),
    reason: z.string(),
    notifyCustomers: z.boolean(),
    requestedBy: z.string(),
    requestedAt: z.string(),
    counts: z.object({ total: z.number().int(), pending: z.number().int(), succeeded: z.number().int(), failed: z.number().int() }),
    refunded: z.array(MoneyTotal).openapi({ description: "Succeeded refunds, per currency" }),
    results: z.array(
      z.object({
        paymentId: z.string(),
        status: z.enum(refundStatuses).openapi({ description: "pending: queued and not processed yet, or submitted to the gateway and not settled" }),
        refundId: z.string().nullable(),
        amount: z.string().nullable(),
        amountMinor: z.number().int().nullable(),
        currency: z.string().nullable(),
        failureMessage: z.string().nullable(),
      }),
    ),
  })
  .openapi("BulkRefundStatus");

export const ReportQuery = z.object({
  startDate: z.iso.date().openapi({ example: "2024-06-01", description: "First day (UTC), inclusive" }),
  endDate: z.iso.date().optional().openapi({ example: "2024-06-30", description: "Last day (UTC), inclusive; defaults to today" }),
});

const Bucket = z.object({ count: z.number().int(), amount: z.string(), amountMinor: z.number().int() });
const ByStatus = z.object({ pending: Bucket, succeeded: Bucket, failed: Bucket });

export const RefundReport = z
  .object({
    startDate: z.string(),
    endDate: z.string(),
    currencies: z.array(
      Bucket.extend({
        currency: z.string(),
        byStatus: ByStatus,
        byReason: z.array(Bucket.extend({ reason: z.string(), byStatus: ByStatus })),
        byGateway: z.array(Bucket.extend({ gateway: z.string(), byStatus: ByStatus })),
        refunded: Bucket.openapi({ description: "Succeeded refunds" }),
        captured: Bucket.openapi({ description: "Succeeded payments created in the same range" }),
        refundRate: z.string().nullable().openapi({ example: "0.0250", description: "refunded ÷ captured, 4 decimals; null when nothing was captured" }),
      }),
    ),
  })
  .openapi("RefundReport");
