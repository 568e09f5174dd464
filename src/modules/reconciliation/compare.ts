import type { BalanceTransaction, GatewayPayment } from "../../gateways/types";

// Pure: no I/O, no clock. The service loads what it needs and persists what comes out.

/**
 * Listing pages per invocation of a reconciliation run (run.ts; here so the pure model of its pages in
 * test/unit/reconciliation-pages.test.ts uses the same number). A page costs one gateway request and, in D1, up to 6
 * reads (two IN chunks of payments, two of refunds, two of the fallback for refunds without a refund id; on the
 * sandbox 2 more: its listing's cursor and page) plus its share of the step's batch: an upsert per finding (≤ 100 on a
 * page of 100) and a seen insert per 30 ids (≤ 7). Worst case ~113 queries a page (~115 on the sandbox), 5 pages
 * ~575 plus the step's guard and run update (limit 1,000); 5 subrequests (limit ~50).
 */
export const TXN_PAGES_PER_INVOCATION = 5;

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

export function addTo(totals: Record<string, CurrencyTotals>, currency: string, side: "local" | "gateway", kind: "charges" | "refunds", amount: number) {
  const t = (totals[currency] ??= { local: empty(), gateway: empty() })[side];
  t[kind] += amount;
  t.net += kind === "charges" ? amount : -amount;
  t.count += 1;
}

/** What the gateway's listing (all of it, or one page of it) says about the local rows it points at. */
export type TxnsInput = {
  day: { start: number; end: number };
  txns: BalanceTransaction[];
  /** The day's local rows (succeeded, on this gateway, created in the day) that may have a transaction among `txns`. */
  payments: LocalPayment[];
  refunds: LocalRefund[];
  /** Other local rows (any day, any status) whose gateway id is among the day's transactions in `txns`. */
  otherPayments: LocalPayment[];
  otherRefunds: LocalRefund[];
};
/** Findings and matches for the rows that had a transaction; `claimed*` are the day's local ids settled here (the rest go to `compareUnclaimed`). */
export type TxnsComparison = Comparison & { claimedPayments: Set<string>; claimedRefunds: Set<string> };

/** A finding or match on one side, collected in order. */
function collector() {
  const matched: MatchedItem[] = [];
  const findings: Finding[] = [];
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
  return { matched, findings, compareAmounts };
}

/**
 * Matches local rows to balance transactions by gateway id: payment ↔ charge transactions of its payment (summed),
 * refund ↔ its refund transaction (else an unused refund transaction of the same payment and amount). Then the
 * day's transactions nobody claimed: a local row elsewhere in time, one in another state, or nothing. The day's
 * local rows without a transaction here are left unclaimed, not reported: `compareUnclaimed` settles them once the
 * whole listing was seen. A reconciliation run calls this once per page of the listing; `compareDay` once with all.
 * Gateway totals cover the day's transactions in `txns`; local totals are left to the caller (it sees every row).
 */
export function compareTxns(input: TxnsInput): TxnsComparison {
  const { day } = input;
  const inDay = (t: number) => t >= day.start && t < day.end;
  const { matched, findings, compareAmounts } = collector();
  const totals: Record<string, CurrencyTotals> = {};
  const used = new Set<string>();
  const claimedPayments = new Set<string>();
  const claimedRefunds = new Set<string>();

  const charges = new Map<string, BalanceTransaction[]>();
  const refundTxns = new Map<string, BalanceTransaction>();
  for (const t of input.txns) {
    if (t.type === "charge") {
      const key = t.paymentId ?? t.sourceId;
      charges.set(key, [...(charges.get(key) ?? []), t]);
    } else refundTxns.set(t.sourceId, t);
    if (inDay(t.created)) addTo(totals, t.currency, "gateway", t.type === "charge" ? "charges" : "refunds", Math.abs(t.amountMinor));
  }

  for (const p of input.payments) {
    const txns = p.gatewayPaymentId ? charges.get(p.gatewayPaymentId) : undefined;
    if (!txns?.length) continue;
    txns.forEach((t) => used.add(t.id));
    claimedPayments.add(p.id);
    const crossDay = !txns.some((t) => inDay(t.created));
    compareAmounts("payment", p.id, p.gatewayPaymentId!, p, { amount: txns.reduce((s, t) => s + t.amountMinor, 0), currency: txns[0]!.currency }, crossDay);
  }

  // By refund id first, then the refunds without one take an unused transaction of their payment and amount.
  const byId = input.refunds.filter((r) => r.gatewayRefundId);
  const withoutId = input.refunds.filter((r) => !r.gatewayRefundId && r.paymentGatewayId);
  for (const r of [...byId, ...withoutId]) {
    const txn = r.gatewayRefundId
      ? refundTxns.get(r.gatewayRefundId)
      : [...refundTxns.values()].find((t) => !used.has(t.id) && t.paymentId === r.paymentGatewayId && Math.abs(t.amountMinor) === r.amount);
    if (!txn) continue;
    used.add(txn.id);
    claimedRefunds.add(r.id);
    compareAmounts("refund", r.id, txn.sourceId, r, { amount: Math.abs(txn.amountMinor), currency: txn.currency }, !inDay(txn.created));
  }

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
  // A succeeded row first, so a gateway id reused by an earlier failed attempt does not hide the one that paid.
  const others = [...input.otherPayments].sort((a, b) => Number(b.status === "succeeded") - Number(a.status === "succeeded"));
  for (const [gatewayId, txns] of unclaimedCharges) {
    const gw = { amount: txns.reduce((s, t) => s + t.amountMinor, 0), currency: txns[0]!.currency };
    const local = others.find((p) => p.gatewayPaymentId === gatewayId);
    if (local?.status === "succeeded") compareAmounts("payment", local.id, gatewayId, local, gw, true);
    else if (local) findings.push({ kind: "status_mismatch", objectType: "payment", localId: local.id, gatewayId, localAmount: local.amount, gatewayAmount: gw.amount, currency: gw.currency, detail: `${local.status} locally, charged at the gateway` });
    else findings.push({ kind: "missing_locally", objectType: "payment", localId: null, gatewayId, localAmount: null, gatewayAmount: gw.amount, currency: gw.currency, detail: `charge ${gatewayId} has no local payment` });
  }
  return { matched, findings, totals, claimedPayments, claimedRefunds };
}

/**
 * The day's local rows no transaction in the window claimed: a payment by what the gateway answered when asked for it
 * (`retrieved`: null or absent, unknown to it), a refund is missing at the gateway.
 */
export function compareUnclaimed(input: { payments: LocalPayment[]; refunds: LocalRefund[]; retrieved: ReadonlyMap<string, GatewayPayment | null> }): Pick<Comparison, "matched" | "findings"> {
  const { matched, findings, compareAmounts } = collector();
  for (const p of input.payments) {
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
    findings.push({ kind: "missing_at_gateway", objectType: "refund", localId: r.id, gatewayId: r.gatewayRefundId, localAmount: r.amount, gatewayAmount: null, currency: r.currency, detail: "succeeded locally; no refund transaction on the gateway's books from the day before to the day after" });
  }
  return { matched, findings };
}

/**
 * Matches a day of local payments and refunds against the gateway's balance transactions, by gateway id (see
 * `compareTxns`), then settles the rows no transaction claimed (`compareUnclaimed`). Amounts and currencies must
 * agree exactly (minor units). Totals are per currency and per side for the day only, never converted or mixed.
 */
export function compareDay(input: CompareInput): Comparison {
  const byTxns = compareTxns(input);
  const rest = compareUnclaimed({
    payments: input.payments.filter((p) => !byTxns.claimedPayments.has(p.id)),
    refunds: input.refunds.filter((r) => !byTxns.claimedRefunds.has(r.id)),
    retrieved: input.retrieved,
  });
  const totals = byTxns.totals;
  for (const p of input.payments) addTo(totals, p.currency, "local", "charges", p.amount);
  for (const r of input.refunds) addTo(totals, r.currency, "local", "refunds", r.amount);
  return { matched: [...byTxns.matched, ...rest.matched], findings: [...byTxns.findings, ...rest.findings], totals };
}
