import { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import type { RetentionKind } from "../../db/schema";
import { getSetting, putSetting } from "../../platform/settings";
import type { AuditContext } from "../../platform/audit";
import { DAY_MS } from "../../lib/time";
import { addIntervals } from "../../domain/periods";

/** The settings row holding the policy (PUT /admin/retention/policy). */
export const RETENTION_SETTING = "retention.policy";

// Reports look back at most 12 months (churn analysis `last_12_months`, MRR movement), so rows they read stay at
// least 13 months; events are the API's 30-day window (issue 10) and may be kept longer, not shorter than a week.
export const RetentionPolicy = z
  .object({
    enabled: z.boolean().openapi({ description: "When false the daily run does nothing (a run asked for through the API still runs)" }),
    eventsDays: z.number().int().min(7).max(3650).openapi({ description: "Events older than this many days move to R2", example: 30 }),
    auditMonths: z.number().int().min(13).max(240).openapi({ description: "Audit rows (sealed, with their chain checkpoints) older than this many months move to R2", example: 24 }),
    invoiceLinesMonths: z
      .number()
      .int()
      .min(13)
      .max(240)
      .openapi({ description: "Lines of settled (paid, void, uncollectible) invoices created this many months ago move to R2; the invoice stays in D1", example: 24 }),
    paymentAttemptsMonths: z
      .number()
      .int()
      .min(13)
      .max(240)
      .openapi({ description: "Finished payment attempts (succeeded, failed, canceled; never refunded) last changed this many months ago move to R2", example: 24 }),
  })
  .strict()
  .openapi("RetentionPolicy");
export type RetentionPolicy = z.infer<typeof RetentionPolicy>;

export const DEFAULT_RETENTION: RetentionPolicy = { enabled: true, eventsDays: 30, auditMonths: 24, invoiceLinesMonths: 24, paymentAttemptsMonths: 24 };

export const getRetentionPolicy = async (db: Db): Promise<RetentionPolicy> => RetentionPolicy.parse(await getSetting(db, RETENTION_SETTING, DEFAULT_RETENTION));

export const putRetentionPolicy = (db: Db, policy: RetentionPolicy, ctx: AuditContext) => putSetting(db, RETENTION_SETTING, policy, ctx);

/** `now` minus `months` calendar months (UTC), the day clamped to the month's end like billing periods. */
export const monthsBefore = (now: number, months: number): number => addIntervals(now, "month", 1, -months);

/** Rows of `kind` created (or, for payments, last changed) before this time are past retention at `now`. */
export function cutoffOf(policy: RetentionPolicy, kind: RetentionKind, now: number): number {
  switch (kind) {
    case "events":
      return now - policy.eventsDays * DAY_MS;
    case "audit":
      return monthsBefore(now, policy.auditMonths);
    case "invoice_lines":
      return monthsBefore(now, policy.invoiceLinesMonths);
    case "payment_attempts":
      return monthsBefore(now, policy.paymentAttemptsMonths);
  }
}
