import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { fail, ok, type Outcome } from "../../platform/failure";
import { ARCHIVE_BUCKET, MANIFEST, startDump, stamp, totalsOf } from "./dump";

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
    complete: z.boolean().openapi({ description: "false: the export goes on in the background (the manifest appears under `manifestKey` when it is done); `tables` and the totals are what is written so far" }),
    tables: z
      .array(z.object({ table: z.string(), key: z.string(), rows: z.number().int(), bytes: z.number().int(), sha256: z.string(), part: z.number().int() }))
      .openapi({ description: "One entry per file: a table larger than one part has several (`<table>.json`, `<table>.2.json`, …)" }),
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

/**
 * Dumps every table to `emergency/<timestamp>/` (encrypted unless an admin asks otherwise); audited when it finishes.
 * What does not fit in this request goes on through the tasks queue (`complete: false`).
 */
export async function emergencyExportAll(s: Services, input: z.infer<typeof EmergencyExportRequest>): Promise<Outcome<z.infer<typeof EmergencyExportResult>, "forbidden">> {
  const { audit: ctx } = s;
  // The route is admin-only today; this keeps plaintext exports admin-only if the route's roles ever widen.
  if (!input.encrypt && ctx.actor.role !== "admin") return fail("forbidden", "only an admin may export without encryption");
  const prefix = `emergency/${stamp(ctx.now)}/`;
  const destination = input.destination ?? null;
  const state = await startDump(s, { prefix, kind: "emergency", encrypt: input.encrypt, now: ctx.now, actor: ctx.actor, destination });
  const totals = totalsOf(state.files);
  return ok({
    prefix,
    manifestKey: `${prefix}${MANIFEST}`,
    bucket: ARCHIVE_BUCKET,
    binding: "ARCHIVE" as const,
    destination,
    encrypted: input.encrypt,
    keyId: state.keyId,
    complete: state.done,
    tables: state.files,
    totalRows: totals.rows,
    totalBytes: totals.bytes,
    note: copyNote(prefix, destination) + (state.done ? "" : ` The export goes on in the background: it is complete when ${prefix}${MANIFEST} exists.`),
  });
}
