import { createRoute, z } from "@hono/zod-openapi";
import { and, count, desc, eq, lt, max, or, sum } from "drizzle-orm";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, problems, router } from "../../http/openapi";
import { auditCtx, services } from "../../http/context";
import { dbOf, type Db } from "../../db/client";
import { retentionArchives, retentionKinds, retentionRuns, type RetentionKind } from "../../db/schema";
import { iso } from "../../lib/time";
import { resolveCursor, toPage } from "../../platform/pagination";
import { cutoffOf, getRetentionPolicy, putRetentionPolicy, RetentionPolicy } from "./policy";
import { startRetentionRun, type RetentionRun } from "./run";
import { verifyArchive } from "./verify";

const Kind = z.enum(retentionKinds).openapi({ description: "events | invoice_lines | payment_attempts | audit" });

const Run = z
  .object({
    id: z.string(),
    trigger: z.enum(["cron", "api"]),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
    currentKind: z.string().nullable().openapi({ description: "The kind being archived; null once finished" }),
    error: z.string().nullable().openapi({ description: "The last failure (the message is retried from where it stopped)" }),
  })
  .openapi("RetentionRun");
const toRun = (r: RetentionRun) => ({ id: r.id, trigger: r.trigger, startedAt: iso(r.startedAt), finishedAt: iso(r.finishedAt), currentKind: r.currentKind, error: r.error });

const KindStatus = z.object({
  kind: Kind,
  cutoff: z.string().openapi({ description: "Rows older than this are past retention now" }),
  archives: z.number().int(),
  rowsArchived: z.number().int(),
  bytesArchived: z.number().int(),
  archivedThrough: z.string().nullable().openapi({ description: "Time of the newest archived row: reports over windows from before it read archived data and refuse them" }),
});

const Status = z.object({ policy: RetentionPolicy, lastRun: Run.nullable(), kinds: z.array(KindStatus) }).openapi("RetentionStatus");

const Archive = z
  .object({
    key: z.string().openapi({ description: "R2 key of the NDJSON body; the manifest is `<key>.manifest.json`" }),
    kind: Kind,
    manifestKey: z.string(),
    runId: z.string(),
    rows: z.number().int(),
    bytes: z.number().int(),
    sha256: z.string(),
    from: z.string(),
    to: z.string(),
    firstRef: z.string().openapi({ description: "First row: event, invoice or payment id, or audit seq" }),
    lastRef: z.string(),
    chain: z.object({ endSeq: z.number().int(), endChain: z.string() }).nullable().openapi({ description: "Audit archives: the chain checkpoint at the last row" }),
    createdAt: z.string(),
  })
  .openapi("RetentionArchive");
type ArchiveRow = typeof retentionArchives.$inferSelect;
const toArchive = (r: ArchiveRow) => ({
  key: r.key,
  kind: r.kind,
  manifestKey: r.manifestKey,
  runId: r.runId,
  rows: r.rows,
  bytes: r.bytes,
  sha256: r.sha256,
  from: iso(r.fromAt),
  to: iso(r.toAt),
  firstRef: r.firstRef,
  lastRef: r.lastRef,
  chain: r.endSeq !== null && r.endChain !== null ? { endSeq: r.endSeq, endChain: r.endChain } : null,
  createdAt: iso(r.createdAt),
});

const Verification = z
  .object({
    key: z.string(),
    ok: z.boolean(),
    kind: z.string().nullable(),
    rows: z.number().int().nullable(),
    sha256: z.string().nullable().openapi({ description: "SHA-256 of the body as read now" }),
    problems: z.array(z.string()),
    chain: z.object({ startSeq: z.number().int(), endSeq: z.number().int(), linksChecked: z.number().int() }).nullable(),
  })
  .openapi("RetentionArchiveVerification");

/** Status of every kind: what the policy cuts off now and what was archived so far (one grouped read). */
export async function retentionStatus(db: Db, now: number) {
  const policy = await getRetentionPolicy(db);
  const [totals, lastRun] = await Promise.all([
    db
      .select({ kind: retentionArchives.kind, archives: count(), rows: sum(retentionArchives.rows), bytes: sum(retentionArchives.bytes), through: max(retentionArchives.toAt) })
      .from(retentionArchives)
      .groupBy(retentionArchives.kind)
      .all(),
    db.select().from(retentionRuns).orderBy(desc(retentionRuns.startedAt)).get(),
  ]);
  const byKind = new Map(totals.map((t) => [t.kind, t]));
  return {
    policy,
    lastRun: lastRun ? toRun(lastRun) : null,
    kinds: retentionKinds.map((kind) => {
      const t = byKind.get(kind);
      return {
        kind,
        cutoff: iso(cutoffOf(policy, kind, now)),
        archives: t?.archives ?? 0,
        rowsArchived: Number(t?.rows ?? 0),
        bytesArchived: Number(t?.bytes ?? 0),
        archivedThrough: iso(t?.through ?? null),
      };
    }),
  };
}

export const retentionRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "getRetentionStatus",
      tags: ["Admin"],
      summary: "Retention status",
      description: "The policy, the last run, and per kind (events, invoice lines, payment attempts, audit rows): the cutoff now, the archives written, the rows and bytes moved to R2, and the newest archived row's time.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 200: jsonResponse(Status, "Retention status") },
    }),
    async (c) => c.json(await retentionStatus(dbOf(c.env), services(c).clock.wall), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/policy",
      operationId: "updateRetentionPolicy",
      tags: ["Admin"],
      summary: "Set the retention policy",
      description: "Replaces the policy (audited). Rows read by reports stay at least 13 months; events at least 7 days. Takes effect at the next run.",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(RetentionPolicy),
      responses: { 200: jsonResponse(RetentionPolicy, "The policy now in force"), ...problems(400) },
    }),
    async (c) => c.json(await putRetentionPolicy(dbOf(c.env), c.req.valid("json"), auditCtx(c)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/run",
      operationId: "runRetention",
      tags: ["Admin"],
      summary: "Run the retention policy now",
      description:
        "Starts a run (the daily cron's work) on the tasks queue and answers at once; poll GET /admin/retention. A run in progress is returned instead of starting another (`started: false`). Runs even when the policy is disabled.",
      middleware: [requireRole(access.admin)] as const,
      responses: { 202: jsonResponse(z.object({ started: z.boolean(), run: Run }), "The run"), ...problems(409, 503) },
    }),
    async (c) => {
      const r = await startRetentionRun(services(c), "api", services(c).audit.now);
      return c.json({ started: r.started, run: toRun(r.run!) }, 202);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/archives",
      operationId: "listRetentionArchives",
      tags: ["Admin"],
      summary: "List retention archives",
      description: "Verified archives in R2, newest first, optionally of one kind. `startingAfter` is an archive key.",
      middleware: [requireRole(access.admin)] as const,
      request: { query: PaginationQuery.extend({ kind: Kind.optional() }) },
      responses: { 200: jsonResponse(listOf(Archive), "Archives"), ...problems(400) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const db = dbOf(c.env);
      const ra = retentionArchives;
      const cursor = await resolveCursor(q.startingAfter, async (key) => db.select({ id: ra.key, createdAt: ra.createdAt }).from(ra).where(eq(ra.key, key)).get());
      const rows = await db
        .select()
        .from(ra)
        .where(
          and(
            q.kind ? eq(ra.kind, q.kind as RetentionKind) : undefined,
            cursor ? or(lt(ra.createdAt, cursor.createdAt), and(eq(ra.createdAt, cursor.createdAt), lt(ra.key, cursor.id))) : undefined,
          ),
        )
        .orderBy(desc(ra.createdAt), desc(ra.key))
        .limit(q.limit + 1)
        .all();
      return c.json(toPage(rows.map((r) => ({ ...r, id: r.key })), q.limit, toArchive), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/archives/verify",
      operationId: "verifyRetentionArchive",
      tags: ["Admin"],
      summary: "Verify a retention archive",
      description:
        "Reads the archive and its manifest from R2 and checks the SHA-256, size, row count and time range, and D1's record of it; for an audit archive also every row's MAC and chain link from the manifest's start value (the previous archive's end) to its end value. `ok: false` lists the problems.",
      middleware: [requireRole(access.admin)] as const,
      request: { query: z.object({ key: z.string().min(1).max(500).openapi({ description: "The archive's key (from GET /admin/retention/archives)" }) }) },
      responses: { 200: jsonResponse(Verification, "The verification"), ...problems(400) },
    }),
    async (c) => c.json(await verifyArchive(services(c), c.req.valid("query").key), 200),
  );
