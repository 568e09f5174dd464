import { HTTPException } from "hono/http-exception";
import { bodyLimit } from "hono/body-limit";
import type { Context } from "hono";
import type { HonoEnv } from "./env";
import { router } from "./http/openapi";
import { ApiError, failureError, problemResponse } from "./http/problem";
import { UnexpectedFailure } from "./platform/failure";
import { IllegalTransition } from "./domain/lifecycle";
import { requestLog } from "./http/request-log";
import { httpMetrics } from "./http/metrics";
import { authenticate } from "./http/auth";
import { refuseCardNumbers } from "./http/card-data";
import { healthRoutes } from "./modules/health/routes";
import { customerRoutes } from "./modules/customers/routes";
import { planRoutes } from "./modules/plans/routes";
import { subscriptionRoutes } from "./modules/subscriptions/routes";
import { apiKeyRoutes, apiKeyScopes } from "./modules/admin/api-keys";
import { auditRoutes } from "./modules/audit/routes";
import { docsRoutes } from "./modules/docs";
import { apiInfo, bearerScheme } from "./http/api-description";
import { metricsRoutes } from "./modules/metrics/routes";
import { analyticsRoutes, weeklyRevenueRoutes } from "./modules/analytics/routes";
import { campaignRoutes } from "./modules/analytics/campaigns";
import { configRoutes, exchangeRateRoutes, featureRoutes, notificationAdminRoutes } from "./modules/admin/routes";
import { auditExportRoutes, backupRoutes, emergencyExportRoutes } from "./modules/exports/routes";
import { cardDataAuditRoutes, complianceRoutes, securityRoutes } from "./modules/compliance/routes";
import { usageRoutes } from "./modules/usage/routes";
import { openMeterRoutes } from "./modules/ingest-compat/openmeter";
import { stripeMeterEventRoutes } from "./modules/ingest-compat/stripe";
import { usageOverviewRoutes } from "./modules/usage/overview";
import { usageAlertRoutes } from "./modules/usage-alerts/routes";
import { taxRoutes } from "./modules/tax/routes";
import { invoiceRoutes } from "./modules/invoices/routes";
import { invoiceAdminRoutes, invoiceOpsRoutes } from "./modules/invoices/ops";
import { retentionRoutes } from "./modules/retention/routes";
import { subscriptionStatsRoutes } from "./modules/subscriptions/stats";
import { testClockRoutes } from "./modules/test-clocks/routes";
import { gatewayAdminRoutes, gatewayRoutes } from "./modules/gateways/routes";
import { dlqRoutes, paymentAdminRoutes, paymentRoutes } from "./modules/payments/routes";
import { emergencyRoutes } from "./modules/emergency/routes";
import { refundRoutes } from "./modules/refunds/routes";
import { eventRoutes } from "./modules/events/routes";
import { stripeWebhookRoutes, webhookAdminRoutes } from "./modules/webhooks/routes";
import { eventResendRoutes, webhookEndpointRoutes } from "./modules/webhook-endpoints/routes";
import { reconciliationRoutes, reportRoutes } from "./modules/reconciliation/routes";
import { consoleRoutes } from "./modules/console/routes";
import { couponRoutes, promotionCodeRoutes, subscriptionDiscountRoutes } from "./modules/coupons/routes";
import { creditRoutes } from "./modules/credits/routes";
import { servers, tags } from "./http/openapi-document";
import { documentsAdminRoutes, hostedInvoiceRoutes, invoiceDocumentRoutes } from "./modules/documents/routes";
import { creditNoteRoutes } from "./modules/credit-notes/routes";

export const MAX_BODY_BYTES = 2 * 1024 * 1024;

function toApiError(err: Error): ApiError {
  if (err instanceof ApiError) return err;
  // A failure a caller chose not to handle (valueOrThrow) still answers with its own kind, never a 500.
  if (err instanceof UnexpectedFailure) return failureError(err.failure);
  // A lifecycle owner refused a move its table does not declare: the object is in another state now.
  if (err instanceof IllegalTransition) return new ApiError("conflict", err.message, [{ path: "status", message: `is ${err.from}` }]);
  if (err instanceof HTTPException) {
    // Hono's own 400 for unparseable JSON bodies, 413 from the body limit, and the like.
    if (err.status === 400) return new ApiError("bad_request", err.message || "malformed request", [{ path: "(body)", message: err.message || "malformed JSON" }]);
    if (err.status === 413) return new ApiError("payload_too_large", `request body exceeds ${MAX_BODY_BYTES} bytes`);
    if (err.status === 401) return new ApiError("unauthorized", err.message);
    if (err.status === 415) return new ApiError("unsupported_media_type", `${err.message || "unsupported media type"}: send Content-Type: application/json`);
    if (err.status >= 400 && err.status < 500) return new ApiError("bad_request", err.message || "bad request");
    return new ApiError("internal", "an unexpected error occurred; quote the request id when reporting it");
  }
  return new ApiError("internal", "an unexpected error occurred; quote the request id when reporting it");
}

export function createApp() {
  const app = router();
  app.use("*", requestLog);
  app.use("*", httpMetrics);
  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError("payload_too_large", `request body exceeds ${MAX_BODY_BYTES} bytes`);
      },
    }),
  );
  app.use("/api/*", authenticate);
  app.use("/admin/*", authenticate);
  app.use("/metrics", authenticate);
  app.use("/openmeter/*", authenticate);
  // Before any route or idempotency record can store it (not /webhooks/stripe: Stripe signs those payloads).
  app.use("/api/*", refuseCardNumbers);
  app.use("/admin/*", refuseCardNumbers);
  app.use("/openmeter/*", refuseCardNumbers);
  // Idempotency-Key is honoured by the route guards (requireRole, requireScopeOrRole), after authorization.

  app.route("/health", healthRoutes);
  app.route("/api/v1/customers", customerRoutes);
  app.route("/api/v1/plans", planRoutes);
  app.route("/api/v1/subscriptions", subscriptionStatsRoutes);
  app.route("/api/v1/subscriptions", subscriptionRoutes);
  app.route("/api/v1/subscriptions", usageAlertRoutes);
  app.route("/api/v1/usage", usageOverviewRoutes);
  app.route("/api/v1/usage", usageRoutes);
  app.route("/api/v1/audit", auditExportRoutes);
  app.route("/api/v1/audit", auditRoutes);
  app.route("/api/v1/tax", taxRoutes);
  app.route("/api/v1/invoices", invoiceOpsRoutes);
  app.route("/api/v1/invoices", invoiceRoutes);
  app.route("/api/v1/invoices", invoiceDocumentRoutes);
  app.route("/api/v1/credit-notes", creditNoteRoutes);
  app.route("/i", hostedInvoiceRoutes);
  app.route("/admin/invoices", invoiceAdminRoutes);
  app.route("/admin/retention", retentionRoutes);
  app.route("/api/v1/test-clocks", testClockRoutes);
  app.route("/api/v1/gateways", gatewayRoutes);
  app.route("/admin/gateways", gatewayAdminRoutes);
  app.route("/api/v1/payments", paymentRoutes);
  app.route("/admin/payments", paymentAdminRoutes);
  app.route("/admin/dlq", dlqRoutes);
  app.route("/admin/emergency", emergencyRoutes);
  app.route("/api/v1/refunds", refundRoutes);
  app.route("/api/v1/coupons", couponRoutes);
  app.route("/api/v1/promotion-codes", promotionCodeRoutes);
  app.route("/api/v1/subscriptions", subscriptionDiscountRoutes);
  app.route("/api/v1/customers", creditRoutes);
  app.route("/api/v1/events", eventRoutes);
  app.route("/api/v1/events", eventResendRoutes);
  app.route("/api/v1/webhook-endpoints", webhookEndpointRoutes);
  app.route("/webhooks/stripe", stripeWebhookRoutes);
  app.route("/admin/webhooks", webhookAdminRoutes);
  app.route("/api/v1/reconciliation", reconciliationRoutes);
  app.route("/api/v1/reports", reportRoutes);
  app.route("/api/v1/reports", weeklyRevenueRoutes);
  app.route("/api/v1/analytics", analyticsRoutes);
  app.route("/api/v1/campaigns", campaignRoutes);
  app.route("/api/v1/compliance", complianceRoutes);
  app.route("/admin/config/documents", documentsAdminRoutes);
  app.route("/admin/config", configRoutes);
  app.route("/admin/features", featureRoutes);
  app.route("/admin/notifications", notificationAdminRoutes);
  app.route("/admin/exchange-rates", exchangeRateRoutes);
  app.route("/admin/emergency", emergencyExportRoutes);
  app.route("/admin/backups", backupRoutes);
  app.route("/admin/security", securityRoutes);
  app.route("/admin/audit", cardDataAuditRoutes);
  app.route("/admin/api-keys", apiKeyRoutes);
  // Drop-in ingestion: Stripe's meter event paths (at the root, as Stripe's SDK calls them) and OpenMeter's API.
  app.route("/", stripeMeterEventRoutes);
  app.route("/openmeter", openMeterRoutes);
  app.route("/docs", docsRoutes);
  app.route("/metrics", metricsRoutes);
  app.route("/console", consoleRoutes);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", bearerScheme(apiKeyScopes));
  const docConfig = {
    openapi: "3.1.0",
    info: apiInfo,
    servers,
    tags,
    security: [{ bearer: [] }],
  };
  // The generated document, plus the Idempotency-Key header every state-changing operation accepts.
  app.get("/openapi.json", (c) => {
    const doc = app.getOpenAPI31Document(docConfig);
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      for (const method of ["post", "put", "patch", "delete"] as const) {
        const op = (item as Record<string, { parameters?: unknown[] } | undefined>)[method];
        if (!op || path === "/api/v1/usage" || path === "/openmeter/api/v1/events" || path.startsWith("/v1/billing/") || path.startsWith("/v2/billing/") || path.startsWith("/webhooks/")) continue;
        op.parameters = [
          ...(op.parameters ?? []),
          { name: "Idempotency-Key", in: "header", required: false, description: "Makes the request safe to retry for 24 h", schema: { type: "string", maxLength: 255 } },
        ];
      }
    }
    return c.json(doc);
  });

  app.notFound((c) => problemResponse(c as Context<HonoEnv>, new ApiError("not_found", `no route for ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => {
    const apiError = toApiError(err);
    if (apiError.status >= 500) {
      console.log(JSON.stringify({ level: "error", msg: "unhandled error", requestId: c.get("requestId"), error: String(err), stack: err.stack }));
    }
    return problemResponse(c as Context<HonoEnv>, apiError);
  });
  return app;
}

export const app = createApp();
export type App = typeof app;
