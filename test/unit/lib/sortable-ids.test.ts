import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { newId, sortableId, sortableIdTime } from "../../../src/lib/ids";

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

describe("sortableId (event ids)", () => {
  it("ids made one after another sort in creation order, whatever times they carry (time first, then creation)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1_600_000_000_000, max: 1_600_000_000_020 }), { minLength: 1, maxLength: 300 }), (times) => {
        const made = times.map((t, i) => ({ t, i, id: sortableId("evt", t) }));
        const expected = [...made].sort((a, b) => a.t - b.t || a.i - b.i).map((m) => m.id);
        expect([...made.map((m) => m.id)].sort(byText)).toEqual(expected);
        for (const m of made) expect(sortableIdTime(m.id)).toBe(m.t);
      }),
    );
  });

  it("a frozen test clock's millisecond and live milliseconds interleave without breaking either order", () => {
    const frozen = Date.parse("2024-01-01T00:00:00Z");
    const ids: { t: number; id: string }[] = [];
    for (let i = 0; i < 200; i++) {
      const t = i % 3 === 0 ? frozen : Date.parse("2026-11-30T12:00:00Z") + (i % 7);
      ids.push({ t, id: sortableId("evt", t) });
    }
    const frozenIds = ids.filter((x) => x.t === frozen).map((x) => x.id);
    expect([...frozenIds].sort(byText)).toEqual(frozenIds);
    expect(frozenIds.every((id) => id < ids.find((x) => x.t !== frozen)!.id)).toBe(true);
  });

  it("has the ULID layout: prefix, 10 time characters and 16 random ones, unique across a large sample", () => {
    const sample = Array.from({ length: 10_000 }, () => sortableId("evt", 1_700_000_000_000));
    expect(new Set(sample).size).toBe(sample.length);
    expect(sample[0]).toMatch(/^evt_[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  it("older random ids stay valid ids but carry no time", () => {
    expect(sortableIdTime(newId("evt"))).toBeNull();
  });
});
