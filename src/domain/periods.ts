// Billing periods in UTC, half-open [start, end). Calendar maths is done on day numbers
// (proleptic Gregorian) so that Date.UTC's 0–99 → 1900s year quirk never applies.

export type Interval = "day" | "week" | "month" | "year";

export type Period = { start: number; end: number; index: number };

const DAY_MS = 86_400_000;

function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: month <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, month, day };
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function checkArgs(anchorMs: number, count: number): void {
  if (!Number.isSafeInteger(anchorMs)) throw new RangeError(`anchor must be an integer epoch ms, got ${anchorMs}`);
  if (!Number.isSafeInteger(count) || count <= 0) throw new RangeError(`interval count must be a positive integer, got ${count}`);
}

function monthsPerStep(interval: Interval): number | null {
  return interval === "month" ? 1 : interval === "year" ? 12 : null;
}

function fixedStepMs(interval: Interval): number {
  if (interval === "day") return DAY_MS;
  if (interval === "week") return 7 * DAY_MS;
  throw new RangeError(`unknown interval ${String(interval)}`);
}

function monthIndex(ms: number): number {
  const { year, month } = civilFromDays(Math.floor(ms / DAY_MS));
  return year * 12 + (month - 1);
}

/** anchor + n×count intervals in UTC; months and years are counted from the anchor (never cumulatively), the day clamped to month end, time of day kept. */
export function addIntervals(anchorMs: number, interval: Interval, count: number, n: number): number {
  checkArgs(anchorMs, count);
  if (!Number.isSafeInteger(n)) throw new RangeError(`n must be an integer, got ${n}`);
  const months = monthsPerStep(interval);
  if (months === null) return anchorMs + n * count * fixedStepMs(interval);
  const dayNumber = Math.floor(anchorMs / DAY_MS);
  const timeOfDay = anchorMs - dayNumber * DAY_MS;
  const { year, month, day } = civilFromDays(dayNumber);
  const total = year * 12 + (month - 1) + n * count * months;
  const targetYear = Math.floor(total / 12);
  const targetMonth = total - targetYear * 12 + 1;
  const targetDay = Math.min(day, daysInMonth(targetYear, targetMonth));
  return daysFromCivil(targetYear, targetMonth, targetDay) * DAY_MS + timeOfDay;
}

/** The period with the given index (0 starts at the anchor, negative ones precede it), half-open [start, end). */
export function periodByIndex(anchorMs: number, interval: Interval, count: number, index: number): Period {
  return {
    start: addIntervals(anchorMs, interval, count, index),
    end: addIntervals(anchorMs, interval, count, index + 1),
    index,
  };
}

/** The half-open period [start, end) containing atMs; an instant exactly at a period's end belongs to the next one. O(1) for any span. */
export function periodAt(anchorMs: number, interval: Interval, count: number, atMs: number): Period {
  checkArgs(anchorMs, count);
  if (!Number.isSafeInteger(atMs)) throw new RangeError(`at must be an integer epoch ms, got ${atMs}`);
  const months = monthsPerStep(interval);
  let index =
    months === null
      ? Math.floor((atMs - anchorMs) / (count * fixedStepMs(interval)))
      : Math.floor((monthIndex(atMs) - monthIndex(anchorMs)) / (count * months));
  // The estimate is off by at most one (month-end clamping, time of day, float division); settle it.
  while (addIntervals(anchorMs, interval, count, index) > atMs) index--;
  while (addIntervals(anchorMs, interval, count, index + 1) <= atMs) index++;
  return periodByIndex(anchorMs, interval, count, index);
}

/**
 * The span a period's flat fees are prorated over. A partial first period (it starts at the subscription's creation,
 * inside a full period of the anchor's grid, and ends with it) is a share of that full period, as its first invoice
 * billed it; any other period is its own span.
 */
export function prorationSpan(current: { start: number; end: number }, sub: { createdAt: number; billingAnchor: number }, interval: Interval, count: number): { start: number; end: number } {
  if (current.start !== sub.createdAt) return current;
  const grid = periodAt(sub.billingAnchor, interval, count, current.start);
  return grid.start < current.start && grid.end === current.end ? { start: grid.start, end: grid.end } : current;
}
