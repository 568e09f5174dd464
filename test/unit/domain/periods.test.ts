import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addIntervals, periodAt, periodByIndex, type Interval } from "../../../src/domain/periods";

const t = (iso: string): number => {
  const ms = Date.parse(iso.length === 10 ? `${iso}T00:00:00.000Z` : iso);
  if (Number.isNaN(ms)) throw new Error(`bad date ${iso}`);
  return ms;
};
const iso = (ms: number): string => new Date(ms).toISOString();
const day = (ms: number): string => iso(ms).slice(0, 10);

describe("addIntervals: monthly from a month-end anchor", () => {
  const jan31of2024 = ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30", "2024-07-31",
    "2024-08-31", "2024-09-30", "2024-10-31", "2024-11-30", "2024-12-31", "2025-01-31", "2025-02-28"];
  it.each(jan31of2024.map((d, n) => [n, d] as const))("Jan 31 2024 + %i months → %s", (n, expected) => {
    expect(day(addIntervals(t("2024-01-31"), "month", 1, n))).toBe(expected);
  });
  const cases: [string, Interval, number, number, string][] = [
    ["2023-01-31", "month", 1, 1, "2023-02-28"],
    ["2023-01-31", "month", 1, 2, "2023-03-31"],
    ["2024-01-31", "month", 1, -1, "2023-12-31"],
    ["2024-01-31", "month", 1, -11, "2023-02-28"],
    ["2024-03-31", "month", 1, -1, "2024-02-29"],
    ["2024-01-30", "month", 1, 1, "2024-02-29"],
    ["2024-01-30", "month", 1, 2, "2024-03-30"],
    ["2024-01-29", "month", 1, 1, "2024-02-29"],
    ["2023-01-29", "month", 1, 1, "2023-02-28"],
    ["2024-01-15", "month", 1, 1, "2024-02-15"],
    ["2000-01-31", "month", 1, 1, "2000-02-29"], // divisible by 400: leap
    ["2100-01-31", "month", 1, 1, "2100-02-28"], // divisible by 100: not leap
    ["1900-01-31", "month", 1, 1, "1900-02-28"],
    ["2024-11-30", "month", 3, 1, "2025-02-28"], // quarterly
    ["2024-11-30", "month", 3, 2, "2025-05-30"],
    ["2024-11-30", "month", 3, -1, "2024-08-30"],
    ["2024-08-31", "month", 6, 1, "2025-02-28"],
    ["2024-08-31", "month", 6, 2, "2025-08-31"],
    ["2024-01-31", "month", 12, 1, "2025-01-31"],
    ["0050-01-31", "month", 1, 1, "0050-02-28"], // no Date.UTC 0–99 → 1900s surprise
    ["1969-12-31", "month", 1, 2, "1970-02-28"], // before the epoch
  ];
  it.each(cases)("%s %s×%i, n=%i → %s", (anchor, interval, count, n, expected) => {
    expect(day(addIntervals(t(anchor), interval, count, n))).toBe(expected);
  });
});

describe("addIntervals: yearly, weekly, daily", () => {
  const cases: [string, Interval, number, number, string][] = [
    ["2024-02-29", "year", 1, 1, "2025-02-28"],
    ["2024-02-29", "year", 1, 2, "2026-02-28"],
    ["2024-02-29", "year", 1, 4, "2028-02-29"],
    ["2024-02-29", "year", 1, -1, "2023-02-28"],
    ["2024-02-29", "year", 1, -4, "2020-02-29"],
    ["2024-02-29", "year", 1, 76, "2100-02-28"],
    ["2024-02-29", "year", 1, 376, "2400-02-29"],
    ["2024-02-29", "year", 2, 1, "2026-02-28"],
    ["2024-02-29", "year", 4, 1, "2028-02-29"],
    ["2023-03-01", "year", 1, 1, "2024-03-01"],
    ["2024-02-26", "week", 1, 1, "2024-03-04"],
    ["2024-02-26", "week", 2, 1, "2024-03-11"],
    ["2024-02-26", "week", 1, -1, "2024-02-19"],
    ["2024-12-30", "week", 1, 1, "2025-01-06"],
    ["2024-02-28", "day", 1, 1, "2024-02-29"],
    ["2024-02-28", "day", 1, 2, "2024-03-01"],
    ["2023-02-28", "day", 1, 1, "2023-03-01"],
    ["2024-03-01", "day", 3, -2, "2024-02-24"],
    ["2024-12-31", "day", 1, 1, "2025-01-01"],
    ["2024-01-01", "day", 1, 366, "2025-01-01"],
  ];
  it.each(cases)("%s %s×%i, n=%i → %s", (anchor, interval, count, n, expected) => {
    expect(day(addIntervals(t(anchor), interval, count, n))).toBe(expected);
  });

  it.each<Interval>(["day", "week", "month", "year"])("preserves the time of day (%s)", (interval) => {
    const result = addIntervals(t("2024-01-31T13:45:10.123Z"), interval, 1, 1);
    expect(iso(result).slice(10)).toBe("T13:45:10.123Z");
  });

  it("n = 0 is the anchor", () => {
    expect(addIntervals(t("2024-01-31T05:00:00Z"), "month", 3, 0)).toBe(t("2024-01-31T05:00:00Z"));
  });

  it("throws on invalid arguments", () => {
    expect(() => addIntervals(0, "month", 0, 1)).toThrow(RangeError);
    expect(() => addIntervals(0, "month", 1.5, 1)).toThrow(RangeError);
    expect(() => addIntervals(0, "month", 1, 0.5)).toThrow(RangeError);
    expect(() => addIntervals(NaN, "day", 1, 1)).toThrow(RangeError);
    expect(() => addIntervals(0, "fortnight" as Interval, 1, 1)).toThrow(RangeError);
  });

  it("month steps match a Date-based reference (always from the anchor)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: t("1971-01-01"), max: t("2200-01-01") }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: -200, max: 200 }),
        (anchor, count, n) => {
          const a = new Date(anchor);
          const firstOfTarget = new Date(Date.UTC(a.getUTCFullYear(), a.getUTCMonth() + n * count, 1));
          const lastDay = new Date(Date.UTC(firstOfTarget.getUTCFullYear(), firstOfTarget.getUTCMonth() + 1, 0)).getUTCDate();
          const expected = Date.UTC(
            firstOfTarget.getUTCFullYear(), firstOfTarget.getUTCMonth(), Math.min(a.getUTCDate(), lastDay),
            a.getUTCHours(), a.getUTCMinutes(), a.getUTCSeconds(), a.getUTCMilliseconds(),
          );
          expect(addIntervals(anchor, "month", count, n)).toBe(expected);
        },
      ),
    );
  });
});

describe("periodAt", () => {
  const anchor = t("2024-01-31");
  const cases: [string, Interval, number, string, string, string, number][] = [
    ["2024-01-31", "month", 1, "2024-01-31", "2024-01-31", "2024-02-29", 0], // at the anchor
    ["2024-01-31", "month", 1, "2024-02-15", "2024-01-31", "2024-02-29", 0],
    ["2024-01-31", "month", 1, "2024-02-28T23:59:59.999Z", "2024-01-31", "2024-02-29", 0],
    ["2024-01-31", "month", 1, "2024-02-29", "2024-02-29", "2024-03-31", 1], // exactly at the end → next
    ["2024-01-31", "month", 1, "2024-03-31", "2024-03-31", "2024-04-30", 2],
    ["2024-01-31", "month", 1, "2024-01-30T23:59:59.999Z", "2023-12-31", "2024-01-31", -1],
    ["2024-01-31", "month", 1, "2023-06-01", "2023-05-31", "2023-06-30", -8],
    ["2024-01-31", "month", 1, "2500-07-15", "2500-06-30", "2500-07-31", 5717],
    ["2024-01-31", "month", 3, "2024-05-01", "2024-04-30", "2024-07-31", 1],
    ["2024-01-31", "month", 3, "2023-12-01", "2023-10-31", "2024-01-31", -1],
    ["2024-02-29", "year", 1, "2025-03-01", "2025-02-28", "2026-02-28", 1],
    ["2024-02-29", "year", 1, "2028-02-28", "2027-02-28", "2028-02-29", 3],
    ["2024-02-29", "year", 1, "2028-02-29", "2028-02-29", "2029-02-28", 4],
    ["2024-02-29", "year", 1, "2024-02-28", "2023-02-28", "2024-02-29", -1],
    ["2024-01-01", "week", 1, "2024-01-08", "2024-01-08", "2024-01-15", 1],
    ["2024-01-01", "week", 2, "2024-01-20", "2024-01-15", "2024-01-29", 1],
    ["2024-01-01", "week", 1, "2023-12-31", "2023-12-25", "2024-01-01", -1],
    ["2024-01-01", "day", 1, "2024-03-01T12:00:00Z", "2024-03-01", "2024-03-02", 60],
    ["2024-01-01", "day", 3, "2024-01-03T23:59:59.999Z", "2024-01-01", "2024-01-04", 0],
    ["2024-01-01", "day", 1, "3024-01-01", "3024-01-01", "3024-01-02", 365_242],
  ];
  it.each(cases)("anchor %s %s×%i at %s → [%s, %s) #%i", (a, interval, count, at, start, end, index) => {
    expect(periodAt(t(a), interval, count, t(at))).toEqual({ start: t(start), end: t(end), index });
  });

  it("keeps the anchor's time of day", () => {
    const a = t("2024-01-31T10:00:00Z");
    expect(periodAt(a, "month", 1, t("2024-02-29T09:59:59.999Z"))).toEqual({ start: a, end: t("2024-02-29T10:00:00Z"), index: 0 });
    expect(periodAt(a, "month", 1, t("2024-02-29T10:00:00Z")).index).toBe(1);
  });

  it("periodByIndex agrees with addIntervals", () => {
    expect(periodByIndex(anchor, "month", 1, 1)).toEqual({ start: t("2024-02-29"), end: t("2024-03-31"), index: 1 });
    expect(periodByIndex(anchor, "month", 1, -2)).toEqual({ start: t("2023-11-30"), end: t("2023-12-31"), index: -2 });
  });

  const intervalArb = fc.constantFrom<Interval>("day", "week", "month", "year");
  const instantArb = fc.integer({ min: t("1900-01-01"), max: t("2300-01-01") });
  it("contains the instant and its neighbours tile without gaps", () => {
    fc.assert(
      fc.property(instantArb, intervalArb, fc.integer({ min: 1, max: 12 }), instantArb, (a, interval, count, at) => {
        const p = periodAt(a, interval, count, at);
        expect(p.start).toBeLessThanOrEqual(at);
        expect(at).toBeLessThan(p.end);
        expect(p).toEqual(periodByIndex(a, interval, count, p.index));
        expect(periodByIndex(a, interval, count, p.index + 1).start).toBe(p.end);
        expect(periodByIndex(a, interval, count, p.index - 1).end).toBe(p.start);
        expect(periodAt(a, interval, count, p.end).index).toBe(p.index + 1);
        expect(periodAt(a, interval, count, p.end - 1).index).toBe(p.index);
        expect(periodAt(a, interval, count, p.start).index).toBe(p.index);
        expect(p.index >= 0).toBe(at >= a);
      }),
    );
  });
});
