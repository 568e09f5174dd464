import { DurableObject } from "cloudflare:workers";

export type PaymentMode = "normal" | "frozen" | "queue";
export type PaymentModeState = { mode: PaymentMode; reason: string | null; actor: string | null; since: number };

/**
 * The single global payment switch. Its state lives in SQLite storage, so a restart keeps the mode;
 * the payment-freeze operations (issue "Payments") build on `state()`.
 */
export class PaymentGuard extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS mode (id INTEGER PRIMARY KEY CHECK (id = 1), mode TEXT NOT NULL, reason TEXT, actor TEXT, since INTEGER NOT NULL)",
      );
      ctx.storage.sql.exec("INSERT OR IGNORE INTO mode (id, mode, since) VALUES (1, 'normal', ?)", Date.now());
    });
  }

  state(): PaymentModeState {
    const row = this.ctx.storage.sql.exec<{ mode: PaymentMode; reason: string | null; actor: string | null; since: number }>("SELECT mode, reason, actor, since FROM mode WHERE id = 1").one();
    return { mode: row.mode, reason: row.reason, actor: row.actor, since: row.since };
  }

  /** Health round trip: proves the object answers and its storage reads. */
  ping(): { mode: PaymentMode; at: number } {
    return { mode: this.state().mode, at: Date.now() };
  }
}
