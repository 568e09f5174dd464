import { z } from "@hono/zod-openapi";
import { subscriptionStatuses } from "../../db/schema";
import { Metadata } from "../customers/schemas";
import { Discount } from "../coupons/schemas";

/** Stripe's names: prorate onto the next invoice, do not prorate, or prorate and invoice at once. */
export const prorationBehaviors = ["create_prorations", "none", "always_invoice"] as const;

export const CreateSubscription = z
  .object({
    customerId: z.string().min(1),
    planId: z.string().min(1),
    quantity: z.number().int().min(1).max(1_000_000).default(1),
    trialDays: z.number().int().min(0).max(730).optional().openapi({ description: "Overrides the plan's trial days" }),
    billingAnchor: z.iso.datetime({ offset: true }).optional().openapi({ description: "Renewal anchor (ISO-8601); defaults to the start (or trial end)" }),
    paymentMethod: z.string().max(100).optional().openapi({ example: "pm_card_visa" }),
    metadata: Metadata.optional(),
    testClockId: z.string().optional().openapi({ description: "Must be the customer's test clock, if given" }),
    discountPercent: z
      .union([z.string(), z.number()])
      .transform(String)
      .optional()
      .openapi({ type: "string", example: "10", description: "Percentage off every invoice line before tax (kept for compatibility: applies a forever coupon `legacy_pct_<n>`)" }),
    coupon: z.string().min(1).optional().openapi({ description: "A coupon id to apply from the first invoice" }),
    promotionCode: z.string().min(1).optional().openapi({ description: "A promotion code (the customer-facing code) to apply from the first invoice" }),
    prorationBehavior: z
      .enum(prorationBehaviors)
      .default("create_prorations")
      .openapi({ description: "A first period shorter than a full one (billingAnchor off today's grid): create_prorations and always_invoice bill its prorated share of the advance fees on the first invoice; none bills nothing for it" }),
  })
  .openapi("CreateSubscription");

export const Subscription = z
  .object({
    id: z.string(),
    customerId: z.string(),
    planId: z.string(),
    planVersion: z.number().int(),
    status: z.enum(subscriptionStatuses),
    quantity: z.number().int(),
    currency: z.string(),
    paymentMethod: z.string().nullable(),
    billingAnchor: z.string(),
    currentPeriodStart: z.string(),
    currentPeriodEnd: z.string(),
    trialEnd: z.string().nullable(),
    cancelAtPeriodEnd: z.boolean(),
    canceledAt: z.string().nullable(),
    pausedUntil: z.string().nullable(),
    pauseReason: z.string().nullable(),
    cancelReason: z.string().nullable(),
    cancelFeedback: z.string().nullable(),
    endedAt: z.string().nullable(),
    discountPercent: z.string().nullable(),
    discountUntil: z.string().nullable().openapi({ description: "The discount covers invoices billed up to this instant; null: until removed" }),
    discount: Discount.nullable().openapi({ description: "The current discount (Stripe's subscription.discount): its coupon and promotion code, start (createdAt), end (endsAt), periods used and remaining; null: none" }),
    pendingChange: z
      .object({
        planId: z.string(),
        planVersion: z.number().int(),
        quantity: z.number().int(),
        effectiveAt: z.string(),
        prorationBehavior: z.enum(prorationBehaviors).openapi({ description: "How the change prorates when it takes effect; always_invoice invoices its prorations then" }),
      })
      .nullable(),
    testClockId: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    createdAt: z.string(),
  })
  .openapi("Subscription");
