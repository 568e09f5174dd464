import type { BalanceTransaction, ChargeRequest, ChargeResult, GatewayPayment, PaymentGateway, RefundRequest, RefundResult } from "./types";

/** Placeholder until the Stripe gateway lands (see issue "Payments"); every call reports it is unavailable. */
export class StripeGateway implements PaymentGateway {
  readonly name = "stripe" as const;
  constructor(_env: Env) {}
  private unavailable(): never {
    throw new Error("stripe gateway is not implemented yet");
  }
  charge(_req: ChargeRequest): Promise<ChargeResult> {
    return this.unavailable();
  }
  refund(_req: RefundRequest): Promise<RefundResult> {
    return this.unavailable();
  }
  retrieve(_id: string): Promise<GatewayPayment | null> {
    return this.unavailable();
  }
  balanceTransactions(_from: number, _to: number): Promise<BalanceTransaction[]> {
    return this.unavailable();
  }
  async health() {
    return { ok: false, latencyMs: 0, detail: "not implemented" };
  }
}
