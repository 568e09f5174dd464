import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, optionalJsonBody, problems, router } from "../../http/openapi";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { failure } from "../../platform/failure";
import { AuditExportRequest, AuditExportResult, exportAuditLog, exportKeyOf, readAuditExport } from "./audit-export";
import { EmergencyExportRequest, EmergencyExportResult, emergencyExportAll } from "./emergency";
import { createBackup, listBackups, verifyBackup } from "./backup";

export { runDailyBackup } from "./backup";

export const auditExportRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/export",
      operationId: "exportAuditLog",
      tags: ["Audit"],
      summary: "Export audit rows in a date range, encrypted into R2",
      description:
        "Writes the rows of the range (a bare `endDate` includes the whole day) encrypted with AES-256-GCM into R2 under exports/audit/. Every row carries its MAC, its chain value and prevChain (the chain value of the row before it), and the export records the anchored chain head, so it can be verified offline with scripts/verify-audit-export.mjs and the audit key.",
      // Admin-only like the download: an export holds every actor, target and change of the range.
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(AuditExportRequest),
      responses: { 201: jsonResponse(AuditExportResult, "Stored export"), ...problems(422) },
    }),
    async (c) => respond(c, await exportAuditLog(services(c), c.req.valid("json")), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/exports/{key}",
      operationId: "downloadAuditExport",
      tags: ["Audit"],
      summary: "Download a stored audit export",
      description: "Decrypts a stored export and returns it as JSON or CSV (as it was made). The download itself is audited.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: z.object({ key: z.string().openapi({ description: "File name under exports/audit/ (as in `download`), or the whole key URL-encoded" }) }) },
      responses: {
        200: {
          description: "The plaintext export; X-Content-SHA256 is its digest, X-Audit-Chain-Head the anchored chain head (seq:chain) when it was made",
          content: { "application/json": { schema: z.unknown() }, "text/csv": { schema: z.string() } },
        },
        ...problems(404),
      },
    }),
    async (c) => {
      const name = c.req.valid("param").key;
      const key = exportKeyOf(name);
      if (!key) return problem(c, failure("validation_failed", `not an audit export name: ${name}`, [{ path: "key", message: "expected <timestamp>-<from>-<to>.<json|csv>.enc" }]));
      const read = await readAuditExport(services(c), key);
      if (!read.ok) return problem(c, read.error);
      const x = read.value;
      const filename = key.slice(key.lastIndexOf("/") + 1).replace(/\.enc$/, "");
      return c.body(x.body, 200, {
        "content-type": x.format === "csv" ? "text/csv; charset=utf-8" : "application/json",
        "content-disposition": `attachment; filename="${filename}"`,
        "x-content-sha256": x.sha256,
        ...(x.chainHead ? { "x-audit-chain-head": x.chainHead } : {}),
      });
    },
  );

export const emergencyExportRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/export-all",
    operationId: "exportAllData",
    tags: ["Emergency"],
    summary: "Dump every D1 table to R2 with a manifest",
    description:
      "Writes every table under emergency/<timestamp>/ in the ARCHIVE bucket. A Worker cannot reach `destination`: it is recorded in the manifest and the answer says how to copy the export out of the bucket. `encrypt` defaults to true; false is audited as emergency.exported_unencrypted (when the export finishes). The body may be sent without a JSON Content-Type (`curl -d`).\n\nA database larger than one request's share (20,000 rows) is answered with 202 and `complete: false`: the rest is written in the background through the tasks queue, a bounded slice per invocation, and the export is complete when its `manifestKey` exists. Large tables are split into parts (`<table>.json`, `<table>.2.json`, …), each listed in the manifest.",
    middleware: [requireRole(access.admin)] as const,
    request: optionalJsonBody(EmergencyExportRequest),
    responses: { 201: jsonResponse(EmergencyExportResult, "Export written"), 202: jsonResponse(EmergencyExportResult, "Export started; it goes on in the background"), ...problems(403) },
  }),
  async (c) => {
    const r = await emergencyExportAll(services(c), c.req.valid("json"));
    if (!r.ok) return problem(c, r.error);
    return r.value.complete ? c.json(r.value, 201) : c.json(r.value, 202);
  },
);

const BackupSummary = z
  .object({
    date: z.string(),
    prefix: z.string(),
    createdAt: z.string(),
    tables: z.number().int(),
    rows: z.number().int(),
    bytes: z.number().int(),
    keyId: z.string().nullable(),
    complete: z.boolean().openapi({ description: "false: still being written (or it died; its folder has no manifest)" }),
  })
  .openapi("Backup");
const Mismatch = z.object({ table: z.string().nullable(), key: z.string(), problem: z.string() });
const DateParam = z.object({ date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "expected YYYY-MM-DD").openapi({ example: "2024-06-24" }) });

export const backupRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "listBackups",
      tags: ["Admin"],
      summary: "List the daily D1 backups",
      description: "Backups in R2 (backups/<date>/), newest first, with sizes, row counts and whether each is complete.",
      middleware: [requireRole(access.admin)] as const,
      request: { query: z.object({ limit: z.coerce.number().int().min(1).max(400).default(30) }) },
      responses: {
        200: jsonResponse(z.object({ data: z.array(BackupSummary), total: z.number().int() }), "Backups"),
      },
    }),
    async (c) => c.json(await listBackups(c.env.ARCHIVE, c.req.valid("query").limit), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      operationId: "createBackup",
      tags: ["Admin"],
      summary: "Back up now",
      description:
        "Dumps D1 to R2 now (e.g. before a risky change), encrypted; replaces today's backup folder. A database larger than one request's share is answered with 202 and `complete: false`, and the rest is written in the background (GET /admin/backups shows it complete when its manifest is written).",
      middleware: [requireRole(access.admin)] as const,
      responses: { 201: jsonResponse(BackupSummary, "Backup written"), 202: jsonResponse(BackupSummary, "Backup started; it goes on in the background") },
    }),
    async (c) => {
      const summary = await createBackup(services(c));
      return summary.complete ? c.json(summary, 201) : c.json(summary, 202);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{date}/verify",
      operationId: "verifyBackup",
      tags: ["Admin"],
      summary: "Verify a backup against its manifest",
      description:
        "Re-reads and decrypts the files of the backup of `date` and checks them against the manifest; reports the first mismatch. One call checks at most 60 files or 64 MiB: when more are left, `complete` is false and `nextFrom` is the `from` of the next call.",
      middleware: [requireRole(access.admin)] as const,
      request: { params: DateParam, query: z.object({ from: z.coerce.number().int().min(0).default(0).openapi({ description: "Index of the first file to check (a previous answer's `nextFrom`)" }) }) },
      responses: {
        200: jsonResponse(
          z.object({
            ok: z.boolean(),
            date: z.string(),
            prefix: z.string(),
            tablesChecked: z.number().int(),
            rows: z.number().int().optional(),
            bytes: z.number().int().optional(),
            mismatch: Mismatch.optional(),
            complete: z.boolean(),
            from: z.number().int(),
            nextFrom: z.number().int().optional(),
            verifiedAt: z.string(),
          }),
          "Verification result",
        ),
        ...problems(404),
      },
    }),
    async (c) => {
      const { date } = c.req.valid("param");
      const r = await verifyBackup(c.env, date, services(c).clock.wall, c.req.valid("query").from);
      if (!r) return problem(c, failure("not_found", `backup ${date} does not exist`));
      return c.json(r, 200);
    },
  );
