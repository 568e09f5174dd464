// MRR movement per calendar month: what came in (new, expansion) and what went out (contraction, churn).

/** One UTC calendar month [start, end) labelled "YYYY-MM". */
export type Month = { month: string; start: number; end: number };

/** The last `count` UTC calendar months, oldest first, the last one containing `now`. */
export function lastMonths(now: number, count: number): Month[] {
  const d = new Date(now);
  const out: Month[] = [];
  for (let i = count - 1; i >= 0; i--) {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i, 1);
    const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i + 1, 1);
    out.push({ month: new Date(start).toISOString().slice(0, 7), start, end });
  }
  return out;
}

export type MovementSubscription = {
  id: string;
  currency: string;
  /** When it starts counting in MRR: creation, or the end of its trial; null if it never did (ended during the trial). */
  countsFrom: number | null;
  endedAt: number | null;
  /** Monthly amounts in minor units: on its first plan, and on its plan when it ended. */
  initialMrr: number;
  finalMrr: number;
};
export type MovementChange = { subscriptionId: string; at: number; beforeMrr: number; afterMrr: number };
export type MonthMovement = { month: string; new: number; expansion: number; contraction: number; churn: number; net: number };

/**
 * Per currency and month: new = first MRR of subscriptions that started counting in the month; expansion /
 * contraction = the rise / fall of MRR by plan or quantity changes of counting subscriptions; churn = the last MRR of
 * counting subscriptions that ended in the month. Net = new + expansion − contraction − churn. All in minor units.
 */
export function mrrMovement(months: readonly Month[], subs: readonly MovementSubscription[], changes: readonly MovementChange[]): Map<string, MonthMovement[]> {
  const out = new Map<string, MonthMovement[]>();
  const row = (currency: string, at: number): MonthMovement | undefined => {
    const i = months.findIndex((m) => at >= m.start && at < m.end);
    if (i < 0) return undefined;
    let list = out.get(currency);
    if (!list) out.set(currency, (list = months.map((m) => ({ month: m.month, new: 0, expansion: 0, contraction: 0, churn: 0, net: 0 }))));
    return list[i];
  };
  const byId = new Map(subs.map((s) => [s.id, s]));
  for (const s of subs) {
    if (s.countsFrom === null || (s.endedAt !== null && s.endedAt <= s.countsFrom)) continue;
    const started = row(s.currency, s.countsFrom);
    if (started) started.new += s.initialMrr;
    if (s.endedAt !== null) {
      const ended = row(s.currency, s.endedAt);
      if (ended) ended.churn += s.finalMrr;
    }
  }
  for (const c of changes) {
    const s = byId.get(c.subscriptionId);
    if (!s || s.countsFrom === null || c.at < s.countsFrom || (s.endedAt !== null && c.at >= s.endedAt)) continue;
    const r = row(s.currency, c.at);
    if (!r) continue;
    const delta = c.afterMrr - c.beforeMrr;
    if (delta > 0) r.expansion += delta;
    else r.contraction -= delta;
  }
  for (const list of out.values()) for (const r of list) r.net = r.new + r.expansion - r.contraction - r.churn;
  return out;
}
