import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { asc, eq } from "drizzle-orm";
import { settings } from "../../db/schema";
import { configuredGateways, routing } from "../../gateways";
import { activeGateway } from "../gateways/service";
import { invalid, ok, type Outcome } from "../../platform/failure";
import { iso } from "../../lib/time";
import { DEFAULT_RETRY, RETRY_CONFIG_KEY, RetryConfig, retryConfig } from "../payments/config";
import { putSetting } from "../../platform/settings";
import { closedObject } from "../../lib/schema";

const Configured = z.enum(["configured", "not configured"]);

export const EffectiveConfig = z
  .object({
    environment: z.object({
      ENVIRONMENT: z.string().nullable(),
      TEST_CLOCKS: z.string().nullable(),
      USAGE_GRACE_SECONDS: z.string().nullable(),
      JWT_ISSUER: z.string().nullable(),
      JWT_AUDIENCE: z.string().nullable(),
    }),
    secrets: z
      .record(z.string(), Configured)
      .openapi({ description: "Whether each secret is set; values are never shown. EXCHANGE_RATES_URL is listed here because a provider URL often carries an API key." }),
    billing: z.object({
      retryAttempts: z.number().int().openapi({ description: "Charge attempts per invoice (stored as payments.retry maxAttempts)" }),
      gracePeriodDays: z.number().int(),
      backoffMultiplier: z.number(),
      initialDelay: z.number().int().openapi({ description: "Seconds before the second attempt" }),
    }),
    gateways: z.object({
      configured: z.array(z.string()),
      routing: z.object({ primary: z.string(), backup: z.string().nullable(), primaryDown: z.boolean(), downReason: z.string().nullable(), downSince: z.string().nullable(), activeGateway: z.string() }),
    }),
    settings: z.array(z.object({ key: z.string(), updatedAt: z.string(), updatedBy: z.string() })).openapi({ description: "Every stored setting with when and by whom it was last written" }),
  })
  .openapi("EffectiveConfig");
export type EffectiveConfig = z.infer<typeof EffectiveConfig>;

const SECRETS = ["JWT_SECRET", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "EXPORT_ENCRYPTION_KEY", "EXCHANGE_RATES_URL"] as const;

/** Env values read by name: optional ones (EXCHANGE_RATES_URL) are not in the generated Env type. */
const envVar = (env: Env, name: string): string | null => {
  const v = (env as unknown as Record<string, string | undefined>)[name];
  return typeof v === "string" ? v : null;
};

/** The configuration in force, without secret values. Billing comes from the stored retry config (one source of truth). */
export async function effectiveConfig(s: Services): Promise<EffectiveConfig> {
  const { env, db } = s;
  const [retry, r, rows] = await Promise.all([
    retryConfig(db),
    s.gateways.routing(),
    db.select({ key: settings.key, updatedAt: settings.updatedAt, updatedBy: settings.updatedBy }).from(settings).orderBy(asc(settings.key)).all(),
  ]);
  return {
    environment: {
      ENVIRONMENT: envVar(env, "ENVIRONMENT"),
      TEST_CLOCKS: envVar(env, "TEST_CLOCKS"),
      USAGE_GRACE_SECONDS: envVar(env, "USAGE_GRACE_SECONDS"),
      JWT_ISSUER: envVar(env, "JWT_ISSUER"),
      JWT_AUDIENCE: envVar(env, "JWT_AUDIENCE"),
    },
    secrets: Object.fromEntries(SECRETS.map((name) => [name, envVar(env, name) ? "configured" : "not configured"] as const)),
    billing: { retryAttempts: retry.maxAttempts, gracePeriodDays: retry.gracePeriodDays, backoffMultiplier: retry.backoffMultiplier, initialDelay: retry.initialDelay },
    gateways: { configured: configuredGateways(env), routing: { ...r, downSince: iso(r.downSince), activeGateway: activeGateway(r) } },
    settings: rows.map((s) => ({ key: s.key, updatedAt: iso(s.updatedAt), updatedBy: s.updatedBy })),
  };
}

const retry = RetryConfig.shape;
export const ConfigPatch = closedObject({
  billing: closedObject({
    retryAttempts: retry.maxAttempts.optional(),
    gracePeriodDays: retry.gracePeriodDays.optional(),
    backoffMultiplier: retry.backoffMultiplier.optional(),
    initialDelay: retry.initialDelay.optional(),
  }).optional(),
})
  .refine((p) => p.billing !== undefined && Object.keys(p.billing).length > 0, { message: "nothing to update: send billing.retryAttempts, gracePeriodDays, backoffMultiplier or initialDelay" })
  .openapi("ConfigPatch");
export type ConfigPatch = z.infer<typeof ConfigPatch>;

/**
 * Merges `patch.billing` into the stored "payments.retry" (retryAttempts is maxAttempts there) and writes it with an
 * audit row. The base is read from D1, not the per-isolate cache, so a change made elsewhere is not overwritten.
 */
export async function patchConfig(s: Services, patch: ConfigPatch): Promise<Outcome<EffectiveConfig, "unprocessable">> {
  const { db, audit: ctx } = s;
  const { retryAttempts, gracePeriodDays, backoffMultiplier, initialDelay } = patch.billing ?? {};
  const stored = await db.select({ value: settings.value }).from(settings).where(eq(settings.key, RETRY_CONFIG_KEY)).get();
  const changes = Object.fromEntries(
    Object.entries({ maxAttempts: retryAttempts, gracePeriodDays, backoffMultiplier, initialDelay }).filter(([, v]) => v !== undefined),
  );
  const merged = RetryConfig.safeParse({ ...DEFAULT_RETRY, ...(stored?.value as Partial<RetryConfig> | undefined), ...changes });
  if (!merged.success) {
    return invalid(merged.error.issues.map((i) => ({ path: `(stored ${RETRY_CONFIG_KEY}).${i.path.join(".")}`, message: i.message })));
  }
  await putSetting(db, RETRY_CONFIG_KEY, merged.data, ctx, "PATCH /admin/config");
  return ok(await effectiveConfig(s));
}

export const ReloadReport = z
  .object({
    dropped: z.array(z.string()),
    featureFlagsDropped: z.number().int().openapi({ description: "Cached flags this isolate forgot" }),
    apiKeysDropped: z.number().int().openapi({ description: "Cached API-key lookups this isolate forgot" }),
    scope: z.literal("isolate"),
    detail: z.string(),
  })
  .openapi("ConfigReload");
