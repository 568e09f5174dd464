import { and, asc, eq, gt, gte, lt, or } from "drizzle-orm";
import type { Db } from "../db/client";
import { sandboxLedger } from "../db/schema";
import { newId } from "../lib/ids";
import { MAX_BALANCE_TRANSACTIONS, TooManyBalanceTransactions, type BalanceTransaction, type BalanceTransactionPage, type ChargeRequest, type ChargeResult, type GatewayPayment, type PaymentGateway, type RefundRequest, type RefundResult } from "./types";

/** Stripe's test payment methods and the outcome each one always has. */
const OUTCOMES: Record<string, { code: string; message: string; retryable: boolean } | null> = {
  pm_card_visa: null,
  pm_card_mastercard: null,
  pm_card_amex: null,
  pm_card_chargeDeclined: { code: "card_declined", message: "Your card was declined.", retryable: true },
  pm_card_chargeDeclinedInsufficientFunds: { code: "insufficient_funds", message: "Your card has insufficient funds.", retryable: true },
  pm_card_chargeDeclinedExpiredCard: { code: "expired_card", message: "Your card has expired.", retryable: false },
  pm_card_chargeDeclinedFraudulent: { code: "fraudulent", message: "Your card was declined.", retryable: false },
};

export type SandboxFaults = { latencyMs?: number; failureRate?: number };

/**
 * The embedded gateway: deterministic outcomes by test payment method, its own ledger in D1 (so retrieve and
 * reconciliation have something to compare), idempotent by key like Stripe, with injectable latency and failure
 * rate for fault tests. A random failure is a gateway error (retryable), not a decline.
 */
export class SandboxGateway implements PaymentGateway {
  readonly name = "sandbox" as const;
  constructor(
    private readonly db: Db,
    private readonly faults: SandboxFaults = {},
    private readonly random: () => number = Math.random,
  ) {}

  private async inject() {
    if (this.faults.latencyMs) await new Promise((r) => setTimeout(r, this.faults.latencyMs));
    if (this.faults.failureRate && this.random() < this.faults.failureRate) throw new Error("sandbox: injected gateway failure");
  }

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    await this.inject();
    const method = req.paymentMethod ?? "pm_card_visa";
    const outcome = method in OUTCOMES ? OUTCOMES[method] : { code: "invalid_payment_method", message: `unknown test payment method ${method}`, retryable: false };
    const row = {
      id: newId("ch"),
      kind: "charge" as const,
      idempotencyKey: req.idempotencyKey,
      chargeId: null,
      amount: req.amountMinor,
      currency: req.currency,
      status: outcome ? ("failed" as const) : ("succeeded" as const),
      failureCode: outcome?.code ?? null,
      paymentMethod: method,
      createdAt: Date.now(),
    };
    // Idempotent by key in one round trip: the insert does nothing when the key was charged before, and the read
    // after it answers the first charge's row either way (as Stripe answers a repeated key with the first outcome).
    const [, stored] = await this.db.batch([
      this.db.insert(sandboxLedger).values(row).onConflictDoNothing(),
      this.db.select().from(sandboxLedger).where(eq(sandboxLedger.idempotencyKey, req.idempotencyKey)),
    ]);
    return this.toCharge(stored[0]!);
  }

  private toCharge(row: typeof sandboxLedger.$inferSelect): ChargeResult {
    if (row.status === "succeeded") return { status: "succeeded", gatewayPaymentId: row.id };
    const o = Object.values(OUTCOMES).find((x) => x?.code === row.failureCode);
    return { status: "failed", gatewayPaymentId: row.id, failureCode: row.failureCode ?? "card_declined", failureMessage: o?.message ?? "declined", retryable: o?.retryable ?? false };
  }

  async refund(req: RefundRequest): Promise<RefundResult> {
    await this.inject();
    const prior = await this.db.select().from(sandboxLedger).where(eq(sandboxLedger.idempotencyKey, req.idempotencyKey)).get();
    if (prior) return prior.status === "succeeded" ? { status: "succeeded", gatewayRefundId: prior.id } : { status: "failed", gatewayRefundId: prior.id, failureMessage: prior.failureCode ?? "refund failed" };
    const charge = await this.retrieve(req.gatewayPaymentId);
    if (!charge || charge.status !== "succeeded") return { status: "failed", gatewayRefundId: null, failureMessage: `no succeeded charge ${req.gatewayPaymentId}` };
    if (charge.amountRefunded + req.amountMinor > charge.amountMinor) return { status: "failed", gatewayRefundId: null, failureMessage: "refund exceeds the charge's remaining amount" };
    const row = { id: newId("re"), kind: "refund" as const, idempotencyKey: req.idempotencyKey, chargeId: req.gatewayPaymentId, amount: req.amountMinor, currency: req.currency, status: "succeeded" as const, failureCode: null, paymentMethod: null, createdAt: Date.now() };
    await this.db.insert(sandboxLedger).values(row).onConflictDoNothing();
    return { status: "succeeded", gatewayRefundId: row.id };
  }

  async retrieve(id: string): Promise<GatewayPayment | null> {
    const row = await this.db.select().from(sandboxLedger).where(and(eq(sandboxLedger.id, id), eq(sandboxLedger.kind, "charge"))).get();
    if (!row) return null;
    const refunded = await this.db.select({ amount: sandboxLedger.amount }).from(sandboxLedger).where(and(eq(sandboxLedger.chargeId, id), eq(sandboxLedger.kind, "refund"), eq(sandboxLedger.status, "succeeded"))).all();
    return { id: row.id, status: row.status, amountMinor: row.amount, currency: row.currency, amountRefunded: refunded.reduce((s, r) => s + r.amount, 0), idempotencyKey: row.idempotencyKey };
  }

  async balanceTransactions(from: number, to: number): Promise<BalanceTransaction[]> {
    const rows = await this.db
      .select()
      .from(sandboxLedger)
      .where(and(gte(sandboxLedger.createdAt, from), lt(sandboxLedger.createdAt, to), eq(sandboxLedger.status, "succeeded")))
      .limit(MAX_BALANCE_TRANSACTIONS + 1)
      .all();
    if (rows.length > MAX_BALANCE_TRANSACTIONS) throw new TooManyBalanceTransactions(MAX_BALANCE_TRANSACTIONS);
    return rows.map(toTxn);
  }

  /**
   * One page in (createdAt, id) order after the transaction `startingAfter` (`txn_<ledger id>`). Injected faults apply
   * here as to charges, so a fault test can fail a reconciliation run half-way.
   */
  async balanceTransactionsPage(from: number, to: number, startingAfter: string | null, limit: number): Promise<BalanceTransactionPage> {
    await this.inject();
    const afterId = startingAfter?.replace(/^txn_/, "") ?? null;
    const cursor = afterId ? await this.db.select({ createdAt: sandboxLedger.createdAt, id: sandboxLedger.id }).from(sandboxLedger).where(eq(sandboxLedger.id, afterId)).get() : null;
    if (afterId && !cursor) throw new Error(`sandbox: unknown balance transaction ${startingAfter}`);
    const rows = await this.db
      .select()
      .from(sandboxLedger)
      .where(
        and(
          gte(sandboxLedger.createdAt, from),
          lt(sandboxLedger.createdAt, to),
          eq(sandboxLedger.status, "succeeded"),
          cursor ? or(gt(sandboxLedger.createdAt, cursor.createdAt), and(eq(sandboxLedger.createdAt, cursor.createdAt), gt(sandboxLedger.id, cursor.id))) : undefined,
        ),
      )
      .orderBy(asc(sandboxLedger.createdAt), asc(sandboxLedger.id))
      .limit(limit + 1)
      .all();
    const data = rows.slice(0, limit).map(toTxn);
    return { data, next: rows.length > limit ? data[data.length - 1]!.id : null };
  }

  async health() {
    const started = Date.now();
    await this.db.select({ id: sandboxLedger.id }).from(sandboxLedger).limit(1).all();
    return { ok: true, latencyMs: Date.now() - started, detail: "embedded sandbox" };
  }
}

const toTxn = (r: typeof sandboxLedger.$inferSelect): BalanceTransaction => ({
  id: `txn_${r.id}`,
  type: r.kind,
  sourceId: r.id,
  paymentId: r.kind === "charge" ? r.id : r.chargeId,
  amountMinor: r.kind === "charge" ? r.amount : -r.amount,
  currency: r.currency,
  created: r.createdAt,
});
