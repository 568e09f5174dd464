import { createRoute } from "@hono/zod-openapi";
import { dbOf } from "../../db/client";
import { access, requireRole } from "../../http/auth";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { jsonBody, jsonResponse, optionalJsonBody, problems, router } from "../../http/openapi";
import { gatewayPerformance } from "./performance";
import { FailoverRequest, GatewayMetrics, GatewayStatus, GatewayTestConfig, GatewayTestConfigPatch, GatewayTestReport, GatewayTestRequest, MetricsQuery, Routing, RestoreRequest, SandboxFaults } from "./schemas";
import { failover, gatewayStatus, gatewayTestConfig, planGatewayTest, restore, setGatewayTestConfig, setSandboxFaults, testGateway } from "./service";

const tags = ["Gateways"];

// The runbook's incident commands send JSON with `curl -d` and no Content-Type: router() reads a declared JSON body whatever its type.
const LENIENT = " The runbook sends this with `curl -d` and no Content-Type: the body is read as JSON whatever its type.";

// Under /api/v1/gateways.
export const gatewayRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/status",
      operationId: "getGatewayStatus",
      tags,
      summary: "Gateway status and routing",
      description:
        "Each configured gateway: role, up/down from a health round trip (cached 10 s), latency, and the current routing. Public like /health: the runbook's incident procedure calls it without a token.",
      security: [],
      responses: { 200: jsonResponse(GatewayStatus, "Gateways and routing"), ...problems(422) },
    }),
    async (c) => c.json(await gatewayStatus(services(c)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/test",
      operationId: "testGateway",
      tags,
      summary: "Test a gateway with a small charge and its refund",
      description:
        "A real round trip: a small charge of the gateway's test payment method with a fresh idempotency key, then its full refund, with both outcomes and latencies. Moves money, so it passes the PaymentGuard: 423 while payments are frozen or in queue mode. The amount is capped (GET /admin/gateways/test-config, 1.00 by default); the method is the gateway's own test method, never one the caller sends.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(GatewayTestRequest),
      responses: { 200: jsonResponse(GatewayTestReport, "Outcome of the charge and the refund (ok false when either did not succeed)"), ...problems(422, 423) },
    }),
    async (c) => {
      const plan = await planGatewayTest(services(c), c.req.valid("json"));
      if (!plan.ok) return problem(c, plan.error);
      return respond(c, await testGateway(services(c), plan.value), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      operationId: "getGatewayMetrics",
      tags,
      summary: "Gateway performance metrics",
      description: "Per gateway over 1h, 24h or 7d: attempts, outcomes, success rate, latency p50/p95/p99 and volume per currency, from the payments table.",
      middleware: [requireRole(access.read)] as const,
      request: { query: MetricsQuery },
      responses: { 200: jsonResponse(GatewayMetrics, "Gateway performance from the payments table") },
    }),
    async (c) => c.json(await gatewayPerformance(services(c), c.req.valid("query").window), 200),
  );

// Under /admin/gateways.
export const gatewayAdminRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/failover",
      operationId: "failoverGateway",
      tags,
      summary: "Fail over to the backup gateway",
      description: "Marks `primary` down so new charges go to `backup` (audited)." + LENIENT,
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(FailoverRequest),
      responses: { 200: jsonResponse(Routing, "The routing now in force"), ...problems(422) },
    }),
    async (c) => respond(c, await failover(services(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/restore",
      operationId: "restoreGateway",
      tags,
      summary: "Restore the primary gateway",
      description: "Marks the primary up again so new charges go back to it (audited)." + LENIENT,
      middleware: [requireRole(access.admin)] as const,
      request: optionalJsonBody(RestoreRequest),
      responses: { 200: jsonResponse(Routing, "The routing now in force"), ...problems(422) },
    }),
    async (c) => respond(c, await restore(services(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/test-config",
      operationId: "getGatewayTestConfig",
      tags,
      summary: "Get the gateway test configuration",
      description: "The connectivity test's amount cap and the Stripe test payment method it charges.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(GatewayTestConfig, "The configuration in force") },
    }),
    async (c) => c.json(await gatewayTestConfig(dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/test-config",
      operationId: "updateGatewayTestConfig",
      tags,
      summary: "Change the gateway test configuration",
      description: "Changes the connectivity test's cap or its Stripe test payment method (audited; fields not sent are kept).",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(GatewayTestConfigPatch),
      responses: { 200: jsonResponse(GatewayTestConfig, "The configuration now in force") },
    }),
    async (c) => c.json(await setGatewayTestConfig(services(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/sandbox/faults",
      operationId: "setSandboxFaults",
      tags,
      summary: "Inject faults into the sandbox gateway",
      description: "Sets the latency and failure rate of the sandbox gateway, for fault drills (audited). Fields not sent are 0." + LENIENT,
      middleware: [requireRole(access.admin)] as const,
      request: optionalJsonBody(SandboxFaults),
      responses: { 200: jsonResponse(SandboxFaults, "The faults now in force") },
    }),
    async (c) => c.json(await setSandboxFaults(services(c), c.req.valid("json")), 200),
  );
