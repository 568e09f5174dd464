import { archivedThrough } from "../retention/run";
import { readAuditRetentionCheckpoint } from "../../platform/archives";
import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, gte, lt, type SQL } from "drizzle-orm";
import { problem } from "../../http/problem";
import { access, requireRole } from "../../http/auth";
import { jsonResponse, router, DateOrInstant, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { auditLog } from "../../db/schema";
import { verifyIntegrity } from "./verify";
import { auditCursorSeq } from "./cursor";
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
  hash: r.mac ?? r.hash ?? "",
  mac: r.mac,
  chain: r.chain,
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
    hash: z.string().openapi({ description: "The row's MAC (its legacy SHA-256 hash for an unadopted row written before the keyed chain)" }),
    mac: z.string().nullable().openapi({ description: "HMAC-SHA-256 of the row's content under AUDIT_HMAC_KEY" }),
    chain: z.string().nullable().openapi({ description: "Keyed chain value; null until the AuditAnchor seals the row (normally within a second)" }),
  })
  .openapi("AuditEntry");

export const auditRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/verify-integrity",
      tags: ["Audit"],
      operationId: "verifyAuditIntegrity",
      summary: "Verify the audit log's integrity",
      description:
        "Seals the audit chain, then checks every row's MAC, the keyed chain and the anchored head; reports the first break. Rows the retention policy archived to R2 are not in D1: the chain is checked from the archived checkpoint (`archivedThrough`). One request checks at most 200,000 rows: of a longer live chain it checks the newest ones (`scope: newest_rows`, from `checkedFrom`: the last intact weekly verification when that recent, else 200,000 rows before the head), and the weekly run (cron `audit.verify`) checks it whole, in stretches (`lastFullVerification`). `full=true` insists on every row (422 past the limit).",
      middleware: [requireRole(access.finance)] as const,
      request: {
        query: z.object({
          full: z
            .enum(["true", "false"])
            .optional()
            .transform((v) => v === "true")
            .openapi({ description: "Check every live row even when the chain is longer than one request checks (422 then)" }),
        }),
      },
      responses: {
        200: jsonResponse(
          z.object({
            ok: z.boolean(),
            valid: z.boolean().openapi({ description: "Same as ok" }),
            checked: z.number().int().openapi({ description: "Rows verified before the first break (all rows when ok)" }),
            brokenAt: z.number().int().nullable().openapi({ description: "Seq of the first row where the chain breaks (a missing row's seq for a gap or truncation)" }),
            reason: z.string().nullable(),
            firstBrokenRow: z.object({ seq: z.number().int(), id: z.string().nullable(), problem: z.string() }).nullable(),
            headHash: z.string().openapi({ description: "Chain value at the anchor's head" }),
            head: z.object({ seq: z.number().int(), chain: z.string() }).openapi({ description: "The AuditAnchor's head (kept outside D1)" }),
            checkpoint: z.object({ seq: z.number().int(), chain: z.string(), at: z.string() }).nullable().openapi({ description: "The head as last copied to R2 by the weekly verification" }),
            unsealed: z.number().int().openapi({ description: "Rows committed during this verification (MAC checked; linked at the next seal)" }),
            archivedThrough: z
              .object({ seq: z.number().int(), chain: z.string(), archiveKey: z.string() })
              .nullable()
              .openapi({ description: "Rows up to this seq were moved to R2 by the retention policy: the live chain is verified from this chain value (verify the archives with GET /admin/retention/archives/verify)" }),
            scope: z.enum(["full", "newest_rows"]).openapi({ description: "`full`: every live row checked; `newest_rows`: the chain is longer than one request checks, so the rows from `checkedFrom` to the head were" }),
            checkedFrom: z.number().int().openapi({ description: "The first seq this check walked" }),
            lastFullVerification: z
              .object({ seq: z.number().int(), chain: z.string(), verifiedAt: z.string(), reportKey: z.string() })
              .nullable()
              .openapi({ description: "The last weekly verification that found the whole chain intact (its report is in R2 under reportKey)" }),
          }),
          "Verification result",
        ),
        ...problems(422),
      },
    }),
    async (c) => {
      const verified = await verifyIntegrity(c.env, { full: c.req.valid("query").full });
      if (!verified.ok) return problem(c, verified.error);
      const r = verified.value;
      return c.json({ ...r, scope: r.scope ?? "full", checkedFrom: r.checkedFrom ?? 1, lastFullVerification: r.lastFullVerification ?? null }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/search",
      tags: ["Audit"],
      operationId: "searchAuditLog",
      summary: "Search the audit log",
      description: "Entries filtered by actor, target, action and time, newest first.",
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
      responses: {
        200: jsonResponse(
          z.object({
            data: z.array(AuditEntry),
            hasMore: z.boolean(),
            nextCursor: z.string().nullable(),
            archived: z
              .object({ through: z.string(), throughSeq: z.number().int(), archives: z.string() })
              .nullable()
              .openapi({ description: "On the last page of a search reaching back past the retention policy: entries up to `through` (seq `throughSeq`) were moved to R2 and are not searched (the archives: `archives`, admin only)" }),
          }),
          "Entries",
        ),
        ...problems(400),
      },
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
        const cur = await auditCursorSeq(db, q.startingAfter);
        if (!cur.ok) return problem(c, cur.error);
        conds.push(lt(auditLog.seq, cur.value));
      }
      const rows = await db.select().from(auditLog).where(and(...conds)).orderBy(desc(auditLog.seq)).limit(q.limit + 1).all();
      const hasMore = rows.length > q.limit;
      const data = rows.slice(0, q.limit).map(toEntry);
      // The last page of a search reaching back past the retention policy says the older entries are in R2.
      const cp = hasMore ? null : await readAuditRetentionCheckpoint(c.env.ARCHIVE);
      const through = cp ? await archivedThrough(db, "audit") : null;
      const archived = through !== null && (!q.from || Date.parse(q.from) <= through) ? { through: iso(through), throughSeq: cp!.seq, archives: "/admin/retention/archives?kind=audit" } : null;
      return c.json({ data, hasMore, nextCursor: hasMore ? data[data.length - 1]!.id : null, archived }, 200);
    },
  );
