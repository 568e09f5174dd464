import { z } from "@hono/zod-openapi";
import { CurrencyCode, Metadata } from "../customers/schemas";
import { closedObject } from "../../lib/schema";

const MoneyOut = z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() });

export const CreateCoupon = closedObject({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional().openapi({ example: "SPRING25", description: "Defaults to a generated `cpn_…` id" }),
  name: z.string().max(200).optional(),
  percentOff: z.union([z.string(), z.number()]).transform(String).optional().openapi({ type: "string", example: "25", description: "0-100, at most 4 decimals; or amountOff + currency" }),
  amountOff: z.union([z.string(), z.number()]).transform(String).optional().openapi({ type: "string", example: "10.00", description: "Major units of `currency`, taken off each invoice (spread over its lines)" }),
  currency: CurrencyCode.optional(),
  duration: z.enum(["once", "repeating", "forever"]).openapi({ description: "once: one billing period; repeating: durationInMonths; forever" }),
  durationInMonths: z.number().int().min(1).max(120).optional().openapi({ description: "Required for repeating; counted in billing periods of the subscription (3 months = 3 monthly periods, 1 yearly period)" }),
  maxRedemptions: z.number().int().min(1).optional().openapi({ description: "How many subscriptions may ever take this coupon" }),
  redeemBy: z.iso.datetime({ offset: true }).optional().openapi({ description: "Last instant the coupon can be applied" }),
  appliesTo: closedObject({ planIds: z.array(z.string().min(1)).min(1).max(100) }).optional().openapi({ description: "Only subscriptions on these plans" }),
  metadata: Metadata.optional(),
}).openapi("CreateCoupon");

export const Coupon = z
  .object({
    id: z.string(),
    object: z.literal("coupon"),
    name: z.string().nullable(),
    percentOff: z.string().nullable(),
    amountOff: MoneyOut.nullable(),
    duration: z.enum(["once", "repeating", "forever"]),
    durationInMonths: z.number().int().nullable(),
    maxRedemptions: z.number().int().nullable(),
    timesRedeemed: z.number().int(),
    redeemBy: z.string().nullable(),
    appliesTo: z.object({ planIds: z.array(z.string()) }).nullable(),
    valid: z.boolean().openapi({ description: "False once deleted, past redeemBy or at maxRedemptions" }),
    metadata: z.record(z.string(), z.string()),
    deletedAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi("Coupon");

export const CreatePromotionCode = closedObject({
  couponId: z.string().min(1),
  code: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).openapi({ example: "WELCOME10", description: "Case-insensitive; unique" }),
  customerId: z.string().optional().openapi({ description: "Only this customer may use it" }),
  expiresAt: z.iso.datetime({ offset: true }).optional(),
  maxRedemptions: z.number().int().min(1).optional(),
  firstTimeTransaction: z.boolean().optional().openapi({ description: "Only customers with no paid invoice yet" }),
}).openapi("CreatePromotionCode");

export const PromotionCode = z
  .object({
    id: z.string(),
    object: z.literal("promotion_code"),
    code: z.string(),
    couponId: z.string(),
    customerId: z.string().nullable(),
    expiresAt: z.string().nullable(),
    maxRedemptions: z.number().int().nullable(),
    timesRedeemed: z.number().int(),
    firstTimeTransaction: z.boolean(),
    active: z.boolean(),
    createdAt: z.string(),
  })
  .openapi("PromotionCode");

export const Discount = z
  .object({
    id: z.string(),
    object: z.literal("discount"),
    subscriptionId: z.string(),
    customerId: z.string(),
    couponId: z.string(),
    promotionCodeId: z.string().nullable(),
    periods: z.number().int().nullable().openapi({ description: "Billing-period invoices it covers; null: forever" }),
    periodsUsed: z.number().int(),
    periodsRemaining: z.number().int().nullable().openapi({ description: "Billing-period invoices it still covers; null: forever" }),
    endsAt: z.string().nullable().openapi({ description: "Also bounded in time (migrated day-based discounts, retention offers)" }),
    endedAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi("Discount");

export const ApplyDiscount = closedObject({
  coupon: z.string().min(1).optional().openapi({ description: "A coupon id" }),
  promotionCode: z.string().min(1).optional().openapi({ description: "A promotion code (the code, not its id)" }),
}).openapi("ApplyDiscount");
