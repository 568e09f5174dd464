import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { HonoEnv } from "../../env";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, DateOrInstant, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { subscriptionStatuses } from "../../db/schema";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { ok } from "../../platform/failure";
import { CreateSubscription, prorationBehaviors, Subscription } from "./schemas";
import { cancel, changePlan, pause, previewPlanChange, resume } from "./lifecycle";
import { setDiscount } from "./discount";
import { percentOf } from "../coupons/service";
import { money } from "../../domain/money";
import { endExclusiveOf, iso, startOf } from "../../lib/time";
import { createSubscription, getSubscriptionRow, listSubscriptions, toSubscription } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "sub_123" }) });

export const subscriptionRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Subscriptions"],
      operationId: "createSubscription",
      summary: "Subscribe a customer to a plan",
      description: "Starts a subscription on the plan's latest version, with an optional trial and billing anchor. The customer and plan must share a currency; advance fees are invoiced at once.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: jsonBody(CreateSubscription),
      responses: { 201: jsonResponse(Subscription, "The new subscription"), ...problems(409, 422) },
    }),
    async (c) => respond(c, await createSubscription(services(c), c.req.valid("json")), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Subscriptions"],
      operationId: "listSubscriptions",
      summary: "List subscriptions",
      description: "Newest first, cursor-paginated, filtered by `customerId` and `status`.",
      middleware: [requireScopeOrRole("subscriptions:read", access.read)] as const,
      request: { query: PaginationQuery.extend({ customerId: z.string().optional(), status: z.enum(subscriptionStatuses).optional() }) },
      responses: { 200: jsonResponse(listOf(Subscription), "A page of subscriptions") },
    }),
    async (c) => c.json(await listSubscriptions(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Subscriptions"],
      operationId: "getSubscription",
      summary: "Get a subscription",
      description: "The subscription with its current period, trial, pause and cancellation state.",
      middleware: [requireScopeOrRole("subscriptions:read", access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Subscription, "The subscription"), ...problems(404) },
    }),
    async (c) => {
      const found = await getSubscriptionRow(dbOf(c.env), c.req.valid("param").id);
      return found.ok ? c.json(toSubscription(found.value), 200) : problem(c, found.error);
    },
  );


/** The subscription and the request's Services in its time (its test clock's, or the request's). */
async function subscriptionAndNow(c: Context<HonoEnv>, id: string) {
  const s = services(c);
  const found = await getSubscriptionRow(s.db, id);
  if (!found.ok) return found;
  const sub = found.value;
  const now = await s.clock.at(sub.testClockId);
  return ok({ db: s.db, sub, now, s: s.withNow(now) });
}

const LifecycleResult = Subscription;
const ProrationLine = z.object({ description: z.string(), amount: z.string(), amountMinor: z.number().int(), period: z.object({ start: z.string(), end: z.string() }), computation: z.string() });

subscriptionRoutes
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/pause",
      tags: ["Subscriptions"],
      operationId: "pauseSubscription",
      summary: "Pause a subscription",
      description: "Pauses billing; the subscription resumes automatically on `resumeDate` when given.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: { params: IdParam, ...jsonBody(z.object({ reason: z.string().min(1).max(200), resumeDate: DateOrInstant.optional() })) },
      responses: { 200: jsonResponse(LifecycleResult, "The paused subscription"), ...problems(404, 409, 422) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const found = await subscriptionAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { s, sub } = found.value;
      const after = await pause(s, sub, { reason: body.reason, resumeDate: body.resumeDate ? startOf(body.resumeDate) : undefined });
      return after.ok ? c.json(toSubscription(after.value), 200) : problem(c, after.error);
    },
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/{id}/discount",
      tags: ["Subscriptions"],
      operationId: "setSubscriptionDiscount",
      summary: "Set or remove a subscription discount",
      description: "Sets the percentage off every invoice line from the next invoice on, or removes it with null (audited).",
      middleware: [requireRole(access.subscriptions)] as const,
      request: {
        params: IdParam,
        ...jsonBody(
          z.object({
            discountPercent: z.union([z.string(), z.number()]).nullable().openapi({ type: "string", example: "25", description: "0-100, at most 4 decimals; null removes it" }),
            until: DateOrInstant.nullable().optional().openapi({ description: "Last day (UTC, inclusive) or instant of invoices it covers; omitted or null: until removed" }),
            reason: z.string().min(1).max(200).optional(),
          }),
        ),
      },
      responses: { 200: jsonResponse(LifecycleResult, "The subscription with its new discount"), ...problems(404, 409, 422) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const found = await subscriptionAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { sub, now } = found.value;
      const percent = body.discountPercent === null ? null : percentOf(body.discountPercent, "discountPercent");
      if (percent && !percent.ok) return problem(c, percent.error);
      const discountPercent = percent ? percent.value : null;
      const until = body.until ? endExclusiveOf(body.until) - 1 : null;
      const after = await setDiscount(services(c).withNow(now), sub, { discountPercent, until, reason: body.reason });
      return after.ok ? c.json(toSubscription(after.value), 200) : problem(c, after.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/resume",
      tags: ["Subscriptions"],
      operationId: "resumeSubscription",
      summary: "Resume a paused subscription",
      description: "Resumes a paused subscription now; 409 when it is not paused.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(LifecycleResult, "The resumed subscription"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await subscriptionAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { s, sub } = found.value;
      const after = await resume(s, sub);
      return after.ok ? c.json(toSubscription(after.value), 200) : problem(c, after.error);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/plan/preview",
      operationId: "previewSubscriptionPlanChange",
      tags: ["Subscriptions"],
      summary: "Preview a plan change: the proration lines and net that PUT /{id}/plan with the same input would add",
      description: "Computes, without changing anything, what the plan change would do now (in the subscription's clock time): the same lines and net as the change itself, or the scheduled time when it is not immediate.",
      middleware: [requireRole(access.read)] as const,
      request: {
        params: IdParam,
        query: z.object({
          newPlanId: z.string().min(1),
          prorate: z.enum(["true", "false"]).default("true").openapi({ description: "As the change's `prorate`" }),
          effectiveDate: z.union([z.literal("now"), z.literal("next_billing_cycle"), DateOrInstant]).default("now"),
          quantity: z.coerce.number().int().min(1).max(1_000_000).optional(),
        }),
      },
      responses: {
        200: jsonResponse(
          z.object({ effectiveAt: z.string(), scheduled: z.boolean(), prorationLines: z.array(ProrationLine), net: z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() }), note: z.string().nullable() }),
          "What the change would add to the next invoice",
        ),
        ...problems(404, 409, 422),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const found = await subscriptionAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { s, sub, now } = found.value;
      const effective = q.effectiveDate === "now" || q.effectiveDate === "next_billing_cycle" ? q.effectiveDate : startOf(q.effectiveDate);
      const preview = await previewPlanChange(s, sub, { newPlanId: q.newPlanId, prorate: q.prorate === "true", effective, quantity: q.quantity }, now);
      if (!preview.ok) return problem(c, preview.error);
      const r = preview.value;
      return c.json(
        {
          effectiveAt: iso(r.effectiveAt),
          scheduled: r.scheduled,
          prorationLines: r.lines.map((l) => ({ description: l.description, ...money(l.amount, sub.currency), period: { start: iso(l.periodStart), end: iso(l.periodEnd) }, computation: l.computation })).map(({ currency: _c, ...rest }) => rest),
          net: money(r.net, sub.currency),
          note: r.note,
        },
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/{id}/plan",
      tags: ["Subscriptions"],
      operationId: "changeSubscriptionPlan",
      summary: "Change a subscription's plan",
      description: "Now (prorated by the second, as invoice lines), at the next billing cycle, or on a date.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: {
        params: IdParam,
        ...jsonBody(
          z.object({
            newPlanId: z.string().min(1),
            prorate: z.boolean().default(true).openapi({ description: "Kept for compatibility; prorationBehavior wins when given" }),
            prorationBehavior: z.enum(prorationBehaviors).optional().openapi({ description: "create_prorations: proration lines on the next invoice (prorate true); none: no proration (prorate false); always_invoice: prorate and invoice the lines when the change takes effect (now, or at effectiveDate)" }),
            effectiveDate: z.union([z.literal("now"), z.literal("next_billing_cycle"), DateOrInstant]).default("now"),
            quantity: z.number().int().min(1).max(1_000_000).optional(),
          }),
        ),
      },
      responses: {
        200: jsonResponse(
          z.object({
            subscription: Subscription,
            effectiveAt: z.string(),
            scheduled: z.boolean(),
            prorationLines: z.array(ProrationLine),
            net: z.object({ amount: z.string(), amountMinor: z.number().int(), currency: z.string() }),
            invoiceId: z.string().nullable().openapi({ description: "The invoice made at once (always_invoice, or a change of billing interval); null when the lines wait for the next invoice" }),
          }),
          "The change, with the proration lines added to the next invoice",
        ),
        ...problems(404, 409, 422),
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const found = await subscriptionAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { s, sub } = found.value;
      const effective = body.effectiveDate === "now" || body.effectiveDate === "next_billing_cycle" ? body.effectiveDate : startOf(body.effectiveDate);
      const prorate = body.prorationBehavior ? body.prorationBehavior !== "none" : body.prorate;
      const changed = await changePlan(s, sub, { newPlanId: body.newPlanId, prorate, effective, quantity: body.quantity, invoiceNow: body.prorationBehavior === "always_invoice" });
      if (!changed.ok) return problem(c, changed.error);
      const r = changed.value;
      return c.json(
        {
          subscription: toSubscription(r.subscription),
          effectiveAt: iso(r.effectiveAt),
          scheduled: r.scheduled,
          prorationLines: r.lines.map((l) => ({ description: l.description, ...money(l.amount, sub.currency), period: { start: iso(l.periodStart), end: iso(l.periodEnd) }, computation: l.computation })).map(({ currency: _c, ...rest }) => rest),
          net: money(r.net, sub.currency),
          invoiceId: r.invoiceId,
        },
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/cancel",
      tags: ["Subscriptions"],
      operationId: "cancelSubscription",
      summary: "Cancel a subscription",
      description: "At period end, or immediately with a final invoice and an optional prorated credit for unused advance fees.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: {
        params: IdParam,
        ...jsonBody(
          z.object({
            reason: z.string().min(1).max(200),
            feedback: z.string().max(2000).optional(),
            cancelAtPeriodEnd: z.boolean().default(true),
            prorate: z.boolean().default(false).openapi({ description: "Immediate cancellation: credit the unused time of advance fees" }),
          }),
        ),
      },
      responses: { 200: jsonResponse(z.object({ subscription: Subscription, finalInvoiceId: z.string().nullable() }), "The canceled (or scheduled) subscription"), ...problems(404, 409) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const found = await subscriptionAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { s, sub } = found.value;
      const canceled = await cancel(s, sub, body);
      if (!canceled.ok) return problem(c, canceled.error);
      const r = canceled.value;
      return c.json({ subscription: toSubscription(r.subscription), finalInvoiceId: r.invoiceId }, 200);
    },
  );
