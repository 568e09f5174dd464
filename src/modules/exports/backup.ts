import type { Actor } from "../../env";
import type { Services } from "../../platform/services";
import { iso } from "../../lib/time";
import { backupSummaryOf, readManifest, startDump, totalsOf, verifyDump, type DumpState, type VerifyResult } from "./dump";
import { systemActor } from "../../platform/actor";

export const BACKUP_ROOT = "backups/";
export const BACKUP_ACTOR: Actor = systemActor("backup");

export const backupDate = (now: number) => new Date(now).toISOString().slice(0, 10);
const prefixFor = (date: string) => `${BACKUP_ROOT}${date}/`;

export type BackupSummary = { date: string; prefix: string; createdAt: string; tables: number; rows: number; bytes: number; keyId: string | null; complete: boolean };

/** A backup's summary: finished, or what is written so far (its tables, rows and bytes grow until it completes). */
function summaryOf(state: DumpState, date: string): BackupSummary {
  return { date, prefix: state.prefix, createdAt: state.createdAt, ...totalsOf(state.files), keyId: state.keyId, complete: state.done };
}

/**
 * Dumps D1 to `backups/<UTC date of now>/`, always encrypted; a second run the same day replaces that day's backup.
 * What does not fit in this invocation goes on through the tasks queue (`complete: false`); audited when it finishes.
 */
export async function createBackup(s: Services): Promise<BackupSummary> {
  const { audit: ctx } = s;
  const date = backupDate(ctx.now);
  return summaryOf(await startDump(s, { prefix: prefixFor(date), kind: "backup", encrypt: true, now: ctx.now, actor: ctx.actor }), date);
}

/** The daily cron's task. */
export function runDailyBackup(s: Services): Promise<BackupSummary> {
  return createBackup(s.as(BACKUP_ACTOR));
}

/** Backup folders newest first; a folder without a manifest (a dump still running, or one that died) is listed as incomplete. */
export async function listBackups(archive: R2Bucket, limit: number): Promise<{ data: BackupSummary[]; total: number }> {
  const prefixes: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await archive.list({ prefix: BACKUP_ROOT, delimiter: "/", ...(cursor ? { cursor } : {}) });
    prefixes.push(...page.delimitedPrefixes);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  prefixes.sort().reverse();
  const data = await Promise.all(
    prefixes.slice(0, limit).map(async (prefix): Promise<BackupSummary> => {
      const date = prefix.slice(BACKUP_ROOT.length, -1);
      const m = await readManifest(archive, prefix);
      if (!m) return { date, prefix, createdAt: "", tables: 0, rows: 0, bytes: 0, keyId: null, complete: false };
      return { ...backupSummaryOf(m), date, complete: true };
    }),
  );
  return { data, total: prefixes.length };
}

/** Null when there is no backup (manifest) for `date`. */
export async function verifyBackup(env: Env, date: string, now: number, from = 0): Promise<(VerifyResult & { date: string; verifiedAt: string }) | null> {
  const m = await readManifest(env.ARCHIVE, prefixFor(date));
  if (!m) return null;
  return { date, ...(await verifyDump(env, m, from)), verifiedAt: iso(now) };
}
