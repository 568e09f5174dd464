import { describe, expect, it } from "vitest";
import { lastMonths, mrrMovement, type MovementSubscription } from "../../src/domain/mrr-movement";

const at = (s: string) => Date.parse(s);
const months = lastMonths(at("2026-03-15T00:00:00Z"), 3);
const sub = (o: Partial<MovementSubscription>): MovementSubscription => ({ id: "s", currency: "USD", countsFrom: at("2026-01-10T00:00:00Z"), endedAt: null, initialMrr: 1000, finalMrr: 1000, ...o });

describe("lastMonths", () => {
  it("gives calendar months oldest first, across a year boundary", () => {
    expect(lastMonths(at("2026-02-01T00:00:00Z"), 3).map((m) => m.month)).toEqual(["2025-12", "2026-01", "2026-02"]);
    expect(months[2]).toEqual({ month: "2026-03", start: at("2026-03-01T00:00:00Z"), end: at("2026-04-01T00:00:00Z") });
  });
});

describe("mrrMovement", () => {
  it("counts new when a subscription starts counting, churn at its last MRR, and plan changes as expansion or contraction", () => {
    const subs = [sub({ id: "a", initialMrr: 1000, finalMrr: 3000, endedAt: at("2026-03-02T00:00:00Z") }), sub({ id: "b", currency: "JPY", countsFrom: at("2026-02-01T00:00:00Z"), initialMrr: 500, finalMrr: 500 })];
    const changes = [
      { subscriptionId: "a", at: at("2026-02-05T00:00:00Z"), beforeMrr: 1000, afterMrr: 4000 },
      { subscriptionId: "a", at: at("2026-02-20T00:00:00Z"), beforeMrr: 4000, afterMrr: 3000 },
    ];
    const out = mrrMovement(months, subs, changes);
    expect(out.get("USD")).toEqual([
      { month: "2026-01", new: 1000, expansion: 0, contraction: 0, churn: 0, net: 1000 },
      { month: "2026-02", new: 0, expansion: 3000, contraction: 1000, churn: 0, net: 2000 },
      { month: "2026-03", new: 0, expansion: 0, contraction: 0, churn: 3000, net: -3000 },
    ]);
    expect(out.get("JPY")?.map((m) => m.new)).toEqual([0, 500, 0]);
  });

  it("leaves out subscriptions that never counted (ended in their trial) and changes outside the time they counted", () => {
    const subs = [sub({ id: "t", countsFrom: null, endedAt: at("2026-02-01T00:00:00Z") }), sub({ id: "u", countsFrom: at("2026-02-10T00:00:00Z") })];
    const changes = [{ subscriptionId: "u", at: at("2026-02-01T00:00:00Z"), beforeMrr: 1000, afterMrr: 9000 }];
    const out = mrrMovement(months, subs, changes);
    expect(out.get("USD")?.map((m) => [m.new, m.expansion, m.churn])).toEqual([
      [0, 0, 0],
      [1000, 0, 0],
      [0, 0, 0],
    ]);
  });

  it("ignores what happened before the window", () => {
    const out = mrrMovement(months, [sub({ countsFrom: at("2025-06-01T00:00:00Z") })], []);
    expect(out.size).toBe(0);
  });
});
