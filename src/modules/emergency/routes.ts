import { createRoute, z } from "@hono/zod-openapi";
import { access, actorOf, requireRole } from "../../http/auth";
import { errorResponses, jsonResponse, router } from "../../http/openapi";
import { lenientJson } from "../../http/lenient-json";
import { dbOf } from "../../db/client";
import { change, commit } from "../../platform/change-set";
import { auditCtx } from "../../http/context";
import { iso } from "../../lib/time";
import { paymentGuard } from "../payments/guard";
import { releaseParked } from "../payments/service";
import type { PaymentMode } from "../../../durable-objects/payment-guard";

const ModeState = z
  .object({ mode: z.enum(["normal", "frozen", "queue"]), reason: z.string().nullable(), actor: z.string().nullable(), since: z.string(), inFlight: z.number().int(), previous: z.string().optional(), drained: z.boolean().optional(), released: z.number().int().optional() })
  .openapi("PaymentMode");
// Declared without a request body: a declared JSON body would make the validator refuse `curl -d` (form type).
const body = (description: string) => ({ description: `Body (JSON, any Content-Type): ${description}` });
const Reason = z.object({ reason: z.string().max(500).optional() });

async function setMode(c: Parameters<Parameters<ReturnType<typeof router>["openapi"]>[1]>[0], mode: PaymentMode, reason: string | null) {
  const ctx = auditCtx(c);
  const r = await paymentGuard(c.env).setMode(mode, reason, actorOf(c).id);
  const released = mode === "normal" ? await releaseParked(c.env, dbOf(c.env)) : undefined;
  const action = mode === "frozen" ? "payments.frozen" : mode === "queue" ? "payments.queue_mode" : "payments.resumed";
  const state = { ...r, since: iso(r.since), ...(released === undefined ? {} : { released }) };
  // The audit row and the event in one batch: the mode change itself lives in the PaymentGuard DO.
  await commit(
    dbOf(c.env),
    change({
      audit: [{ action, targetType: "payment_mode", targetId: "global", before: { mode: r.previous }, after: { mode, drained: r.drained, released: released ?? 0 }, ...(reason ? { reason } : {}) }],
      events: [{ type: action, objectType: "payment_mode", objectId: "global", object: state, previousAttributes: { mode: r.previous } }],
    }),
    ctx,
  );
  return state;
}

// The runbook sends these with `curl -d` and no Content-Type: bodies are parsed leniently.
export const emergencyRoutes = router()
  .openapi(
    createRoute({ method: "get", path: "/status", tags: ["Emergency"], summary: "Current payment mode", middleware: [requireRole(access.read)] as const, responses: { 200: jsonResponse(ModeState, "Mode"), ...errorResponses } }),
    async (c) => {
      const s = await paymentGuard(c.env).state();
      return c.json({ ...s, since: iso(s.since) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/freeze-payments",
      tags: ["Emergency"],
      summary: "Freeze: no charge or refund reaches a gateway until resume (waits for in-flight charges)",
      middleware: [requireRole(access.admin)] as const,
      ...body("{ reason }"),
      responses: { 200: jsonResponse(ModeState, "Frozen"), ...errorResponses },
    }),
    async (c) => {
      const { reason } = await lenientJson(c, Reason);
      return c.json(await setMode(c, "frozen", reason ?? "frozen by operator"), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/queue-mode",
      tags: ["Emergency"],
      summary: "Queue mode: charges are accepted and parked until resume",
      middleware: [requireRole(access.admin)] as const,
      ...body("{ reason } (optional)"),
      responses: { 200: jsonResponse(ModeState, "Queue mode"), ...errorResponses },
    }),
    async (c) => {
      const { reason } = await lenientJson(c, Reason);
      return c.json(await setMode(c, "queue", reason ?? "queue mode"), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/resume-payments",
      tags: ["Emergency"],
      summary: "Normal mode; parked charges are released through the payments queue in order, each exactly once (`released`: by this call, 100 at most; the rest follow through the queue)",
      middleware: [requireRole(access.admin)] as const,
      ...body("{ reason } (optional)"),
      responses: { 200: jsonResponse(ModeState, "Normal mode"), ...errorResponses },
    }),
    async (c) => {
      const { reason } = await lenientJson(c, Reason);
      return c.json(await setMode(c, "normal", reason ?? null), 200);
    },
  );
