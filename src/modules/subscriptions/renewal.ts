import { eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import type { BatchItem } from "drizzle-orm/batch";
import { commitSubscriptionChange } from "./commit";
import { changePlanNow } from "./lifecycle";
import { customers, subscriptions, type SubscriptionStatus } from "../../db/schema";
import { billingLines, type DraftLine } from "../../domain/invoice";
import { periodAt } from "../../domain/periods";
import { closeMeterPeriod, pushMeterConfig } from "../usage/meter-config";
import { asPrices, buildDraftInvoice, pendingToLine, planVersion, unbilledPending } from "../invoices/invoice-builder";
import { graceMsOf, nextDueStep, type DueStep } from "./due";
import { finalizeInvoice } from "../invoices/finalize";
import { eventsCommitted } from "../../platform/events";

type SubscriptionRow = typeof subscriptions.$inferSelect;
type PlanRow = Awaited<ReturnType<typeof planVersion>>;

export type StepResult = { subscriptionId: string; step: DueStep["kind"]; at: number; invoiceId?: string; status: SubscriptionStatus };

export { graceMsOf };
const hasMeters = (plan: PlanRow) => plan.prices.some((p) => p.type === "metered");

async function load(db: Db, id: string) {
  const sub = await db.select().from(subscriptions).where(eq(subscriptions.id, id)).get();
  if (!sub) throw new Error(`subscription ${id} is missing`);
  return { sub, plan: await planVersion(db, sub.planId, sub.planVersion) };
}

/** Runs, in time order, every step of one subscription due by `now` (renewals, trial ends, resumes, changes). */
export async function runDue(env: Env, db: Db, subscriptionId: string, now: number, ctx: Omit<AuditContext, "now">, maxSteps = 60): Promise<StepResult[]> {
  const results: StepResult[] = [];
  for (let i = 0; i < maxSteps; i++) {
    const { sub, plan } = await load(db, subscriptionId);
    const step = nextDueStep(sub, { hasMeters: hasMeters(plan), graceMs: graceMsOf(env) });
    if (!step || step.runAt > now) break;
    const r = await runStep(env, db, sub, plan, step, { ...ctx, now: step.at });
    if (r) results.push(r);
  }
  return results;
}

/** Earliest runnable time of a subscription's next step, or null; the test clock orders subscriptions by it. */
export async function nextRunAt(env: Env, db: Db, subscriptionId: string): Promise<{ at: number; runAt: number } | null> {
  const { sub, plan } = await load(db, subscriptionId);
  const step = nextDueStep(sub, { hasMeters: hasMeters(plan), graceMs: graceMsOf(env) });
  return step ? { at: step.at, runAt: step.runAt } : null;
}

async function runStep(env: Env, db: Db, sub: SubscriptionRow, plan: PlanRow, step: DueStep, ctx: AuditContext): Promise<StepResult | null> {
  if (step.kind === "resume") return resume(env, db, sub, plan, ctx);
  if (step.kind === "plan_change") return scheduledPlanChange(env, db, sub, plan, ctx);
  return periodEnd(env, db, sub, plan, ctx);
}

async function afterCommit(env: Env, db: Db, id: string) {
  const { sub, plan } = await load(db, id);
  await pushMeterConfig(env, db, sub, plan);
  return sub;
}

async function resume(env: Env, db: Db, sub: SubscriptionRow, _plan: PlanRow, ctx: AuditContext): Promise<StepResult | null> {
  const status: SubscriptionStatus = sub.trialEnd !== null && sub.trialEnd > ctx.now ? "trialing" : "active";
  const ok = await commitSubscriptionChange(db, sub, { status, pausedUntil: null, pauseReason: null }, [], [{ action: "subscription.resumed", targetType: "subscription", targetId: sub.id, before: { status: sub.status }, after: { status }, reason: "resume date reached" }], ctx);
  if (!ok) return null;
  await afterCommit(env, db, sub.id);
  return { subscriptionId: sub.id, step: "resume", at: ctx.now, status };
}

async function scheduledPlanChange(env: Env, db: Db, sub: SubscriptionRow, plan: PlanRow, ctx: AuditContext): Promise<StepResult | null> {
  const next = await planVersion(db, sub.pendingPlanId!, sub.pendingPlanVersion!);
  await changePlanNow(env, db, sub, plan, next, { quantity: sub.pendingQuantity ?? sub.quantity, prorate: sub.pendingProrate ?? true }, ctx);
  const after = await afterCommit(env, db, sub.id);
  return { subscriptionId: sub.id, step: "plan_change", at: ctx.now, status: after.status };
}

/**
 * The end of a period: trial conversion, cancellation at period end, a plan change scheduled for the cycle,
 * then the invoice (usage and arrears fees of the period ended, advance fees of the next) and the next period.
 * Paused subscriptions move on without an invoice. Idempotent: the invoice's generation key and the guarded
 * subscription update make a second run a no-op.
 */
async function periodEnd(env: Env, db: Db, sub: SubscriptionRow, plan: PlanRow, ctx: AuditContext): Promise<StepResult | null> {
  const ended = { start: sub.currentPeriodStart, end: sub.currentPeriodEnd };
  const wasTrial = sub.status === "trialing";
  const paused = sub.status === "paused";
  const cancel = sub.cancelAtPeriodEnd;
  const switching = !cancel && sub.pendingPlanId !== null && sub.pendingChangeAt !== null && sub.pendingChangeAt <= ended.end;
  const nextPlan = switching ? await planVersion(db, sub.pendingPlanId!, sub.pendingPlanVersion!) : plan;
  const quantity = switching ? (sub.pendingQuantity ?? sub.quantity) : sub.quantity;
  // Another interval restarts the cycle at the switch (as Stripe does); otherwise periods follow the anchor.
  const anchor = switching && (nextPlan.interval !== plan.interval || nextPlan.intervalCount !== plan.intervalCount) ? ended.end : sub.billingAnchor;
  const next = cancel ? null : { start: ended.end, end: periodAt(anchor, nextPlan.interval, nextPlan.intervalCount, ended.end).end };

  const usage = !wasTrial && !paused && hasMeters(plan) ? await closeMeterPeriod(env, db, sub, plan, ended.start, ctx.now) : new Map<string, string>();
  const pending = paused ? [] : await unbilledPending(db, sub.id);
  const lines: DraftLine[] = paused
    ? []
    : billingLines({
        currency: sub.currency,
        quantity,
        planName: nextPlan.name,
        advance: next ? { prices: asPrices(nextPlan.prices), period: next } : null,
        arrears: wasTrial ? null : { prices: asPrices(plan.prices), period: ended, usage, from: sub.arrearsFrom },
        pending: pending.map(pendingToLine),
      });
  const status: SubscriptionStatus = cancel ? "canceled" : wasTrial ? "active" : sub.status;
  const patch: Partial<SubscriptionRow> = {
    status,
    currentPeriodStart: next?.start ?? ended.start,
    currentPeriodEnd: next?.end ?? ended.end,
    arrearsFrom: null,
    // A trial that ends in cancellation did not convert.
    ...(wasTrial && !cancel ? { trialConvertedAt: ended.end } : {}),
    ...(cancel ? { endedAt: ended.end, canceledAt: sub.canceledAt ?? ended.end } : {}),
    ...(switching
      ? { billingAnchor: anchor, planId: nextPlan.id, planVersion: nextPlan.version, quantity, pendingPlanId: null, pendingPlanVersion: null, pendingQuantity: null, pendingChangeAt: null, pendingProrate: null }
      : {}),
  };
  const action = cancel ? "subscription.canceled" : wasTrial ? "subscription.trial_converted" : "subscription.renewed";
  const audit: AuditEntry[] = [
    { action, targetType: "subscription", targetId: sub.id, before: { status: sub.status, periodEnd: ended.end, planId: sub.planId }, after: { status, periodStart: patch.currentPeriodStart, periodEnd: patch.currentPeriodEnd, planId: nextPlan.id } },
  ];
  let invoiceId: string | undefined;
  let extra: BatchItem<"sqlite">[] = [];
  let createdEvents: string[] = [];
  if (lines.length) {
    const customer = (await db.select().from(customers).where(eq(customers.id, sub.customerId)).get())!;
    const built = await buildDraftInvoice(db, {
      sub: { ...sub, ...patch } as SubscriptionRow,
      customer,
      lines,
      pending,
      period: next ?? ended,
      billingReason: "subscription_cycle",
      generationKey: `${sub.id}:cycle:${ended.end}`,
      now: ctx.now,
      billedAt: ended.end,
    });
    invoiceId = built.invoice.id;
    extra = built.statements;
    createdEvents = built.eventIds;
    audit.push({ action: "invoice.created", targetType: "invoice", targetId: built.invoice.id, after: { subscriptionId: sub.id, total: built.invoice.total, currency: sub.currency, lines: built.lines.length } });
  }
  if (!(await commitSubscriptionChange(db, sub, patch, extra, audit, ctx))) return null;
  eventsCommitted(createdEvents);
  await afterCommit(env, db, sub.id);
  if (invoiceId) await finalizeInvoice(env, db, invoiceId, ctx);
  return { subscriptionId: sub.id, step: "period_end", at: ctx.now, status, ...(invoiceId ? { invoiceId } : {}) };
}
