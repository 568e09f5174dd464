import { and, count, eq, gte, lt, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import { payments, refundStatuses, refunds } from "../../db/schema";
import { amountText } from "./ledger";

type Status = (typeof refundStatuses)[number];
const RATE_DECIMALS = 4;

/** refunded ÷ captured as a decimal string with 4 places, rounded half up; null when nothing was captured. */
export function refundRate(refundedMinor: number, capturedMinor: number): string | null {
  if (capturedMinor <= 0) return null;
  const scale = 10n ** BigInt(RATE_DECIMALS);
  const q = (BigInt(refundedMinor) * scale * 2n + BigInt(capturedMinor)) / (BigInt(capturedMinor) * 2n);
  return `${q / scale}.${(q % scale).toString().padStart(RATE_DECIMALS, "0")}`;
}

type Acc = { count: number; minor: number };
type Group = Acc & { byStatus: Record<Status, Acc> };

const acc = (): Acc => ({ count: 0, minor: 0 });
const group = (): Group => ({ ...acc(), byStatus: { pending: acc(), succeeded: acc(), failed: acc() } });
const add = (g: Group, status: Status, n: number, minor: number) => {
  g.count += n;
  g.minor += minor;
  g.byStatus[status].count += n;
  g.byStatus[status].minor += minor;
};

/**
 * Refunds created in [from, to) per currency (never summed across currencies): counts and amounts by status,
 * reason and gateway, and the refund rate = succeeded refunds ÷ succeeded payments created in the same range.
 */
export async function refundReport(db: Db, from: number, to: number) {
  const [rows, captured] = await Promise.all([
    db
      .select({
        currency: refunds.currency,
        status: refunds.status,
        reason: refunds.reason,
        gateway: sql<string>`coalesce(${refunds.gateway}, 'none')`,
        n: count(),
        minor: sql<number>`coalesce(sum(${refunds.amount}), 0)`,
      })
      .from(refunds)
      .where(and(gte(refunds.createdAt, from), lt(refunds.createdAt, to)))
      .groupBy(refunds.currency, refunds.status, refunds.reason, sql`coalesce(${refunds.gateway}, 'none')`)
      .all(),
    db
      .select({ currency: payments.currency, n: count(), minor: sql<number>`coalesce(sum(${payments.amount}), 0)` })
      .from(payments)
      .where(and(eq(payments.status, "succeeded"), gte(payments.createdAt, from), lt(payments.createdAt, to)))
      .groupBy(payments.currency)
      .all(),
  ]);

  const byCurrency = new Map<string, { total: Group; reasons: Map<string, Group>; gateways: Map<string, Group>; captured: Acc }>();
  const entry = (currency: string) => {
    let e = byCurrency.get(currency);
    if (!e) byCurrency.set(currency, (e = { total: group(), reasons: new Map(), gateways: new Map(), captured: acc() }));
    return e;
  };
  const sub = (m: Map<string, Group>, k: string) => {
    let g = m.get(k);
    if (!g) m.set(k, (g = group()));
    return g;
  };
  for (const r of rows) {
    const e = entry(r.currency);
    add(e.total, r.status, r.n, r.minor);
    add(sub(e.reasons, r.reason), r.status, r.n, r.minor);
    add(sub(e.gateways, r.gateway), r.status, r.n, r.minor);
  }
  for (const c of captured) entry(c.currency).captured = { count: c.n, minor: c.minor };

  return [...byCurrency.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([currency, e]) => {
      const money = (a: Acc) => ({ count: a.count, amount: amountText(a.minor, currency), amountMinor: a.minor });
      const statuses = (g: Group) => ({ pending: money(g.byStatus.pending), succeeded: money(g.byStatus.succeeded), failed: money(g.byStatus.failed) });
      const list = <K extends string>(m: Map<string, Group>, key: K) =>
        [...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, g]) => ({ [key]: k, ...money(g), byStatus: statuses(g) }) as { [P in K]: string } & ReturnType<typeof money> & { byStatus: ReturnType<typeof statuses> });
      const refunded = e.total.byStatus.succeeded;
      return {
        currency,
        ...money(e.total),
        byStatus: statuses(e.total),
        byReason: list(e.reasons, "reason"),
        byGateway: list(e.gateways, "gateway"),
        refunded: money(refunded),
        captured: money(e.captured),
        refundRate: refundRate(refunded.minor, e.captured.minor),
      };
    });
}
