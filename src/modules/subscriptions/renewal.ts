import { and, eq, isNull, sql } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { builtOnce } from "../../db/prepared";
import type { AuditEntry } from "../../platform/audit";
import type { BatchItem } from "drizzle-orm/batch";
import { commitSubscriptionChange, commitSubscriptionChangeReading } from "./commit";
import { changePlanNow } from "./lifecycle";
import { customers, pendingItems, plans, settings, subscriptions, type SubscriptionStatus } from "../../db/schema";
import { billingLines, type DraftLine } from "../../domain/invoice";
import { periodAt, prorationSpan } from "../../domain/periods";
import { closeMeterPeriodForBatch, meterAlertsOf, pushMeterConfig, type MeterAlertRow } from "../usage/meter-config";
import { rollupUpsert } from "../usage/rollups";
import { asPrices, buildDraftInvoice, countryTaxRates, pendingToLine, planVersion, taxFromRates } from "../invoices/invoice-builder";
import { nextDueStep, type DueStep, graceMsOf } from "./due";
import { afterFinalized } from "../invoices/finalize";
import { finalizedRow, invoiceFinalized } from "../invoices/lifecycle";
import { DEFAULT_LINK_DAYS } from "../invoices/hosted-link";
import { currentDiscountOf, currentDiscountQueries, type CurrentDiscount } from "../coupons/discounts";
import type { TaxRate } from "../../domain/tax";
import { eventsCommitted } from "../../platform/events";

type SubscriptionRow = typeof subscriptions.$inferSelect;
type PlanRow = Awaited<ReturnType<typeof planVersion>>;
type CustomerRow = typeof customers.$inferSelect;
type PendingRow = typeof pendingItems.$inferSelect;

export type StepResult = { subscriptionId: string; step: DueStep["kind"]; at: number; invoiceId?: string; status: SubscriptionStatus };

export { graceMsOf };
const hasMeters = (plan: PlanRow) => plan.prices.some((p) => p.type === "metered");

async function load(db: Db, id: string) {
  const sub = await db.select().from(subscriptions).where(eq(subscriptions.id, id)).get();
  if (!sub) throw new Error(`subscription ${id} is missing`);
  return { sub, plan: await planVersion(db, sub.planId, sub.planVersion) };
}

/**
 * The reads of `loadForRun`, built by drizzle once per isolate (`builtOnce`: every renewal makes them) with the
 * subscription's id as the placeholder `id`. No joins: a D1 batch answers rows as objects, where two tables'
 * same-named columns would collide.
 */
const runReads = builtOnce((db: Db) => {
  const id = sql.placeholder("id");
  const customerId = sql`(SELECT ${subscriptions.customerId} FROM ${subscriptions} WHERE ${subscriptions.id} = ${id})`;
  const ofSub = (column: typeof subscriptions.planId | typeof subscriptions.planVersion) => sql`(SELECT ${column} FROM ${subscriptions} WHERE ${subscriptions.id} = ${id})`;
  return [
    db.select().from(subscriptions).where(eq(subscriptions.id, id)),
    db.select().from(plans).where(and(eq(plans.id, ofSub(subscriptions.planId)), eq(plans.version, ofSub(subscriptions.planVersion)))),
    db.select().from(customers).where(eq(customers.id, customerId)),
    db.select().from(pendingItems).where(and(eq(pendingItems.subscriptionId, id), isNull(pendingItems.invoiceId))),
    meterAlertsOf(db, id),
    countryTaxRates(db, customerId),
    // The hosted link's lifetime (the finalization makes the link), in the same read: no extra round trip.
    db.select().from(settings).where(eq(settings.key, "documents")),
    ...currentDiscountQueries(db, id),
  ] as const;
});

/**
 * Everything a period end reads, in one D1 round trip: the subscription with its plan version, its customer, its
 * unbilled pending items, its usage alerts (for the meter push) and the tax rates of the customer's country.
 */
async function loadForRun(db: Db, id: string): Promise<Loaded> {
  const [sub, plan, customer, pending, alerts, rates, documents, discount, coupon] = await db.batch(runReads(db, { id }));
  if (!sub[0] || !plan[0] || !customer[0]) throw new Error(`subscription ${id} (or its plan version or customer) is missing`);
  const linkDays = (documents[0]?.value as { hostedLinkDays?: number } | undefined)?.hostedLinkDays ?? DEFAULT_LINK_DAYS;
  return { sub: sub[0], plan: plan[0], customer: customer[0], pending, alerts, rates, discount: currentDiscountOf(discount, coupon), linkDays };
}

type Loaded = { sub: SubscriptionRow; plan: PlanRow; customer: CustomerRow; pending: PendingRow[]; alerts: MeterAlertRow[]; rates: TaxRate[]; discount: CurrentDiscount | null; linkDays: number };

/**
 * Runs, in time order, every step of one subscription due by `now` (renewals, trial ends, resumes, changes). A
 * renewal costs three D1 round trips: the read, the batch (subscription, invoice, its finalization and number), and
 * the meter's acknowledged version (in a queue batch, that one is written with the batch's others: two each, plus one
 * per batch); the next step is decided on the row as that batch wrote it, and read again only when it is due too.
 */
export async function runDue(s: Services, subscriptionId: string, now: number, maxSteps = 60): Promise<StepResult[]> {
  return (await runDueSteps(s, subscriptionId, now, maxSteps)).steps;
}

/**
 * As `runDue`, saying whether a step may still be due when `maxSteps` stopped it (`more`): the jobs queue continues a
 * subscription in a fresh message only then, not after every renewal that used its whole share of the batch.
 */
export async function runDueSteps(s: Services, subscriptionId: string, now: number, maxSteps = 60): Promise<{ steps: StepResult[]; more: boolean }> {
  const { env, db } = s;
  // Each step acts as the caller, at the step's own time (its clock's, for a test clock's subscription).
  const ctx = { actor: s.audit.actor, ...(s.audit.requestId ? { requestId: s.audit.requestId } : {}) };
  const results: StepResult[] = [];
  const opts = (plan: PlanRow) => ({ hasMeters: hasMeters(plan), graceMs: graceMsOf(env) });
  for (let i = 0; i < maxSteps; i++) {
    // A step after a renewal reads the meter's acknowledged version back (closeMeterPeriod): write it first.
    if (i > 0 && s.trailing?.size) await s.trailing.flush();
    const loaded = await loadForRun(db, subscriptionId);
    const step = nextDueStep(loaded.sub, opts(loaded.plan));
    if (!step || step.runAt > now) return { steps: results, more: false };
    const stepS = s.withAudit({ ...ctx, now: step.at });
    if (step.kind !== "period_end") {
      const r = await runStep(stepS, loaded.sub, loaded.plan, step);
      if (r) results.push(r);
      continue;
    }
    const r = await periodEnd(stepS, loaded);
    if (!r) return { steps: results, more: false }; // another run moved the subscription first: it does the rest
    results.push(r.result);
    const next = nextDueStep(r.sub, opts(r.plan));
    if (!next || next.runAt > now) return { steps: results, more: false };
  }
  return { steps: results, more: true };
}

/** Earliest runnable time of a subscription's next step, or null; the test clock orders subscriptions by it. */
export async function nextRunAt(s: Services, subscriptionId: string): Promise<{ at: number; runAt: number } | null> {
  const { env, db } = s;
  const { sub, plan } = await load(db, subscriptionId);
  const step = nextDueStep(sub, { hasMeters: hasMeters(plan), graceMs: graceMsOf(env) });
  return step ? { at: step.at, runAt: step.runAt } : null;
}

async function runStep(s: Services, sub: SubscriptionRow, plan: PlanRow, step: DueStep): Promise<StepResult | null> {
  if (step.kind === "resume") return resume(s, sub, plan);
  if (step.kind === "plan_change") return scheduledPlanChange(s, sub, plan);
  return (await periodEnd(s, await loadForRun(s.db, sub.id)))?.result ?? null;
}

async function afterCommit(s: Services, id: string) {
  const { env, db } = s;
  const { sub, plan } = await load(db, id);
  await pushMeterConfig(s, sub, plan);
  return sub;
}

async function resume(s: Services, sub: SubscriptionRow, _plan: PlanRow): Promise<StepResult | null> {
  const { db, audit: ctx } = s;
  const status: SubscriptionStatus = sub.trialEnd !== null && sub.trialEnd > ctx.now ? "trialing" : "active";
  const ok = await commitSubscriptionChange(db, sub, { status, pausedUntil: null, pauseReason: null }, [], [{ action: "subscription.resumed", targetType: "subscription", targetId: sub.id, before: { status: sub.status }, after: { status }, reason: "resume date reached" }], ctx);
  if (!ok) return null;
  await afterCommit(s, sub.id);
  return { subscriptionId: sub.id, step: "resume", at: ctx.now, status };
}

async function scheduledPlanChange(s: Services, sub: SubscriptionRow, plan: PlanRow): Promise<StepResult | null> {
  const { db, audit: ctx } = s;
  const next = await planVersion(db, sub.pendingPlanId!, sub.pendingPlanVersion!);
  // always_invoice: the prorations are invoiced (and charged) now, when the change takes effect, as Stripe does.
  const changed = await changePlanNow(s, sub, plan, next, { quantity: sub.pendingQuantity ?? sub.quantity, prorate: sub.pendingProrate ?? true, invoiceNow: sub.pendingInvoiceNow ?? false });
  if (!changed) return null; // a concurrent run of this step (a redelivered message) made the change
  const after = await afterCommit(s, sub.id);
  return { subscriptionId: sub.id, step: "plan_change", at: ctx.now, status: after.status, ...(changed.invoiceId ? { invoiceId: changed.invoiceId } : {}) };
}

/**
 * What the arrears flat fees of the ended period are a share of. A partial first period (the subscription's own
 * start inside a full period of the anchor's grid) is a share of that full period from its start, as its advance
 * fees are at creation (prorationBehavior none set arrearsFrom at the period end: nothing); otherwise the period
 * itself, from `arrearsFrom` when a change moved it.
 */
function arrearsSpan(sub: SubscriptionRow, plan: PlanRow, ended: { start: number; end: number }): { period: { start: number; end: number }; from: number | null } {
  const span = prorationSpan(ended, sub, plan.interval, plan.intervalCount);
  if (span.start < ended.start) return { period: span, from: Math.max(sub.arrearsFrom ?? ended.start, ended.start) };
  return { period: ended, from: sub.arrearsFrom };
}

/**
 * The end of a period: trial conversion, cancellation at period end, a plan change scheduled for the cycle,
 * then the invoice (usage and arrears fees of the period ended, advance fees of the next) and the next period.
 * Paused subscriptions move on without an invoice. Idempotent: the invoice's generation key and the guarded
 * subscription update make a second run a no-op.
 */
async function periodEnd(s: Services, loaded: Loaded): Promise<{ result: StepResult; sub: SubscriptionRow; plan: PlanRow } | null> {
  const { env, db, audit: ctx } = s;
  const { sub, plan, customer } = loaded;
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

  // The closed period's rollups go in this renewal's batch (not a D1 write of the meter's own), handed back below.
  const closed = !wasTrial && !paused && hasMeters(plan) ? await closeMeterPeriodForBatch(s, sub, plan, ended.start, ctx.now, loaded.alerts) : { usage: new Map<string, string>(), rollups: [] };
  const usage = closed.usage;
  const pending = paused ? [] : loaded.pending;
  const lines: DraftLine[] = paused
    ? []
    : billingLines({
        currency: sub.currency,
        quantity,
        planName: nextPlan.name,
        advance: next ? { prices: asPrices(nextPlan.prices), period: next } : null,
        arrears: wasTrial ? null : { prices: asPrices(plan.prices), usage, ...arrearsSpan(sub, plan, ended) },
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
      ? { billingAnchor: anchor, planId: nextPlan.id, planVersion: nextPlan.version, quantity, pendingPlanId: null, pendingPlanVersion: null, pendingQuantity: null, pendingChangeAt: null, pendingProrate: null, pendingInvoiceNow: null }
      : {}),
  };
  const action = cancel ? "subscription.canceled" : wasTrial ? "subscription.trial_converted" : "subscription.renewed";
  const audit: AuditEntry[] = [
    { action, targetType: "subscription", targetId: sub.id, before: { status: sub.status, periodEnd: ended.end, planId: sub.planId }, after: { status, periodStart: patch.currentPeriodStart, periodEnd: patch.currentPeriodEnd, planId: nextPlan.id } },
  ];
  let invoiceId: string | undefined;
  let extra: BatchItem<"sqlite">[] = closed.rollups.map((r) => rollupUpsert(db, r.values));
  let createdEvents: string[] = [];
  let finalization: ReturnType<typeof invoiceFinalized> | null = null;
  if (lines.length) {
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
      tax: taxFromRates(customer, (next ?? ended).end, loaded.rates),
      discount: loaded.discount,
    });
    invoiceId = built.invoice.id;
    // Drafted and finalized (numbered) in the one batch: nothing reads the draft back.
    finalization = invoiceFinalized(db, built.invoice, built.lineRows, ctx, loaded.linkDays);
    // The finalization's statements last: its read-back is the batch's last result (`finalizedRow`).
    extra = [...extra, ...built.statements, ...finalization.change.statements];
    createdEvents = built.eventIds;
    audit.push(
      ...built.audit,
      { action: "invoice.created", targetType: "invoice", targetId: built.invoice.id, after: { subscriptionId: sub.id, total: built.invoice.total, currency: sub.currency, lines: built.lines.length } },
      ...finalization.change.audit,
    );
  }
  const results = await commitSubscriptionChangeReading(db, sub, patch, extra, audit, ctx);
  if (!results) return null;
  eventsCommitted(createdEvents);
  for (const effect of finalization?.change.after ?? []) await effect();
  const after: SubscriptionRow = { ...sub, ...patch, configVersion: sub.configVersion + 1, updatedAt: ctx.now };
  // The customer's ingest directory routes by status, anchor and the plan's meters: a plain renewal changes none of
  // them, so it is not told (one Durable Object call less per renewal, and no hot directory object for a customer
  // with thousands of subscriptions renewing at once) unless it may have missed the previous version.
  const routingChanged =
    sub.meterSyncedVersion < sub.configVersion || after.status !== sub.status || after.billingAnchor !== sub.billingAnchor || nextPlan.id !== plan.id || nextPlan.version !== plan.version;
  await pushMeterConfig(s, after, nextPlan, loaded.alerts, loaded.customer, { routing: routingChanged, written: closed.rollups });
  if (finalization) await afterFinalized(s, finalizedRow(results, 2 + extra.length));
  return { result: { subscriptionId: sub.id, step: "period_end", at: ctx.now, status, ...(invoiceId ? { invoiceId } : {}) }, sub: after, plan: nextPlan };
}
