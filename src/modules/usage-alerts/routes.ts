import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, router, problems } from "../../http/openapi";
import { services } from "../../http/context";
import { dbOf } from "../../db/client";
import { problem, respond } from "../../http/problem";

import { getSubscriptionRow } from "../subscriptions/service";
import { createUsageAlert, deleteUsageAlert, listUsageAlerts } from "./service";

const UsageAlert = z
  .object({
    id: z.string(),
    object: z.literal("usage_alert"),
    subscriptionId: z.string(),
    customerId: z.string(),
    meterId: z.string(),
    threshold: z.string().openapi({ description: "Decimal, in the meter's units" }),
    createdAt: z.string(),
  })
  .openapi("UsageAlert");

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "sub_123" }) });
const AlertParams = IdParam.extend({ alertId: z.string().openapi({ param: { name: "alertId", in: "path" }, example: "ua_123" }) });

/** Mounted at /api/v1/subscriptions, beside the subscription routes. */
export const usageAlertRoutes = router();

usageAlertRoutes
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/usage-alerts",
      tags: ["Usage"],
      operationId: "createUsageAlert",
      summary: "Create a usage alert",
      description: "Alerts when a meter's usage in a period reaches a threshold: the event usage.threshold_crossed is emitted once per period.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: {
        params: IdParam,
        ...jsonBody(
          z.object({
            meterId: z.string().min(1).max(64),
            threshold: z.union([z.string(), z.number()]).openapi({ type: "string", example: "1000", description: "Positive decimal in the meter's units" }),
          }),
        ),
      },
      responses: { 201: jsonResponse(UsageAlert, "The alert"), ...problems(400, 404, 409, 422) },
    }),
    async (c) => {
      const s = services(c);
      const id = c.req.valid("param").id;
      const sub = await getSubscriptionRow(s.db, id);
      if (!sub.ok) return problem(c, sub.error);
      // In the subscription's time: its clock's, or the request's.
      return respond(c, await createUsageAlert(s.withNow(await s.clock.at(sub.value.testClockId)), id, c.req.valid("json")), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/usage-alerts",
      tags: ["Usage"],
      operationId: "listUsageAlerts",
      summary: "List a subscription's usage alerts",
      description: "Oldest first.",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(z.object({ data: z.array(UsageAlert) }), "The alerts"), ...problems(404) },
    }),
    async (c) => {
      const alerts = await listUsageAlerts(dbOf(c.env), c.req.valid("param").id);
      return alerts.ok ? c.json({ data: alerts.value }, 200) : problem(c, alerts.error);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}/usage-alerts/{alertId}",
      tags: ["Usage"],
      operationId: "deleteUsageAlert",
      summary: "Delete a usage alert",
      description: "A crossing already recorded is still delivered.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: { params: AlertParams },
      responses: { 200: jsonResponse(UsageAlert.extend({ deleted: z.literal(true) }), "The removed alert"), ...problems(404, 409) },
    }),
    async (c) => {
      const s = services(c);
      const { id, alertId } = c.req.valid("param");
      const sub = await getSubscriptionRow(s.db, id);
      if (!sub.ok) return problem(c, sub.error);
      return respond(c, await deleteUsageAlert(s.withNow(await s.clock.at(sub.value.testClockId)), id, alertId), 200);
    },
  );
