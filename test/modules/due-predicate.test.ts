import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { inArray } from "drizzle-orm";
import { dbOf } from "../../src/db/client";
import { subscriptions } from "../../src/db/schema";
import { graceMsOf, isDue, nextDueStep } from "../../src/modules/subscriptions/due";
import { enqueueDuePages } from "../../src/modules/subscriptions/billing-run";
import { createPlan, messageServicesOf } from "../helpers";
import { cloneSubscriptions, recordingEnv } from "../scale";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

describe("isDue and nextDueStep agree", () => {
  it("row for row, grace included: queued only when its next step can run", { timeout: 60_000 }, async () => {
    const now = Date.now();
    const metered = await cloneSubscriptions(8, { periodStart: now - 30 * DAY, periodEnd: now - 30 * MIN });
    const meteredPlan = await createPlan(); // flat + metered (the helper's default)
    await env.DB.prepare(`UPDATE subscriptions SET plan_id = ?, plan_version = 1 WHERE id IN (${metered.ids.map(() => "?").join(",")})`).bind(meteredPlan.id, ...metered.ids).run();
    const flat = await cloneSubscriptions(1, { periodStart: now - 30 * DAY, periodEnd: now - MIN });
    const [withinGrace, pastGrace, trial, resume, pausedOpen, change, changeAtEnd, staleResume] = metered.ids;
    const set = (id: string, cols: string, ...v: unknown[]) => env.DB.prepare(`UPDATE subscriptions SET ${cols} WHERE id = ?`).bind(...v, id).run();
    await set(pastGrace!, "current_period_end = ?", now - 2 * HOUR);
    await set(trial!, "status = 'trialing', trial_end = current_period_end");
    await set(resume!, "status = 'paused', paused_until = ?, current_period_end = ?", now - MIN, now + 10 * DAY);
    await set(pausedOpen!, "status = 'paused', paused_until = NULL, current_period_end = ?", now - MIN);
    await set(change!, "pending_plan_id = plan_id, pending_plan_version = 1, pending_change_at = ?, current_period_end = ?", now - MIN, now + 5 * DAY);
    // A change at the period end is the period end's business: it waits out the grace like it.
    await set(changeAtEnd!, "pending_plan_id = plan_id, pending_plan_version = 1, pending_change_at = current_period_end");
    await set(staleResume!, "paused_until = ?, current_period_end = ?", now - MIN, now + 5 * DAY);
    const ids = [...metered.ids, ...flat.ids];
    const db = dbOf(env);
    const grace = graceMsOf(env);
    const rows = await db.select().from(subscriptions).where(inArray(subscriptions.id, ids)).all();
    const planMeters = new Map([[meteredPlan.id, true], [flat.plan.id, false]]);
    const expected = rows.filter((r) => {
      const step = nextDueStep(r, { hasMeters: planMeters.get(r.planId)!, graceMs: grace });
      return step !== null && step.runAt <= now;
    });
    const due = await db.select({ id: subscriptions.id }).from(subscriptions).where(isDue(now, grace)).all();
    const dueHere = due.map((r) => r.id).filter((id) => ids.includes(id));
    expect(dueHere.sort()).toEqual(expected.map((r) => r.id).sort());
    // The cases themselves, so the agreement is not vacuous.
    expect(dueHere).not.toContain(withinGrace);
    expect(dueHere).not.toContain(changeAtEnd);
    expect(dueHere).not.toContain(staleResume);
    expect(dueHere).toEqual(expect.arrayContaining([pastGrace, trial, resume, pausedOpen, change, flat.ids[0]]));
  });

  it("the hourly run queues a metered period end once, after its grace, not at the period end as well", { timeout: 60_000 }, async () => {
    const end = Date.UTC(2020, 0, 1, 5);
    const { ids } = await cloneSubscriptions(1, { periodStart: end - 31 * DAY, periodEnd: end });
    const plan = await createPlan();
    await env.DB.prepare("UPDATE subscriptions SET plan_id = ?, plan_version = 1 WHERE id = ?").bind(plan.id, ids[0]).run();
    const queuedAt = async (t: number) => {
      const rec = recordingEnv();
      await enqueueDuePages(messageServicesOf(rec.env), t, null);
      return rec.take("jobs").some((m) => m.subscriptionId === ids[0]);
    };
    expect(await queuedAt(end)).toBe(false);
    expect(await queuedAt(end + HOUR)).toBe(true);
  });
});
