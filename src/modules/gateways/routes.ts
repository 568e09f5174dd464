import { createRoute } from "@hono/zod-openapi";
import { dbOf } from "../../db/client";
import { access, requireRole } from "../../http/auth";
import { auditCtx } from "../../http/context";
import { lenientJson } from "../../http/lenient-json";
import { errorResponses, jsonBody, jsonResponse, router } from "../../http/openapi";
import { gatewayPerformance } from "./performance";
import { FailoverRequest, GatewayMetrics, GatewayStatus, GatewayTestConfig, GatewayTestConfigPatch, GatewayTestReport, GatewayTestRequest, MetricsQuery, Routing, RestoreRequest, SandboxFaults } from "./schemas";
import { failover, gatewayStatus, gatewayTestConfig, planGatewayTest, restore, setGatewayTestConfig, setSandboxFaults, testGateway } from "./service";

const tags = ["Gateways"];

// The runbook's incident commands send JSON with `curl -d` and no Content-Type. A declared body would make the
// validator refuse that (415), so these routes declare none and parse with lenientJson whatever the type says.
const lenientBody = (fields: string) => ({ description: `Body (JSON, any Content-Type): ${fields}` });

// Under /api/v1/gateways.
export const gatewayRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/status",
      tags,
      summary: "Each configured gateway: role, up/down from a health round trip (cached 10 s), latency, and the current routing",
      description: "Public like /health: the runbook's incident procedure calls it without a token.",
      security: [],
      responses: { 200: jsonResponse(GatewayStatus, "Gateways and routing"), ...errorResponses },
    }),
    async (c) => c.json(await gatewayStatus(c.env, dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/test",
      tags,
      summary: "A real round trip: a small charge of the gateway's test payment method with a fresh idempotency key, then its full refund, with both outcomes and latencies",
      description:
        "Moves money, so it passes the PaymentGuard: 423 while payments are frozen or in queue mode. The amount is capped (GET /admin/gateways/test-config, 1.00 by default); the method is the gateway's own test method, never one the caller sends.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(GatewayTestRequest),
      responses: { 200: jsonResponse(GatewayTestReport, "Outcome of the charge and the refund (ok false when either did not succeed)"), ...errorResponses },
    }),
    async (c) => {
      const plan = await planGatewayTest(c.env, dbOf(c.env), c.req.valid("json"));
      return c.json(await testGateway(c.env, dbOf(c.env), plan, auditCtx(c)), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      tags,
      summary: "Per gateway over 1h, 24h or 7d: attempts, outcomes, success rate, latency p50/p95/p99 and volume per currency",
      middleware: [requireRole(access.read)] as const,
      request: { query: MetricsQuery },
      responses: { 200: jsonResponse(GatewayMetrics, "Gateway performance from the payments table"), ...errorResponses },
    }),
    async (c) => c.json(await gatewayPerformance(c.env, dbOf(c.env), c.req.valid("query").window), 200),
  );

// Under /admin/gateways.
export const gatewayAdminRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/failover",
      tags,
      summary: "Mark the primary down so new charges go to the backup (audited)",
      middleware: [requireRole(access.admin)] as const,
      ...lenientBody("{ primary, backup, reason? }: the primary to mark down and the backup to send charges to"),
      responses: { 200: jsonResponse(Routing, "The routing now in force"), ...errorResponses },
    }),
    async (c) => c.json(await failover(c.env, dbOf(c.env), await lenientJson(c, FailoverRequest), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/restore",
      tags,
      summary: "Mark the primary up again so new charges go back to it (audited)",
      middleware: [requireRole(access.admin)] as const,
      ...lenientBody("{ reason? }"),
      responses: { 200: jsonResponse(Routing, "The routing now in force"), ...errorResponses },
    }),
    async (c) => c.json(await restore(c.env, dbOf(c.env), await lenientJson(c, RestoreRequest), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/test-config",
      tags,
      summary: "The connectivity test's cap and the Stripe test payment method it charges",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(GatewayTestConfig, "The configuration in force"), ...errorResponses },
    }),
    async (c) => c.json(await gatewayTestConfig(dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/test-config",
      tags,
      summary: "Change the connectivity test's cap or its Stripe test payment method (audited; fields not sent are kept)",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(GatewayTestConfigPatch),
      responses: { 200: jsonResponse(GatewayTestConfig, "The configuration now in force"), ...errorResponses },
    }),
    async (c) => c.json(await setGatewayTestConfig(dbOf(c.env), c.req.valid("json"), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/sandbox/faults",
      tags,
      summary: "Inject latency and a failure rate into the sandbox gateway (for fault drills; audited)",
      middleware: [requireRole(access.admin)] as const,
      ...lenientBody("{ latencyMs (0-30000), failureRate (0-1) }"),
      responses: { 200: jsonResponse(SandboxFaults, "The faults now in force"), ...errorResponses },
    }),
    async (c) => c.json(await setSandboxFaults(dbOf(c.env), await lenientJson(c, SandboxFaults), auditCtx(c)), 200),
  );
