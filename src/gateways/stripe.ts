import Stripe from "stripe";
import { MAX_BALANCE_TRANSACTIONS, TooManyBalanceTransactions, type BalanceTransaction, type BalanceTransactionPage, type ChargeRequest, type ChargeResult, type GatewayPayment, type PaymentGateway, type RefundRequest, type RefundResult } from "./types";

export type StripeGatewayOptions = {
  /** The fetch the SDK uses; tests pass a fake of Stripe's HTTP API. Defaults to the global fetch, looked up per call. */
  fetch?: typeof fetch;
  /** Where Stripe's API is (`https://api.stripe.com` when unset); also read from the optional `STRIPE_API_BASE` var. */
  apiBase?: string;
  /** In-request retries of connection errors, 409 and 5xx, reusing our idempotency key. The payment queue does the real backoff. */
  maxNetworkRetries?: number;
};

const REQUEST_TIMEOUT_MS = 15_000;

// Issuer decline reasons where another attempt with the same card cannot succeed without the customer acting.
// Everything else (insufficient_funds, generic_decline, processing_error, try_again_later …) is worth a retry.
const FINAL_DECLINES = new Set([
  "authentication_required",
  "card_not_supported",
  "currency_not_supported",
  "do_not_try_again",
  "expired_card",
  "fraudulent",
  "incorrect_cvc",
  "incorrect_number",
  "invalid_account",
  "invalid_cvc",
  "invalid_expiry_month",
  "invalid_expiry_year",
  "invalid_number",
  "lost_card",
  "merchant_blacklist",
  "new_account_information_available",
  "pickup_card",
  "restricted_card",
  "revocation_of_all_authorizations",
  "revocation_of_authorization",
  "security_violation",
  "stolen_card",
  "stop_payment_order",
  "transaction_not_allowed",
]);

const STRIPE_REFUND_REASONS = new Set(["duplicate", "fraudulent", "requested_by_customer"]);

type Decline = { code?: string | undefined; decline_code?: string | undefined; advice_code?: string | undefined; message?: string | undefined };

/** A decline's failure code (the issuer's reason when Stripe gives one, as the sandbox does) and whether a retry can help. */
export function classifyDecline(d: Decline): { failureCode: string; failureMessage: string; retryable: boolean } {
  const failureCode = d.code === "card_declined" && d.decline_code ? d.decline_code : (d.code ?? d.decline_code ?? "card_declined");
  const advised = d.advice_code === "do_not_try_again" || d.advice_code === "confirm_card_data" ? false : d.advice_code === "try_again_later" ? true : undefined;
  const retryable = advised ?? !(FINAL_DECLINES.has(failureCode) || (d.decline_code !== undefined && FINAL_DECLINES.has(d.decline_code)));
  return { failureCode, failureMessage: d.message ?? "The payment was declined.", retryable };
}

function apiLocation(base: string): { host: string; port: number; protocol: "http" | "https" } {
  const url = new URL(base);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error(`STRIPE_API_BASE must be an http(s) URL, got ${base}`);
  const protocol = url.protocol === "https:" ? "https" : "http";
  return { host: url.hostname, port: url.port ? Number(url.port) : protocol === "https" ? 443 : 80, protocol };
}

const upper = (currency: string) => currency.toUpperCase();
const isStripeError = (e: unknown): e is Stripe.errors.StripeError => e instanceof Stripe.errors.StripeError;

/**
 * The Stripe gateway through the official SDK (fetch HTTP client, so it runs in workerd). Card declines are outcomes
 * (`failed` with the issuer's code); outages, rate limits, auth and connection errors throw so the caller retries
 * with the same idempotency key, which Stripe answers with the first outcome, never a second charge.
 */
export class StripeGateway implements PaymentGateway {
  readonly name = "stripe" as const;
  private readonly stripe: Stripe;

  constructor(env: Env, opts: StripeGatewayOptions = {}) {
    if (!env.STRIPE_SECRET_KEY) throw new Error("the stripe gateway is not configured (STRIPE_SECRET_KEY is empty)");
    const fetchFn: typeof fetch = opts.fetch ?? ((input, init) => fetch(input, init));
    const base = opts.apiBase ?? (env as unknown as Record<string, string | undefined>).STRIPE_API_BASE;
    this.stripe = new Stripe(env.STRIPE_SECRET_KEY, {
      httpClient: Stripe.createFetchHttpClient(fetchFn),
      maxNetworkRetries: opts.maxNetworkRetries ?? 1,
      timeout: REQUEST_TIMEOUT_MS,
      telemetry: false,
      ...(base ? apiLocation(base) : {}),
    });
  }

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    // Stripe cannot confirm without a method, and the customer's default is not modelled: a final failure, not an outage.
    if (!req.paymentMethod) return { status: "failed", gatewayPaymentId: null, failureCode: "missing_payment_method", failureMessage: "no payment method on file", retryable: false };
    try {
      const intent = await this.stripe.paymentIntents.create(
        {
          amount: req.amountMinor,
          currency: req.currency.toLowerCase(),
          confirm: true,
          off_session: true,
          payment_method: req.paymentMethod,
          // A method saved to a Stripe customer can only be charged with that customer.
          ...(req.gatewayCustomerId ? { customer: req.gatewayCustomerId } : {}),
          // Server-side confirmation has no page to return to.
          automatic_payment_methods: { enabled: true, allow_redirects: "never" },
          metadata: { customerId: req.customerId, invoiceId: req.invoiceId, idempotencyKey: req.idempotencyKey },
          ...(req.description ? { description: req.description } : {}),
        },
        { idempotencyKey: req.idempotencyKey },
      );
      return fromIntent(intent);
    } catch (e) {
      if (e instanceof Stripe.errors.StripeCardError) return { status: "failed", gatewayPaymentId: e.payment_intent?.id ?? null, ...classifyDecline(e) };
      // A request Stripe refuses on its merits (unknown payment method, amount too small …) fails the same way every time.
      if (e instanceof Stripe.errors.StripeInvalidRequestError) {
        return { status: "failed", gatewayPaymentId: e.payment_intent?.id ?? null, failureCode: e.code ?? "invalid_request", failureMessage: e.message, retryable: false };
      }
      throw e;
    }
  }

  async refund(req: RefundRequest): Promise<RefundResult> {
    const reason = req.reason && STRIPE_REFUND_REASONS.has(req.reason) ? (req.reason as Stripe.RefundCreateParams.Reason) : undefined;
    try {
      const refund = await this.stripe.refunds.create(
        { payment_intent: req.gatewayPaymentId, amount: req.amountMinor, ...(reason ? { reason } : {}), metadata: { idempotencyKey: req.idempotencyKey, ...(req.reason ? { reason: req.reason.slice(0, 500) } : {}) } },
        { idempotencyKey: req.idempotencyKey },
      );
      if (refund.status === "succeeded") return { status: "succeeded", gatewayRefundId: refund.id };
      if (refund.status === "failed" || refund.status === "canceled") return { status: "failed", gatewayRefundId: refund.id, failureMessage: refund.failure_reason ?? `refund ${refund.status}` };
      return { status: "pending", gatewayRefundId: refund.id };
    } catch (e) {
      // Already refunded, more than the remaining amount, unknown payment: the answer will not change on retry.
      if (e instanceof Stripe.errors.StripeInvalidRequestError) return { status: "failed", gatewayRefundId: null, failureMessage: `${e.code ?? "invalid_request"}: ${e.message}` };
      throw e;
    }
  }

  async retrieve(gatewayPaymentId: string): Promise<GatewayPayment | null> {
    let intent: Stripe.PaymentIntent;
    try {
      intent = await this.stripe.paymentIntents.retrieve(gatewayPaymentId, { expand: ["latest_charge"] });
    } catch (e) {
      if (isStripeError(e) && e.statusCode === 404) return null;
      throw e;
    }
    const charge = typeof intent.latest_charge === "object" ? intent.latest_charge : null;
    const status = intent.status === "succeeded" ? "succeeded" : intent.status === "requires_payment_method" || intent.status === "canceled" ? "failed" : "pending";
    return {
      id: intent.id,
      status,
      amountMinor: intent.amount,
      currency: upper(intent.currency),
      amountRefunded: charge?.amount_refunded ?? 0,
      idempotencyKey: intent.metadata?.idempotencyKey ?? null,
    };
  }

  /** Charges and refunds on Stripe's books created in [from, to) (epoch ms; Stripe counts whole seconds). Fees, payouts and the rest are left out. */
  async balanceTransactions(from: number, to: number): Promise<BalanceTransaction[]> {
    const out: BalanceTransaction[] = [];
    const list = this.stripe.balanceTransactions.list({ created: { gte: Math.ceil(from / 1000), lt: Math.ceil(to / 1000) }, limit: 100, expand: ["data.source"] });
    for await (const txn of list) {
      const t = toBalanceTransaction(txn);
      if (!t) continue;
      if (out.length >= MAX_BALANCE_TRANSACTIONS) throw new TooManyBalanceTransactions(MAX_BALANCE_TRANSACTIONS);
      out.push(t);
    }
    return out;
  }

  /** One page of the same listing (Stripe's `starting_after`, newest first; `limit` at most Stripe's 100): one request. */
  async balanceTransactionsPage(from: number, to: number, startingAfter: string | null, limit: number): Promise<BalanceTransactionPage> {
    const page = await this.stripe.balanceTransactions.list({
      created: { gte: Math.ceil(from / 1000), lt: Math.ceil(to / 1000) },
      limit: Math.min(limit, 100),
      expand: ["data.source"],
      ...(startingAfter ? { starting_after: startingAfter } : {}),
    });
    const data = page.data.map(toBalanceTransaction).filter((t): t is BalanceTransaction => t !== null);
    return { data, next: page.has_more && page.data.length ? page.data[page.data.length - 1]!.id : null };
  }

  async health() {
    const started = Date.now();
    try {
      const balance = await this.stripe.balance.retrieve();
      return { ok: true, latencyMs: Date.now() - started, detail: balance.livemode ? "stripe live mode" : "stripe test mode" };
    } catch (e) {
      return { ok: false, latencyMs: Date.now() - started, detail: e instanceof Error ? e.message : String(e) };
    }
  }
}

function fromIntent(intent: Stripe.PaymentIntent): ChargeResult {
  switch (intent.status) {
    case "succeeded":
      return { status: "succeeded", gatewayPaymentId: intent.id };
    case "requires_payment_method": {
      const err = intent.last_payment_error;
      return { status: "failed", gatewayPaymentId: intent.id, ...classifyDecline({ code: err?.code, decline_code: err?.decline_code, advice_code: err?.advice_code, message: err?.message }) };
    }
    case "canceled":
      return { status: "failed", gatewayPaymentId: intent.id, failureCode: "canceled", failureMessage: `payment intent canceled (${intent.cancellation_reason ?? "no reason"})`, retryable: false };
    default:
      // processing, requires_action, requires_confirmation, requires_capture: the outcome arrives by webhook.
      return { status: "pending", gatewayPaymentId: intent.id };
  }
}

/** A charge or refund on Stripe's books in our shape; null for fees, payouts and the rest. */
function toBalanceTransaction(txn: Stripe.BalanceTransaction): BalanceTransaction | null {
  const type = txn.type === "charge" || txn.type === "payment" ? "charge" : txn.type === "refund" || txn.type === "payment_refund" ? "refund" : null;
  if (!type) return null;
  const source = txn.source;
  const sourceId = typeof source === "string" ? source : (source?.id ?? txn.id);
  return {
    id: txn.id,
    type,
    sourceId,
    paymentId: paymentIntentOf(source) ?? sourceId,
    amountMinor: type === "charge" ? Math.abs(txn.amount) : -Math.abs(txn.amount),
    currency: upper(txn.currency),
    created: txn.created * 1000,
  };
}

/** The PaymentIntent behind an expanded balance-transaction source (a charge or a refund), else a refund's charge. */
function paymentIntentOf(source: Stripe.BalanceTransaction["source"]): string | null {
  if (!source || typeof source === "string") return null;
  const pi = "payment_intent" in source ? source.payment_intent : null;
  if (pi) return typeof pi === "string" ? pi : pi.id;
  const charge = "charge" in source ? source.charge : null;
  return !charge ? null : typeof charge === "string" ? charge : charge.id;
}
