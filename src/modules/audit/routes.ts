import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, gte, lt, type SQL } from "drizzle-orm";
import { ApiError } from "../../http/problem";
import { access, requireRole } from "../../http/auth";
import { errorResponses, jsonResponse, router, DateOrInstant } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { auditLog } from "../../db/schema";
import { auditRowHash, auditRowsInOrder, GENESIS_HASH } from "../../db/audit";
import { iso, endExclusiveOf } from "../../lib/time";

type Row = typeof auditLog.$inferSelect;
const parse = (s: string | null) => (s === null ? null : (JSON.parse(s) as unknown));
const toEntry = (r: Row) => ({
  id: r.id,
  seq: r.seq,
  at: iso(r.at),
  actor: r.actor,
  actorRole: r.actorRole,
  action: r.action,
  targetType: r.targetType,
  targetId: r.targetId,
  requestId: r.requestId,
  reason: r.reason,
  before: parse(r.before),
  after: parse(r.after),
  hash: r.hash,
});

export const AuditEntry = z
  .object({
    id: z.string(),
    seq: z.number().int(),
    at: z.string(),
    actor: z.string(),
    actorRole: z.string(),
    action: z.string(),
    targetType: z.string(),
    targetId: z.string(),
    requestId: z.string().nullable(),
    reason: z.string().nullable(),
    before: z.unknown(),
    after: z.unknown(),
    hash: z.string(),
  })
  .openapi("AuditEntry");


/** Recomputes every hash from the genesis; the first row whose link or content does not match is reported. */
export async function verifyAuditChain(db: ReturnType<typeof dbOf>) {
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let checked = 0;
  for await (const row of auditRowsInOrder(db)) {
    const { hash, ...rest } = row;
    let problem: string | null = null;
    if (row.seq !== expectedSeq) problem = `row ${expectedSeq} is missing (next row is ${row.seq})`;
    else if (row.prevHash !== prevHash) problem = "prev_hash does not match the previous row's hash";
    else if ((await auditRowHash(rest)) !== hash) problem = "row content does not match its hash";
    if (problem) {
      return { valid: false, checked, firstBrokenRow: { seq: expectedSeq, id: row.seq === expectedSeq ? row.id : null, problem } };
    }
    prevHash = hash;
    expectedSeq++;
    checked++;
  }
  return { valid: true, checked, firstBrokenRow: null, headHash: prevHash };
}

export const auditRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/verify-integrity",
      tags: ["Audit"],
      summary: "Recompute the audit hash chain and report the first broken row",
      middleware: [requireRole(access.finance)] as const,
      responses: {
        200: jsonResponse(
          z.object({
            valid: z.boolean(),
            checked: z.number().int(),
            firstBrokenRow: z.object({ seq: z.number().int(), id: z.string().nullable(), problem: z.string() }).nullable(),
            headHash: z.string().optional(),
          }),
          "Verification result",
        ),
        ...errorResponses,
      },
    }),
    async (c) => c.json(await verifyAuditChain(dbOf(c.env)), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/search",
      tags: ["Audit"],
      summary: "Search audit entries, newest first",
      middleware: [requireRole(access.finance)] as const,
      request: {
        query: z.object({
          action: z.string().optional().openapi({ example: "payment.processed" }),
          user: z.string().optional().openapi({ description: "Actor id (token subject or API key id)" }),
          target: z.string().optional().openapi({ description: "Target id" }),
          from: DateOrInstant.optional(),
          to: DateOrInstant.optional(),
          limit: z.coerce.number().int().min(1).max(200).default(50),
          startingAfter: z.string().optional().openapi({ description: "Audit entry id of the previous page's last item" }),
        }),
      },
      responses: { 200: jsonResponse(z.object({ data: z.array(AuditEntry), hasMore: z.boolean(), nextCursor: z.string().nullable() }), "Entries"), ...errorResponses },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const db = dbOf(c.env);
      const conds: (SQL | undefined)[] = [
        q.action ? eq(auditLog.action, q.action) : undefined,
        q.user ? eq(auditLog.actor, q.user) : undefined,
        q.target ? eq(auditLog.targetId, q.target) : undefined,
        q.from ? gte(auditLog.at, Date.parse(q.from)) : undefined,
        // A bare date as `to` includes that whole day.
        q.to ? lt(auditLog.at, endExclusiveOf(q.to)) : undefined,
      ];
      if (q.startingAfter) {
        const cur = await db.select({ seq: auditLog.seq }).from(auditLog).where(eq(auditLog.id, q.startingAfter)).get();
        if (!cur) throw new ApiError("validation_failed", `startingAfter: no audit entry ${q.startingAfter}`, [{ path: "startingAfter", message: "unknown id" }]);
        conds.push(lt(auditLog.seq, cur.seq));
      }
      const rows = await db.select().from(auditLog).where(and(...conds)).orderBy(desc(auditLog.seq)).limit(q.limit + 1).all();
      const hasMore = rows.length > q.limit;
      const data = rows.slice(0, q.limit).map(toEntry);
      return c.json({ data, hasMore, nextCursor: hasMore ? data[data.length - 1]!.id : null }, 200);
    },
  );
