import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { errorResponses, jsonResponse, router } from "../../http/openapi";
import { lenientJson } from "../../http/lenient-json";
import { auditCtx } from "../../http/context";
import { ApiError, notFound } from "../../http/problem";
import { dbOf } from "../../db/client";
import { AuditExportRequest, AuditExportResult, exportAuditLog, exportKeyOf, readAuditExport } from "./audit-export";
import { EmergencyExportRequest, EmergencyExportResult, emergencyExportAll } from "./emergency";
import { createBackup, listBackups, verifyBackup } from "./backup";

export { runDailyBackup } from "./backup";

// Declared without a request body: the runbook calls these with `curl -d` and no Content-Type, and a declared
// JSON body would make the validator answer 415. The body is parsed by lenientJson instead.
const lenientBody = (shape: string) => `Body (JSON, any Content-Type): ${shape}`;

export const auditExportRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/export",
      tags: ["Audit"],
      summary: "Export audit rows in a date range, encrypted (AES-256-GCM) into R2 under exports/audit/",
      description: lenientBody(
        '{ "startDate": "2024-06-01", "endDate": "2024-06-30" (a bare date includes the whole day), "format": "json" | "csv", "includeSystemEvents": true }. Every row carries its MAC, its chain value and prevChain (the chain value of the row before it), and the export records the anchored chain head, so it can be verified offline with scripts/verify-audit-export.mjs and the audit key.',
      ),
      // Admin-only like the download: an export holds every actor, target and change of the range.
      middleware: [requireRole(access.admin)] as const,
      responses: { 201: jsonResponse(AuditExportResult, "Stored export"), ...errorResponses },
    }),
    async (c) => {
      const input = await lenientJson(c, AuditExportRequest);
      return c.json(await exportAuditLog(c.env, dbOf(c.env), input, auditCtx(c)), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/exports/{key}",
      tags: ["Audit"],
      summary: "Decrypt and download a stored audit export (the download is audited)",
      middleware: [requireRole(access.admin)] as const,
      request: { params: z.object({ key: z.string().openapi({ description: "File name under exports/audit/ (as in `download`), or the whole key URL-encoded" }) }) },
      responses: {
        200: {
          description: "The plaintext export; X-Content-SHA256 is its digest, X-Audit-Chain-Head the anchored chain head (seq:chain) when it was made",
          content: { "application/json": { schema: z.unknown() }, "text/csv": { schema: z.string() } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      const name = c.req.valid("param").key;
      const key = exportKeyOf(name);
      if (!key) throw new ApiError("validation_failed", `not an audit export name: ${name}`, [{ path: "key", message: "expected <timestamp>-<from>-<to>.<json|csv>.enc" }]);
      const x = await readAuditExport(c.env, dbOf(c.env), key, auditCtx(c));
      if (!x) throw notFound("audit export", key);
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
    tags: ["Emergency"],
    summary: "Dump every D1 table to R2 under emergency/<timestamp>/ with a manifest",
    description: lenientBody(
      '{ "destination": "s3://emergency-backup/", "encrypt": true }. A Worker cannot reach the destination: it is recorded in the manifest and the answer says how to copy the export out of the ARCHIVE bucket. encrypt defaults to true; false is audited as emergency.exported_unencrypted.',
    ),
    middleware: [requireRole(access.admin)] as const,
    responses: { 201: jsonResponse(EmergencyExportResult, "Export written"), ...errorResponses },
  }),
  async (c) => {
    const input = await lenientJson(c, EmergencyExportRequest);
    return c.json(await emergencyExportAll(c.env, input, auditCtx(c)), 201);
  },
);

const BackupSummary = z
  .object({ date: z.string(), prefix: z.string(), createdAt: z.string(), tables: z.number().int(), rows: z.number().int(), bytes: z.number().int(), keyId: z.string().nullable() })
  .openapi("Backup");
const Mismatch = z.object({ table: z.string().nullable(), key: z.string(), problem: z.string() });
const DateParam = z.object({ date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "expected YYYY-MM-DD").openapi({ example: "2024-06-24" }) });

export const backupRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Admin"],
      summary: "Daily D1 backups in R2 (backups/<date>/), newest first, with sizes and row counts",
      middleware: [requireRole(access.admin)] as const,
      request: { query: z.object({ limit: z.coerce.number().int().min(1).max(400).default(30) }) },
      responses: {
        200: jsonResponse(z.object({ data: z.array(BackupSummary.extend({ complete: z.boolean() })), total: z.number().int() }), "Backups"),
        ...errorResponses,
      },
    }),
    async (c) => c.json(await listBackups(c.env.ARCHIVE, c.req.valid("query").limit), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Admin"],
      summary: "Back up now (e.g. before a risky change); replaces today's backup folder",
      middleware: [requireRole(access.admin)] as const,
      responses: { 201: jsonResponse(BackupSummary, "Backup written"), ...errorResponses },
    }),
    async (c) => c.json(await createBackup(c.env, auditCtx(c)), 201),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{date}/verify",
      tags: ["Admin"],
      summary: "Re-read, decrypt and check every file of a backup against its manifest; reports the first mismatch",
      middleware: [requireRole(access.admin)] as const,
      request: { params: DateParam },
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
            verifiedAt: z.string(),
          }),
          "Verification result",
        ),
        ...errorResponses,
      },
    }),
    async (c) => {
      const { date } = c.req.valid("param");
      const r = await verifyBackup(c.env, date, Date.now());
      if (!r) throw notFound("backup", date);
      return c.json(r, 200);
    },
  );
