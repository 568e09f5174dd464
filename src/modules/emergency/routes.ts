import { createRoute, z } from "@hono/zod-openapi";
import { access, actorOf, requireRole } from "../../http/auth";
import { jsonResponse, optionalJsonBody, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { change, commit } from "../../platform/change-set";
import { auditCtx, services } from "../../http/context";
import { iso } from "../../lib/time";
import { paymentGuard } from "../payments/guard";
import { releaseParked } from "../payments/service";
import type { PaymentMode } from "../../../durable-objects/payment-guard";

const ModeState = z
  .object({ mode: z.enum(["normal", "frozen", "queue"]), reason: z.string().nullable(), actor: z.string().nullable(), since: z.string(), inFlight: z.number().int(), previous: z.string().optional(), drained: z.boolean().optional(), released: z.number().int().optional() })
  .openapi("PaymentMode");
const Reason = z
  .object({ reason: z.string().max(500).optional().openapi({ example: "Stripe incident INC-42: double charges" }) })
  .openapi("ModeChange", { description: "Why the mode changes (kept in the audit row and the event). The body may be omitted." });
const LENIENT = " The runbook sends this with `curl -d` and no Content-Type: the body is read as JSON whatever its type.";

async function setMode(c: Parameters<Parameters<ReturnType<typeof router>["openapi"]>[1]>[0], mode: PaymentMode, reason: string | null) {
  const ctx = auditCtx(c);
  const r = await paymentGuard(c.env).setMode(mode, reason, actorOf(c).id);
  const released = mode === "normal" ? await releaseParked(services(c)) : undefined;
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

export const emergencyRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/status",
      operationId: "getPaymentMode",
      tags: ["Emergency"],
      summary: "Current payment mode",
      description: "normal, frozen or queue, with the reason, who set it, since when and the charges in flight.",
      middleware: [requireRole(access.read)] as const,
      responses: { 200: jsonResponse(ModeState, "Mode") },
    }),
    async (c) => {
      const s = await paymentGuard(c.env).state();
      return c.json({ ...s, since: iso(s.since) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/freeze-payments",
      operationId: "freezePayments",
      tags: ["Emergency"],
      summary: "Freeze payments",
      description: "Freeze: no charge or refund reaches a gateway until resume; waits for the charges in flight. Direct payment calls get 423, queued charges wait." + LENIENT,
      middleware: [requireRole(access.admin)] as const,
      request: optionalJsonBody(Reason),
      responses: { 200: jsonResponse(ModeState, "Frozen") },
    }),
    async (c) => {
      const { reason } = c.req.valid("json");
      return c.json(await setMode(c, "frozen", reason ?? "frozen by operator"), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/queue-mode",
      operationId: "enableQueueMode",
      tags: ["Emergency"],
      summary: "Queue mode: park charges until resume",
      description: "Charges are accepted and parked until resume, then released in order." + LENIENT,
      middleware: [requireRole(access.admin)] as const,
      request: optionalJsonBody(Reason),
      responses: { 200: jsonResponse(ModeState, "Queue mode") },
    }),
    async (c) => {
      const { reason } = c.req.valid("json");
      return c.json(await setMode(c, "queue", reason ?? "queue mode"), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/resume-payments",
      operationId: "resumePayments",
      tags: ["Emergency"],
      summary: "Resume normal payments",
      description: "Back to normal mode; parked charges are released through the payments queue in order, each exactly once (`released`: by this call, 100 at most; the rest follow through the queue)." + LENIENT,
      middleware: [requireRole(access.admin)] as const,
      request: optionalJsonBody(Reason),
      responses: { 200: jsonResponse(ModeState, "Normal mode") },
    }),
    async (c) => {
      const { reason } = c.req.valid("json");
      return c.json(await setMode(c, "normal", reason ?? null), 200);
    },
  );
