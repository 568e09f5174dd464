/** A grant as the allocation sees it: what is left, and the meters it is limited to (null: every line). */
export type GrantBalance = { id: string; remaining: number; priority: number; expiresAt: number | null; createdAt: number; appliesToMeterIds: string[] | null };

/** One invoice line after discount and tax: what credit could pay of it. */
export type CreditableLine = { meterId: string | null; amount: number };

/** Grants in the order invoices use them: priority (0 first), then the earliest expiry (never-expiring last), then the oldest. */
export function grantOrder(a: GrantBalance, b: GrantBalance): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expiresAt ?? Number.MAX_SAFE_INTEGER;
  const eb = b.expiresAt ?? Number.MAX_SAFE_INTEGER;
  if (ea !== eb) return ea - eb;
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * What each grant pays of an invoice (exact minor units, no rounding): grants in `grantOrder`, each paying the
 * lines in its scope (a meter-scoped grant only the usage lines of those meters) up to what is left of them, and
 * all together never more than the invoice's `total` (credit lines lower what can be paid). Grants paying nothing are left out.
 */
export function allocateCredits(lines: CreditableLine[], total: number, grants: GrantBalance[]): Array<{ grantId: string; amount: number }> {
  const left = lines.map((l) => Math.max(0, l.amount));
  let cap = Math.max(0, total);
  const out: Array<{ grantId: string; amount: number }> = [];
  for (const g of [...grants].sort(grantOrder)) {
    if (cap === 0) break;
    let budget = Math.min(g.remaining, cap);
    let used = 0;
    for (let i = 0; i < lines.length && budget > 0; i++) {
      const scope = g.appliesToMeterIds;
      if (scope && (lines[i]!.meterId === null || !scope.includes(lines[i]!.meterId!))) continue;
      const take = Math.min(left[i]!, budget);
      left[i] = left[i]! - take;
      budget -= take;
      used += take;
    }
    if (used > 0) {
      out.push({ grantId: g.id, amount: used });
      cap -= used;
    }
  }
  return out;
}
