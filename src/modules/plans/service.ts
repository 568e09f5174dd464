import { and, desc, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { newestFirstPage } from "../../platform/pagination";
import { plans, type StoredMeteredPrice, type StoredPrice } from "../../db/schema";
import { formatMinor, toMinor } from "../../domain/money";
import { formatDecimal, parseDecimal } from "../../domain/decimal";
import { validatePricing } from "../../domain/pricing";
import { isUniqueViolation } from "../../db/assert";
import type { FieldError } from "../../platform/errors";
import { conflict, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import type { CreatePlan, CreatePlanVersion, Plan } from "./schemas";

type Row = typeof plans.$inferSelect;
type PlanInput = z.infer<typeof CreatePlanVersion>;

export function toPlan(r: Row): z.infer<typeof Plan> {
  return {
    id: r.id,
    name: r.name,
    currency: r.currency,
    interval: r.interval,
    intervalCount: r.intervalCount,
    trialDays: r.trialDays,
    version: r.version,
    prices: r.prices.map((p) =>
      p.type === "flat"
        ? { id: p.id, type: "flat" as const, amount: formatMinor(p.amountMinor, r.currency), amountMinor: p.amountMinor, currency: r.currency, billing: p.billing }
        : { ...p },
    ),
    metadata: r.metadata,
    createdAt: iso(r.createdAt),
  };
}

/** Checks what zod cannot: exact money, tier shape, unique meters; returns the stored price list. */
export function buildPrices(input: PlanInput): Outcome<StoredPrice[], "unprocessable"> {
  const errors: FieldError[] = [];
  const meters = new Set<string>();
  const eventNames = new Set<string>();
  const prices: StoredPrice[] = input.prices.map((p, i) => {
    const at = `prices.${i}`;
    if (p.type === "flat") {
      const minor = toMinor(p.amount, input.currency);
      if (!minor.ok) errors.push({ path: `${at}.amount`, message: minor.error });
      else if (minor.value < 0) errors.push({ path: `${at}.amount`, message: "must not be negative" });
      return { id: p.id ?? newId("price"), type: "flat", amountMinor: minor.ok ? minor.value : 0, billing: p.billing };
    }
    if (meters.has(p.meterId)) errors.push({ path: `${at}.meterId`, message: `meter ${p.meterId} is priced twice in this plan` });
    meters.add(p.meterId);
    if (p.aggregation === "unique_count" && !p.aggregationField) {
      errors.push({ path: `${at}.aggregationField`, message: "is required for unique_count (the metadata field whose distinct values are counted)" });
    }
    const price: StoredMeteredPrice = {
      id: p.id ?? newId("price"),
      type: "metered",
      meterId: p.meterId,
      aggregation: p.aggregation,
      pricingModel: p.pricingModel,
      ...(p.aggregationField !== undefined && { aggregationField: p.aggregationField }),
      ...(p.unitAmount !== undefined && { unitAmount: canonical(p.unitAmount) }),
      ...(p.tiers !== undefined && {
        tiers: p.tiers.map((t) => ({ upTo: t.upTo, unitAmount: canonical(t.unitAmount), ...(t.flatAmount !== undefined && { flatAmount: canonical(t.flatAmount) }) })),
      }),
      ...(p.packageSize !== undefined && { packageSize: p.packageSize }),
      ...(p.packageAmount !== undefined && { packageAmount: canonical(p.packageAmount) }),
      ...(p.freeUnits !== undefined && { freeUnits: p.freeUnits }),
      ...(p.eventName !== undefined && { eventName: p.eventName }),
      ...(p.valueProperty !== undefined && { valueProperty: p.valueProperty }),
      ...(p.groupBy !== undefined && { groupBy: p.groupBy }),
    };
    if (p.alertThresholds !== undefined) {
      const thresholds: string[] = [];
      p.alertThresholds.forEach((t, j) => {
        const d = parseDecimal(t);
        if (!d.ok || d.value <= 0n) errors.push({ path: `${at}.alertThresholds.${j}`, message: d.ok ? "must be greater than 0" : d.error });
        else if (!thresholds.includes(formatDecimal(d.value))) thresholds.push(formatDecimal(d.value));
      });
      price.alertThresholds = thresholds;
    }
    const eventName = p.eventName ?? p.meterId;
    if (eventNames.has(eventName)) errors.push({ path: `${at}.eventName`, message: `event name ${eventName} feeds two meters of this plan` });
    eventNames.add(eventName);
    for (const e of validatePricing(price, input.currency)) errors.push({ path: `${at}.${e.path}`, message: e.message });
    return price;
  });
  const priceIds = new Set<string>();
  prices.forEach((p, i) => {
    if (priceIds.has(p.id)) errors.push({ path: `prices.${i}.id`, message: "duplicate price id" });
    priceIds.add(p.id);
  });
  return errors.length ? invalid(errors) : ok(prices);
}

// Keep the caller's spelling when it is not a valid decimal: validatePricing reports it with its path.
function canonical(s: string): string {
  const d = parseDecimal(s);
  return d.ok ? s.trim() : s;
}

export async function createPlan(s: Services, input: z.infer<typeof CreatePlan>): Promise<Outcome<z.infer<typeof Plan>, "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const id = input.id ?? newId("plan");
  const built = buildPrices(input);
  if (!built.ok) return built;
  const prices = built.value;
  if (await db.select({ id: plans.id }).from(plans).where(eq(plans.id, id)).get()) {
    return conflict(`plan ${id} already exists; publish a new version with POST /api/v1/plans/${id}/versions`, [{ path: "id", message: "already exists" }]);
  }
  const row: Row = { id, version: 1, isLatest: true, name: input.name, currency: input.currency, interval: input.interval, intervalCount: input.intervalCount, trialDays: input.trialDays, prices, metadata: input.metadata ?? {}, createdAt: ctx.now };
  try {
    await commitWithAudit(db, [db.insert(plans).values(row)], [{ action: "plan.created", targetType: "plan", targetId: id, after: toPlan(row) }], ctx);
  } catch (e) {
    // A concurrent request with the same client-supplied id won the insert.
    if (isUniqueViolation(e, "plans.id")) return conflict(`plan ${id} already exists`, [{ path: "id", message: "already exists" }]);
    throw e;
  }
  return ok(toPlan(row));
}

/** Plans are never edited in place: a new version is published and existing subscriptions keep theirs. */
export async function createPlanVersion(s: Services, id: string, input: PlanInput): Promise<Outcome<z.infer<typeof Plan>, "not_found" | "conflict" | "unprocessable">> {
  const { db, audit: ctx } = s;
  const found = await getPlanRow(db, id);
  if (!found.ok) return found;
  const latest = found.value;
  const built = buildPrices(input);
  if (!built.ok) return built;
  const prices = built.value;
  const row: Row = { id, version: latest.version + 1, isLatest: true, name: input.name, currency: input.currency, interval: input.interval, intervalCount: input.intervalCount, trialDays: input.trialDays, prices, metadata: input.metadata ?? {}, createdAt: ctx.now };
  // The (id, version) primary key makes a concurrent publisher of the same version fail the whole batch.
  try {
    await commitWithAudit(
      db,
      [db.update(plans).set({ isLatest: false }).where(and(eq(plans.id, id), eq(plans.version, latest.version))), db.insert(plans).values(row)],
      [{ action: "plan.version_created", targetType: "plan", targetId: id, before: { version: latest.version }, after: toPlan(row) }],
      ctx,
    );
  } catch (e) {
    if (String(e).includes("UNIQUE") || String((e as { cause?: unknown }).cause).includes("UNIQUE")) return conflict(`plan ${id} version ${row.version} was published concurrently; retry`);
    throw e;
  }
  return ok(toPlan(row));
}

export async function getPlanRow(db: Db, id: string, version?: number): Promise<Outcome<Row, "not_found">> {
  const row = await db
    .select()
    .from(plans)
    .where(and(eq(plans.id, id), version === undefined ? eq(plans.isLatest, true) : eq(plans.version, version)))
    .orderBy(desc(plans.version))
    .get();
  return row ? ok(row) : notFound("plan", version === undefined ? id : `${id} version ${version}`);
}

export async function listPlans(db: Db, q: { limit: number; startingAfter?: string | undefined }) {
  return newestFirstPage(db, { table: plans, id: plans.id, createdAt: plans.createdAt, scope: eq(plans.isLatest, true) }, q, [], toPlan);
}
