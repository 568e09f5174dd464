import { describe, expect, it } from "vitest";
import { criteriaMismatch, evaluateFlag, inRollout, rolloutBucket, stableHash32 } from "../../../src/domain/rollout";

const ids = Array.from({ length: 2000 }, (_, i) => `cus_${String(i).padStart(6, "0")}`);

describe("rolloutBucket / inRollout", () => {
  it("is stable: the same subject gets the same answer on every call", () => {
    for (const id of ids.slice(0, 200)) {
      const first = inRollout({ name: "new-checkout-flow", percentage: 50 }, id);
      for (let i = 0; i < 5; i++) expect(inRollout({ name: "new-checkout-flow", percentage: 50 }, id)).toBe(first);
    }
  });

  it("is pinned to a fixed algorithm (changing it would reshuffle every customer's answer)", () => {
    // Reference values from an independent implementation (FNV-1a 32 then the murmur3 finalizer).
    expect(stableHash32("")).toBe(2872998923);
    expect(stableHash32("a")).toBe(444641715);
    expect(rolloutBucket("usage-billing", "cus_1")).toBe(52);
    expect(rolloutBucket("usage-billing", "cus_2")).toBe(65);
    expect(rolloutBucket("new-checkout-flow", "cus_1")).toBe(20);
  });

  it("spreads 2,000 sequential ids evenly: about half are in at 50 %", () => {
    const inCount = ids.filter((id) => inRollout({ name: "new-checkout-flow", percentage: 50 }, id)).length;
    expect(inCount / ids.length).toBeGreaterThanOrEqual(0.45);
    expect(inCount / ids.length).toBeLessThanOrEqual(0.55);
  });

  it("fills every bucket roughly evenly", () => {
    const counts = new Array<number>(10).fill(0);
    for (const id of ids) counts[Math.floor(rolloutBucket("usage-billing", id) / 10)]! += 1;
    for (const c of counts) expect(c).toBeGreaterThan(150); // 200 expected per decile
  });

  it("is monotonic: a subject in at 30 % is in at 60 %, and raising the percentage only adds subjects", () => {
    const at30 = ids.filter((id) => inRollout({ name: "usage-billing", percentage: 30 }, id));
    const at60 = new Set(ids.filter((id) => inRollout({ name: "usage-billing", percentage: 60 }, id)));
    expect(at30.length).toBeGreaterThan(0);
    for (const id of at30) expect(at60.has(id)).toBe(true);
  });

  it("0 % is nobody, 100 % and no percentage are everybody", () => {
    expect(ids.some((id) => inRollout({ name: "x", percentage: 0 }, id))).toBe(false);
    expect(ids.every((id) => inRollout({ name: "x", percentage: 100 }, id))).toBe(true);
    expect(ids.every((id) => inRollout({ name: "x" }, id))).toBe(true);
  });

  it("depends on the flag name, so different flags pick different subjects", () => {
    const a = ids.map((id) => inRollout({ name: "flag-a", percentage: 50 }, id));
    const b = ids.map((id) => inRollout({ name: "flag-b", percentage: 50 }, id));
    const same = a.filter((v, i) => v === b[i]).length / ids.length;
    expect(same).toBeGreaterThan(0.4);
    expect(same).toBeLessThan(0.6); // independent, not the same half
  });
});

describe("criteria", () => {
  it("all must match; a missing attribute fails", () => {
    expect(criteriaMismatch({ segment: "premium" }, { segment: "premium", region: "eu" })).toBeNull();
    expect(criteriaMismatch(undefined, {})).toBeNull();
    expect(criteriaMismatch({ segment: "premium" }, { segment: "basic" })).toEqual({ key: "segment", expected: "premium", actual: "basic" });
    expect(criteriaMismatch({ segment: "premium", region: "eu" }, { segment: "premium" })).toEqual({ key: "region", expected: "eu", actual: null });
    expect(criteriaMismatch({ toString: "x" }, {})).toEqual({ key: "toString", expected: "x", actual: null }); // own attributes only
  });
});

describe("evaluateFlag", () => {
  const flag = { name: "new-checkout-flow", enabled: true, percentage: 50, criteria: { segment: "premium" } };

  it("a disabled flag is off whatever the subject", () => {
    expect(evaluateFlag({ ...flag, enabled: false }, { id: "cus_1", attributes: { segment: "premium" } })).toMatchObject({ enabled: false, reason: "disabled" });
  });

  it("criteria come before the percentage", () => {
    const r = evaluateFlag(flag, { id: "cus_1", attributes: { segment: "basic" } });
    expect(r).toMatchObject({ enabled: false, reason: "criteria_mismatch" });
    expect(r.detail).toContain("segment");
    expect(evaluateFlag(flag, { id: "cus_1" })).toMatchObject({ enabled: false, reason: "criteria_mismatch" });
  });

  it("matching subjects are split by bucket, with the bucket reported", () => {
    const results = ids.slice(0, 400).map((id) => evaluateFlag(flag, { id, attributes: { segment: "premium" } }));
    const inside = results.filter((r) => r.enabled);
    expect(inside.length).toBeGreaterThan(0);
    expect(inside.length).toBeLessThan(400);
    for (const r of results) {
      expect(r.reason).toBe(r.enabled ? "in_rollout" : "out_of_rollout");
      expect(r.bucket! < 50).toBe(r.enabled);
    }
  });

  it("without a percentage every matching subject is in", () => {
    expect(evaluateFlag({ name: "usage-billing", enabled: true }, { id: "cus_1" })).toMatchObject({ enabled: true, reason: "enabled" });
  });
});
