import { z } from "@hono/zod-openapi";
import { CurrencyCode, Metadata } from "../customers/schemas";

const Decimal = z.union([z.string(), z.number()]).transform(String).openapi({ type: "string", example: "0.0006", description: "Decimal in major units (string preferred)" });

/** A dotted JSON path into an event's data: `$.tokens`, `$.usage.input_tokens`. */
const JsonPath = z.string().regex(/^\$(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){1,8}$/, "must be a JSON path such as $.tokens");

const Tier = z.object({
  upTo: z.number().positive().nullable().openapi({ description: "Inclusive upper bound; null for the last, open-ended tier" }),
  unitAmount: Decimal,
  flatAmount: Decimal.optional(),
});

export const aggregations = ["sum", "count", "max", "unique_count", "latest"] as const;
export const pricingModels = ["per_unit", "graduated", "volume", "package"] as const;

const FlatPriceInput = z.object({
  id: z.string().regex(/^price_[A-Za-z0-9_]{1,60}$/).optional(),
  type: z.literal("flat"),
  amount: Decimal.openapi({ description: "Recurring fee per period, in major units", example: "29.99" }),
  billing: z.enum(["advance", "arrears"]).default("advance"),
});

const MeteredPriceInput = z.object({
  id: z.string().regex(/^price_[A-Za-z0-9_]{1,60}$/).optional(),
  type: z.literal("metered"),
  meterId: z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, "must be lowercase letters, digits, _ . - (e.g. api_calls)"),
  aggregation: z.enum(aggregations).default("sum"),
  aggregationField: z.string().min(1).max(64).optional().openapi({ description: "Metadata field counted by unique_count" }),
  pricingModel: z.enum(pricingModels),
  unitAmount: Decimal.optional(),
  tiers: z.array(Tier).min(1).max(50).optional(),
  packageSize: z.number().int().positive().optional(),
  packageAmount: Decimal.optional(),
  freeUnits: z.number().int().nonnegative().optional(),
  eventName: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$/, "letters, digits and _ . : / - (at most 100)")
    .optional()
    .openapi({ description: "Stripe `event_name` / CloudEvents `type` that feeds this meter (drop-in ingestion); defaults to meterId", example: "api_request" }),
  valueProperty: JsonPath.optional().openapi({ description: "Where the quantity is in a CloudEvent's data or a Stripe payload; defaults to $.value (count meters count 1 when absent)", example: "$.tokens" }),
  groupBy: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/), JsonPath).optional().openapi({ description: "Metadata key → JSON path in the event's data, kept as the event's metadata", example: { model: "$.model" } }),
  alertThresholds: z
    .array(Decimal)
    .min(1)
    .max(10)
    .optional()
    .openapi({ description: "Usage alert thresholds (meter units) for every subscription on the plan: `usage.threshold_crossed` once per period each", example: ["1000", "5000"] }),
});

export const PriceInput = z.discriminatedUnion("type", [FlatPriceInput, MeteredPriceInput]);

const PlanBody = {
  name: z.string().min(1).max(200),
  currency: CurrencyCode,
  interval: z.enum(["day", "week", "month", "year"]),
  intervalCount: z.number().int().min(1).max(365).default(1),
  trialDays: z.number().int().min(0).max(730).default(0),
  prices: z.array(PriceInput).min(1).max(20),
  metadata: Metadata.optional(),
};

export const CreatePlan = z
  .object({ id: z.string().regex(/^plan_[A-Za-z0-9_]{1,60}$/, "must look like plan_premium").optional(), ...PlanBody })
  .openapi("CreatePlan");
export const CreatePlanVersion = z.object(PlanBody).openapi("CreatePlanVersion");

const Price = z.union([
  z.object({ id: z.string(), type: z.literal("flat"), amount: z.string(), amountMinor: z.number().int(), currency: z.string(), billing: z.enum(["advance", "arrears"]) }),
  z.object({
    id: z.string(),
    type: z.literal("metered"),
    meterId: z.string(),
    aggregation: z.enum(aggregations),
    aggregationField: z.string().optional(),
    pricingModel: z.enum(pricingModels),
    unitAmount: z.string().optional(),
    tiers: z.array(z.object({ upTo: z.number().nullable(), unitAmount: z.string(), flatAmount: z.string().optional() })).optional(),
    packageSize: z.number().optional(),
    packageAmount: z.string().optional(),
    freeUnits: z.number().optional(),
    eventName: z.string().optional(),
    valueProperty: z.string().optional(),
    groupBy: z.record(z.string(), z.string()).optional(),
    alertThresholds: z.array(z.string()).optional(),
  }),
]);

export const Plan = z
  .object({
    id: z.string(),
    name: z.string(),
    currency: z.string(),
    interval: z.enum(["day", "week", "month", "year"]),
    intervalCount: z.number().int(),
    trialDays: z.number().int(),
    version: z.number().int(),
    prices: z.array(Price),
    metadata: z.record(z.string(), z.string()),
    createdAt: z.string(),
  })
  .openapi("Plan");
