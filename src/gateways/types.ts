export type GatewayName = "stripe" | "sandbox";

export type ChargeRequest = {
  amountMinor: number;
  currency: string;
  customerId: string;
  paymentMethod: string | null;
  /** The customer's id at the gateway (Stripe `cus_…`, from customer metadata `stripeCustomerId`): saved methods need it. */
  gatewayCustomerId?: string | null;
  invoiceId: string;
  /** Deterministic per invoice and attempt: a repeated call returns the first outcome, never a second charge. */
  idempotencyKey: string;
  description?: string;
};

export type ChargeResult =
  | { status: "succeeded"; gatewayPaymentId: string }
  | { status: "pending"; gatewayPaymentId: string }
  | { status: "failed"; gatewayPaymentId: string | null; failureCode: string; failureMessage: string; retryable: boolean };

export type RefundRequest = { gatewayPaymentId: string; amountMinor: number; currency: string; idempotencyKey: string; reason?: string };
export type RefundResult =
  | { status: "succeeded" | "pending"; gatewayRefundId: string }
  | { status: "failed"; gatewayRefundId: string | null; failureMessage: string };

export type GatewayPayment = { id: string; status: "succeeded" | "pending" | "failed"; amountMinor: number; currency: string; amountRefunded: number; idempotencyKey: string | null };

/** A movement of money on the gateway's books (Stripe's balance transactions). */
export type BalanceTransaction = { id: string; type: "charge" | "refund"; sourceId: string; paymentId: string | null; amountMinor: number; currency: string; created: number };

/**
 * One page of a balance-transaction listing. `next` is the cursor for the following page (the last listed item's id,
 * also when that item is of a kind left out of `data`, such as a fee or payout); null when there is none.
 */
export type BalanceTransactionPage = { data: BalanceTransaction[]; next: string | null };

/** A listing larger than one in-memory call holds: a reconciliation run pages through it instead. */
export class TooManyBalanceTransactions extends Error {
  constructor(readonly max: number) {
    super(`more than ${max} balance transactions in the window; ask for a shorter one or page through them`);
    this.name = "TooManyBalanceTransactions";
  }
}

/** Reconciliation reads a day at a time; far more than this in one call means it should page (balanceTransactionsPage). */
export const MAX_BALANCE_TRANSACTIONS = 10_000;

export interface PaymentGateway {
  readonly name: GatewayName;
  charge(req: ChargeRequest): Promise<ChargeResult>;
  refund(req: RefundRequest): Promise<RefundResult>;
  retrieve(gatewayPaymentId: string): Promise<GatewayPayment | null>;
  /** Balance transactions created in [from, to). */
  balanceTransactions(from: number, to: number): Promise<BalanceTransaction[]>;
  /** One page of balance transactions created in [from, to), after `startingAfter` (a previous page's `next`). */
  balanceTransactionsPage(from: number, to: number, startingAfter: string | null, limit: number): Promise<BalanceTransactionPage>;
  health(): Promise<{ ok: boolean; latencyMs: number; detail?: string }>;
}
