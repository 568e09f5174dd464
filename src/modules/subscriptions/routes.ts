import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { errorResponses, jsonBody, jsonResponse, listOf, PaginationQuery, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { subscriptionStatuses } from "../../db/schema";
import { auditCtx } from "../../http/context";
import { CreateSubscription, Subscription } from "./schemas";
import { createSubscription, getSubscriptionRow, listSubscriptions, toSubscription } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "sub_123" }) });

export const subscriptionRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Subscriptions"],
      summary: "Subscribe a customer to a plan",
      middleware: [requireRole(access.subscriptions)] as const,
      request: jsonBody(CreateSubscription),
      responses: { 201: jsonResponse(Subscription, "The new subscription"), ...errorResponses },
    }),
    async (c) => c.json(await createSubscription(c.env, dbOf(c.env), c.req.valid("json"), auditCtx(c)), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Subscriptions"],
      summary: "List subscriptions, filtered by customer and status",
      middleware: [requireRole(access.read)] as const,
      request: { query: PaginationQuery.extend({ customerId: z.string().optional(), status: z.enum(subscriptionStatuses).optional() }) },
      responses: { 200: jsonResponse(listOf(Subscription), "A page of subscriptions"), ...errorResponses },
    }),
    async (c) => c.json(await listSubscriptions(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Subscriptions"],
      summary: "Get a subscription",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Subscription, "The subscription"), ...errorResponses },
    }),
    async (c) => c.json(toSubscription(await getSubscriptionRow(dbOf(c.env), c.req.valid("param").id)), 200),
  );
