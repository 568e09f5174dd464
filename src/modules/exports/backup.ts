import type { Actor } from "../../env";
import { commitWithAudit } from "../../platform/audit";
import type { Services } from "../../platform/services";
import { iso } from "../../lib/time";
import { dumpDatabase, readManifest, verifyDump, type VerifyResult } from "./dump";
import { systemActor } from "../../platform/actor";

export const BACKUP_ROOT = "backups/";
export const BACKUP_ACTOR: Actor = systemActor("backup");

export const backupDate = (now: number) => new Date(now).toISOString().slice(0, 10);
const prefixFor = (date: string) => `${BACKUP_ROOT}${date}/`;

export type BackupSummary = { date: string; prefix: string; createdAt: string; tables: number; rows: number; bytes: number; keyId: string | null };

/** Dumps D1 to `backups/<UTC date of now>/`, always encrypted; a second run the same day replaces that day's backup. Audited. */
export async function createBackup(s: Services): Promise<BackupSummary> {
  const { env, audit: ctx } = s;
  const date = backupDate(ctx.now);
  const m = await dumpDatabase(env, { prefix: prefixFor(date), kind: "backup", encrypt: true, now: ctx.now, actorId: ctx.actor.id });
  const summary = { date, prefix: m.prefix, createdAt: m.createdAt, tables: m.tables.length, rows: m.totalRows, bytes: m.totalBytes, keyId: m.keyId };
  await commitWithAudit(s.db, [], [{ action: "backup.created", targetType: "backup", targetId: m.prefix, after: summary }], ctx);
  return summary;
}

/** The daily cron's task. */
export function runDailyBackup(s: Services): Promise<BackupSummary> {
  return createBackup(s.as(BACKUP_ACTOR));
}

export type BackupListing = BackupSummary & { complete: boolean };

/** Backup folders newest first; a folder without a manifest (a dump still running, or one that died) is listed as incomplete. */
export async function listBackups(archive: R2Bucket, limit: number): Promise<{ data: BackupListing[]; total: number }> {
  const prefixes: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await archive.list({ prefix: BACKUP_ROOT, delimiter: "/", ...(cursor ? { cursor } : {}) });
    prefixes.push(...page.delimitedPrefixes);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  prefixes.sort().reverse();
  const data = await Promise.all(
    prefixes.slice(0, limit).map(async (prefix): Promise<BackupListing> => {
      const date = prefix.slice(BACKUP_ROOT.length, -1);
      const m = await readManifest(archive, prefix);
      if (!m) return { date, prefix, createdAt: "", tables: 0, rows: 0, bytes: 0, keyId: null, complete: false };
      return { date, prefix, createdAt: m.createdAt, tables: m.tables.length, rows: m.totalRows, bytes: m.totalBytes, keyId: m.keyId, complete: true };
    }),
  );
  return { data, total: prefixes.length };
}

/** Null when there is no backup (manifest) for `date`. */
export async function verifyBackup(env: Env, date: string, now: number): Promise<(VerifyResult & { date: string; verifiedAt: string }) | null> {
  const m = await readManifest(env.ARCHIVE, prefixFor(date));
  if (!m) return null;
  return { date, ...(await verifyDump(env, m)), verifiedAt: iso(now) };
}
