import { DurableObject } from "cloudflare:workers";

export type PaymentMode = "normal" | "frozen" | "queue";
export type PaymentModeState = { mode: PaymentMode; reason: string | null; actor: string | null; since: number; inFlight: number };
export type Admission =
  | { admitted: true; token: string; mode: "normal" }
  | { admitted: false; mode: "frozen" | "queue"; reason: string | null };

/**
 * The settings row (D1) holding a copy of the mode, written by `setMode` before the mode changes here. Each charge's
 * attempt batch (the row going to processing, just before the gateway call) aborts while it says anything but
 * normal: that, not a guard call per charge, is what stops charges under a lease the moment payments freeze.
 */
export const PAYMENTS_MODE_KEY = "payments.mode";

/** A lease's window: its holder starts charges under it for this long, then asks again (and a freeze refuses it). */
export const LEASE_WINDOW_MS = 10_000;
export type Lease = (Admission & { admitted: true }) & { startBy: number };

/** An admitted charge that never reported back is assumed dead after this long (the worker was killed). */
const IN_FLIGHT_TTL_MS = 2 * 60_000;
/** How long a freeze waits for charges already in flight to finish. */
const DRAIN_MS = 15_000;

/**
 * The single global payment switch. Every charge or refund asks `admit()` first and reports back with `release()`.
 * Mode changes are one storage transaction and survive restarts. A freeze waits for admitted charges to finish,
 * so when it returns every charge was either completed before it or will not start.
 */
export class PaymentGuard extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS mode (id INTEGER PRIMARY KEY CHECK (id = 1), mode TEXT NOT NULL, reason TEXT, actor TEXT, since INTEGER NOT NULL)",
      );
      ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS in_flight (token TEXT PRIMARY KEY, what TEXT NOT NULL, since INTEGER NOT NULL)");
      ctx.storage.sql.exec("INSERT OR IGNORE INTO mode (id, mode, since) VALUES (1, 'normal', ?)", Date.now());
    });
  }

  private inFlightCount(now: number): number {
    this.ctx.storage.sql.exec("DELETE FROM in_flight WHERE since < ?", now - IN_FLIGHT_TTL_MS);
    return this.ctx.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM in_flight").one().n;
  }

  state(): PaymentModeState {
    const row = this.ctx.storage.sql.exec<{ mode: PaymentMode; reason: string | null; actor: string | null; since: number }>("SELECT mode, reason, actor, since FROM mode WHERE id = 1").one();
    return { mode: row.mode, reason: row.reason, actor: row.actor, since: row.since, inFlight: this.inFlightCount(Date.now()) };
  }

  /** Health round trip: proves the object answers and its storage reads. */
  ping(): { mode: PaymentMode; at: number } {
    return { mode: this.state().mode, at: Date.now() };
  }

  /** Asks to move money; in normal mode the charge is recorded as in flight until `release(token)`. */
  admit(what: string): Admission {
    const s = this.state();
    if (s.mode !== "normal") return { admitted: false, mode: s.mode, reason: s.reason };
    const token = crypto.randomUUID();
    this.ctx.storage.sql.exec("INSERT INTO in_flight (token, what, since) VALUES (?, ?, ?)", token, what, Date.now());
    return { admitted: true, token, mode: "normal" };
  }

  /**
   * An admission for a batch of charges: the holder may start charges until `startBy` without asking again, and
   * releases the lease when the last charge started under it finished (or it expires with the in-flight TTL, if the
   * holder died). It is one in-flight row, so a freeze waits for it like for a single charge: every charge started
   * under a lease either completed before the freeze returned or was never started (a holder starts charges only
   * while it holds the lease, and once D1's copy of the mode changed no charge's attempt batch commits; no lease is
   * granted once the mode changed). `startBy` bounds how long a holder keeps starting charges under one lease.
   */
  lease(what: string): Lease | Admission {
    const a = this.admit(what);
    return a.admitted ? { ...a, startBy: Date.now() + LEASE_WINDOW_MS } : a;
  }

  release(token: string): void {
    this.ctx.storage.sql.exec("DELETE FROM in_flight WHERE token = ?", token);
  }

  /** Sets the mode atomically; a freeze (or queue mode) then waits for in-flight charges to drain. */
  async setMode(mode: PaymentMode, reason: string | null, actor: string): Promise<PaymentModeState & { previous: PaymentMode; drained: boolean }> {
    const previous = this.state().mode;
    // D1's copy first: from the moment it is written, no charge's attempt batch commits (see PAYMENTS_MODE_KEY), so a
    // lease still inside its window starts nothing more; then the mode here, which refuses new admissions and leases.
    await this.env.DB.prepare(
      "INSERT INTO settings (key, value, updated_by, updated_at) VALUES (?, json_object('mode', ?), ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
      .bind(PAYMENTS_MODE_KEY, mode, actor, Date.now())
      .run();
    this.ctx.storage.sql.exec("UPDATE mode SET mode = ?, reason = ?, actor = ?, since = ? WHERE id = 1", mode, reason, actor, Date.now());
    let drained = true;
    if (mode !== "normal") {
      const deadline = Date.now() + DRAIN_MS;
      while (this.inFlightCount(Date.now()) > 0) {
        if (Date.now() > deadline) {
          drained = false;
          break;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    return { ...this.state(), previous, drained };
  }
}
