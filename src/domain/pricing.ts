import { formatDecimal, formatScaled, ONE, parseDecimal, roundDiv, SCALE } from "./decimal";
import { currencyExponent, isCurrency } from "./money";

/** A price tier; upTo is an inclusive upper bound in units, null for the open-ended last tier. Amounts are decimal strings in major units. */
export type Tier = { upTo: number | null; unitAmount: string; flatAmount?: string };

export type PricingModel = "per_unit" | "graduated" | "volume" | "package";

export type PricingSpec = {
  pricingModel: PricingModel;
  unitAmount?: string;
  tiers?: Tier[];
  packageSize?: number;
  packageAmount?: string;
  freeUnits?: number;
};

export type PricingIssue = { path: string; message: string };

/** One tier's share of a tiered price; tier is 1-based (as shown to customers), amount is the exact unrounded major amount. */
export type TierBreakdown = { tier: number; units: string; unitAmount: string; flatAmount: string; amount: string };

export type PricedQuantity = { amountMinor: number; explanation: string; tiers?: TierBreakdown[] };

const MODELS: readonly PricingModel[] = ["per_unit", "graduated", "volume", "package"];

/** Lists everything wrong with a pricing spec for a currency (empty when valid); paths are zod-style ("tiers.1.upTo"). */
export function validatePricing(spec: PricingSpec, currency: string): PricingIssue[] {
  const issues: PricingIssue[] = [];
  const add = (path: string, message: string): void => {
    issues.push({ path, message });
  };
  const checkAmount = (value: unknown, path: string, required: boolean): void => {
    if (value === undefined || value === null) {
      if (required) add(path, "is required");
      return;
    }
    if (typeof value !== "string" && typeof value !== "number") return add(path, "must be a decimal number");
    const parsed = parseDecimal(value);
    if (!parsed.ok) return add(path, parsed.error);
    if (parsed.value < 0n) add(path, "must not be negative");
  };

  if (!isCurrency(currency)) add("currency", `unknown currency ${currency}`);
  if (!MODELS.includes(spec.pricingModel)) {
    add("pricingModel", `must be one of ${MODELS.join(", ")}`);
    return issues;
  }

  if (spec.freeUnits !== undefined) {
    const free = typeof spec.freeUnits === "number" ? parseDecimal(spec.freeUnits) : undefined;
    if (!free || !free.ok) add("freeUnits", free ? free.error : "must be a number");
    else if (free.value < 0n) add("freeUnits", "must not be negative");
    else if (free.value > 0n && (spec.pricingModel === "graduated" || spec.pricingModel === "volume")) {
      add("freeUnits", "only applies to per_unit and package pricing; use a free first tier instead");
    }
  }

  switch (spec.pricingModel) {
    case "per_unit":
      checkAmount(spec.unitAmount, "unitAmount", true);
      break;
    case "package":
      if (spec.packageSize === undefined) add("packageSize", "is required");
      else if (!Number.isSafeInteger(spec.packageSize) || spec.packageSize <= 0) {
        add("packageSize", "must be a positive integer");
      }
      checkAmount(spec.packageAmount, "packageAmount", true);
      break;
    case "graduated":
    case "volume": {
      const tiers = spec.tiers;
      if (!Array.isArray(tiers) || tiers.length === 0) {
        add("tiers", "must have at least one tier");
        break;
      }
      let previous = 0n;
      tiers.forEach((tier, i) => {
        const path = `tiers.${i}`;
        const last = i === tiers.length - 1;
        checkAmount(tier.unitAmount, `${path}.unitAmount`, true);
        checkAmount(tier.flatAmount, `${path}.flatAmount`, false);
        if (tier.upTo === null) {
          if (!last) add(`${path}.upTo`, "only the last tier may be open-ended (upTo null)");
          return;
        }
        if (last) add(`${path}.upTo`, "the last tier must be open-ended (upTo null): quantities past the last bound need a price, and a bounded last tier (Kill Bill style, pricing them at its rate) is not supported");
        const upTo = typeof tier.upTo === "number" ? parseDecimal(tier.upTo) : undefined;
        if (!upTo || !upTo.ok) return add(`${path}.upTo`, upTo ? upTo.error : "must be a number or null");
        if (upTo.value <= 0n) return add(`${path}.upTo`, "must be greater than 0");
        if (upTo.value <= previous) {
          add(`${path}.upTo`, `overlaps the previous tier: must be greater than ${formatDecimal(previous)}`);
        }
        if (upTo.value > previous) previous = upTo.value;
      });
      break;
    }
  }
  return issues;
}

function amountOf(value: string | number | undefined, what: string): bigint {
  if (value === undefined) return 0n;
  const parsed = parseDecimal(value);
  if (!parsed.ok) throw new RangeError(`invalid pricing spec: ${what} ${parsed.error}`);
  return parsed.value;
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new RangeError(`invalid pricing spec: ${what} is required`);
  return value;
}

const unitsLabel = (q: bigint): string => `${formatDecimal(q)} unit${q === ONE ? "" : "s"}`;

/** Prices a SCALE-12 quantity exactly (scale-24 products), rounding ONCE to minor units half away from zero; negative quantity counts as 0, the last tier is open-ended, throws if the spec fails validatePricing. */
export function priceQuantity(spec: PricingSpec, quantity: bigint, currency: string): PricedQuantity {
  const exponent = currencyExponent(currency);
  if (exponent === undefined) throw new RangeError(`unknown currency ${currency}`);
  const model: string = spec.pricingModel;
  const qty = quantity > 0n ? quantity : 0n;
  const free = amountOf(spec.freeUnits, "freeUnits");
  const finish = (total24: bigint, explanation: string, tiers?: TierBreakdown[]): PricedQuantity => {
    const minor = roundDiv(total24, 10n ** BigInt(2 * SCALE - exponent));
    if (minor > BigInt(Number.MAX_SAFE_INTEGER) || minor < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new RangeError("priced amount exceeds the safe integer range");
    }
    return tiers ? { amountMinor: Number(minor), explanation, tiers } : { amountMinor: Number(minor), explanation };
  };

  switch (spec.pricingModel) {
    case "per_unit": {
      const unitText = String(required(spec.unitAmount, "unitAmount"));
      const billable = qty > free ? qty - free : 0n;
      const suffix = free > 0n ? ` (${unitsLabel(qty)}, ${formatDecimal(free)} free)` : "";
      return finish(billable * amountOf(unitText, "unitAmount"), `${unitsLabel(billable)} × ${unitText}${suffix}`);
    }
    case "package": {
      const size = BigInt(required(spec.packageSize, "packageSize")) * ONE;
      if (size <= 0n) throw new RangeError("invalid pricing spec: packageSize must be a positive integer");
      const packageText = String(required(spec.packageAmount, "packageAmount"));
      const billable = qty > free ? qty - free : 0n;
      const packages = (billable + size - 1n) / size;
      const explanation =
        `${packages} package${packages === 1n ? "" : "s"} of ${spec.packageSize} × ${packageText}` +
        ` (${unitsLabel(qty)}, ${formatDecimal(free)} free)`;
      return finish(packages * amountOf(packageText, "packageAmount") * ONE, explanation);
    }
    case "graduated":
    case "volume": {
      const tiers = required(spec.tiers, "tiers");
      if (tiers.length === 0) throw new RangeError("invalid pricing spec: tiers must not be empty");
      const breakdown: TierBreakdown[] = [];
      let total = 0n;
      const charge = (i: number, units: bigint): void => {
        const tier = tiers[i];
        if (!tier) return;
        const unit = amountOf(tier.unitAmount, `tiers.${i}.unitAmount`);
        const flat = amountOf(tier.flatAmount, `tiers.${i}.flatAmount`);
        const amount = units * unit + flat * ONE;
        total += amount;
        breakdown.push({
          tier: i + 1,
          units: formatDecimal(units),
          unitAmount: String(tier.unitAmount),
          flatAmount: tier.flatAmount === undefined ? "0" : String(tier.flatAmount),
          amount: formatScaled(amount, 2 * SCALE),
        });
      };
      const upToOf = (i: number): bigint | null => {
        const upTo = tiers[i]?.upTo;
        return i === tiers.length - 1 || upTo === null || upTo === undefined ? null : amountOf(upTo, `tiers.${i}.upTo`);
      };
      if (spec.pricingModel === "graduated") {
        let lower = 0n;
        for (let i = 0; i < tiers.length; i++) {
          const upper = upToOf(i);
          const top = upper === null || qty < upper ? qty : upper;
          const units = top > lower ? top - lower : 0n;
          // The first tier's flat fee is a base fee, charged even at quantity 0 (Lago and Stripe agree).
          if (i === 0 || units > 0n) charge(i, units);
          if (upper === null || qty <= upper) break;
          lower = upper;
        }
      } else {
        let i = 0;
        for (; i < tiers.length - 1; i++) {
          const upper = upToOf(i);
          if (upper === null || qty <= upper) break;
        }
        charge(i, qty);
      }
      const parts = breakdown.map((b) => {
        const flat = b.flatAmount !== "0" && amountOf(b.flatAmount, "flatAmount") !== 0n ? ` + ${b.flatAmount} flat` : "";
        return `${b.units} × ${b.unitAmount}${flat}`;
      });
      const head = spec.pricingModel === "volume" ? `${unitsLabel(qty)} at tier ${breakdown[0]?.tier ?? 1}` : unitsLabel(qty);
      return finish(total, `${head}: ${parts.join(" + ")}`, breakdown);
    }
    default:
      throw new RangeError(`invalid pricing spec: unknown pricingModel ${model}`);
  }
}


/**
 * The most a metered price may charge in one period, in minor units: 10^13 (100 billion USD, 10 trillion JPY). No
 * real bill comes near it, and an invoice summing hundreds of such lines stays an exact JavaScript integer.
 */
export const MAX_METERED_AMOUNT_MINOR = 10 ** 13;

/**
 * The largest SCALE-12 quantity up to which `priceQuantity` prices at or under `maxMinor` minor units: exact for
 * per-unit and package prices without free units, and for tiered prices tier by tier (a tier's flat amount counted
 * from its first unit; free units ignored, which only errs low). Null when no quantity can reach it (nothing is
 * charged per unit past the last finite tier). Throws like `priceQuantity` on a spec that fails validatePricing.
 */
export function maxPriceableQuantity(spec: PricingSpec, currency: string, maxMinor: number = MAX_METERED_AMOUNT_MINOR): bigint | null {
  const exponent = currencyExponent(currency);
  if (exponent === undefined) throw new RangeError(`unknown currency ${currency}`);
  // Scale 24, as priceQuantity adds up a price before rounding it once to minor units.
  const budget = BigInt(maxMinor) * 10n ** BigInt(2 * SCALE - exponent);
  /** The most units at `unit` (scale 12) that `left` (scale 24) pays for; null when unlimited. */
  const units = (left: bigint, unit: bigint): bigint | null => (unit > 0n ? left / unit : null);
  switch (spec.pricingModel) {
    case "per_unit":
      return units(budget, amountOf(required(spec.unitAmount, "unitAmount"), "unitAmount"));
    case "package": {
      const size = BigInt(required(spec.packageSize, "packageSize"));
      if (size <= 0n) throw new RangeError("invalid pricing spec: packageSize must be a positive integer");
      const packages = units(budget, amountOf(required(spec.packageAmount, "packageAmount"), "packageAmount") * ONE);
      return packages === null ? null : packages * size * ONE;
    }
    case "graduated":
    case "volume": {
      const tiers = required(spec.tiers, "tiers");
      if (tiers.length === 0) throw new RangeError("invalid pricing spec: tiers must not be empty");
      let lower = 0n; // scale 12: where the tier starts
      let spent = 0n; // scale 24: what a graduated price has charged up to `lower`
      for (const [i, tier] of tiers.entries()) {
        const unit = amountOf(tier.unitAmount, `tiers.${i}.unitAmount`);
        const flat = amountOf(tier.flatAmount, `tiers.${i}.flatAmount`) * ONE;
        const upTo = i === tiers.length - 1 || tier.upTo === null ? null : amountOf(tier.upTo, `tiers.${i}.upTo`);
        // Graduated: this tier's units on top of every tier before; volume: every unit at this tier's price.
        const base = (spec.pricingModel === "graduated" ? spent : 0n) + flat;
        const start = spec.pricingModel === "graduated" ? lower : 0n;
        if (base > budget) return lower;
        const reach = units(budget - base, unit);
        // The units before this tier were affordable, so the bound is never below where it starts.
        if (upTo === null) return reach === null ? null : start + reach > lower ? start + reach : lower;
        if (reach !== null && start + reach < upTo) return start + reach > lower ? start + reach : lower;
        spent += flat + (upTo - lower) * unit;
        lower = upTo;
      }
      return lower;
    }
    default:
      throw new RangeError(`invalid pricing spec: unknown pricingModel ${String(spec.pricingModel)}`);
  }
}
