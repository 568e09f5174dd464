import { createRoute, z } from "@hono/zod-openapi";
import { dbOf } from "../../db/client";
import { access, dropApiKeyCache, requireRole } from "../../http/auth";
import { auditCtx } from "../../http/context";
import { lenientJson } from "../../http/lenient-json";
import { ProblemSchema, errorResponses, jsonBody, jsonResponse, listOf, router } from "../../http/openapi";
import { NotificationListQuery, NotificationView, listNotifications, resendNotification } from "../notifications/admin";
import { ConfigPatch, EffectiveConfig, ReloadReport, effectiveConfig, patchConfig } from "./config";
import { ExchangeRates, ExchangeRatesInput, ExchangeRatesUpdate, getExchangeRates, setExchangeRates, updateExchangeRatesFromProvider } from "./exchange-rates";
import { FeatureFlagView, FlagEvaluation, FlagInput, FlagName, deleteFlag, dropFeatureCache, evaluateStoredFlag, getFlag, listFlags, putFlag } from "./features";
import { PaymentIssueReport, PaymentIssueRequest, notifyPaymentIssue } from "./notifications";
import { dropSettingsCache } from "../../platform/settings";

// Under /admin/config.
export const configRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Admin"],
      summary: "The configuration in force, sanitized: variables, which secrets are set (never their values), billing retry settings, gateway routing, and when each stored setting was written",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(EffectiveConfig, "Effective configuration"), ...errorResponses },
    }),
    async (c) => c.json(await effectiveConfig(c.env, dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "patch",
      path: "/",
      tags: ["Admin"],
      summary: "Change billing settings (audited); answers the new effective configuration",
      description:
        "`billing` is the payments retry configuration (the one PUT /admin/payments/retry-config also writes): retryAttempts is its maxAttempts. Unknown fields are refused with their path. Other isolates pick the change up within 30 s.",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(ConfigPatch),
      responses: { 200: jsonResponse(EffectiveConfig, "Effective configuration after the change"), ...errorResponses },
    }),
    async (c) => c.json(await patchConfig(c.env, dbOf(c.env), c.req.valid("json"), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/reload",
      tags: ["Admin"],
      summary: "Drop this isolate's settings, feature-flag and API-key caches so the next read comes from D1",
      description: "Workers run many isolates; this reaches only the one serving the request. Every other isolate re-reads D1 within 30 s on its own.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(ReloadReport, "What was dropped"), ...errorResponses },
    }),
    (c) => {
      dropSettingsCache();
      const featureFlagsDropped = dropFeatureCache();
      const apiKeysDropped = dropApiKeyCache();
      return c.json(
        {
          dropped: ["settings", "features", "apiKeys"],
          featureFlagsDropped,
          apiKeysDropped,
          scope: "isolate" as const,
          detail: "the caches of the isolate that served this request were dropped; other isolates re-read D1 within 30 s (their cache lifetime)",
        },
        200,
      );
    },
  );

const NameParam = z.object({ name: FlagName.openapi({ param: { name: "name", in: "path" } }) });
const EvaluateQuery = z
  .object({ subjectId: z.string().min(1).max(255).openapi({ example: "cus_123", description: "Whose answer to compute (hashed for the percentage)" }) })
  .catchall(z.string().max(200))
  .openapi({ description: "Every other query parameter is an attribute of the subject, matched against the flag's criteria (e.g. segment=premium)" });

// Under /admin/features.
export const featureRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Feature flags"],
      summary: "Every feature flag",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(z.object({ data: z.array(FeatureFlagView) }), "Feature flags by name"), ...errorResponses },
    }),
    async (c) => c.json({ data: await listFlags(dbOf(c.env)) }, 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{name}",
      tags: ["Feature flags"],
      summary: "One feature flag",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam },
      responses: { 200: jsonResponse(FeatureFlagView, "The flag"), ...errorResponses },
    }),
    async (c) => c.json(await getFlag(dbOf(c.env), c.req.valid("param").name), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/{name}",
      tags: ["Feature flags"],
      summary: "Create or replace a feature flag (audited)",
      description:
        "`percentage` rolls the feature out to that share of matching subjects by a stable hash of flag name and subject id, so a customer keeps its answer and raising the percentage only adds customers. `criteria` must all equal the subject's attributes. Other isolates see the change within 30 s.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam, ...jsonBody(FlagInput) },
      responses: { 200: jsonResponse(FeatureFlagView, "The flag now stored"), ...errorResponses },
    }),
    async (c) => c.json(await putFlag(dbOf(c.env), c.req.valid("param").name, c.req.valid("json"), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{name}",
      tags: ["Feature flags"],
      summary: "Delete a feature flag (audited); a missing flag is off",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam },
      responses: { 204: { description: "Deleted" }, ...errorResponses },
    }),
    async (c) => {
      await deleteFlag(dbOf(c.env), c.req.valid("param").name, auditCtx(c));
      return c.body(null, 204);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{name}/evaluate",
      tags: ["Feature flags"],
      summary: "The flag's answer for one subject, with the reason",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam, query: EvaluateQuery },
      responses: { 200: jsonResponse(FlagEvaluation, "Answer and reason"), ...errorResponses },
    }),
    async (c) => {
      const { subjectId, ...attributes } = c.req.valid("query");
      return c.json(await evaluateStoredFlag(dbOf(c.env), c.req.valid("param").name, { id: subjectId, attributes: attributes as Record<string, string> }), 200);
    },
  );

// Under /admin/notifications. The runbook sends this with `curl -d` and no Content-Type: a declared JSON body would
// make the validator answer 415, so none is declared and the body is parsed leniently.
export const notificationAdminRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/payment-issue",
    tags: ["Admin"],
    summary: "Tell customers whose payment is stuck on a gateway about the issue: one notification per customer per gateway per UTC day (audited)",
    description:
      "Body (JSON, any Content-Type): { template, affectedGateway }. Picks customers with an open invoice whose latest attempt on the gateway is failed, processing or parked (a parked attempt not yet sent anywhere counts for the routing's primary). Each new notification is queued for delivery; a second call the same day notifies nobody twice.",
    middleware: [requireRole(access.admin)] as const,
    responses: { 200: jsonResponse(PaymentIssueReport, "Who was notified"), ...errorResponses },
  }),
  async (c) => c.json(await notifyPaymentIssue(c.env, dbOf(c.env), await lenientJson(c, PaymentIssueRequest), auditCtx(c)), 200),
)
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Admin"],
      summary: "List customer notifications (reminders, payment failures, gateway notices), newest first, with delivery status",
      description: "Delivery is a signed POST to NOTIFY_WEBHOOK_URL (Standard Webhooks). `status=failed` lists what customers were not told, with `lastError`.",
      middleware: [requireRole(access.customers)] as const,
      request: { query: NotificationListQuery },
      responses: { 200: jsonResponse(listOf(NotificationView), "A page of notifications"), ...errorResponses },
    }),
    async (c) => c.json(await listNotifications(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/resend",
      tags: ["Admin"],
      summary: "Queue a failed notification for delivery again, with fresh attempts (audited)",
      description: "409 when the notification is not failed (still queued, or already sent).",
      middleware: [requireRole(access.customers)] as const,
      request: { params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "ntf_123" }) }) },
      responses: { 200: jsonResponse(NotificationView, "The notification, queued again"), ...errorResponses },
    }),
    async (c) => c.json(await resendNotification(c.env, dbOf(c.env), c.req.valid("param").id, auditCtx(c)), 200),
  );

const ratesNote = "Rates are informational, for reports: invoices are always in the customer's currency and are never converted.";

// Under /admin/exchange-rates.
export const exchangeRateRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Admin"],
      summary: "The stored exchange rates (1 base = rate units of each currency)",
      description: ratesNote,
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(ExchangeRates, "Exchange rates"), ...errorResponses },
    }),
    async (c) => c.json(await getExchangeRates(dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/",
      tags: ["Admin"],
      summary: "Replace the exchange rates by hand (audited; source \"manual\")",
      description: `${ratesNote} Rates are exact positive decimal strings with at most 12 decimals; the base is not listed among them.`,
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(ExchangeRatesInput),
      responses: { 200: jsonResponse(ExchangeRates, "The rates now stored"), ...errorResponses },
    }),
    async (c) => c.json(await setExchangeRates(dbOf(c.env), c.req.valid("json"), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/update",
      tags: ["Admin"],
      summary: "Fetch the rates from the provider at EXCHANGE_RATES_URL (answering { base, rates }) and store them (audited)",
      description: `${ratesNote} Without EXCHANGE_RATES_URL the answer is 422 (use PUT). Unknown currencies in the provider's answer are skipped and listed; a provider failure (503) leaves the stored rates unchanged.`,
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(ExchangeRatesUpdate, "The rates now stored and the entries skipped"), ...errorResponses, 503: { description: "The provider failed; nothing changed", content: { "application/problem+json": { schema: ProblemSchema } } } },
    }),
    async (c) => c.json(await updateExchangeRatesFromProvider(c.env, dbOf(c.env), auditCtx(c)), 200),
  );
