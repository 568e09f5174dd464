import { AuditEntry } from "../audit/routes";
import { startOf, endExclusiveOf } from "../../lib/time";
import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, problems, router, DateOrInstant } from "../../http/openapi";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { auditCursorSeq } from "../audit/cursor";
import { dbOf } from "../../db/client";
import { generateSoxReport, SoxReportRequest } from "./sox";
import { cardDataAccess, encryptionStatus } from "./security";

const Control = z.object({ name: z.string(), description: z.string(), evidence: z.string(), status: z.enum(["pass", "fail"]) });
const Listed = <T extends z.ZodType>(item: T) => z.object({ truncated: z.boolean(), items: z.array(item) });
const SoxReport = z
  .object({
    quarter: z.string(),
    from: z.string(),
    to: z.string(),
    complete: z.boolean(),
    generatedAt: z.string(),
    generatedBy: z.string(),
    reportKey: z.string(),
    auditChain: z.object({ valid: z.boolean(), checked: z.number().int(), firstBrokenRow: z.unknown(), headHash: z.string().optional() }),
    stateChanges: z.object({
      total: z.number().int(),
      byAction: z.array(z.object({ action: z.string(), count: z.number().int() })),
      byActorRole: z.array(z.object({ role: z.string(), count: z.number().int() })),
    }),
    segregationOfDuties: z.object({
      rule: z.string(),
      configurationActions: z.string(),
      moneyActions: z.array(z.string()),
      findings: z.array(
        z.object({ actor: z.string(), actorRole: z.string(), configurationChanges: z.number().int(), moneyMovements: z.number().int(), configurationActions: z.array(z.string()), moneyActions: z.array(z.string()) }),
      ),
    }),
    voids: Listed(z.object({ invoiceId: z.string(), at: z.string(), actor: z.string(), actorRole: z.string(), reason: z.string().nullable() })),
    refunds: Listed(
      z.object({ refundId: z.string(), paymentId: z.string(), at: z.string(), createdBy: z.string(), amountMinor: z.number().int(), currency: z.string(), status: z.string(), reason: z.string() }),
    ),
    configurationChanges: Listed(
      z.object({ at: z.string(), actor: z.string(), actorRole: z.string(), action: z.string(), targetType: z.string(), targetId: z.string(), before: z.unknown(), after: z.unknown(), reason: z.string().nullable() }),
    ),
    controls: z.array(Control).optional(),
  })
  .openapi("SoxReport");

export const complianceRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/sox-report",
    operationId: "createSoxReport",
    tags: ["Compliance"],
    summary: "Generate the quarterly SOX evidence report",
    description:
      "Audit chain check, state changes, segregation of duties, voids, refunds, configuration changes and (with `includeControls`) the controls. Stored in R2 at reports/compliance/sox-<quarter>.json (a re-run replaces it) and audited. The runbook sends the body with `curl -d`: it is read as JSON whatever its Content-Type.",
    middleware: [requireRole(access.finance)] as const,
    request: jsonBody(SoxReportRequest),
    responses: { 200: jsonResponse(SoxReport, "The report"), ...problems(422) },
  }),
  async (c) => respond(c, await generateSoxReport(services(c), c.req.valid("json")), 200),
);

export const securityRoutes = router().openapi(
  createRoute({
    method: "get",
    path: "/encryption-status",
    operationId: "getEncryptionStatus",
    tags: ["Compliance"],
    summary: "Encryption and secrets status",
    description: "Which secrets are configured (never their values), export encryption, the JWT algorithm, and a scan proving no card number is stored.",
    middleware: [requireRole(access.admin)] as const,
    responses: {
      200: jsonResponse(
        z.object({
          checkedAt: z.string(),
          environment: z.string(),
          secrets: z.record(z.string(), z.record(z.string(), z.unknown())),
          exportEncryption: z.object({ algorithm: z.string(), keyId: z.string().nullable(), appliesTo: z.array(z.string()) }),
          jwt: z.object({ algorithm: z.string(), issuer: z.string(), audience: z.string(), expiryRequired: z.boolean() }),
          apiKeys: z.object({ storage: z.string() }),
          cardData: z.object({
            stored: z.boolean(),
            policy: z.string(),
            columns: z.array(z.object({ table: z.string(), column: z.string(), values: z.number().int(), nonToken: z.number().int() })),
            findings: z.array(z.object({ table: z.string(), column: z.string(), id: z.string(), length: z.number().int(), looksLikeCardNumber: z.boolean(), masked: z.string() })),
            findingsTruncated: z.boolean(),
          }),
          transport: z.object({ tls: z.string() }),
          atRest: z.string(),
        }),
        "Status",
      ),
    },
  }),
  async (c) => c.json(await encryptionStatus(c.env, services(c).clock.wall), 200),
);

const CardDataAccessEntry = AuditEntry.pick({ id: true, seq: true, at: true, actor: true, actorRole: true, action: true, targetType: true, targetId: true, requestId: true })
  .extend({
    why: z.string(),
    paymentMethod: z.string().nullable().openapi({ description: "The gateway token involved, when the entry records it" }),
  })
  .openapi("CardDataAccess");

export const cardDataAuditRoutes = router().openapi(
  createRoute({
    method: "get",
    path: "/card-data-access",
    operationId: "listCardDataAccess",
    tags: ["Compliance"],
    summary: "List card-data access entries",
    description: "Audit entries that touched payment methods (set or changed, alternate-method charges, gateway tests), newest first.",
    middleware: [requireRole(access.admin)] as const,
    request: {
      query: z.object({
        from: DateOrInstant.optional(),
        to: DateOrInstant.optional().openapi({ description: "A bare date includes that whole day" }),
        limit: z.coerce.number().int().min(1).max(200).default(50),
        startingAfter: z.string().optional().openapi({ description: "Audit entry id of the previous page's last item" }),
      }),
    },
    responses: { 200: jsonResponse(z.object({ data: z.array(CardDataAccessEntry), hasMore: z.boolean(), nextCursor: z.string().nullable() }), "Entries"), ...problems(400) },
  }),
  async (c) => {
    const q = c.req.valid("query");
    let beforeSeq: number | null = null;
    if (q.startingAfter) {
      const cur = await auditCursorSeq(dbOf(c.env), q.startingAfter);
      if (!cur.ok) return problem(c, cur.error);
      beforeSeq = cur.value;
    }
    const from = q.from ? startOf(q.from) : null;
    const to = q.to ? endExclusiveOf(q.to) : null;
    return c.json(await cardDataAccess(c.env.DB, { limit: q.limit, beforeSeq, from, to }), 200);
  },
);
