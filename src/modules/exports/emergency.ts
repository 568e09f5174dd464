import { z } from "@hono/zod-openapi";
import { commitWithAudit } from "../../platform/audit";
import type { Services } from "../../platform/services";
import { ApiError } from "../../platform/errors";
import { ARCHIVE_BUCKET, dumpDatabase, MANIFEST, stamp } from "./dump";

export const EmergencyExportRequest = z.object({
  destination: z.string().max(500).optional().openapi({ example: "s3://emergency-backup/", description: "Recorded in the manifest; a Worker cannot write there itself" }),
  encrypt: z.boolean().default(true).openapi({ description: "false (admins only) stores plaintext and is audited as emergency.exported_unencrypted" }),
});

export const EmergencyExportResult = z
  .object({
    prefix: z.string(),
    manifestKey: z.string(),
    bucket: z.string(),
    binding: z.literal("ARCHIVE"),
    destination: z.string().nullable(),
    encrypted: z.boolean(),
    keyId: z.string().nullable(),
    tables: z.array(z.object({ table: z.string(), key: z.string(), rows: z.number().int(), bytes: z.number().int(), sha256: z.string() })),
    totalRows: z.number().int(),
    totalBytes: z.number().int(),
    note: z.string(),
  })
  .openapi("EmergencyExport");

function copyNote(prefix: string, destination: string | null): string {
  const where = `R2 bucket ${ARCHIVE_BUCKET} (binding ARCHIVE) under ${prefix}`;
  const how = `copy it out with \`npx wrangler r2 object get ${ARCHIVE_BUCKET}/${prefix}<file> --remote --file <file>\` for manifest.json and each file it lists, or \`rclone copy r2:${ARCHIVE_BUCKET}/${prefix} <destination>\``;
  return destination
    ? `A Worker cannot write to ${destination}: the export is in ${where}; ${how.replace("<destination>", destination)}.`
    : `The export is in ${where}; ${how}.`;
}

/** Dumps every table to `emergency/<timestamp>/` (encrypted unless an admin asks otherwise) and audits it. */
export async function emergencyExportAll(s: Services, input: z.infer<typeof EmergencyExportRequest>): Promise<z.infer<typeof EmergencyExportResult>> {
  const { env, audit: ctx } = s;
  // The route is admin-only today; this keeps plaintext exports admin-only if the route's roles ever widen.
  if (!input.encrypt && ctx.actor.role !== "admin") throw new ApiError("forbidden", "only an admin may export without encryption");
  const prefix = `emergency/${stamp(ctx.now)}/`;
  const destination = input.destination ?? null;
  const m = await dumpDatabase(env, { prefix, kind: "emergency", encrypt: input.encrypt, now: ctx.now, actorId: ctx.actor.id, destination });
  const result = {
    prefix,
    manifestKey: `${prefix}${MANIFEST}`,
    bucket: ARCHIVE_BUCKET,
    binding: "ARCHIVE" as const,
    destination,
    encrypted: m.encrypted,
    keyId: m.keyId,
    tables: m.tables,
    totalRows: m.totalRows,
    totalBytes: m.totalBytes,
    note: copyNote(prefix, destination),
  };
  await commitWithAudit(
    s.db,
    [],
    [
      {
        action: input.encrypt ? "emergency.exported" : "emergency.exported_unencrypted",
        targetType: "emergency_export",
        targetId: prefix,
        after: { prefix, destination, encrypted: m.encrypted, keyId: m.keyId, tables: m.tables.length, totalRows: m.totalRows, totalBytes: m.totalBytes },
        ...(input.encrypt ? {} : { reason: "plaintext export of every table requested (encrypt: false)" }),
      },
    ],
    ctx,
  );
  return result;
}
