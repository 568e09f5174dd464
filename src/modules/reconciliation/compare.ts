import type { BalanceTransaction, GatewayPayment } from "../../gateways/types";

// Pure: no I/O, no clock. The service loads what it needs and persists what comes out.

export type DiscrepancyKind = "missing_at_gateway" | "missing_locally" | "amount_mismatch" | "status_mismatch";
export type LocalPayment = { id: string; amount: number; currency: string; status: string; gatewayPaymentId: string | null; createdAt: number };
export type LocalRefund = { id: string; amount: number; currency: string; status: string; gatewayRefundId: string | null; paymentGatewayId: string | null; createdAt: number };

export type CompareInput = {
  /** [start, end) of the UTC day, epoch ms. */
  day: { start: number; end: number };
  /** The day's local side: succeeded payments and refunds on this gateway created within the day. */
  payments: LocalPayment[];
  refunds: LocalRefund[];
  /** The gateway's balance transactions from a day before to a day after the day (so midnight slips still match). */
  txns: BalanceTransaction[];
  /** Local rows (any day, any status) that the day's gateway transactions point at but the day's local side lacks. */
  otherPayments: LocalPayment[];
  otherRefunds: LocalRefund[];
  /** The gateway's answer for the day's payments it had no transaction for in the window (null: unknown to it). */
  retrieved: ReadonlyMap<string, GatewayPayment | null>;
};

export type Finding = {
  kind: DiscrepancyKind;
  objectType: "payment" | "refund";
  localId: string | null;
  gatewayId: string | null;
  localAmount: number | null;
  gatewayAmount: number | null;
  currency: string | null;
  detail: string;
};
export type MatchedItem = { objectType: "payment" | "refund"; localId: string; gatewayId: string; amount: number; currency: string; crossDay: boolean };
export type SideTotals = { charges: number; refunds: number; net: number; count: number };
export type CurrencyTotals = { local: SideTotals; gateway: SideTotals };
export type Comparison = { matched: MatchedItem[]; findings: Finding[]; totals: Record<string, CurrencyTotals> };

const empty = (): SideTotals => ({ charges: 0, refunds: 0, net: 0, count: 0 });

function addTo(totals: Record<string, CurrencyTotals>, currency: string, side: "local" | "gateway", kind: "charges" | "refunds", amount: number) {
  const t = (totals[currency] ??= { local: empty(), gateway: empty() })[side];
  t[kind] += amount;
  t.net += kind === "charges" ? amount : -amount;
  t.count += 1;
}

/**
 * Matches a day of local payments and refunds against the gateway's balance transactions, by gateway id:
 * payment ↔ charge transactions of its payment (summed), refund ↔ its refund transaction (else an unused
 * refund transaction of the same payment and amount). Amounts and currencies must agree exactly (minor units).
 * Totals are per currency and per side for the day only, never converted or mixed.
 */
export function compareDay(input: CompareInput): Comparison {
  const { day } = input;
  const inDay = (t: number) => t >= day.start && t < day.end;
  const matched: MatchedItem[] = [];
  const findings: Finding[] = [];
  const totals: Record<string, CurrencyTotals> = {};
  const used = new Set<string>();

  const charges = new Map<string, BalanceTransaction[]>();
  const refundTxns = new Map<string, BalanceTransaction>();
  for (const t of input.txns) {
    if (t.type === "charge") {
      const key = t.paymentId ?? t.sourceId;
      charges.set(key, [...(charges.get(key) ?? []), t]);
    } else refundTxns.set(t.sourceId, t);
    if (inDay(t.created)) addTo(totals, t.currency, "gateway", t.type === "charge" ? "charges" : "refunds", Math.abs(t.amountMinor));
  }

  const compareAmounts = (objectType: "payment" | "refund", localId: string, gatewayId: string, local: { amount: number; currency: string }, gw: { amount: number; currency: string }, crossDay: boolean) => {
    if (local.amount === gw.amount && local.currency === gw.currency) {
      matched.push({ objectType, localId, gatewayId, amount: local.amount, currency: local.currency, crossDay });
      return;
    }
    findings.push({
      kind: "amount_mismatch",
      objectType,
      localId,
      gatewayId,
      localAmount: local.amount,
      gatewayAmount: gw.amount,
      currency: local.currency,
      detail: `local ${local.amount} ${local.currency}, gateway ${gw.amount} ${gw.currency}`,
    });
  };

  for (const p of input.payments) {
    addTo(totals, p.currency, "local", "charges", p.amount);
    const txns = p.gatewayPaymentId ? charges.get(p.gatewayPaymentId) : undefined;
    if (txns?.length) {
      txns.forEach((t) => used.add(t.id));
      const crossDay = !txns.some((t) => inDay(t.created));
      compareAmounts("payment", p.id, p.gatewayPaymentId!, p, { amount: txns.reduce((s, t) => s + t.amountMinor, 0), currency: txns[0]!.currency }, crossDay);
      continue;
    }
    const remote = p.gatewayPaymentId ? input.retrieved.get(p.gatewayPaymentId) : null;
    if (remote && remote.status === "succeeded") {
      compareAmounts("payment", p.id, remote.id, p, { amount: remote.amountMinor, currency: remote.currency }, true);
    } else if (remote) {
      findings.push({ kind: "status_mismatch", objectType: "payment", localId: p.id, gatewayId: remote.id, localAmount: p.amount, gatewayAmount: remote.amountMinor, currency: p.currency, detail: `succeeded locally, ${remote.status} at the gateway` });
    } else {
      const why = p.gatewayPaymentId ? `the gateway does not know ${p.gatewayPaymentId}` : "the payment has no gateway id";
      findings.push({ kind: "missing_at_gateway", objectType: "payment", localId: p.id, gatewayId: p.gatewayPaymentId, localAmount: p.amount, gatewayAmount: null, currency: p.currency, detail: `succeeded locally; ${why}` });
    }
  }

  for (const r of input.refunds) {
    addTo(totals, r.currency, "local", "refunds", r.amount);
    let txn = r.gatewayRefundId ? refundTxns.get(r.gatewayRefundId) : undefined;
    if (!txn && !r.gatewayRefundId && r.paymentGatewayId) {
      txn = [...refundTxns.values()].find((t) => !used.has(t.id) && t.paymentId === r.paymentGatewayId && Math.abs(t.amountMinor) === r.amount);
    }
    if (txn) {
      used.add(txn.id);
      compareAmounts("refund", r.id, txn.sourceId, r, { amount: Math.abs(txn.amountMinor), currency: txn.currency }, !inDay(txn.created));
    } else {
      findings.push({ kind: "missing_at_gateway", objectType: "refund", localId: r.id, gatewayId: r.gatewayRefundId, localAmount: r.amount, gatewayAmount: null, currency: r.currency, detail: "succeeded locally; no refund transaction on the gateway's books from the day before to the day after" });
    }
  }

  // The day's gateway transactions nobody claimed: a local row elsewhere in time, one in another state, or nothing.
  const unclaimedCharges = new Map<string, BalanceTransaction[]>();
  for (const t of input.txns) {
    if (used.has(t.id) || !inDay(t.created)) continue;
    if (t.type === "refund") {
      const local = input.otherRefunds.find((r) => r.gatewayRefundId === t.sourceId);
      const gw = { amount: Math.abs(t.amountMinor), currency: t.currency };
      if (local?.status === "succeeded") compareAmounts("refund", local.id, t.sourceId, local, gw, true);
      else if (local) findings.push({ kind: "status_mismatch", objectType: "refund", localId: local.id, gatewayId: t.sourceId, localAmount: local.amount, gatewayAmount: gw.amount, currency: t.currency, detail: `${local.status} locally, refunded at the gateway` });
      else findings.push({ kind: "missing_locally", objectType: "refund", localId: null, gatewayId: t.sourceId, localAmount: null, gatewayAmount: gw.amount, currency: t.currency, detail: `refund ${t.sourceId} of ${t.paymentId ?? "an unknown payment"} has no local refund` });
      continue;
    }
    const key = t.paymentId ?? t.sourceId;
    unclaimedCharges.set(key, [...(unclaimedCharges.get(key) ?? []), t]);
  }
  for (const [gatewayId, txns] of unclaimedCharges) {
    const gw = { amount: txns.reduce((s, t) => s + t.amountMinor, 0), currency: txns[0]!.currency };
    const local = input.otherPayments.find((p) => p.gatewayPaymentId === gatewayId);
    if (local?.status === "succeeded") compareAmounts("payment", local.id, gatewayId, local, gw, true);
    else if (local) findings.push({ kind: "status_mismatch", objectType: "payment", localId: local.id, gatewayId, localAmount: local.amount, gatewayAmount: gw.amount, currency: gw.currency, detail: `${local.status} locally, charged at the gateway` });
    else findings.push({ kind: "missing_locally", objectType: "payment", localId: null, gatewayId, localAmount: null, gatewayAmount: gw.amount, currency: gw.currency, detail: `charge ${gatewayId} has no local payment` });
  }
  return { matched, findings, totals };
}
