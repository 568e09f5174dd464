import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { errorResponses, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./exposition";

/** Prometheus scrape endpoint (needs a token: configure the scraper with a viewer token). */
export const metricsRoutes = router().openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Monitoring"],
    summary: "Prometheus metrics: counters recorded with the events they count, gauges computed live from D1",
    middleware: [requireRole(access.read)] as const,
    responses: { 200: { description: "Text exposition format", content: { "text/plain": { schema: z.string() } } }, ...errorResponses },
  }),
  async (c) => c.text(await renderPrometheus(dbOf(c.env)), 200, { "content-type": PROMETHEUS_CONTENT_TYPE }),
);
