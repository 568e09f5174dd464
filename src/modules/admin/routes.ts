import { createRoute, z } from "@hono/zod-openapi";
import { dbOf } from "../../db/client";
import { access, dropApiKeyCache, requireRole } from "../../http/auth";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { jsonBody, jsonResponse, listOf, problemResponse, problems, router } from "../../http/openapi";
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
      operationId: "getConfig",
      tags: ["Admin"],
      summary: "Get the configuration in force",
      description:
        "Sanitized: variables, which secrets are set (never their values), billing retry settings, gateway routing, and when each stored setting was written.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(EffectiveConfig, "Effective configuration") },
    }),
    async (c) => c.json(await effectiveConfig(services(c)), 200),
  )
  .openapi(
    createRoute({
      method: "patch",
      path: "/",
      operationId: "updateConfig",
      tags: ["Admin"],
      summary: "Change billing settings",
      description:
        "Audited; answers the new effective configuration. `billing` is the payments retry configuration (the one PUT /admin/payments/retry-config also writes): retryAttempts is its maxAttempts. Unknown fields are refused with their path. Other isolates pick the change up within 30 s.",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(ConfigPatch),
      responses: { 200: jsonResponse(EffectiveConfig, "Effective configuration after the change"), ...problems(422) },
    }),
    async (c) => respond(c, await patchConfig(services(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/reload",
      operationId: "reloadConfig",
      tags: ["Admin"],
      summary: "Drop the configuration caches",
      description:
        "Drops this isolate's settings, feature-flag and API-key caches so the next read comes from D1. Workers run many isolates; this reaches only the one serving the request. Every other isolate re-reads D1 within 30 s on its own.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(ReloadReport, "What was dropped") },
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
      operationId: "listFeatureFlags",
      tags: ["Feature flags"],
      summary: "List feature flags",
      description: "Every stored feature flag with its percentage and criteria. A flag that is not stored is off.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(z.object({ data: z.array(FeatureFlagView) }), "Feature flags by name") },
    }),
    async (c) => c.json({ data: await listFlags(dbOf(c.env)) }, 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{name}",
      operationId: "getFeatureFlag",
      tags: ["Feature flags"],
      summary: "Get a feature flag",
      description: "One stored feature flag; 404 when it is not stored (and so off).",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam },
      responses: { 200: jsonResponse(FeatureFlagView, "The flag"), ...problems(404) },
    }),
    async (c) => respond(c, await getFlag(dbOf(c.env), c.req.valid("param").name), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/{name}",
      operationId: "putFeatureFlag",
      tags: ["Feature flags"],
      summary: "Create or replace a feature flag",
      description:
        "Audited. `percentage` rolls the feature out to that share of matching subjects by a stable hash of flag name and subject id, so a customer keeps its answer and raising the percentage only adds customers. `criteria` must all equal the subject's attributes. Other isolates see the change within 30 s.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam, ...jsonBody(FlagInput) },
      responses: { 200: jsonResponse(FeatureFlagView, "The flag now stored") },
    }),
    async (c) => c.json(await putFlag(services(c), c.req.valid("param").name, c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{name}",
      operationId: "deleteFeatureFlag",
      tags: ["Feature flags"],
      summary: "Delete a feature flag",
      description: "Deletes the flag (audited); a missing flag is off.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam },
      responses: { 204: { description: "Deleted" }, ...problems(404) },
    }),
    async (c) => {
      const deleted = await deleteFlag(services(c), c.req.valid("param").name);
      return deleted.ok ? c.body(null, 204) : problem(c, deleted.error);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{name}/evaluate",
      operationId: "evaluateFeatureFlag",
      tags: ["Feature flags"],
      summary: "Evaluate a feature flag for a subject",
      description: "The flag's answer for one subject (`subjectId` plus attributes as further query parameters), with the reason.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: NameParam, query: EvaluateQuery },
      responses: { 200: jsonResponse(FlagEvaluation, "Answer and reason"), ...problems(404) },
    }),
    async (c) => {
      const { subjectId, ...attributes } = c.req.valid("query");
      return respond(c, await evaluateStoredFlag(dbOf(c.env), c.req.valid("param").name, { id: subjectId, attributes: attributes as Record<string, string> }), 200);
    },
  );

// Under /admin/notifications. The runbook sends payment-issue with `curl -d` and no Content-Type (read as JSON all the same).
export const notificationAdminRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/payment-issue",
    operationId: "notifyPaymentIssue",
    tags: ["Admin"],
    summary: "Notify customers of a gateway payment issue",
    description:
      "Tells customers whose payment is stuck on a gateway about the issue: one notification per customer per gateway per UTC day (audited). One request notifies up to 250 customers (5 pages of 50, by id); `continues` says the rest goes on in the background. The runbook sends the body with `curl -d`: it is read as JSON whatever its Content-Type. Picks customers with an open invoice whose latest attempt on the gateway is failed, processing or parked (a parked attempt not yet sent anywhere counts for the routing's primary). Each new notification is queued for delivery; a second call the same day notifies nobody twice.",
    middleware: [requireRole(access.admin)] as const,
    request: jsonBody(PaymentIssueRequest),
    responses: { 200: jsonResponse(PaymentIssueReport, "Who was notified") },
  }),
  async (c) => c.json(await notifyPaymentIssue(services(c), c.req.valid("json")), 200),
)
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "listNotifications",
      tags: ["Admin"],
      summary: "List customer notifications",
      description:
        "Reminders, payment failures and gateway notices, newest first, with delivery status. Delivery is a signed POST to NOTIFY_WEBHOOK_URL (Standard Webhooks). `status=failed` lists what customers were not told, with `lastError`.",
      middleware: [requireRole(access.customers)] as const,
      request: { query: NotificationListQuery },
      responses: { 200: jsonResponse(listOf(NotificationView), "A page of notifications") },
    }),
    async (c) => c.json(await listNotifications(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/resend",
      operationId: "resendNotification",
      tags: ["Admin"],
      summary: "Resend a failed notification",
      description: "Queues a failed notification for delivery again, with fresh attempts (audited). 409 when the notification is not failed (still queued, or already sent).",
      middleware: [requireRole(access.customers)] as const,
      request: { params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "ntf_123" }) }) },
      responses: { 200: jsonResponse(NotificationView, "The notification, queued again"), ...problems(404, 409) },
    }),
    async (c) => respond(c, await resendNotification(services(c), c.req.valid("param").id), 200),
  );

const ratesNote = "Rates are informational, for reports: invoices are always in the customer's currency and are never converted.";

// Under /admin/exchange-rates.
export const exchangeRateRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "getExchangeRates",
      tags: ["Admin"],
      summary: "Get the exchange rates",
      description: `The stored rates: 1 base = rate units of each currency. ${ratesNote}`,
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(ExchangeRates, "Exchange rates"), ...problems(404) },
    }),
    async (c) => respond(c, await getExchangeRates(dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/",
      operationId: "setExchangeRates",
      tags: ["Admin"],
      summary: "Replace the exchange rates",
      description: `${ratesNote} Set by hand (audited; source "manual"). Rates are exact positive decimal strings with at most 12 decimals; the base is not listed among them.`,
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(ExchangeRatesInput),
      responses: { 200: jsonResponse(ExchangeRates, "The rates now stored") },
    }),
    async (c) => c.json(await setExchangeRates(services(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/update",
      operationId: "updateExchangeRates",
      tags: ["Admin"],
      summary: "Fetch the exchange rates from the provider",
      description: `Fetches the rates from the provider at EXCHANGE_RATES_URL (answering { base, rates }) and stores them (audited). ${ratesNote} Without EXCHANGE_RATES_URL the answer is 422 (use PUT). Unknown currencies in the provider's answer are skipped and listed; a provider failure (503) leaves the stored rates unchanged.`,
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(ExchangeRatesUpdate, "The rates now stored and the entries skipped"), ...problems(422), 503: problemResponse("The provider failed; nothing changed") },
    }),
    async (c) => respond(c, await updateExchangeRatesFromProvider(services(c)), 200),
  );
