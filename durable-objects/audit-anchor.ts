import { DurableObject } from "cloudflare:workers";
import { auditKey, chainLink, auditRowMac, legacyRowHash, GENESIS_CHAIN, type AuditRow } from "../src/platform/audit";

export type AnchorHead = { seq: number; chain: string; sealedAt: number };
export type SealResult = { head: AnchorHead; sealed: number; adopted: number; more: boolean };

/** Rows read and written back per D1 round trip, and pages per call (the rest is sealed by the next call or alarm). */
const PAGE = 200;
const PAGES_PER_CALL = 25;
/** A poke seals this long after the first unsealed write, so a burst of writes is sealed in one pass. */
const DEBOUNCE_MS = 200;

type Head = { seq: number; chain: string; sealed_at: number; legacy_through: number | null; legacy_prev: string };

/**
 * The audit chain's single sealer and its anchor outside D1. Writers only insert rows with a per-row MAC; this
 * object reads the rows after its head in seq order, computes chain(n) = HMAC(key, chain(n-1) | n | mac(n)),
 * writes the chain values back (one statement per page) and keeps its head (seq, chain) in its own storage. So
 * removing or reordering a sealed row breaks the recomputed chain at that seq, and cutting rows off the end leaves
 * D1 short of this head; the weekly verification also copies the head to R2.
 *
 * Rows written before the keyed chain (migration 0008) have no MAC. On the first seal the object records the
 * highest such seq ("legacy through"); a legacy row at or below it is adopted (given its MAC) only when its old
 * unkeyed SHA-256 link verifies. Any other row without a MAC is sealed as it is and reported by verification.
 */
export class AuditAnchor extends DurableObject<Env> {
  private next: Promise<SealResult> | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, chain TEXT NOT NULL, sealed_at INTEGER NOT NULL, legacy_through INTEGER, legacy_prev TEXT NOT NULL)",
      );
    });
  }

  private readHead(): Head | null {
    return this.ctx.storage.sql.exec<Head>("SELECT seq, chain, sealed_at, legacy_through, legacy_prev FROM head WHERE id = 1").toArray()[0] ?? null;
  }

  /** The last sealed row (seq 0 and the genesis value before anything was sealed). */
  head(): AnchorHead {
    const h = this.readHead();
    return h ? { seq: h.seq, chain: h.chain, sealedAt: h.sealed_at } : { seq: 0, chain: GENESIS_CHAIN, sealedAt: 0 };
  }

  /**
   * Asks for a seal soon; cheap (no D1 access). Returns when the pending seal runs (epoch ms): it reads every row
   * committed before then, so a writer may skip poking for rows it commits before that time.
   */
  async poke(): Promise<number> {
    const pending = await this.ctx.storage.getAlarm();
    if (pending !== null) return pending;
    const at = Date.now() + DEBOUNCE_MS;
    await this.ctx.storage.setAlarm(at);
    return at;
  }

  override async alarm(): Promise<void> {
    const r = await this.seal();
    if (r.more) await this.ctx.storage.setAlarm(Date.now());
  }

  /**
   * Seals every row committed before this call (up to PAGES_PER_CALL pages; `more` says whether rows remain).
   * Runs one at a time: D1 calls let other calls in, and two sealers must never interleave. Calls that arrive
   * while one runs share the next run, which starts after it.
   */
  seal(): Promise<SealResult> {
    if (!this.next) {
      const run = this.running.then(() => {
        this.next = null;
        return this.sealPages();
      });
      this.next = run;
      this.running = run.catch(() => undefined);
    }
    return this.next;
  }

  private async sealPages(): Promise<SealResult> {
    const key = await auditKey(this.env.AUDIT_HMAC_KEY);
    let h = this.readHead();
    if (!h) {
      const legacy = await this.env.DB.prepare("SELECT max(seq) AS s FROM audit_log WHERE mac IS NULL").first<{ s: number | null }>();
      h = { seq: 0, chain: GENESIS_CHAIN, sealed_at: Date.now(), legacy_through: legacy?.s ?? null, legacy_prev: GENESIS_CHAIN };
      this.saveHead(h);
    }
    let sealed = 0;
    let adopted = 0;
    for (let page = 0; page < PAGES_PER_CALL; page++) {
      const rows = await this.env.DB.prepare(
        "SELECT seq, id, at, actor, actor_role AS actorRole, action, target_type AS targetType, target_id AS targetId, request_id AS requestId, before, after, reason, mac, prev_hash AS prevHash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
      )
        .bind(h.seq, PAGE)
        .all<Omit<AuditRow, "chain">>();
      if (!rows.results.length) return { head: this.head(), sealed, adopted, more: false };
      const updates: { seq: number; chain: string; mac: string | null }[] = [];
      let chain: string = h.chain;
      let legacyPrev: string = h.legacy_prev;
      for (const row of rows.results) {
        let mac = row.mac;
        let adoptedMac: string | null = null;
        if (mac === null && h.legacy_through !== null && row.seq <= h.legacy_through) {
          const linked = row.prevHash !== null && row.prevHash === legacyPrev && row.hash !== null && (await legacyRowHash({ ...row, prevHash: row.prevHash })) === row.hash;
          if (linked) {
            mac = adoptedMac = await auditRowMac(key, row);
            adopted++;
          }
          legacyPrev = row.hash ?? "";
        }
        chain = await chainLink(key, chain, row.seq, mac);
        updates.push({ seq: row.seq, chain, mac: adoptedMac });
      }
      // D1 first, then the head: a failure in between only makes the next run recompute the same values.
      await this.env.DB.prepare(
        `UPDATE audit_log SET chain = j.chain, mac = coalesce(audit_log.mac, j.mac)
         FROM (SELECT json_extract(value, '$.seq') AS seq, json_extract(value, '$.chain') AS chain, json_extract(value, '$.mac') AS mac FROM json_each(?)) AS j
         WHERE audit_log.seq = j.seq`,
      )
        .bind(JSON.stringify(updates))
        .run();
      h = { ...h, seq: updates[updates.length - 1]!.seq, chain, sealed_at: Date.now(), legacy_prev: legacyPrev };
      this.saveHead(h);
      sealed += updates.length;
      if (rows.results.length < PAGE) return { head: this.head(), sealed, adopted, more: false };
    }
    return { head: this.head(), sealed, adopted, more: true };
  }

  private saveHead(h: Head) {
    this.ctx.storage.sql.exec(
      "INSERT INTO head (id, seq, chain, sealed_at, legacy_through, legacy_prev) VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, chain = excluded.chain, sealed_at = excluded.sealed_at, legacy_through = excluded.legacy_through, legacy_prev = excluded.legacy_prev",
      h.seq,
      h.chain,
      h.sealed_at,
      h.legacy_through,
      h.legacy_prev,
    );
  }
}
