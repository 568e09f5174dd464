import { createRoute, z } from "@hono/zod-openapi";
import { services } from "../../http/context";
import { and, gte, isNull, lt, sql } from "drizzle-orm";
import { access, requireScopeOrRole } from "../../http/auth";
import { jsonResponse, router } from "../../http/openapi";
import { dbOf, type Db } from "../../db/client";
import { subscriptions, usageRollups } from "../../db/schema";
import { lastMonths } from "../../domain/mrr-movement";
import { iso } from "../../lib/time";

// Usage recorded per meter over time, for the console's chart: the rollups the UsageMeter objects flush to D1
// (at most ROLLUP_DELAY_MS behind), summed over subscriptions, by the month each billing period starts in.

const UsageOverview = z
  .object({
    from: z.string(),
    to: z.string(),
    method: z.string(),
    months: z.array(z.string()).openapi({ description: "YYYY-MM, oldest first" }),
    meters: z.array(
      z.object({
        meterId: z.string(),
        points: z.array(z.object({ month: z.string(), value: z.number().openapi({ description: "Sum of the subscriptions' period aggregates (for charts; invoices use each period's exact value)" }), events: z.number().int() })),
      }),
    ),
  })
  .openapi("UsageOverview");

const METHOD =
  "Per meter: each subscription's aggregate of a billing period (sum, max, count… as its price aggregates), summed over real-time subscriptions " +
  "(test clocks excluded), in the UTC month the period starts in; events = usage events counted. Flushed from the meters within about 10 s.";

export async function usageOverview(db: Db, now: number, count: number): Promise<z.infer<typeof UsageOverview>> {
  const months = lastMonths(now, count);
  const from = months[0]!.start;
  const to = months[months.length - 1]!.end;
  const month = sql<string>`strftime('%Y-%m', ${usageRollups.periodStart} / 1000, 'unixepoch')`;
  const rows = await db
    .select({ meterId: usageRollups.meterId, month, value: sql<number>`coalesce(sum(cast(${usageRollups.value} as real)), 0)`.mapWith(Number), events: sql<number>`coalesce(sum(${usageRollups.eventCount}), 0)`.mapWith(Number) })
    .from(usageRollups)
    .innerJoin(subscriptions, sql`${subscriptions.id} = ${usageRollups.subscriptionId}`)
    .where(and(isNull(subscriptions.testClockId), gte(usageRollups.periodStart, from), lt(usageRollups.periodStart, to)))
    .groupBy(usageRollups.meterId, month)
    .orderBy(usageRollups.meterId, month)
    .all();
  const meters = new Map<string, { month: string; value: number; events: number }[]>();
  for (const r of rows) {
    const list = meters.get(r.meterId) ?? [];
    list.push({ month: r.month, value: r.value, events: r.events });
    meters.set(r.meterId, list);
  }
  return { from: iso(from), to: iso(to), method: METHOD, months: months.map((m) => m.month), meters: [...meters].map(([meterId, points]) => ({ meterId, points })) };
}

/** Mounted at /api/v1/usage, before the per-subscription routes. */
export const usageOverviewRoutes = router().openapi(
  createRoute({
    method: "get",
    path: "/overview",
    operationId: "getUsageOverview",
    tags: ["Usage"],
    summary: "Usage recorded per meter per month, over all subscriptions",
    description: METHOD,
    middleware: [requireScopeOrRole("usage:read", access.read)] as const,
    request: { query: z.object({ months: z.coerce.number().int().min(1).max(36).default(12) }) },
    responses: { 200: jsonResponse(UsageOverview, "Usage per meter and month") },
  }),
  async (c) => c.json(await usageOverview(dbOf(c.env), services(c).clock.wall, c.req.valid("query").months), 200),
);
