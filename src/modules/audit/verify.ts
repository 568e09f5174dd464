import { dbOf } from "../../db/client";
import { AUDIT_ANCHOR_NAME, auditKey, auditRowMac, auditRowsInOrder, chainLink, GENESIS_CHAIN } from "../../platform/audit";
import type { AnchorHead } from "../../../durable-objects/audit-anchor";
import { readAuditRetentionCheckpoint, type AuditRetentionCheckpoint } from "../../platform/archives";

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
};

/**
 * Seals, then checks every row in seq order in pages: seq has no gap, the row's content matches its MAC, its
 * chain value is the HMAC link from the previous row, the chain at the R2 checkpoint and at the anchor's head
 * match them, and D1 reaches the head (nothing cut off the end). The first failure is reported with its seq.
 */
export async function verifyAuditChain(env: AuditEnv): Promise<VerifyResult> {
  const { head } = await sealAuditChain(env);
  const checkpoint = await readCheckpoint(env);
  // Rows up to the retention checkpoint live in R2 archives (verified against their manifests and chain links by
  // GET /admin/retention/archives/verify); the live chain continues from the chain value at that row.
  const archivedThrough = await readAuditRetentionCheckpoint(env.ARCHIVE);
  const key = await auditKey(env.AUDIT_HMAC_KEY);
  const anchored = { seq: head.seq, chain: head.chain };
  let checked = 0;
  let unsealed = 0;
  const broken = (seq: number, id: string | null, problem: string): VerifyResult => ({
    ok: false,
    valid: false,
    checked,
    brokenAt: seq,
    reason: problem,
    firstBrokenRow: { seq, id, problem },
    headHash: head.chain,
    head: anchored,
    checkpoint,
    unsealed,
    archivedThrough,
  });
  if (checkpoint && head.seq < checkpoint.seq) {
    return broken(head.seq + 1, null, `the anchor's head (seq ${head.seq}) is behind the R2 checkpoint (seq ${checkpoint.seq} at ${checkpoint.at}): the AuditAnchor's state was reset`);
  }
  let prev = archivedThrough?.chain ?? GENESIS_CHAIN;
  let expected = (archivedThrough?.seq ?? 0) + 1;
  for await (const row of auditRowsInOrder(dbOf(env), 500, archivedThrough?.seq ?? 0)) {
    if (row.seq !== expected) return broken(expected, null, `row ${expected} is missing (the next row is ${row.seq})`);
    if (row.mac === null) return broken(row.seq, row.id, "row has no MAC: it was not written by the service, or it is a legacy row whose old hash did not verify when it was adopted");
    if ((await auditRowMac(key, row)) !== row.mac) return broken(row.seq, row.id, "row content does not match its MAC: it was changed after it was written");
    if (row.seq <= head.seq) {
      const link = await chainLink(key, prev, row.seq, row.mac);
      if (row.chain !== link) return broken(row.seq, row.id, "the chain breaks at this row: a row before it was removed or replaced, or this row was moved or renumbered");
      if (checkpoint && row.seq === checkpoint.seq && link !== checkpoint.chain) return broken(row.seq, row.id, `the chain at this row does not match the R2 checkpoint of ${checkpoint.at}`);
      if (row.seq === head.seq && link !== head.chain) return broken(row.seq, row.id, "the chain at this row does not match the anchor's head");
      prev = link;
    } else {
      unsealed++;
    }
    expected++;
    checked++;
  }
  const last = expected - 1;
  if (last < head.seq) return broken(last + 1, null, `rows ${last + 1}–${head.seq} were removed from the end of the trail (truncation): the anchor's head is at seq ${head.seq}`);
  return { ok: true, valid: true, checked, brokenAt: null, reason: null, firstBrokenRow: null, headHash: head.chain, head: anchored, checkpoint, unsealed, archivedThrough };
}

/** The weekly job: seal, verify, copy the head to R2, and store the report. */
export async function runWeeklyVerification(env: AuditEnv, reportKey: string, now: number): Promise<VerifyResult> {
  const result = await verifyAuditChain(env);
  const checkpoint = await checkpointHead(env, { seq: result.head.seq, chain: result.head.chain, sealedAt: now }, now);
  await env.ARCHIVE.put(reportKey, JSON.stringify({ ...result, checkpointWritten: checkpoint, verifiedAt: new Date(now).toISOString() }, null, 2), {
    httpMetadata: { contentType: "application/json" },
  });
  if (!result.valid) console.log(JSON.stringify({ level: "error", msg: "audit chain broken", ...result }));
  return result;
}
