import { parseDecimal, roundDiv, ONE } from "./decimal";

function wholeSeconds(ms: number): bigint {
  return BigInt(Math.floor(ms / 1000));
}

function prorateScaled(amountScaled: bigint, periodStart: number, periodEnd: number, at: number): bigint {
  const total = wholeSeconds(periodEnd - periodStart);
  if (total <= 0n) return 0n;
  const clamped = Math.min(Math.max(at, periodStart), periodEnd);
  const remaining = wholeSeconds(periodEnd - clamped);
  return roundDiv(amountScaled * remaining, total * ONE);
}

function toNumber(v: bigint): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError("prorated amount exceeds the safe integer range");
  return n;
}

function quantityScaled(quantity: number): bigint {
  const parsed = parseDecimal(quantity);
  if (!parsed.ok) throw new RangeError(`quantity ${parsed.error}`);
  return parsed.value;
}

/** amount × remaining seconds / total seconds of [periodStart, periodEnd) (whole seconds, at clamped into the period), rounded half away from zero. */
export function prorate(amountMinor: number, periodStart: number, periodEnd: number, at: number): number {
  return toNumber(prorateScaled(BigInt(amountMinor) * ONE, periodStart, periodEnd, at));
}

export type PlanChange = {
  oldAmountMinor: number;
  newAmountMinor: number;
  oldQuantity: number;
  newQuantity: number;
  periodStart: number;
  periodEnd: number;
  at: number;
};

export type PlanChangeProration = { credit: number; charge: number; net: number };

/** Credit (≤ 0) for the unused old amount×quantity and charge for the remaining new amount×quantity, each prorated by the second and rounded half away from zero before netting. */
export function planChangeProration(change: PlanChange): PlanChangeProration {
  const { periodStart, periodEnd, at } = change;
  const oldScaled = BigInt(change.oldAmountMinor) * quantityScaled(change.oldQuantity);
  const newScaled = BigInt(change.newAmountMinor) * quantityScaled(change.newQuantity);
  const credit = -prorateScaled(oldScaled, periodStart, periodEnd, at);
  const charge = prorateScaled(newScaled, periodStart, periodEnd, at);
  return { credit: toNumber(credit), charge: toNumber(charge), net: toNumber(credit + charge) };
}
