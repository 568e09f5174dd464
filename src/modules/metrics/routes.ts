import { createRoute, z } from "@hono/zod-openapi";
import { services } from "../../http/context";
import { access, requireRole } from "../../http/auth";
import { router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./exposition";

/** Prometheus scrape endpoint (needs a token: configure the scraper with a viewer token). */
export const metricsRoutes = router().openapi(
  createRoute({
    method: "get",
    path: "/",
    operationId: "getMetrics",
    tags: ["Monitoring"],
    summary: "Prometheus metrics",
    description: "Text exposition format: counters recorded with the events they count, gauges computed live from D1. Scrape with a viewer token.",
    middleware: [requireRole(access.read)] as const,
    responses: { 200: { description: "Text exposition format", content: { "text/plain": { schema: z.string() } } } },
  }),
  async (c) => c.text(await renderPrometheus(dbOf(c.env), services(c).clock.wall), 200, { "content-type": PROMETHEUS_CONTENT_TYPE }),
);
