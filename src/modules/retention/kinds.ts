import { and, asc, eq, gt, inArray, isNotNull, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { auditLog, events, invoiceLines, invoices, payments, refunds, retentionArchives, type RetentionKind } from "../../db/schema";
import { toEvent } from "../../platform/events";
import { AUDIT_ANCHOR_NAME, auditKey, chainLink, GENESIS_CHAIN } from "../../platform/audit";
import {
  manifestOf,
  readAuditRetentionCheckpoint,
  toNdjson,
  writeAuditRetentionCheckpoint,
  writeVerifiedArchive,
  type ArchiveManifest,
  type ChainEdges,
} from "../../platform/archives";

/** Rows per archive object: each page is one R2 body + manifest and one D1 batch, a handful of queries. */
export const PAGE_ROWS: Record<RetentionKind, number> = { events: 200, invoice_lines: 100, payment_attempts: 500, audit: 500 };

export type PageResult = { archived: number; key: string | null; cursor: string | null; done: boolean };

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
export const archiveKeyFor = (kind: RetentionKind, firstAt: number, firstRef: string, lastRef: string) => `retention/${kind}/${day(firstAt)}/${firstRef}_${lastRef}.ndjson`;

/** `createdAt:id`, the keyset position of the last row a page looked at. */
const encodeCursor = (at: number, id: string) => `${at}:${id}`;
function decodeCursor(c: string | null): { at: number; id: string } | null {
  if (!c) return null;
  const i = c.indexOf(":");
  return { at: Number(c.slice(0, i)), id: c.slice(i + 1) };
}

type Archive = { manifest: ArchiveManifest; body: string };

async function build(kind: RetentionKind, rows: unknown[], range: { from: number; to: number; firstRef: string; lastRef: string }, chain?: ChainEdges): Promise<Archive> {
  const key = archiveKeyFor(kind, range.from, range.firstRef, range.lastRef);
  const body = toNdjson(rows);
  return { body, manifest: await manifestOf(kind, key, body, rows.length, range, chain) };
}

/** The D1 row recording an archive; inserted in the batch that deletes its rows (a second insert does nothing). */
const recordOf = (db: Db, a: Archive, runId: string, now: number) =>
  db
    .insert(retentionArchives)
    .values({
      key: a.manifest.key,
      kind: a.manifest.kind as RetentionKind,
      manifestKey: `${a.manifest.key}.manifest.json`,
      runId,
      rows: a.manifest.rows,
      bytes: a.manifest.bytes,
      sha256: a.manifest.sha256,
      fromAt: Date.parse(a.manifest.from),
      toAt: Date.parse(a.manifest.to),
      firstRef: a.manifest.firstRef,
      lastRef: a.manifest.lastRef,
      endSeq: a.manifest.chain?.endSeq ?? null,
      endChain: a.manifest.chain?.endChain ?? null,
      createdAt: now,
    })
    .onConflictDoNothing();

/** A JSON array bound as one parameter (D1 allows 100 per statement; a page has hundreds of ids). */
const idsIn = (ids: string[]) => sql`(select value from json_each(${JSON.stringify(ids)}))`;

type Ctx = { env: Env; db: Db; runId: string; now: number; cutoff: number; after: string | null; pageRows?: number };

/** Events created before the cutoff, oldest first (the public shape, as GET /api/v1/events/{id} returned them). */
async function eventsPage({ env, db, runId, now, cutoff, after, pageRows }: Ctx): Promise<PageResult> {
  const limit = pageRows ?? PAGE_ROWS.events;
  const c = decodeCursor(after);
  const rows = await db
    .select()
    .from(events)
    .where(and(lt(events.createdAt, cutoff), c ? or(gt(events.createdAt, c.at), and(eq(events.createdAt, c.at), gt(events.id, c.id))) : undefined))
    .orderBy(asc(events.createdAt), asc(events.id))
    .limit(limit)
    .all();
  if (!rows.length) return { archived: 0, key: null, cursor: after, done: true };
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  const a = await build(
    "events",
    rows.map((r) => ({ ...toEvent(r), objectType: r.objectType, objectId: r.objectId, customerId: r.customerId })),
    { from: first.createdAt, to: last.createdAt, firstRef: first.id, lastRef: last.id },
  );
  await writeVerifiedArchive(env.ARCHIVE, a.body, a.manifest);
  const ids = rows.map((r) => r.id);
  await db.batch([db.delete(events).where(and(sql`${events.id} in ${idsIn(ids)}`, lt(events.createdAt, cutoff))), recordOf(db, a, runId, now)]);
  return { archived: rows.length, key: a.manifest.key, cursor: encodeCursor(last.createdAt, last.id), done: rows.length < limit };
}

const SETTLED = ["paid", "void", "uncollectible"] as const;

/**
 * Lines of settled invoices created before the cutoff, a page of invoices at a time. The invoices stay in D1 with
 * `archiveKey` naming the page's archive (GET /api/v1/invoices/{id} reads their lines from it); a line is deleted
 * only when its invoice points at the archive in the same batch.
 */
async function invoiceLinesPage({ env, db, runId, now, cutoff, after, pageRows }: Ctx): Promise<PageResult> {
  const limit = pageRows ?? PAGE_ROWS.invoice_lines;
  const c = decodeCursor(after);
  const page = await db
    .select({ id: invoices.id, createdAt: invoices.createdAt })
    .from(invoices)
    .where(
      and(
        inArray(invoices.status, [...SETTLED]),
        isNotNull(invoices.finalizedAt),
        isNull(invoices.archiveKey),
        lt(invoices.createdAt, cutoff),
        c ? or(gt(invoices.createdAt, c.at), and(eq(invoices.createdAt, c.at), gt(invoices.id, c.id))) : undefined,
      ),
    )
    .orderBy(asc(invoices.createdAt), asc(invoices.id))
    .limit(limit)
    .all();
  if (!page.length) return { archived: 0, key: null, cursor: after, done: true };
  const first = page[0]!;
  const last = page[page.length - 1]!;
  const ids = page.map((i) => i.id);
  const order = new Map(ids.map((id, i) => [id, i]));
  const lines = (await db.select().from(invoiceLines).where(sql`${invoiceLines.invoiceId} in ${idsIn(ids)}`).all()).sort(
    (x, y) => order.get(x.invoiceId)! - order.get(y.invoiceId)! || x.position - y.position,
  );
  const cursor = encodeCursor(last.createdAt, last.id);
  const done = page.length < limit;
  if (!lines.length) return { archived: 0, key: null, cursor, done };
  const a = await build("invoice_lines", lines, { from: first.createdAt, to: last.createdAt, firstRef: first.id, lastRef: last.id });
  await writeVerifiedArchive(env.ARCHIVE, a.body, a.manifest);
  const key = a.manifest.key;
  await db.batch([
    db
      .update(invoices)
      .set({ archiveKey: key, archivedAt: now })
      .where(and(sql`${invoices.id} in ${idsIn(ids)}`, isNull(invoices.archiveKey), inArray(invoices.status, [...SETTLED]))),
    db.delete(invoiceLines).where(sql`${invoiceLines.invoiceId} in (select ${invoices.id} from ${invoices} where ${invoices.archiveKey} = ${key})`),
    recordOf(db, a, runId, now),
  ]);
  return { archived: lines.length, key, cursor, done };
}

const FINISHED = ["succeeded", "failed", "canceled"] as const;
const notRefunded = sql`not exists (select 1 from ${refunds} where ${refunds.paymentId} = ${payments.id})`;

/** Finished payment attempts created and last changed before the cutoff, never refunded (a refund needs its payment). */
async function paymentAttemptsPage({ env, db, runId, now, cutoff, after, pageRows }: Ctx): Promise<PageResult> {
  const limit = pageRows ?? PAGE_ROWS.payment_attempts;
  const c = decodeCursor(after);
  const eligible = and(inArray(payments.status, [...FINISHED]), lt(payments.createdAt, cutoff), lt(payments.updatedAt, cutoff), notRefunded);
  const rows = await db
    .select()
    .from(payments)
    .where(and(eligible, c ? or(gt(payments.createdAt, c.at), and(eq(payments.createdAt, c.at), gt(payments.id, c.id))) : undefined))
    .orderBy(asc(payments.createdAt), asc(payments.id))
    .limit(limit)
    .all();
  if (!rows.length) return { archived: 0, key: null, cursor: after, done: true };
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  // The range ends at the latest change (not creation): a report window after it never needs these rows.
  const a = await build("payment_attempts", rows, { from: first.createdAt, to: Math.max(...rows.map((r) => r.updatedAt)), firstRef: first.id, lastRef: last.id });
  await writeVerifiedArchive(env.ARCHIVE, a.body, a.manifest);
  await db.batch([db.delete(payments).where(and(sql`${payments.id} in ${idsIn(rows.map((r) => r.id))}`, eligible)), recordOf(db, a, runId, now)]);
  return { archived: rows.length, key: a.manifest.key, cursor: encodeCursor(last.createdAt, last.id), done: rows.length < limit };
}

/**
 * The oldest audit rows, a contiguous run of seq from the start of the live chain: sealed (seq ≤ the anchor's head),
 * written before the cutoff, never the newest row (SQLite numbers the next row max + 1). The archive carries the
 * chain value before its first row and at its last; the links are checked before anything is written, and the
 * R2 checkpoint moves to the archive's end before its rows leave D1, so verification of the live chain starts there.
 */
async function auditPage({ env, db, runId, now, cutoff, pageRows }: Ctx): Promise<PageResult> {
  const limit = pageRows ?? PAGE_ROWS.audit;
  const head = await env.AUDIT_ANCHOR.get(env.AUDIT_ANCHOR.idFromName(AUDIT_ANCHOR_NAME)).head();
  const rows = await db
    .select()
    .from(auditLog)
    .where(and(lte(auditLog.seq, head.seq), sql`${auditLog.seq} < (select max(seq) from ${auditLog})`))
    .orderBy(asc(auditLog.seq))
    .limit(limit)
    .all();
  const eligible: typeof rows = [];
  for (const r of rows) {
    if (r.at >= cutoff || r.chain === null) break;
    if (eligible.length && r.seq !== eligible[eligible.length - 1]!.seq + 1) break;
    eligible.push(r);
  }
  if (!eligible.length) return { archived: 0, key: null, cursor: null, done: true };
  const first = eligible[0]!;
  const last = eligible[eligible.length - 1]!;
  const prevChain = first.seq === 1 ? GENESIS_CHAIN : await chainBefore(env.ARCHIVE, db, first.seq);
  const key = await auditKey(env.AUDIT_HMAC_KEY);
  let chain = prevChain;
  for (const r of eligible) {
    chain = await chainLink(key, chain, r.seq, r.mac);
    if (chain !== r.chain) throw new Error(`audit chain breaks at seq ${r.seq}: not archiving a broken chain (run GET /api/v1/audit/verify-integrity)`);
  }
  const edges: ChainEdges = { startSeq: first.seq, prevChain, endSeq: last.seq, endChain: last.chain! };
  const a = await build("audit", eligible, { from: first.at, to: last.at, firstRef: String(first.seq), lastRef: String(last.seq) }, edges);
  await writeVerifiedArchive(env.ARCHIVE, a.body, a.manifest);
  await writeAuditRetentionCheckpoint(env.ARCHIVE, { seq: last.seq, chain: last.chain!, archiveKey: a.manifest.key });
  await db.batch([db.delete(auditLog).where(and(gt(auditLog.seq, first.seq - 1), lte(auditLog.seq, last.seq))), recordOf(db, a, runId, now)]);
  return { archived: eligible.length, key: a.manifest.key, cursor: String(last.seq), done: eligible.length < limit };
}

/** The chain value of row `seq - 1`, which an earlier archive took out of D1: from the R2 checkpoint, else D1's record. */
async function chainBefore(archive: R2Bucket, db: Db, seq: number): Promise<string> {
  const cp = await readAuditRetentionCheckpoint(archive);
  if (cp && cp.seq === seq - 1) return cp.chain;
  const rec = await db.select({ endChain: retentionArchives.endChain }).from(retentionArchives).where(and(eq(retentionArchives.kind, "audit"), eq(retentionArchives.endSeq, seq - 1))).get();
  if (rec?.endChain) return rec.endChain;
  throw new Error(`audit row ${seq - 1} is neither in D1 nor in an archive: the live chain starts at ${seq} with no checkpoint before it`);
}

export const pageOf: Record<RetentionKind, (ctx: Ctx) => Promise<PageResult>> = {
  events: eventsPage,
  invoice_lines: invoiceLinesPage,
  payment_attempts: paymentAttemptsPage,
  audit: auditPage,
};
