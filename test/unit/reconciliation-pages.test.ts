import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { compareDay, compareTxns, compareUnclaimed, TXN_PAGES_PER_INVOCATION, type Comparison, type LocalPayment, type LocalRefund } from "../../src/modules/reconciliation/compare";
import type { BalanceTransaction, GatewayPayment } from "../../src/gateways/types";

// A reconciliation run (src/modules/reconciliation/run.ts) compares the gateway's listing a page at a time, then the
// day's rows no page settled. Here the run's loading is mirrored in memory: for any day, any page size, its findings
// and matches are compareDay's.

const DAY = { start: Date.parse("2026-03-10T00:00:00Z"), end: Date.parse("2026-03-11T00:00:00Z") };
const H = 3_600_000;
// When a row or transaction happened: the day before, the day, the day after (all in the listing's window), or later.
const WHEN = [DAY.start - 12 * H, DAY.start + H, DAY.start + 20 * H, DAY.end + 6 * H, DAY.end + 72 * H];
const inDay = (t: number) => t >= DAY.start && t < DAY.end;
const inWindow = (t: number) => t >= DAY.start - 24 * H && t < DAY.end + 24 * H;

type World = { payments: LocalPayment[]; refunds: LocalRefund[]; txns: BalanceTransaction[]; gateway: Map<string, GatewayPayment> };

/** Payments pi_0..n with or without a charge on the books (any amount, any time), refunds of them, orphan transactions. */
const world = fc
  .record({
    payments: fc.array(
      fc.record({
        status: fc.constantFrom("succeeded", "succeeded", "succeeded", "failed"),
        hasGatewayId: fc.boolean(),
        when: fc.nat(WHEN.length - 1),
        charge: fc.option(fc.record({ when: fc.nat(WHEN.length - 1), delta: fc.constantFrom(0, 0, 0, 100) }), { nil: null }),
        gatewayStatus: fc.constantFrom("succeeded", "succeeded", "failed", null),
      }),
      { maxLength: 12 },
    ),
    refunds: fc.array(
      fc.record({ of: fc.nat(11), amount: fc.constantFrom(100, 100, 200), withId: fc.boolean(), local: fc.boolean(), booked: fc.boolean(), when: fc.nat(WHEN.length - 1), status: fc.constantFrom("succeeded", "succeeded", "failed") }),
      { maxLength: 8 },
    ),
    orphans: fc.array(fc.nat(WHEN.length - 1), { maxLength: 3 }),
  })
  .map(({ payments: ps, refunds: rs, orphans }): World => {
    const w: World = { payments: [], refunds: [], txns: [], gateway: new Map() };
    ps.forEach((p, i) => {
      const id = `pi_${i}`;
      w.payments.push({ id: `pay_${i}`, amount: 1000, currency: "USD", status: p.status, gatewayPaymentId: p.hasGatewayId ? id : null, createdAt: WHEN[p.when]! });
      if (p.charge) w.txns.push({ id: `txn_c${i}`, type: "charge", sourceId: `ch_${i}`, paymentId: id, amountMinor: 1000 + p.charge.delta, currency: "USD", created: WHEN[p.charge.when]! });
      if (p.gatewayStatus) w.gateway.set(id, { id, status: p.gatewayStatus as GatewayPayment["status"], amountMinor: 1000 + (p.charge?.delta ?? 0), currency: "USD", amountRefunded: 0, idempotencyKey: null });
    });
    rs.forEach((r, j) => {
      const payment = w.payments[r.of % Math.max(1, w.payments.length)];
      const paymentGatewayId = payment?.gatewayPaymentId ?? null;
      if (r.local) w.refunds.push({ id: `re_local_${j}`, amount: r.amount, currency: "USD", status: r.status, gatewayRefundId: r.withId ? `re_${j}` : null, paymentGatewayId, createdAt: WHEN[r.when]! });
      if (r.booked) w.txns.push({ id: `txn_r${j}`, type: "refund", sourceId: `re_${j}`, paymentId: paymentGatewayId, amountMinor: -r.amount, currency: "USD", created: WHEN[r.when]! });
    });
    orphans.forEach((when, k) => w.txns.push({ id: `txn_o${k}`, type: "charge", sourceId: `ch_o${k}`, paymentId: `pi_o${k}`, amountMinor: 700, currency: "USD", created: WHEN[when]! }));
    return w;
  });

const dayPayment = (p: LocalPayment) => p.status === "succeeded" && inDay(p.createdAt);
const dayRefund = (r: LocalRefund) => r.status === "succeeded" && inDay(r.createdAt);

/** What reconcileDay does: the window's listing, the day's rows, the other rows the day's transactions name, look-ups. */
function oneRequest(w: World): Comparison {
  const txns = w.txns.filter((t) => inWindow(t.created));
  const payments = w.payments.filter(dayPayment);
  const refunds = w.refunds.filter(dayRefund);
  const charged = new Set(txns.filter((t) => t.type === "charge").map((t) => t.paymentId ?? t.sourceId));
  const retrieved = new Map<string, GatewayPayment | null>();
  for (const p of payments) if (p.gatewayPaymentId && !charged.has(p.gatewayPaymentId)) retrieved.set(p.gatewayPaymentId, w.gateway.get(p.gatewayPaymentId) ?? null);
  const dayTxns = txns.filter((t) => inDay(t.created));
  const wantedPayments = new Set(dayTxns.filter((t) => t.type === "charge").map((t) => t.paymentId ?? t.sourceId));
  const wantedRefunds = new Set(dayTxns.filter((t) => t.type === "refund").map((t) => t.sourceId));
  const otherPayments = w.payments.filter((p) => p.gatewayPaymentId && wantedPayments.has(p.gatewayPaymentId) && !payments.includes(p));
  const otherRefunds = w.refunds.filter((r) => r.gatewayRefundId && wantedRefunds.has(r.gatewayRefundId) && !refunds.includes(r));
  return compareDay({ day: DAY, payments, refunds, txns, otherPayments, otherRefunds, retrieved });
}

/**
 * What a run does: pages of the listing matched by gateway ids, then the rows no page settled. As in run.ts, the ids a
 * page settled reach `reconciliation_seen` (`seen`) once per invocation, after its TXN_PAGES_PER_INVOCATION pages; the
 * invocation's earlier pages are known only to its in-memory set (`claimed`).
 */
function paged(w: World, pageSize: number): Comparison {
  const txns = w.txns.filter((t) => inWindow(t.created));
  const seen = new Set<string>();
  let claimed = new Set<string>();
  const out: Comparison = { matched: [], findings: [], totals: {} };
  for (let i = 0, n = 0; i < txns.length; i += pageSize, n++) {
    if (n % TXN_PAGES_PER_INVOCATION === 0) {
      for (const id of claimed) seen.add(id);
      claimed = new Set();
    }
    const page = txns.slice(i, i + pageSize);
    const paymentIds = new Set(page.filter((t) => t.type === "charge").map((t) => t.paymentId ?? t.sourceId));
    const refundIds = new Set(page.filter((t) => t.type === "refund").map((t) => t.sourceId));
    const refundPayments = new Set(page.filter((t) => t.type === "refund" && t.paymentId).map((t) => t.paymentId!));
    const ofPayments = w.payments.filter((p) => p.gatewayPaymentId && paymentIds.has(p.gatewayPaymentId));
    const ofRefunds = w.refunds.filter((r) => r.gatewayRefundId && refundIds.has(r.gatewayRefundId));
    const withoutId = w.refunds.filter((r) => dayRefund(r) && !r.gatewayRefundId && r.paymentGatewayId && refundPayments.has(r.paymentGatewayId) && !seen.has(r.id) && !claimed.has(r.id));
    const c = compareTxns({
      day: DAY,
      txns: page,
      payments: ofPayments.filter(dayPayment),
      refunds: [...ofRefunds.filter(dayRefund), ...withoutId],
      otherPayments: ofPayments.filter((p) => !dayPayment(p)),
      otherRefunds: ofRefunds.filter((r) => !dayRefund(r)),
    });
    for (const id of [...c.claimedPayments, ...c.claimedRefunds, ...c.matched.map((m) => m.localId)]) claimed.add(id);
    out.matched.push(...c.matched);
    out.findings.push(...c.findings);
  }
  for (const id of claimed) seen.add(id);
  const payments = w.payments.filter((p) => dayPayment(p) && !seen.has(p.id));
  const retrieved = new Map<string, GatewayPayment | null>();
  for (const p of payments) if (p.gatewayPaymentId) retrieved.set(p.gatewayPaymentId, w.gateway.get(p.gatewayPaymentId) ?? null);
  const rest = compareUnclaimed({ payments, refunds: w.refunds.filter((r) => dayRefund(r) && !seen.has(r.id)), retrieved });
  out.matched.push(...rest.matched);
  out.findings.push(...rest.findings);
  return out;
}

const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();

describe("a reconciliation run's pages", () => {
  it("find and match what one comparison of the whole day does, at any page size", () => {
    fc.assert(
      fc.property(world, fc.integer({ min: 1, max: 5 }), (w, pageSize) => {
        const whole = oneRequest(w);
        const pages = paged(w, pageSize);
        expect(sorted(pages.findings)).toEqual(sorted(whole.findings));
        expect(sorted(pages.matched)).toEqual(sorted(whole.matched));
      }),
      { numRuns: 500 },
    );
  });
});
