import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { services } from "../../http/context";
import type { Context } from "hono";
import type { HonoEnv } from "../../env";
import { creditGrantStatuses } from "../../db/schema";
import { getCustomerRow } from "../customers/service";
import { ok, valueOrThrow } from "../../platform/failure";
import { problem, respond } from "../../http/problem";
import { purchaseCredit } from "../invoices/credit-purchase";
import { CreateCreditGrant, CreditBalance, CreditGrant, VoidCreditGrant } from "./schemas";
import { toGrant } from "./ledger";
import { createPromotionalGrant, creditBalance, getGrantRow, grantInputOf, listGrants, voidGrantById } from "./service";

const tags = ["Credits"];
const CustomerParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "cus_123" }) });
const GrantParams = CustomerParam.extend({ grantId: z.string().openapi({ param: { name: "grantId", in: "path" }, example: "cgr_123" }) });

/** The customer and "now" in its time (its test clock's, or the request's). */
async function customerAndNow(c: Context<HonoEnv>, id: string) {
  const s = services(c);
  const found = await getCustomerRow(s.db, id);
  if (!found.ok) return found;
  return ok({ db: s.db, customer: found.value, now: await s.clock.at(found.value.testClockId) });
}

/** Mounted under /api/v1/customers. */
export const creditRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/credit-grants",
      operationId: "createCreditGrant",
      tags,
      summary: "Grant prepaid or promotional credit to a customer",
      description:
        "promotional: usable at once. paid: an invoice for the purchase is issued and collected like any other; the grant is `pending` until that invoice is paid (then `active`, with a `granted` movement), and is voided with it. Invoices use grants before charging, by priority (0 first), then earliest expiry, each within its meter scope.",
      middleware: [requireRole(access.finance)] as const,
      request: { params: CustomerParam, ...jsonBody(CreateCreditGrant) },
      responses: { 201: jsonResponse(CreditGrant, "The new grant (pending for a paid one until its invoice is paid)"), ...problems(404, 409, 422) },
    }),
    async (c) => {
      const found = await customerAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { db, customer, now } = found.value;
      const checked = grantInputOf(customer, c.req.valid("json"), now);
      if (!checked.ok) return problem(c, checked.error);
      const input = checked.value;
      const s = services(c).withNow(now);
      const grant = input.category === "paid" ? (await purchaseCredit(s, customer, input)).grant : await createPromotionalGrant(s, customer, input);
      return c.json(toGrant(valueOrThrow(await getGrantRow(db, customer.id, grant.id)), now), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/credit-grants",
      operationId: "listCreditGrants",
      tags,
      summary: "List a customer's credit grants, newest first",
      description: "Every grant, whatever its status (pending, active, expired, voided).",
      middleware: [requireRole(access.read)] as const,
      request: { params: CustomerParam, query: PaginationQuery.extend({ status: z.enum(creditGrantStatuses).optional() }) },
      responses: { 200: jsonResponse(listOf(CreditGrant), "A page of grants"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await customerAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { db, customer, now } = found.value;
      return c.json(await listGrants(db, customer.id, c.req.valid("query"), now), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/credit-grants/{grantId}",
      operationId: "getCreditGrant",
      tags,
      summary: "Get a credit grant",
      description: "With what is left of it and whether it is usable now.",
      middleware: [requireRole(access.read)] as const,
      request: { params: GrantParams },
      responses: { 200: jsonResponse(CreditGrant, "The grant"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await customerAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { db, customer, now } = found.value;
      const grant = await getGrantRow(db, customer.id, c.req.valid("param").grantId);
      return grant.ok ? c.json(toGrant(grant.value, now), 200) : problem(c, grant.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/credit-grants/{grantId}/void",
      operationId: "voidCreditGrant",
      tags,
      summary: "Void a credit grant",
      description: "What is left of it leaves the balance (a `voided` movement); credit already applied to invoices stays applied. A paid grant still waiting for its invoice is voided by voiding that invoice.",
      middleware: [requireRole(access.finance)] as const,
      request: { params: GrantParams, ...jsonBody(VoidCreditGrant) },
      responses: { 200: jsonResponse(CreditGrant, "The voided grant"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await customerAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { customer, now } = found.value;
      return respond(c, await voidGrantById(services(c).withNow(now), customer.id, c.req.valid("param").grantId, c.req.valid("json").reason ?? "voided"), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/credit-balance",
      operationId: "getCreditBalance",
      tags,
      summary: "A customer's credit balance and its ledger",
      description: "Usable credit now (paid and promotional), pending purchases, and every movement newest first: granted, applied (to invoice X), returned (by a void), expired, voided.",
      middleware: [requireRole(access.read)] as const,
      request: { params: CustomerParam, query: PaginationQuery },
      responses: { 200: jsonResponse(CreditBalance, "The balance and a page of movements"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await customerAndNow(c, c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { db, customer, now } = found.value;
      return c.json(await creditBalance(db, customer, c.req.valid("query"), now), 200);
    },
  );
