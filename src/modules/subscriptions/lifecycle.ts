import { eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import type { AuditContext, AuditEntry } from "../../platform/audit";
import { commitSubscriptionChange } from "./commit";
import { subscriptionLifecycle } from "./transitions";
import { customers, pendingItems, subscriptions, type SubscriptionStatus } from "../../db/schema";
import { arrearsShareLines, billingLines, prorationLines, type DraftLine, type MeteredPrice } from "../../domain/invoice";
import { parseDecimal } from "../../domain/decimal";
import { priceQuantity } from "../../domain/pricing";
import { addIntervals, prorationSpan } from "../../domain/periods";
import { conflict, invalid, ok, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { closeMeterPeriod, pushMeterConfig } from "../usage/meter-config";
import { asPrices, buildDraftInvoice, pendingToLine, planVersion, unbilledPending } from "../invoices/invoice-builder";
import { finalizeInvoice } from "../invoices/finalize";
import { getPlanRow } from "../plans/service";
import { asField, valueOrThrow } from "../../platform/failure";
import { eventsCommitted } from "../../platform/events";

type SubscriptionRow = typeof subscriptions.$inferSelect;
type PlanRow = Awaited<ReturnType<typeof planVersion>>;

/** What the current period's fees are prorated over: the anchor's full period for a partial first period, as billed. */
const spanOf = (sub: SubscriptionRow, plan: PlanRow) => prorationSpan({ start: sub.currentPeriodStart, end: sub.currentPeriodEnd }, sub, plan.interval, plan.intervalCount);

const changedConcurrently = (sub: SubscriptionRow) => conflict(`subscription ${sub.id} changed concurrently; retry`);

/** The guarded update every lifecycle operation makes: 409 when the row changed since it was read. */
async function commitChange(db: Db, sub: SubscriptionRow, patch: Partial<SubscriptionRow>, extra: BatchItem<"sqlite">[], audit: AuditEntry[], ctx: AuditContext): Promise<Outcome<void, "conflict">> {
  return (await commitSubscriptionChange(db, sub, patch, extra, audit, ctx)) ? ok(undefined) : changedConcurrently(sub);
}

async function refreshMeter(s: Services, id: string) {
  const { env, db } = s;
  const sub = (await db.select().from(subscriptions).where(eq(subscriptions.id, id)).get())!;
  await pushMeterConfig(s, sub, await planVersion(db, sub.planId, sub.planVersion));
  return sub;
}

export async function pause(s: Services, sub: SubscriptionRow, input: { reason: string; resumeDate?: number | undefined }): Promise<Outcome<SubscriptionRow, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  // The table decides (paused or canceled: 409 naming the current state) before anything else is checked.
  subscriptionLifecycle.assertMove(sub.id, sub.status, "paused");
  if (input.resumeDate !== undefined && input.resumeDate <= ctx.now) return invalid([{ path: "resumeDate", message: "must be in the future" }]);
  const committed = await commitChange(db, sub, { status: "paused", pausedUntil: input.resumeDate ?? null, pauseReason: input.reason }, [], [
    { action: "subscription.paused", targetType: "subscription", targetId: sub.id, before: { status: sub.status }, after: { status: "paused", pausedUntil: input.resumeDate ?? null }, reason: input.reason },
  ], ctx);
  if (!committed.ok) return committed;
  return ok(await refreshMeter(s, sub.id));
}

export async function resume(s: Services, sub: SubscriptionRow): Promise<Outcome<SubscriptionRow, "conflict">> {
  const { db, audit: ctx } = s;
  if (sub.status !== "paused") return conflict(`subscription ${sub.id} is not paused (status ${sub.status})`);
  const status: SubscriptionStatus = sub.trialEnd !== null && sub.trialEnd > ctx.now ? "trialing" : "active";
  const committed = await commitChange(db, sub, { status, pausedUntil: null, pauseReason: null }, [], [
    { action: "subscription.resumed", targetType: "subscription", targetId: sub.id, before: { status: sub.status }, after: { status } },
  ], ctx);
  if (!committed.ok) return committed;
  return ok(await refreshMeter(s, sub.id));
}

/** Usage so far of meters the next plan does not have, priced now, so a plan change never drops it. */
async function usageOfDroppedMeters(s: Services, sub: SubscriptionRow, plan: PlanRow, next: PlanRow | null, at: number): Promise<DraftLine[]> {
  const keep = new Set(next?.prices.flatMap((p) => (p.type === "metered" ? [p.meterId] : [])) ?? []);
  const dropped = asPrices(plan.prices).filter((p): p is MeteredPrice => p.type === "metered" && !keep.has(p.meterId));
  if (!dropped.length || sub.status === "trialing") return [];
  const summary = await s.meters.of(sub.id).summary({ kind: "current" }, at);
  if (!summary.ok) return [];
  return dropped.map((p) => {
    const value = summary.meters.find((m) => m.meterId === p.meterId)?.value ?? "0";
    const q = parseDecimal(value);
    const priced = priceQuantity(p, q.ok ? q.value : 0n, sub.currency);
    return {
      kind: "usage",
      description: `${p.meterId} usage until ${new Date(at).toISOString()} (meter not in the new plan)`,
      priceId: p.id,
      meterId: p.meterId,
      quantity: value,
      unitAmount: p.pricingModel === "per_unit" ? (p.unitAmount ?? null) : null,
      amount: priced.amountMinor,
      periodStart: sub.currentPeriodStart,
      periodEnd: at,
      computation: `${p.pricingModel}: ${priced.explanation}`,
    };
  });
}

const pendingRows = (sub: SubscriptionRow, lines: DraftLine[], now: number) =>
  lines.map((l) => ({
    id: newId("pi"),
    subscriptionId: sub.id,
    customerId: sub.customerId,
    currency: sub.currency,
    kind: l.kind === "usage" ? ("usage" as const) : ("proration" as const),
    description: l.description,
    amount: l.amount,
    periodStart: l.periodStart,
    periodEnd: l.periodEnd,
    computation: l.computation,
    invoiceId: null,
    createdAt: now,
  }));

/**
 * Ends the current period early at `at`: its usage (the meter period is closed), arrears fees for the time used
 * (the full fee minus the prorated remainder), with `credit` a credit for the unused time of advance fees, and
 * the pending items. The lines of a final (cancel) or intermediate (interval change) invoice.
 */
async function closeOutLines(s: Services, sub: SubscriptionRow, plan: PlanRow, at: number, credit: boolean) {
  const { env, db } = s;
  const current = { start: sub.currentPeriodStart, end: sub.currentPeriodEnd };
  const period = spanOf(sub, plan);
  const usage = plan.prices.some((p) => p.type === "metered") ? await closeMeterPeriod(s, sub, plan, current.start, at) : new Map<string, string>();
  const pending = await unbilledPending(db, sub.id);
  const used = { start: current.start, end: at };
  // Usage of the time used, and the current plan's arrears fees for its own share of it (from a mid-period change, if any).
  const usageLines = billingLines({ currency: sub.currency, quantity: sub.quantity, planName: plan.name, advance: null, arrears: { prices: asPrices(plan.prices), period: used, usage }, pending: [] }).filter((l) => l.kind !== "flat");
  const fees = arrearsShareLines({ currency: sub.currency, period, from: sub.arrearsFrom ?? current.start, to: at, plan: { prices: asPrices(plan.prices), quantity: sub.quantity, name: plan.name } });
  const arrears = [...fees, ...usageLines];
  const credits = credit ? prorationLines({ currency: sub.currency, period, at, old: { prices: asPrices(plan.prices), quantity: sub.quantity, name: plan.name }, next: null }) : [];
  return { lines: [...arrears, ...credits, ...pending.map(pendingToLine)], pending };
}

/**
 * A plan with another billing interval, now: as Stripe does, the cycle restarts today. The old period is closed
 * out on an invoice at once (usage, arrears for the time used, credit for unused advance fees when prorating,
 * pending items) together with the new plan's advance fees for its first full period.
 */
async function changeIntervalNow(s: Services, sub: SubscriptionRow, plan: PlanRow, next: PlanRow, opts: { quantity: number; prorate: boolean }) {
  const { env, db, audit: ctx } = s;
  const closing = await closeOutLines(s, sub, plan, ctx.now, opts.prorate);
  const newPeriod = { start: ctx.now, end: addIntervals(ctx.now, next.interval, next.intervalCount, 1) };
  const advance = billingLines({ currency: sub.currency, quantity: opts.quantity, planName: next.name, advance: { prices: asPrices(next.prices), period: newPeriod }, arrears: null, pending: [] });
  const lines = [...closing.lines, ...advance];
  const patch: Partial<SubscriptionRow> = {
    planId: next.id,
    planVersion: next.version,
    quantity: opts.quantity,
    billingAnchor: ctx.now,
    currentPeriodStart: newPeriod.start,
    currentPeriodEnd: newPeriod.end,
    arrearsFrom: null,
    pendingPlanId: null,
    pendingPlanVersion: null,
    pendingQuantity: null,
    pendingChangeAt: null,
    pendingProrate: null,
    pendingInvoiceNow: null,
  };
  const audit: AuditEntry[] = [
    {
      action: "subscription.plan_changed",
      targetType: "subscription",
      targetId: sub.id,
      before: { planId: sub.planId, planVersion: sub.planVersion, quantity: sub.quantity, interval: `${plan.intervalCount} ${plan.interval}` },
      after: { planId: next.id, planVersion: next.version, quantity: opts.quantity, interval: `${next.intervalCount} ${next.interval}`, cycleRestartedAt: ctx.now },
    },
  ];
  let extra: BatchItem<"sqlite">[] = [];
  let createdEvents: string[] = [];
  let invoiceId: string | null = null;
  if (lines.length) {
    const customer = (await db.select().from(customers).where(eq(customers.id, sub.customerId)).get())!;
    const built = await buildDraftInvoice(db, { sub, customer, lines, pending: closing.pending, period: { start: sub.currentPeriodStart, end: newPeriod.end }, billingReason: "subscription_update", generationKey: `${sub.id}:interval:${ctx.now}`, now: ctx.now });
    extra = built.statements;
    createdEvents = built.eventIds;
    invoiceId = built.invoice.id;
    audit.push(...built.audit);
    audit.push({ action: "invoice.created", targetType: "invoice", targetId: invoiceId, after: { subscriptionId: sub.id, total: built.invoice.total, reason: "billing interval changed" } });
  }
  if (!(await commitSubscriptionChange(db, sub, patch, extra, audit, ctx))) return null;
  eventsCommitted(createdEvents);
  if (invoiceId) await finalizeInvoice(s, invoiceId);
  return { lines, net: lines.reduce((s, l) => s + l.amount, 0), invoiceId };
}

/**
 * The lines a same-interval plan change at `now` adds to the next invoice: with proration, credit for the old
 * advance fees' unused time and a charge for the new ones' remaining time, and for arrears fees the old plan's used
 * time; usage of meters the new plan lacks priced up to now. Reads only: changePlanNow commits them, the preview shows them.
 */
async function samePeriodChangeLines(s: Services, sub: SubscriptionRow, plan: PlanRow, next: PlanRow, opts: { quantity: number; prorate: boolean }, now: number) {
  const period = spanOf(sub, plan);
  const oldPlan = { prices: asPrices(plan.prices), quantity: sub.quantity, name: `${plan.name} v${plan.version}` };
  const prorating = opts.prorate && sub.status !== "trialing";
  // Advance fees: credit the unused time, charge the new remaining time. Arrears fees: the old plan's share of the
  // period is billed now; the period-end invoice bills the new plan from now on (arrearsFrom), whatever happens
  // before then (a period that ends paused bills nothing).
  const proration = prorating
    ? [
        ...prorationLines({ currency: sub.currency, period, at: now, old: oldPlan, next: { prices: asPrices(next.prices), quantity: opts.quantity, name: `${next.name} v${next.version}` } }),
        ...(sub.status === "paused" ? [] : arrearsShareLines({ currency: sub.currency, period, from: sub.arrearsFrom ?? sub.currentPeriodStart, to: now, plan: oldPlan }).map((l) => ({ ...l, kind: "proration" as const, description: `Time used on ${l.description}` }))),
      ]
    : [];
  const lines = [...proration, ...(await usageOfDroppedMeters(s, sub, plan, next, now))];
  return { lines, prorating };
}

/**
 * What `changePlan` with the same input would do at `now`, without doing it: the lines it would add (or, for
 * another billing interval, the closing and opening lines of the restarted cycle, usage left out) and their net.
 */
export async function previewPlanChange(
  s: Services,
  sub: SubscriptionRow,
  input: { newPlanId: string; prorate: boolean; effective: "now" | "next_billing_cycle" | number; quantity?: number | undefined },
  now: number,
): Promise<Outcome<{ effectiveAt: number; scheduled: boolean; lines: DraftLine[]; net: number; note: string | null }, "conflict" | "unprocessable">> {
  const { db } = s;
  const target = await planChangeTarget(db, sub, input, now);
  if (!target.ok) return target;
  const { next, quantity, when } = target.value;
  if (when > now) return ok({ effectiveAt: when, scheduled: true, lines: [], net: 0, note: "Scheduled: the change happens at that time, prorated then." });
  const plan = await planVersion(db, sub.planId, sub.planVersion);
  const intervalChanged = next.interval !== plan.interval || next.intervalCount !== plan.intervalCount;
  if (intervalChanged && sub.status !== "trialing" && sub.status !== "paused") {
    const period = spanOf(sub, plan);
    const oldPlan = { prices: asPrices(plan.prices), quantity: sub.quantity, name: plan.name };
    const fees = arrearsShareLines({ currency: sub.currency, period, from: sub.arrearsFrom ?? sub.currentPeriodStart, to: now, plan: oldPlan });
    const credits = input.prorate ? prorationLines({ currency: sub.currency, period, at: now, old: oldPlan, next: null }) : [];
    const newPeriod = { start: now, end: addIntervals(now, next.interval, next.intervalCount, 1) };
    const advance = billingLines({ currency: sub.currency, quantity, planName: next.name, advance: { prices: asPrices(next.prices), period: newPeriod }, arrears: null, pending: [] });
    const lines = [...fees, ...credits, ...advance];
    return ok({ effectiveAt: now, scheduled: false, lines, net: lines.reduce((s, l) => s + l.amount, 0), note: "The billing interval changes: the cycle restarts now and the closing invoice also bills the period's usage so far." });
  }
  const { lines } = await samePeriodChangeLines(s, sub, plan, next, { quantity, prorate: input.prorate }, now);
  return ok({ effectiveAt: now, scheduled: false, lines, net: lines.reduce((s, l) => s + l.amount, 0), note: null });
}

/** The checks every plan change makes, and what it resolves to: the new plan, the quantity and when. */
async function planChangeTarget(
  db: Db,
  sub: SubscriptionRow,
  input: { newPlanId: string; effective: "now" | "next_billing_cycle" | number; quantity?: number | undefined },
  now: number,
): Promise<Outcome<{ next: PlanRow; quantity: number; when: number }, "conflict" | "unprocessable">> {
  if (sub.status === "canceled") return conflict(`subscription ${sub.id} is canceled`);
  const found = asField(await getPlanRow(db, input.newPlanId), "newPlanId");
  if (!found.ok) return found;
  const next = found.value;
  if (next.currency !== sub.currency) return invalid([{ path: "newPlanId", message: `plan is billed in ${next.currency}, the subscription in ${sub.currency}` }]);
  const quantity = input.quantity ?? sub.quantity;
  const when = input.effective === "next_billing_cycle" ? sub.currentPeriodEnd : input.effective === "now" ? now : Math.max(input.effective, now);
  return ok({ next, quantity, when });
}

/**
 * Switches plan (and quantity) at `ctx.now`: with proration, credit for the old advance fees' unused time and a
 * charge for the new ones' remaining time, and for arrears fees the old plan's used time less the new plan's
 * share of it (each line rounded, then netted on the next invoice); usage of meters the new plan lacks is priced
 * up to now. Returns the lines added to the next invoice (or invoiced at once with `invoiceNow`), or null when
 * another writer changed the subscription first (a concurrent run of the same scheduled step: it did the work).
 */
export async function changePlanNow(s: Services, sub: SubscriptionRow, plan: PlanRow, next: PlanRow, opts: { quantity: number; prorate: boolean; invoiceNow?: boolean }) {
  const { env, db, audit: ctx } = s;
  const intervalChanged = next.interval !== plan.interval || next.intervalCount !== plan.intervalCount;
  // Prorating a yearly fee over a monthly period would be wrong: another interval restarts the cycle instead.
  if (intervalChanged && sub.status !== "trialing" && sub.status !== "paused") return changeIntervalNow(s, sub, plan, next, opts);
  const period = { start: sub.currentPeriodStart, end: sub.currentPeriodEnd };
  const { lines, prorating } = await samePeriodChangeLines(s, sub, plan, next, opts, ctx.now);
  const net = lines.reduce((s, l) => s + l.amount, 0);
  // always_invoice: the lines (and anything else waiting for the next invoice) are invoiced now, not left pending.
  let invoice: { statements: BatchItem<"sqlite">[]; audit: AuditEntry[]; eventIds: string[]; id: string } | null = null;
  if (opts.invoiceNow && lines.length) {
    const pending = await unbilledPending(db, sub.id);
    const customer = (await db.select().from(customers).where(eq(customers.id, sub.customerId)).get())!;
    const built = await buildDraftInvoice(db, {
      sub,
      customer,
      lines: [...lines, ...pending.map(pendingToLine)],
      pending,
      period: { start: ctx.now, end: period.end },
      billingReason: "subscription_update",
      generationKey: `${sub.id}:change:${ctx.now}`,
      now: ctx.now,
    });
    invoice = {
      statements: built.statements,
      eventIds: built.eventIds,
      id: built.invoice.id,
      audit: [...built.audit, { action: "invoice.created", targetType: "invoice", targetId: built.invoice.id, after: { subscriptionId: sub.id, total: built.invoice.total, reason: "plan change invoiced immediately (always_invoice)" } }],
    };
  }
  const rows = invoice ? [] : pendingRows(sub, lines, ctx.now);
  const committed = await commitSubscriptionChange(
    db,
    sub,
    {
      planId: next.id,
      planVersion: next.version,
      quantity: opts.quantity,
      pendingPlanId: null,
      pendingPlanVersion: null,
      pendingQuantity: null,
      pendingChangeAt: null,
      pendingProrate: null,
      pendingInvoiceNow: null,
      ...(prorating && sub.status !== "paused" ? { arrearsFrom: ctx.now } : {}),
    },
    [...rows.map((r) => db.insert(pendingItems).values(r)), ...(invoice?.statements ?? [])],
    [
      {
        action: "subscription.plan_changed",
        targetType: "subscription",
        targetId: sub.id,
        before: { planId: sub.planId, planVersion: sub.planVersion, quantity: sub.quantity },
        after: { planId: next.id, planVersion: next.version, quantity: opts.quantity, prorationNet: net, lines: lines.map((l) => ({ description: l.description, amount: l.amount })), invoiceId: invoice?.id ?? null },
      },
      ...(invoice?.audit ?? []),
    ],
    ctx,
  );
  if (!committed) return null;
  if (invoice) {
    eventsCommitted(invoice.eventIds);
    await finalizeInvoice(s, invoice.id);
  }
  return { lines, net, invoiceId: invoice?.id ?? null };
}

export async function changePlan(
  s: Services,
  sub: SubscriptionRow,
  input: { newPlanId: string; prorate: boolean; effective: "now" | "next_billing_cycle" | number; quantity?: number | undefined; invoiceNow?: boolean },
): Promise<Outcome<{ subscription: SubscriptionRow; effectiveAt: number; scheduled: boolean; lines: DraftLine[]; net: number; invoiceId: string | null }, "conflict" | "unprocessable">> {
  const { env, db, audit: ctx } = s;
  const target = await planChangeTarget(db, sub, input, ctx.now);
  if (!target.ok) return target;
  const { next, quantity, when } = target.value;
  // Stripe invoices prorations when the change takes effect: now, or for a dated change inside the period when the
  // renewal run (or a test clock) reaches it (pendingInvoiceNow). A change at the period end has none to invoice.
  if (when <= ctx.now) {
    const plan = await planVersion(db, sub.planId, sub.planVersion);
    const result = await changePlanNow(s, sub, plan, next, { quantity, prorate: input.prorate, invoiceNow: input.invoiceNow ?? false });
    if (!result) return changedConcurrently(sub);
    return ok({ subscription: await refreshMeter(s, sub.id), effectiveAt: ctx.now, scheduled: false, ...result });
  }
  const invoiceNow = (input.invoiceNow ?? false) && when < sub.currentPeriodEnd;
  const committed = await commitChange(db, sub, { pendingPlanId: next.id, pendingPlanVersion: next.version, pendingQuantity: quantity, pendingChangeAt: when, pendingProrate: input.prorate, pendingInvoiceNow: invoiceNow }, [], [
    { action: "subscription.plan_change_scheduled", targetType: "subscription", targetId: sub.id, before: { planId: sub.planId }, after: { planId: next.id, planVersion: next.version, quantity, effectiveAt: when, invoiceNow } },
  ], ctx);
  if (!committed.ok) return committed;
  return ok({ subscription: await refreshMeter(s, sub.id), effectiveAt: when, scheduled: true, lines: [] as DraftLine[], net: 0, invoiceId: null });
}

/**
 * At period end: flagged, and done by the renewal. Immediately: canceled now, with a final invoice for the
 * period so far (usage, arrears fees for the time used, pending items, and with `prorate` a credit for unused
 * advance fees). Reason and feedback are kept for churn analysis.
 */
export async function cancel(
  s: Services,
  sub: SubscriptionRow,
  input: { reason: string; feedback?: string | undefined; cancelAtPeriodEnd: boolean; prorate: boolean },
): Promise<Outcome<{ subscription: SubscriptionRow; invoiceId: string | null }, "conflict">> {
  const { env, db, audit: ctx } = s;
  subscriptionLifecycle.assertMove(sub.id, sub.status, "canceled");
  const audit: AuditEntry = {
    action: input.cancelAtPeriodEnd ? "subscription.cancel_scheduled" : "subscription.canceled",
    targetType: "subscription",
    targetId: sub.id,
    before: { status: sub.status },
    after: { cancelAtPeriodEnd: input.cancelAtPeriodEnd, feedback: input.feedback ?? null },
    reason: input.reason,
  };
  const reasonPatch = { cancelReason: input.reason, cancelFeedback: input.feedback ?? null };
  if (input.cancelAtPeriodEnd) {
    const scheduled = await commitChange(db, sub, { cancelAtPeriodEnd: true, canceledAt: ctx.now, ...reasonPatch }, [], [audit], ctx);
    if (!scheduled.ok) return scheduled;
    return ok({ subscription: await refreshMeter(s, sub.id), invoiceId: null });
  }
  const plan = await planVersion(db, sub.planId, sub.planVersion);
  const period = { start: sub.currentPeriodStart, end: sub.currentPeriodEnd };
  const billable = sub.status !== "trialing" && sub.status !== "paused";
  const { lines, pending } = billable ? await closeOutLines(s, sub, plan, ctx.now, input.prorate) : { lines: [] as DraftLine[], pending: [] };
  let extra: BatchItem<"sqlite">[] = [];
  let createdEvents: string[] = [];
  let invoiceId: string | null = null;
  const auditRows: AuditEntry[] = [audit];
  if (lines.length) {
    const customer = (await db.select().from(customers).where(eq(customers.id, sub.customerId)).get())!;
    const built = await buildDraftInvoice(db, { sub, customer, lines, pending, period: { start: period.start, end: ctx.now }, billingReason: "subscription_update", generationKey: `${sub.id}:cancel`, now: ctx.now });
    extra = built.statements;
    createdEvents = built.eventIds;
    invoiceId = built.invoice.id;
    auditRows.push(...built.audit);
    auditRows.push({ action: "invoice.created", targetType: "invoice", targetId: invoiceId, after: { subscriptionId: sub.id, total: built.invoice.total, reason: "final invoice on cancellation" } });
  }
  const committed = await commitChange(db, sub, { status: "canceled", canceledAt: ctx.now, endedAt: ctx.now, currentPeriodEnd: Math.max(ctx.now, period.start + 1), cancelAtPeriodEnd: false, ...reasonPatch }, extra, auditRows, ctx);
  if (!committed.ok) return committed;
  eventsCommitted(createdEvents);
  const after = await refreshMeter(s, sub.id);
  if (invoiceId) await finalizeInvoice(s, invoiceId);
  return ok({ subscription: after, invoiceId });
}
