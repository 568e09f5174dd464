import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { invalid, ok } from "../../platform/failure";
import { ApplyDiscount, Coupon, CreateCoupon, CreatePromotionCode, Discount, PromotionCode } from "./schemas";
import { createCoupon, createPromotionCode, deactivatePromotionCode, deleteCoupon, getCouponRow, getPromotionCodeRow, listCoupons, listPromotionCodes, resolveRedemption, toCoupon, toPromotionCode } from "./service";
import { currentDiscount, toDiscount } from "./discounts";
import { applyDiscount } from "../subscriptions/discount";
import { getSubscriptionRow, toSubscription } from "../subscriptions/service";
import { Subscription } from "../subscriptions/schemas";

const IdParam = (example: string) => z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example }) });
const tags = ["Coupons"];

export const couponRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      operationId: "createCoupon",
      tags,
      summary: "Create a coupon",
      description: "A percentage (`percentOff`, rounded per invoice line half away from zero) or a fixed amount (`amountOff` + `currency`, spread over the invoice's positive lines) off, for `once` (one billing period), `repeating` (`durationInMonths`, counted in billing periods) or `forever`.",
      middleware: [requireRole(access.catalogue)] as const,
      request: jsonBody(CreateCoupon),
      responses: { 201: jsonResponse(Coupon, "The new coupon"), ...problems(404, 409, 422) },
    }),
    async (c) => respond(c, await createCoupon(services(c), c.req.valid("json")), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "listCoupons",
      tags,
      summary: "List coupons, newest first",
      description: "Deleted coupons included (`deletedAt`).",
      middleware: [requireRole(access.read)] as const,
      request: { query: PaginationQuery },
      responses: { 200: jsonResponse(listOf(Coupon), "A page of coupons"), ...problems(404, 409) },
    }),
    async (c) => c.json(await listCoupons(dbOf(c.env), c.req.valid("query"), services(c).clock.wall), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      operationId: "getCoupon",
      tags,
      summary: "Get a coupon",
      description: "With `timesRedeemed` and whether it can still be redeemed (`valid`).",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam("SPRING25") },
      responses: { 200: jsonResponse(Coupon, "The coupon"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await getCouponRow(dbOf(c.env), c.req.valid("param").id);
      return found.ok ? c.json(toCoupon(found.value, services(c).clock.wall), 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}",
      operationId: "deleteCoupon",
      tags,
      summary: "Delete a coupon",
      description: "It can no longer be redeemed; subscriptions that have it keep their discount until it ends (Stripe's rule).",
      middleware: [requireRole(access.catalogue)] as const,
      request: { params: IdParam("SPRING25") },
      responses: { 200: jsonResponse(Coupon, "The deleted coupon"), ...problems(404, 409) },
    }),
    async (c) => respond(c, await deleteCoupon(services(c), c.req.valid("param").id), 200),
  );

export const promotionCodeRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      operationId: "createPromotionCode",
      tags,
      summary: "Create a promotion code for a coupon",
      description: "A customer-facing code (case-insensitive, unique) with its own limits: one customer, an expiry, maxRedemptions, first-time customers only.",
      middleware: [requireRole(access.catalogue)] as const,
      request: jsonBody(CreatePromotionCode),
      responses: { 201: jsonResponse(PromotionCode, "The new promotion code"), ...problems(404, 409, 422) },
    }),
    async (c) => respond(c, await createPromotionCode(services(c), c.req.valid("json")), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "listPromotionCodes",
      tags,
      summary: "List promotion codes, newest first",
      description: "Filtered by coupon or by code.",
      middleware: [requireRole(access.read)] as const,
      request: { query: PaginationQuery.extend({ couponId: z.string().optional(), code: z.string().optional() }) },
      responses: { 200: jsonResponse(listOf(PromotionCode), "A page of promotion codes"), ...problems(404, 409) },
    }),
    async (c) => c.json(await listPromotionCodes(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      operationId: "getPromotionCode",
      tags,
      summary: "Get a promotion code",
      description: "With `timesRedeemed`.",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam("promo_123") },
      responses: { 200: jsonResponse(PromotionCode, "The promotion code"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await getPromotionCodeRow(dbOf(c.env), c.req.valid("param").id);
      return found.ok ? c.json(toPromotionCode(found.value), 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/deactivate",
      operationId: "deactivatePromotionCode",
      tags,
      summary: "Deactivate a promotion code",
      description: "It can no longer be redeemed; discounts it gave keep running.",
      middleware: [requireRole(access.catalogue)] as const,
      request: { params: IdParam("promo_123") },
      responses: { 200: jsonResponse(PromotionCode, "The deactivated promotion code"), ...problems(404, 409) },
    }),
    async (c) => respond(c, await deactivatePromotionCode(services(c), c.req.valid("param").id), 200),
  );

/** Mounted under /api/v1/subscriptions. */
export const subscriptionDiscountRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/discount",
      operationId: "applySubscriptionDiscount",
      tags,
      summary: "Apply a coupon or promotion code to a subscription",
      description:
        "From the next invoice on, replacing the discount it had. Limits (maxRedemptions, redeemBy, expiry, customer, first-time, plans) are checked, and the counters move in the same batch as the discount: concurrent redemptions past a limit get 409.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: { params: IdParam("sub_123"), ...jsonBody(ApplyDiscount) },
      responses: { 200: jsonResponse(Subscription, "The subscription with its new discount"), ...problems(404, 409, 422) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const asked = body.coupon !== undefined || body.promotionCode !== undefined ? ok(body) : invalid([{ path: "coupon", message: "give coupon or promotionCode" }]);
      if (!asked.ok) return problem(c, asked.error);
      const s = services(c);
      const db = s.db;
      const found = await getSubscriptionRow(db, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const sub = found.value;
      const now = await s.clock.at(sub.testClockId);
      const redemption = await resolveRedemption(db, body, { customerId: sub.customerId, planId: sub.planId, currency: sub.currency, now });
      if (!redemption.ok) return problem(c, redemption.error);
      const after = await applyDiscount(s.withNow(now), sub, redemption.value);
      return after.ok ? c.json(toSubscription(after.value), 200) : problem(c, after.error);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/discount",
      operationId: "getSubscriptionDiscount",
      tags,
      summary: "The subscription's current discount",
      description: "404 when it has none (none applied, removed, or its periods used up).",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam("sub_123") },
      responses: { 200: jsonResponse(Discount, "The current discount"), ...problems(404, 409) },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const found = await getSubscriptionRow(db, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const sub = found.value;
      const d = await currentDiscount(db, sub.id);
      return d ? c.json(toDiscount(d.discount), 200) : problem(c, { kind: "not_found", detail: `subscription ${sub.id} has no discount` });
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}/discount",
      operationId: "deleteSubscriptionDiscount",
      tags,
      summary: "Remove the subscription's discount",
      description: "From the next invoice on; invoices already issued keep theirs.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: { params: IdParam("sub_123") },
      responses: { 200: jsonResponse(Subscription, "The subscription without a discount"), ...problems(404, 409) },
    }),
    async (c) => {
      const s = services(c);
      const found = await getSubscriptionRow(s.db, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const after = await applyDiscount(s.withNow(await s.clock.at(found.value.testClockId)), found.value, null);
      return after.ok ? c.json(toSubscription(after.value), 200) : problem(c, after.error);
    },
  );
