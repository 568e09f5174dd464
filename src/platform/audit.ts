import { and, eq, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { env as workerEnv, waitUntil } from "cloudflare:workers";
import type { Actor } from "../env";
import { auditLog, idempotencyKeys } from "../db/schema";
import type { Db } from "../db/client";
import { insertRows } from "../db/prepared";
import { canonicalJson } from "../lib/hash";
import { base64ToBytes, toHex } from "../lib/crypto";
import { newId } from "../lib/ids";

export type AuditEntry = {
  action: string;
  targetType: string;
  targetId: string;
  before?: unknown;
  after?: unknown;
  reason?: string;
};

/** `idempotencyKey`: the request's scoped key; the change's batch marks it committed, so a retry never re-applies it. */
/**
 * `wallClock`: the request's real time when the context was made. While `now` still equals it (no caller resolved a
 * test clock's time into `now`), `commit()` stamps events about objects on a test clock in their clock's time.
 */
export type AuditContext = {
  actor: Actor;
  requestId?: string;
  now: number;
  idempotencyKey?: string;
  wallClock?: number;
  /**
   * The invocation's clock (set by the services context, src/platform/services.ts: the one place that tells real
   * from test-clock time): a test clock's frozen time, null for a clock that no longer exists.
   */
  clockOf?: (testClockId: string) => Promise<number | null>;
};

/** The chain value before row 1. */
export const GENESIS_CHAIN = "0".repeat(64);

export type AuditRow = typeof auditLog.$inferSelect;
type Content = Pick<AuditRow, "id" | "at" | "actor" | "actorRole" | "action" | "targetType" | "targetId" | "requestId" | "before" | "after" | "reason">;

/**
 * The exact text a row's MAC covers: canonical JSON (keys sorted) of its content, without `seq`, so the row's place
 * in the chain is fixed by the sealer's chain value, not by the writer. `before`/`after` are the stored strings.
 */
export function auditRowContent(row: Content): string {
  return canonicalJson({
    id: row.id,
    at: row.at,
    actor: row.actor,
    actorRole: row.actorRole,
    action: row.action,
    targetType: row.targetType,
    targetId: row.targetId,
    requestId: row.requestId,
    before: row.before,
    after: row.after,
    reason: row.reason,
  });
}

const keys = new Map<string, Promise<CryptoKey>>();

/** The HMAC key from AUDIT_HMAC_KEY (base64 of at least 32 random bytes); a wrong value is a deployment mistake, so it throws. */
export function auditKey(secret: string | undefined): Promise<CryptoKey> {
  if (!secret) throw new Error("AUDIT_HMAC_KEY is not set");
  let key = keys.get(secret);
  if (!key) {
    let raw: Uint8Array<ArrayBuffer>;
    try {
      raw = base64ToBytes(secret);
    } catch {
      throw new Error("AUDIT_HMAC_KEY is not valid base64");
    }
    if (raw.length < 32) throw new Error(`AUDIT_HMAC_KEY must be at least 32 bytes, got ${raw.length}`);
    key = crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keys.set(secret, key);
  }
  return key;
}

const encoder = new TextEncoder();
const hmacHex = async (key: CryptoKey, text: string) => toHex(await crypto.subtle.sign("HMAC", key, encoder.encode(text)));

/** mac = hex HMAC-SHA-256(key, auditRowContent(row)). */
export const auditRowMac = (key: CryptoKey, row: Content) => hmacHex(key, auditRowContent(row));

/** chain(n) = hex HMAC-SHA-256(key, chain(n-1) + "|" + n + "|" + mac(n)), chain(0) = GENESIS_CHAIN; a row without a MAC chains "". */
export const chainLink = (key: CryptoKey, prevChain: string, seq: number, mac: string | null) => hmacHex(key, `${prevChain}|${seq}|${mac ?? ""}`);

/** The legacy (before migration 0008) unkeyed hash: SHA-256(prevHash + canonical JSON of the row with seq and prevHash). */
export async function legacyRowHash(row: Content & { seq: number; prevHash: string }): Promise<string> {
  const payload = canonicalJson({ ...JSON.parse(auditRowContent(row)), seq: row.seq, prevHash: row.prevHash });
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(row.prevHash + payload)));
}

/**
 * Runs `statements` and their audit rows in one D1 batch (one transaction). Each audit row carries a MAC over its
 * content; SQLite assigns its `seq` (max + 1) inside the batch, and D1 runs a batch on its single writer, so
 * concurrent writers never conflict and nothing reads the chain's tail. The AuditAnchor Durable Object seals the
 * new rows into the chain shortly after (poked here, off the response path), every hour, and before verification.
 */
export async function commitWithAudit(
  db: Db,
  statements: BatchItem<"sqlite">[],
  entries: AuditEntry[],
  ctx: AuditContext,
): Promise<unknown[]> {
  const all = [...statements];
  if (entries.length) {
    const key = await auditKey(workerEnv.AUDIT_HMAC_KEY);
    const rows: (typeof auditLog.$inferInsert)[] = [];
    for (const e of entries) {
      const row = {
        id: newId("aud"),
        at: ctx.now,
        actor: ctx.actor.id,
        actorRole: ctx.actor.role,
        action: e.action,
        targetType: e.targetType,
        targetId: e.targetId,
        requestId: ctx.requestId ?? null,
        before: e.before === undefined ? null : canonicalJson(e.before),
        after: e.after === undefined ? null : canonicalJson(e.after),
        reason: e.reason ?? null,
      };
      rows.push({ ...row, mac: await auditRowMac(key, row) });
    }
    // Prepared SQL (src/db/prepared.ts), the change's audit rows in one insert (up to 8 rows a statement): audit rows
    // are on the billing run's hot path. SQLite gives them their seq in the order given, as separate inserts would.
    all.push(...insertRows(db, auditLog, rows));
  }
  if (ctx.idempotencyKey) {
    all.push(db.update(idempotencyKeys).set({ state: "committed" }).where(and(eq(idempotencyKeys.scopedKey, ctx.idempotencyKey), eq(idempotencyKeys.state, "in_flight"))));
  }
  if (all.length === 0) return [];
  const results = await db.batch(all as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
  if (entries.length) pokeSealer();
  return results;
}

/**
 * When the seal this isolate last heard of runs (epoch ms). That seal reads every row committed before it runs, so a
 * commit well before it (POKE_MARGIN_MS, for clock skew between this isolate and the anchor) needs no poke: the one
 * global AuditAnchor gets about one call per isolate per seal instead of one per audited commit.
 */
let sealRunsAt = 0;
const POKE_MARGIN_MS = 50;

/** Test setup: a fresh anchor has no pending seal. */
export function forgetPendingSeal(): void {
  sealRunsAt = 0;
  inFlightSince = 0;
  skippedUpTo = 0;
  unsettled.clear();
}

/**
 * When this isolate's poke on its way was sent (0: none), and the latest commit that did not poke because of it.
 * Commits made meanwhile (a queue batch's messages commit side by side) do not each poke the one global anchor: the
 * request that sent the poke checks, once the answer names the seal, whether that seal covers them, and pokes again
 * if not. Only numbers are shared between requests, never a promise: workerd ties a promise to the request that made
 * it. A poke older than IN_FLIGHT_STALE_MS counts as lost (its request gone), and the next commit pokes itself.
 */
let inFlightSince = 0;
let skippedUpTo = 0;
const IN_FLIGHT_STALE_MS = 10_000;
/** The pokes of this isolate not settled yet (tests wait on them: `sealerPokesSettled`). */
const unsettled = new Set<Promise<void>>();

/** Asks the AuditAnchor to seal soon (it debounces with an alarm); never delays or fails the change that called it. */
function pokeSealer() {
  const ns = (workerEnv as Partial<Env>).AUDIT_ANCHOR;
  if (!ns) return;
  const committedAt = Date.now();
  if (committedAt < sealRunsAt - POKE_MARGIN_MS) return;
  if (inFlightSince && committedAt - inFlightSince < IN_FLIGHT_STALE_MS) {
    skippedUpTo = Math.max(skippedUpTo, committedAt);
    return;
  }
  const send = (): Promise<void> => {
    inFlightSince = Date.now();
    return ns
      .get(ns.idFromName(AUDIT_ANCHOR_NAME))
      .poke()
      .then((at: number) => {
        sealRunsAt = Math.max(sealRunsAt, at);
      })
      .catch((e: unknown) => console.log(JSON.stringify({ level: "warn", msg: "audit sealer poke failed", error: String(e) })))
      .then(() => {
        inFlightSince = 0;
        const uncovered = skippedUpTo !== 0 && skippedUpTo >= sealRunsAt - POKE_MARGIN_MS;
        skippedUpTo = 0;
        // Commits that waited on this poke and that its seal does not cover: poke for them (from this request).
        if (uncovered) return send();
      });
  };
  const run = send();
  unsettled.add(run);
  void run.finally(() => unsettled.delete(run));
  try {
    waitUntil(run);
  } catch {
    // Outside a request, message or cron (e.g. a script): the promise still runs.
  }
}

/** Resolves once every poke this isolate sent since `forgetPendingSeal` has its answer (tests). */
export async function sealerPokesSettled(): Promise<void> {
  while (unsettled.size) await Promise.all([...unsettled]);
}

/** The one AuditAnchor instance's name. */
export const AUDIT_ANCHOR_NAME = "audit-chain";

/** Used by verification: all rows after seq `after` in chain order, paged to keep memory flat. */
export async function* auditRowsInOrder(db: Db, pageSize = 500, after = 0): AsyncGenerator<AuditRow> {
  for (;;) {
    const page = await db.select().from(auditLog).where(sql`${auditLog.seq} > ${after}`).orderBy(auditLog.seq).limit(pageSize).all();
    for (const row of page) yield row;
    if (page.length < pageSize) return;
    after = page[page.length - 1]!.seq;
  }
}
