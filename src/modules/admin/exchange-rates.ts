import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { eq } from "drizzle-orm";
import type { Db } from "../../db/client";
import type { AuditContext } from "../../platform/audit";
import { settings } from "../../db/schema";
import { formatDecimal, parseDecimal } from "../../domain/decimal";
import { isCurrency } from "../../domain/money";
import { fail, ok, type Outcome } from "../../platform/failure";
import { iso } from "../../lib/time";
import { closedObject } from "../../lib/schema";
import { putSetting } from "../../platform/settings";

export const EXCHANGE_RATES_KEY = "exchange-rates";
const MAX_RATES = 300;
const PROVIDER_TIMEOUT_MS = 10_000;

/** Stored value: `1 base = rates[C] C`, exact decimal strings; updatedAt in epoch ms. */
type StoredRates = { base: string; rates: Record<string, string>; updatedAt: number; source: string };

/** A positive exact decimal (at most 12 decimals) in canonical form, or the reason it is not one. */
function canonicalRate(value: unknown): { ok: true; value: string } | { ok: false; error: string } {
  if (typeof value !== "string" && typeof value !== "number") return { ok: false, error: "must be a decimal string" };
  const parsed = parseDecimal(value);
  if (!parsed.ok) return { ok: false, error: parsed.error };
  if (parsed.value <= 0n) return { ok: false, error: "must be positive" };
  return { ok: true, value: formatDecimal(parsed.value) };
}

const Currency = z
  .string()
  .transform((s) => s.toUpperCase())
  .refine(isCurrency, { message: "must be an ISO-4217 currency code such as USD" })
  .openapi({ type: "string", example: "USD" });

export const ExchangeRatesInput = closedObject({
  base: Currency,
  // Values are checked in the refinement, not by the record, so every bad entry is reported at once with its path.
  rates: z
    .record(z.string(), z.unknown())
    .superRefine((rates, ctx) => {
      const entries = Object.entries(rates);
      if (entries.length === 0) ctx.addIssue({ code: "custom", message: "at least one rate" });
      if (entries.length > MAX_RATES) ctx.addIssue({ code: "custom", message: `at most ${MAX_RATES} rates` });
      for (const [code, rate] of entries) {
        if (!isCurrency(code)) ctx.addIssue({ code: "custom", path: [code], message: "not an ISO-4217 currency code (uppercase, e.g. EUR)" });
        const r = typeof rate === "string" ? canonicalRate(rate) : { ok: false as const, error: "must be a decimal string such as \"0.92\"" };
        if (!r.ok) ctx.addIssue({ code: "custom", path: [code], message: r.error });
      }
    })
    .transform((rates) => rates as Record<string, string>)
    .openapi({ type: "object", additionalProperties: { type: "string" }, description: "Units of each currency per 1 base, as exact decimal strings", example: { EUR: "0.92", GBP: "0.79" } }),
})
  .superRefine((v, ctx) => {
    if (Object.hasOwn(v.rates, v.base)) ctx.addIssue({ code: "custom", path: ["rates", v.base], message: "is the base currency (always 1)" });
  })
  .openapi("ExchangeRatesInput");
export type ExchangeRatesInput = z.infer<typeof ExchangeRatesInput>;

export const ExchangeRates = z
  .object({
    base: z.string(),
    rates: z.record(z.string(), z.string()),
    updatedAt: z.string(),
    updatedBy: z.string(),
    source: z.string().openapi({ description: '"manual" (PUT) or "provider:<host>" (POST /update)' }),
  })
  .openapi("ExchangeRates");
export type ExchangeRates = z.infer<typeof ExchangeRates>;

export const ExchangeRatesUpdate = ExchangeRates.extend({
  skipped: z.array(z.object({ currency: z.string(), reason: z.string() })).openapi({ description: "Provider entries left out (unknown codes such as BTC or XAU, invalid values)" }),
}).openapi("ExchangeRatesUpdate");

const view = (v: StoredRates, updatedBy: string): ExchangeRates => ({ base: v.base, rates: v.rates, updatedAt: iso(v.updatedAt), updatedBy, source: v.source });

const sorted = (rates: Record<string, string>) => Object.fromEntries(Object.entries(rates).sort(([a], [b]) => a.localeCompare(b)));

export async function getExchangeRates(db: Db): Promise<Outcome<ExchangeRates, "not_found">> {
  const row = await db.select().from(settings).where(eq(settings.key, EXCHANGE_RATES_KEY)).get();
  if (!row) return fail("not_found", "no exchange rates are stored yet: PUT /admin/exchange-rates sets them, POST /admin/exchange-rates/update fetches them");
  return ok(view(row.value as StoredRates, row.updatedBy));
}

async function store(db: Db, base: string, rates: Record<string, string>, source: string, ctx: AuditContext, reason: string): Promise<ExchangeRates> {
  const value: StoredRates = { base, rates: sorted(rates), updatedAt: ctx.now, source };
  await putSetting(db, EXCHANGE_RATES_KEY, value, ctx, reason);
  return view(value, ctx.actor.id);
}

/** Replaces the stored rates with the operator's (validated by ExchangeRatesInput), audited. */
export async function setExchangeRates(s: Services, input: ExchangeRatesInput): Promise<ExchangeRates> {
  const { db, audit: ctx } = s;
  const rates = Object.fromEntries(Object.entries(input.rates).map(([code, rate]) => [code, (canonicalRate(rate) as { value: string }).value]));
  return store(db, input.base, rates, "manual", ctx, "set manually");
}

const providerUrl = (env: Env) => (env as unknown as Record<string, string | undefined>).EXCHANGE_RATES_URL?.trim() || undefined;

/**
 * Fetches `{ base, rates }` from EXCHANGE_RATES_URL and stores the valid entries (audited). Unknown codes and bad
 * values are skipped and reported; a provider that fails or answers without a base or any usable rate changes
 * nothing. Only the provider's host is ever shown: the URL may carry an API key.
 */
export async function updateExchangeRatesFromProvider(s: Services): Promise<Outcome<z.infer<typeof ExchangeRatesUpdate>, "unprocessable" | "unavailable">> {
  const { env, db, audit: ctx } = s;
  const url = providerUrl(env);
  if (!url) {
    return fail("unprocessable", "no exchange-rate provider is configured (set the EXCHANGE_RATES_URL variable to a URL answering { base, rates }); PUT /admin/exchange-rates sets rates manually");
  }
  let host: string;
  try {
    host = new URL(url).host;
  } catch {
    return fail("unprocessable", "EXCHANGE_RATES_URL is not a valid URL");
  }
  const down = (why: string) => fail("unavailable", `exchange-rate provider ${host} ${why}; the stored rates are unchanged`);
  const unreachable = (e: unknown) => down(`could not be reached (${e instanceof Error ? e.message : String(e)})`);

  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(PROVIDER_TIMEOUT_MS) });
  } catch (e) {
    return unreachable(e);
  }
  if (!res.ok) return down(`answered HTTP ${res.status}`);
  let body: unknown;
  try {
    body = await res.json();
  } catch (e) {
    return e instanceof SyntaxError ? down("answered something that is not JSON") : unreachable(e);
  }
  const shape = z.object({ base: z.string(), rates: z.record(z.string(), z.unknown()) }).safeParse(body);
  if (!shape.success) return down("answered without { base, rates }");
  const base = shape.data.base.toUpperCase();
  if (!isCurrency(base)) return down(`answered an unknown base currency ${JSON.stringify(shape.data.base)}`);

  const rates: Record<string, string> = {};
  const skipped: { currency: string; reason: string }[] = [];
  for (const [raw, value] of Object.entries(shape.data.rates)) {
    const code = raw.toUpperCase();
    const rate = canonicalRate(value);
    if (code === base) {
      if (!rate.ok || rate.value !== "1") skipped.push({ currency: code, reason: "is the base currency but its rate is not 1" });
      continue;
    }
    if (!isCurrency(code)) skipped.push({ currency: raw, reason: "not an ISO-4217 currency this engine knows" });
    else if (!rate.ok) skipped.push({ currency: code, reason: rate.error });
    else rates[code] = rate.value;
  }
  if (Object.keys(rates).length === 0) return down("answered no usable rate");
  if (Object.keys(rates).length > MAX_RATES) return down(`answered more than ${MAX_RATES} rates`);
  return ok({ ...(await store(db, base, rates, `provider:${host}`, ctx, "POST /admin/exchange-rates/update")), skipped });
}
