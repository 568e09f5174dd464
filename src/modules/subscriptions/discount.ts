import { eq } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { subscriptions } from "../../db/schema";
import { formatDecimal, ONE, parseDecimal } from "../../domain/decimal";
import { ApiError, invalid } from "../../platform/errors";
import { commitSubscriptionChange } from "./commit";

type SubscriptionRow = typeof subscriptions.$inferSelect;

/** A percentage off every invoice line before tax: 0-100 with at most 4 decimals, stored in canonical form. */
export function discountPercentOf(raw: string | number, path = "discountPercent"): string {
  const pct = parseDecimal(raw, 4);
  if (!pct.ok || pct.value < 0n || pct.value > 100n * ONE) throw invalid([{ path, message: "must be a percentage between 0 and 100 with at most 4 decimals" }]);
  return formatDecimal(pct.value);
}

/** True when `a` is a larger discount than `b` (null: none). */
export function largerDiscount(a: string, b: string | null): boolean {
  if (b === null) return true;
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  return !y.ok || (x.ok && x.value > y.value);
}

/**
 * Sets (or with null removes) the subscription's discount from its next invoice on, for invoices billed up to
 * `until` (null: until removed); invoices already issued keep theirs. Audited with the reason; `extra` statements commit in the same batch (a redemption marker, say).
 */
export async function setDiscount(
  db: Db,
  sub: SubscriptionRow,
  input: { discountPercent: string | null; until?: number | null | undefined; reason?: string | undefined },
  ctx: AuditContext,
  extra: { statements?: BatchItem<"sqlite">[]; audit?: AuditEntry[] } = {},
): Promise<SubscriptionRow> {
  if (sub.status === "canceled") throw new ApiError("conflict", `subscription ${sub.id} is canceled`, [{ path: "id", message: "canceled" }]);
  const until = input.discountPercent === null ? null : (input.until ?? null);
  if (until !== null && until <= ctx.now) throw invalid([{ path: "until", message: "must be in the future" }]);
  const ok = await commitSubscriptionChange(
    db,
    sub,
    { discountPercent: input.discountPercent, discountUntil: until },
    extra.statements ?? [],
    [
      {
        action: "subscription.discount_changed",
        targetType: "subscription",
        targetId: sub.id,
        before: { discountPercent: sub.discountPercent, until: sub.discountUntil },
        after: { discountPercent: input.discountPercent, until },
        ...(input.reason ? { reason: input.reason } : {}),
      },
      ...(extra.audit ?? []),
    ],
    ctx,
  );
  if (!ok) throw new ApiError("conflict", `subscription ${sub.id} changed concurrently; retry`);
  return (await db.select().from(subscriptions).where(eq(subscriptions.id, sub.id)).get())!;
}
