import { dbOf } from "../../db/client";
import { AUDIT_ANCHOR_NAME, auditKey, auditRowMac, auditRowsInOrder, chainLink, GENESIS_CHAIN } from "../../platform/audit";
import type { AnchorHead } from "../../../durable-objects/audit-anchor";
import { readAuditRetentionCheckpoint, type AuditRetentionCheckpoint } from "../../platform/archives";
import type { Services } from "../../platform/services";
import { invalid, ok, type Outcome } from "../../platform/failure";

export type AuditEnv = Pick<Env, "DB" | "ARCHIVE" | "AUDIT_ANCHOR" | "AUDIT_HMAC_KEY">;
export type Checkpoint = { seq: number; chain: string; at: string };

/** The R2 copy of the anchor's head, written by the weekly verification. */
export const CHECKPOINT_KEY = "audit/anchor/latest.json";

export const anchorOf = (env: Pick<Env, "AUDIT_ANCHOR">) => env.AUDIT_ANCHOR.get(env.AUDIT_ANCHOR.idFromName(AUDIT_ANCHOR_NAME));

/** Seals every committed row (in bounded calls) and returns the anchor's head. */
export async function sealAuditChain(env: AuditEnv): Promise<{ head: AnchorHead; sealed: number; adopted: number }> {
  const anchor = anchorOf(env);
  let sealed = 0;
  let adopted = 0;
  for (;;) {
    const r = await anchor.seal();
    sealed += r.sealed;
    adopted += r.adopted;
    if (!r.more) return { head: r.head, sealed, adopted };
  }
}

export async function readCheckpoint(env: Pick<Env, "ARCHIVE">): Promise<Checkpoint | null> {
  const obj = await env.ARCHIVE.get(CHECKPOINT_KEY);
  return obj ? ((await obj.json()) as Checkpoint) : null;
}

/** Copies the anchor's head to R2 (the latest, and one per day), a second anchor outside D1. */
export async function checkpointHead(env: Pick<Env, "ARCHIVE">, head: AnchorHead, now: number): Promise<Checkpoint> {
  const cp: Checkpoint = { seq: head.seq, chain: head.chain, at: new Date(now).toISOString() };
  const body = JSON.stringify(cp);
  const meta = { httpMetadata: { contentType: "application/json" } };
  await env.ARCHIVE.put(CHECKPOINT_KEY, body, meta);
  await env.ARCHIVE.put(`audit/anchor/${cp.at.slice(0, 10)}.json`, body, meta);
  return cp;
}

export type VerifyResult = {
  ok: boolean;
  /** Same as `ok` (the field the runbook reads). */
  valid: boolean;
  /** Rows verified before the first break (all rows when ok). */
  checked: number;
  brokenAt: number | null;
  reason: string | null;
  firstBrokenRow: { seq: number; id: string | null; problem: string } | null;
  /** The anchor's head chain value. */
  headHash: string;
  head: { seq: number; chain: string };
  checkpoint: Checkpoint | null;
  /** Rows committed after the seal this verification started with (their MACs are checked, their links next time). */
  unsealed: number;
  /** Where the live chain starts when older rows were archived by the retention policy (null: at row 1). */
  archivedThrough: AuditRetentionCheckpoint | null;
  /**
   * `full`: every live row was checked. `newest_rows`: the chain is longer than one request checks, so the rows from
   * `checkedFrom` to the head were (the rows before are the weekly run's, `lastFullVerification`).
   */
  scope?: "full" | "newest_rows";
  /** The first seq this check walked (the live chain's first row when `full`). */
  checkedFrom?: number;
  lastFullVerification?: FullVerification | null;
};

/** The last weekly verification that found the whole chain intact: up to which row, with which chain value, when. */
export type FullVerification = { seq: number; chain: string; verifiedAt: string; reportKey: string };
export const LAST_FULL_VERIFICATION_KEY = "audit/verify/last-full.json";

async function readLastFullVerification(env: Pick<Env, "ARCHIVE">): Promise<FullVerification | null> {
  const obj = await env.ARCHIVE.get(LAST_FULL_VERIFICATION_KEY);
  return obj ? ((await obj.json()) as FullVerification) : null;
}

/**
 * Where a verification stands between two stretches: what it started from (the anchor's head after sealing, the R2
 * checkpoint, the retention checkpoint) and how far it got (the next seq expected, the chain value before it). Small
 * and plain, so a long verification can carry it from one invocation to the next in a queue message.
 */
export type VerifyProgress = {
  head: { seq: number; chain: string };
  checkpoint: Checkpoint | null;
  archivedThrough: AuditRetentionCheckpoint | null;
  prev: string;
  expected: number;
  checked: number;
  unsealed: number;
};

/** Seals, then reads where the verification starts; a result already when the anchor is behind its R2 copy. */
export async function beginVerification(env: AuditEnv): Promise<{ progress: VerifyProgress } | { result: VerifyResult }> {
  const { head } = await sealAuditChain(env);
  const checkpoint = await readCheckpoint(env);
  // Rows up to the retention checkpoint live in R2 archives (verified against their manifests and chain links by
  // GET /admin/retention/archives/verify); the live chain continues from the chain value at that row.
  const archivedThrough = await readAuditRetentionCheckpoint(env.ARCHIVE);
  const progress: VerifyProgress = {
    head: { seq: head.seq, chain: head.chain },
    checkpoint,
    archivedThrough,
    prev: archivedThrough?.chain ?? GENESIS_CHAIN,
    expected: (archivedThrough?.seq ?? 0) + 1,
    checked: 0,
    unsealed: 0,
  };
  if (checkpoint && head.seq < checkpoint.seq) {
    return { result: brokenResult(progress, head.seq + 1, null, `the anchor's head (seq ${head.seq}) is behind the R2 checkpoint (seq ${checkpoint.seq} at ${checkpoint.at}): the AuditAnchor's state was reset`) };
  }
  return { progress };
}

function brokenResult(p: VerifyProgress, seq: number, id: string | null, problem: string): VerifyResult {
  return {
    ok: false,
    valid: false,
    checked: p.checked,
    brokenAt: seq,
    reason: problem,
    firstBrokenRow: { seq, id, problem },
    headHash: p.head.chain,
    head: p.head,
    checkpoint: p.checkpoint,
    unsealed: p.unsealed,
    archivedThrough: p.archivedThrough,
  };
}

/**
 * Checks the next rows in seq order, at most `maxRows` (pages of 500): seq has no gap, the row's content matches its
 * MAC, its chain value is the HMAC link from the previous row, the chain at the R2 checkpoint and at the anchor's
 * head match them, and D1 reaches the head (nothing cut off the end). Rows after the head (committed after the seal)
 * have their MACs checked, unless `throughHead`. The first failure is the result; so is the end of the chain;
 * otherwise the progress to continue from.
 */
export async function verifyStretch(env: AuditEnv, from: VerifyProgress, maxRows = Infinity, options: { throughHead?: boolean } = {}): Promise<{ progress: VerifyProgress } | { result: VerifyResult }> {
  const p = { ...from };
  const key = await auditKey(env.AUDIT_HMAC_KEY);
  const { head, checkpoint } = p;
  const broken = (seq: number, id: string | null, problem: string) => ({ result: brokenResult(p, seq, id, problem) });
  let rows = 0;
  for await (const row of auditRowsInOrder(dbOf(env), Math.min(500, maxRows), p.expected - 1)) {
    // A run spread over invocations stops at the head it started from instead of chasing rows written since.
    if (options.throughHead && row.seq > head.seq) break;
    if (row.seq !== p.expected) return broken(p.expected, null, `row ${p.expected} is missing (the next row is ${row.seq})`);
    if (row.mac === null) return broken(row.seq, row.id, "row has no MAC: it was not written by the service, or it is a legacy row whose old hash did not verify when it was adopted");
    if ((await auditRowMac(key, row)) !== row.mac) return broken(row.seq, row.id, "row content does not match its MAC: it was changed after it was written");
    if (row.seq <= head.seq) {
      const link = await chainLink(key, p.prev, row.seq, row.mac);
      if (row.chain !== link) return broken(row.seq, row.id, "the chain breaks at this row: a row before it was removed or replaced, or this row was moved or renumbered");
      if (checkpoint && row.seq === checkpoint.seq && link !== checkpoint.chain) return broken(row.seq, row.id, `the chain at this row does not match the R2 checkpoint of ${checkpoint.at}`);
      if (row.seq === head.seq && link !== head.chain) return broken(row.seq, row.id, "the chain at this row does not match the anchor's head");
      p.prev = link;
    } else {
      p.unsealed++;
    }
    p.expected++;
    p.checked++;
    if (++rows >= maxRows) return { progress: p };
  }
  const last = p.expected - 1;
  if (last < head.seq) return broken(last + 1, null, `rows ${last + 1}–${head.seq} were removed from the end of the trail (truncation): the anchor's head is at seq ${head.seq}`);
  return { result: { ok: true, valid: true, checked: p.checked, brokenAt: null, reason: null, firstBrokenRow: null, headHash: head.chain, head, checkpoint, unsealed: p.unsealed, archivedThrough: p.archivedThrough } };
}

/**
 * Rows the weekly verification checks per invocation: 40 page reads of 500, and two HMACs a row (well under a second
 * of CPU), so the run stays inside Cloudflare's per-invocation limits however long the chain is.
 */
export const WEEKLY_ROWS_PER_INVOCATION = 20_000;

/**
 * The weekly verification: seals, checks the chain a stretch per invocation (continuing on the tasks queue as
 * `audit.verify_continue` carrying its progress), then copies the anchor's head to R2 and stores the report under
 * `reportKey`. The checkpoint written is the head the run started from, once every row up to it verified.
 */
export async function runWeeklyVerification(s: Services, reportKey: string, now: number, rowsPerInvocation = WEEKLY_ROWS_PER_INVOCATION): Promise<VerifyResult | null> {
  const begun = await beginVerification(s.env);
  if ("result" in begun) return finishWeeklyVerification(s.env, reportKey, begun.result, now);
  return continueWeeklyVerification(s, reportKey, begun.progress, now, rowsPerInvocation);
}

/** The next stretch of a weekly verification; null when it continues in another invocation. */
export async function continueWeeklyVerification(
  s: Services,
  reportKey: string,
  progress: VerifyProgress,
  now: number,
  rowsPerInvocation = WEEKLY_ROWS_PER_INVOCATION,
): Promise<VerifyResult | null> {
  const step = await verifyStretch(s.env, progress, rowsPerInvocation, { throughHead: true });
  if ("result" in step) return finishWeeklyVerification(s.env, reportKey, step.result, now);
  await s.queues.tasks.send({ type: "audit.verify_continue", reportKey, progress: step.progress, startedAt: now, rowsPerInvocation });
  return null;
}

async function finishWeeklyVerification(env: AuditEnv, reportKey: string, result: VerifyResult, now: number): Promise<VerifyResult> {
  const checkpoint = await checkpointHead(env, { seq: result.head.seq, chain: result.head.chain, sealedAt: now }, now);
  await env.ARCHIVE.put(reportKey, JSON.stringify({ ...result, checkpointWritten: checkpoint, verifiedAt: new Date(now).toISOString() }, null, 2), {
    httpMetadata: { contentType: "application/json" },
  });
  if (result.valid) {
    const full: FullVerification = { seq: result.head.seq, chain: result.head.chain, verifiedAt: new Date(now).toISOString(), reportKey };
    await env.ARCHIVE.put(LAST_FULL_VERIFICATION_KEY, JSON.stringify(full), { httpMetadata: { contentType: "application/json" } });
  } else console.log(JSON.stringify({ level: "error", msg: "audit chain broken", ...result }));
  return result;
}

/**
 * Rows one request checks (`GET /api/v1/audit/verify-integrity`, the SOX report): 400 page reads of 500 and two HMACs
 * a row stay inside Cloudflare's per-invocation limits; a longer chain is checked by the weekly run in stretches.
 */
export const SYNC_VERIFY_MAX_ROWS = 200_000;

/**
 * The integrity check a request can afford. Every live row when the chain fits `maxRows` (or `full` is asked: 422
 * past the limit); otherwise the newest rows, at most `maxRows`: from the last weekly verification that found the
 * chain intact when it is that recent (after checking its row still carries the value it verified), else from the
 * stored chain value `maxRows` rows before the head. A chain walked forward from any row's value to the anchor's head
 * proves every row after it (a changed row fails its MAC, a changed starting value breaks the next link); the rows
 * before it are the weekly run's (`lastFullVerification`).
 */
export async function verifyIntegrity(env: AuditEnv, options: { full?: boolean; maxRows?: number } = {}): Promise<Outcome<VerifyResult, "unprocessable">> {
  const maxRows = options.maxRows ?? SYNC_VERIFY_MAX_ROWS;
  const begun = await beginVerification(env);
  if ("result" in begun) return ok({ ...begun.result, scope: "full" });
  const p = begun.progress;
  const lastFull = await readLastFullVerification(env);
  const liveRows = p.head.seq - (p.expected - 1);
  let from = p;
  let scope: VerifyResult["scope"] = "full";
  if (liveRows > maxRows) {
    if (options.full) {
      return invalid(
        [{ path: "full", message: `more than ${maxRows} rows to check in one request` }],
        `the live audit chain has ${liveRows} rows, more than the ${maxRows} one request checks: the weekly verification (cron audit.verify) checks it whole, in stretches, and stores its report in R2`,
      );
    }
    const recentFull = lastFull && lastFull.seq >= p.head.seq - maxRows && lastFull.seq >= p.expected - 1 && lastFull.seq <= p.head.seq ? lastFull : null;
    const startAfter = recentFull ? recentFull.seq : p.head.seq - maxRows;
    const start = await env.DB.prepare("SELECT chain FROM audit_log WHERE seq = ?").bind(startAfter).first<{ chain: string | null }>();
    const lost = (problem: string) => ({ ...brokenResult(p, startAfter, null, problem), scope: "newest_rows" as const, checkedFrom: startAfter + 1, lastFullVerification: lastFull });
    if (recentFull && start?.chain !== recentFull.chain) return ok(lost(`the row at seq ${startAfter} no longer carries the chain value the weekly verification of ${recentFull.verifiedAt} found there`));
    if (!start?.chain) return ok(lost(`row ${startAfter} is missing or unsealed, so the newest rows cannot be walked from it`));
    from = { ...p, expected: startAfter + 1, prev: start.chain };
    scope = "newest_rows";
  }
  const done = await verifyStretch(env, from);
  if (!("result" in done)) throw new Error("a verification without a row limit ended early");
  return ok({ ...done.result, scope, checkedFrom: from.expected, lastFullVerification: lastFull });
}
