import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { listDeliveries, resendEvent, sendTestEvent, WebhookDelivery } from "./deliveries";
import {
  createEndpoint,
  CreateWebhookEndpoint,
  deleteEndpoint,
  getEndpointRow,
  listEndpoints,
  rotateSecret,
  toEndpoint,
  updateEndpoint,
  UpdateWebhookEndpoint,
  WebhookEndpoint,
  WebhookEndpointWithSecret,
} from "./service";
// Registers the committed-events listener (fan-out to endpoints) wherever the app is loaded.
import { forgetEndpointsCache } from "./delivery";

const tags = ["Webhook endpoints"];
const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "we_123" }) });
const Deleted = z.object({ id: z.string(), object: z.literal("webhook_endpoint"), deleted: z.literal(true) });
const EventJson = z.object({ id: z.string(), object: z.literal("event"), type: z.string(), createdAt: z.string(), livemode: z.boolean(), requestId: z.string().nullable(), data: z.unknown() }).openapi("WebhookTestEvent");
const shownOnce = "The signing secret is in this response only: a repeat with the same Idempotency-Key answers 409 naming the endpoint, never the secret.";

export const webhookEndpointRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags,
      operationId: "createWebhookEndpoint",
      summary: "Create a webhook endpoint",
      description: "Subscribes a URL to event types. Deliveries are signed (Standard Webhooks) with the endpoint's secret. " + shownOnce,
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(CreateWebhookEndpoint),
      responses: { 201: jsonResponse(WebhookEndpointWithSecret, "The endpoint, with its secret"), ...problems(422) },
    }),
    async (c) => {
      const created = await createEndpoint(services(c), c.req.valid("json"));
      if (!created.ok) return problem(c, created.error);
      forgetEndpointsCache();
      c.set("secretShownOnce", { object: "webhook endpoint", id: created.value.id });
      return c.json(created.value, 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags,
      operationId: "listWebhookEndpoints",
      summary: "List webhook endpoints",
      description: "Newest first, never with their secrets.",
      middleware: [requireRole(access.read)] as const,
      request: { query: PaginationQuery },
      responses: { 200: jsonResponse(listOf(WebhookEndpoint), "A page of endpoints") },
    }),
    async (c) => c.json(await listEndpoints(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags,
      operationId: "getWebhookEndpoint",
      summary: "Get a webhook endpoint",
      description: "Never with its secret.",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(WebhookEndpoint, "The endpoint"), ...problems(404) },
    }),
    async (c) => {
      const found = await getEndpointRow(dbOf(c.env), c.req.valid("param").id);
      return found.ok ? c.json(toEndpoint(found.value), 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "patch",
      path: "/{id}",
      tags,
      operationId: "updateWebhookEndpoint",
      summary: "Update a webhook endpoint",
      description: "Metadata keys are merged; `disabled: false` re-enables an endpoint. `we_notifications` (customer notifications) answers 409: it is configured by NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam, ...jsonBody(UpdateWebhookEndpoint) },
      responses: { 200: jsonResponse(WebhookEndpoint, "The updated endpoint"), ...problems(404, 409, 422) },
    }),
    async (c) => {
      const updated = await updateEndpoint(services(c), c.req.valid("param").id, c.req.valid("json"));
      if (!updated.ok) return problem(c, updated.error);
      forgetEndpointsCache();
      return c.json(updated.value, 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}",
      tags,
      operationId: "deleteWebhookEndpoint",
      summary: "Delete a webhook endpoint",
      description: "Its pending deliveries are abandoned. `we_notifications` (customer notifications) answers 409: it is configured by NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Deleted, "Deleted"), ...problems(404, 409) },
    }),
    async (c) => respond(c, await deleteEndpoint(services(c), c.req.valid("param").id), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/rotate-secret",
      tags,
      operationId: "rotateWebhookEndpointSecret",
      summary: "Roll a webhook endpoint's signing secret",
      description: "The old secret keeps signing, as a second signature, for 24 h. `we_notifications` (customer notifications) answers 409: it is configured by NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET. " + shownOnce,
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(WebhookEndpointWithSecret, "The endpoint, with its new secret"), ...problems(404, 409) },
    }),
    async (c) => {
      const rotated = await rotateSecret(services(c), c.req.valid("param").id);
      if (!rotated.ok) return problem(c, rotated.error);
      c.set("secretShownOnce", { object: "signing secret of webhook endpoint", id: rotated.value.id });
      return c.json(rotated.value, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/test",
      tags,
      operationId: "testWebhookEndpoint",
      summary: "Send a test event to a webhook endpoint",
      description: "Sends a test.webhook event to this endpoint only, now (retried like any delivery if it fails).",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(z.object({ event: EventJson, delivery: WebhookDelivery }), "The event and its delivery, with the first attempt"), ...problems(404, 409) },
    }),
    async (c) => respond(c, await sendTestEvent(services(c), c.req.valid("param").id), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/deliveries",
      tags,
      operationId: "listWebhookDeliveries",
      summary: "List a webhook endpoint's deliveries",
      description: "Newest first, each with its attempts (status code, latency, error).",
      middleware: [requireRole(access.read)] as const,
      request: {
        params: IdParam,
        query: PaginationQuery.extend({ status: z.enum(["pending", "succeeded", "failed"]).optional(), eventId: z.string().optional() }),
      },
      responses: { 200: jsonResponse(listOf(WebhookDelivery), "A page of deliveries"), ...problems(404) },
    }),
    async (c) => respond(c, await listDeliveries(dbOf(c.env), c.req.valid("param").id, c.req.valid("query")), 200),
  );

/** Mounted at /api/v1/events beside the events list. */
export const eventResendRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/{id}/resend",
    tags,
    operationId: "resendEvent",
    summary: "Resend an event to a webhook endpoint",
    description: "Sends the event to one endpoint again, now (retried like any delivery if it fails).",
    middleware: [requireRole(access.admin)] as const,
    request: {
      params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "evt_123" }) }),
      query: z.object({ endpoint: z.string().min(1).openapi({ description: "The webhook endpoint (we_…)", example: "we_123" }) }),
    },
    responses: { 200: jsonResponse(WebhookDelivery, "The delivery, with this attempt"), ...problems(404, 409) },
  }),
  async (c) => respond(c, await resendEvent(services(c), c.req.valid("param").id, c.req.valid("query").endpoint), 200),
);

