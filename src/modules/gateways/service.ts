import type { Db } from "../../db/client";
import type { Services } from "../../platform/services";
import { commitWithAudit } from "../../platform/audit";
import { currencyExponent, formatMinor, toMinor } from "../../domain/money";
import { configuredGateways, routing, ROUTING_KEY, SANDBOX_FAULTS_KEY, type GatewayRouting } from "../../gateways";
import type { SandboxFaults } from "../../gateways/sandbox";
import type { GatewayName } from "../../gateways/types";
import { fail, invalid, ok, type Outcome } from "../../platform/failure";
import { lockedFailure } from "../../gateways/guard";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";
import { getSetting, putSetting } from "../../platform/settings";
import { probe, type ComponentHealth } from "../health/checks";

const HEALTH_CACHE_MS = 10_000;
// Per isolate: the status route is public (the runbook's incident step calls it without a token), so a burst of
// calls must not become a burst of Stripe round trips.
const healthCache = new Map<GatewayName, { at: number; health: ComponentHealth }>();

export function dropGatewayHealthCache(): void {
  healthCache.clear();
}

const isLiveStripe = (env: Env) => env.STRIPE_SECRET_KEY.startsWith("sk_live_") || env.STRIPE_SECRET_KEY.startsWith("rk_live_");
const modeOf = (env: Env, name: GatewayName): "embedded" | "live" | "test" => (name === "sandbox" ? "embedded" : isLiveStripe(env) ? "live" : "test");

/** `name` as a configured gateway, or a 422 naming the ones that are. */
export function configuredGateway(env: Env, name: string, field = "gateway"): Outcome<GatewayName, "unprocessable"> {
  const configured = configuredGateways(env);
  if (!(configured as string[]).includes(name)) {
    return fail("unprocessable", `gateway ${name} is not configured here; configured: ${configured.join(", ")}`, [{ path: field, message: "not a configured gateway" }]);
  }
  return ok(name as GatewayName);
}

/** Where new charges go under `r`. */
export const activeGateway = (r: GatewayRouting): GatewayName => (r.primaryDown && r.backup ? r.backup : r.primary);

const routingView = (r: GatewayRouting) => ({ ...r, downSince: iso(r.downSince), activeGateway: activeGateway(r) });

async function gatewayHealth(s: Services, name: GatewayName, now: number): Promise<ComponentHealth & { checkedAt: number }> {
  const hit = healthCache.get(name);
  if (hit && now - hit.at < HEALTH_CACHE_MS) return { ...hit.health, checkedAt: hit.at };
  const health = await probe(async () => {
    const h = await (await s.gateways.byName(name)).health();
    if (!h.ok) throw new Error(h.detail ?? "health check failed");
    return h.detail;
  });
  healthCache.set(name, { at: now, health });
  return { ...health, checkedAt: now };
}

/** Each configured gateway (and any the routing names that is not configured) with its role, health round trip and the routing. */
export async function gatewayStatus(s: Services) {
  const { env, db } = s;
  const now = s.clock.wall;
  const r = await s.gateways.routing();
  const configured = configuredGateways(env);
  const names = [...new Set<GatewayName>([r.primary, ...(r.backup ? [r.backup] : []), ...configured])];
  const faults = await getSetting<SandboxFaults>(db, SANDBOX_FAULTS_KEY, {});
  const gateways = await Promise.all(
    names.map(async (name) => {
      const isConfigured = configured.includes(name);
      const h = isConfigured ? await gatewayHealth(s, name, now) : { status: "down" as const, latencyMs: 0, error: "not configured", checkedAt: now };
      return {
        name,
        role: name === r.primary ? ("primary" as const) : name === r.backup ? ("backup" as const) : ("standby" as const),
        configured: isConfigured,
        mode: modeOf(env, name),
        status: h.status === "ok" ? ("up" as const) : ("down" as const),
        markedDown: name === r.primary && r.primaryDown,
        receivingCharges: name === activeGateway(r),
        latencyMs: h.latencyMs,
        ...("detail" in h && h.detail !== undefined ? { detail: String(h.detail) } : {}),
        ...(h.error ? { error: h.error } : {}),
        ...(name === "sandbox" && (faults.latencyMs || faults.failureRate) ? { faults: { latencyMs: faults.latencyMs ?? 0, failureRate: faults.failureRate ?? 0 } } : {}),
        checkedAt: iso(h.checkedAt),
      };
    }),
  );
  const active = gateways.find((g) => g.receivingCharges);
  const status: "ok" | "degraded" | "down" =
    !active || active.status === "down" ? "down" : r.primaryDown || gateways.some((g) => g.role !== "standby" && g.status === "down") ? "degraded" : "ok";
  return { status, routing: routingView(r), gateways, checkedAt: iso(now) };
}

export const TEST_CONFIG_KEY = "gateways.test";
export type GatewayTestConfig = { maxAmount: string; stripePaymentMethod: string | null; stripeCustomerId: string | null };
const DEFAULT_TEST_CONFIG: GatewayTestConfig = { maxAmount: "1.00", stripePaymentMethod: null, stripeCustomerId: null };

export const gatewayTestConfig = (db: Db) => getSetting<GatewayTestConfig>(db, TEST_CONFIG_KEY, DEFAULT_TEST_CONFIG);

export async function setGatewayTestConfig(s: Services, patch: Partial<GatewayTestConfig>): Promise<GatewayTestConfig> {
  const { db, audit: ctx } = s;
  const current = await gatewayTestConfig(db);
  const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<GatewayTestConfig>;
  return putSetting(db, TEST_CONFIG_KEY, { ...current, ...defined }, ctx, "gateway test configuration");
}

/** `major` (a non-negative decimal string) in minor units of `currency`, truncated to the currency's decimals. */
function capMinor(major: string, currency: string): number {
  const exponent = currencyExponent(currency) ?? 2;
  const [whole = "0", fraction = ""] = major.split(".");
  return Number(whole) * 10 ** exponent + Number((fraction + "0".repeat(exponent)).slice(0, exponent) || "0");
}

export type GatewayTestPlan = { gateway: GatewayName; amountMinor: number; currency: string; paymentMethod: string; gatewayCustomerId: string | null };

/**
 * Checks a test request against the rules before anything moves: the amount is positive and within the cap, and the
 * method is the gateway's own test method (the sandbox's and Stripe test mode's pm_card_visa, or the configured
 * one; a live Stripe key has no safe default, so it needs one configured), never one the caller sends.
 */
export async function planGatewayTest(s: Services, input: { gateway: string; amount: string | number; currency: string; paymentMethod?: unknown }): Promise<Outcome<GatewayTestPlan, "unprocessable">> {
  const { env, db } = s;
  if (input.paymentMethod !== undefined) {
    return invalid([{ path: "paymentMethod", message: "not accepted: the test charges the gateway's own test payment method (see GET /admin/gateways/test-config)" }]);
  }
  const configured = configuredGateway(env, input.gateway);
  if (!configured.ok) return configured;
  const gateway = configured.value;
  const minor = toMinor(input.amount, input.currency);
  if (!minor.ok) return invalid([{ path: "amount", message: minor.error }]);
  if (minor.value <= 0) return invalid([{ path: "amount", message: "must be positive" }]);
  const config = await gatewayTestConfig(db);
  const cap = capMinor(config.maxAmount, input.currency);
  if (minor.value > cap) {
    return invalid([{ path: "amount", message: `at most ${formatMinor(cap, input.currency)} ${input.currency} (the test-charge cap; an admin changes it with PUT /admin/gateways/test-config)` }]);
  }
  if (gateway === "sandbox") return ok({ gateway, amountMinor: minor.value, currency: input.currency, paymentMethod: "pm_card_visa", gatewayCustomerId: null });
  if (isLiveStripe(env) && !config.stripePaymentMethod) {
    return invalid([{ path: "gateway", message: "a live Stripe key needs a test payment method: PUT /admin/gateways/test-config with stripePaymentMethod (and stripeCustomerId)" }]);
  }
  return ok({ gateway, amountMinor: minor.value, currency: input.currency, paymentMethod: config.stripePaymentMethod ?? "pm_card_visa", gatewayCustomerId: config.stripeCustomerId });
}

type Step = { status: string; latencyMs: number; id: string | null; failureCode?: string; failureMessage?: string; error?: string };

/**
 * A real round trip: a charge with a fresh idempotency key, then a full refund of it, each timed, both under one
 * PaymentGuard admission (frozen or queue mode → 423, nothing reaches the gateway). Sandbox faults apply; a thrown
 * gateway error is reported as `error`, not raised, because reporting it is the point.
 */
export async function testGateway(s: Services, input: GatewayTestPlan) {
  const { db, audit: ctx } = s;
  const key = newId("gwtest");
  const started = Date.now();
  const admitted = await s.guard.withAdmission(`gateway test ${key}`, async (admission) => {
    const gateway = await s.gateways.byName(input.gateway, admission);
    let charge: Step;
    try {
      const r = await gateway.charge({ amountMinor: input.amountMinor, currency: input.currency, customerId: "gateway_test", gatewayCustomerId: input.gatewayCustomerId, paymentMethod: input.paymentMethod, invoiceId: "gateway_test", idempotencyKey: key, description: "Gateway connectivity test" });
      charge = { status: r.status, latencyMs: Date.now() - started, id: r.gatewayPaymentId, ...(r.status === "failed" ? { failureCode: r.failureCode, failureMessage: r.failureMessage } : {}) };
    } catch (e) {
      charge = { status: "error", latencyMs: Date.now() - started, id: null, error: e instanceof Error ? e.message : String(e) };
    }
    let refund: Step | null = null;
    if (charge.status === "succeeded" && charge.id) {
      const refundStarted = Date.now();
      try {
        const r = await gateway.refund({ gatewayPaymentId: charge.id, amountMinor: input.amountMinor, currency: input.currency, idempotencyKey: `${key}:refund`, reason: "requested_by_customer" });
        refund = { status: r.status, latencyMs: Date.now() - refundStarted, id: r.gatewayRefundId, ...(r.status === "failed" ? { failureMessage: r.failureMessage } : {}) };
      } catch (e) {
        refund = { status: "error", latencyMs: Date.now() - refundStarted, id: null, error: e instanceof Error ? e.message : String(e) };
      }
    }
    return { charge, refund };
  });
  if (!admitted.admitted) return lockedFailure(admitted);
  const { charge, refund } = admitted.value;
  const passed = charge.status === "succeeded" && (refund?.status === "succeeded" || refund?.status === "pending");
  const report = {
    gateway: input.gateway,
    ok: passed,
    amount: formatMinor(input.amountMinor, input.currency),
    amountMinor: input.amountMinor,
    currency: input.currency,
    paymentMethod: input.paymentMethod,
    idempotencyKey: key,
    latencyMs: Date.now() - started,
    charge,
    refund,
    testedAt: iso(ctx.now),
  };
  // Money moved on a gateway (and back): on the audit chain like any other change, with the actor from ctx.
  await commitWithAudit(db, [], [{ action: "gateway.tested", targetType: "gateway", targetId: input.gateway, after: { ok: passed, key, paymentMethod: input.paymentMethod, charge: { status: charge.status, id: charge.id }, refund: refund && { status: refund.status, id: refund.id }, amountMinor: input.amountMinor, currency: input.currency } }], ctx);
  return ok(report);
}

/** Marks `primary` down so new charges go to `backup`. */
export async function failover(s: Services, input: { primary: string; backup: string; reason?: string | undefined }) {
  const { env, db, audit: ctx } = s;
  const configuredPrimary = configuredGateway(env, input.primary, "primary");
  if (!configuredPrimary.ok) return configuredPrimary;
  const configuredBackup = configuredGateway(env, input.backup, "backup");
  if (!configuredBackup.ok) return configuredBackup;
  const [primary, backup] = [configuredPrimary.value, configuredBackup.value];
  if (primary === backup) return fail("unprocessable", "primary and backup must be different gateways", [{ path: "backup", message: "same as primary" }]);
  // The sandbox takes no money: routing a live account's charges to it would mark invoices paid for nothing.
  if (isLiveStripe(env) && backup === "sandbox") {
    return fail("unprocessable", "the sandbox cannot back up a live Stripe account (it would mark invoices paid without taking money)", [{ path: "backup", message: "sandbox with a live key" }]);
  }
  const next: GatewayRouting = { primary, backup, primaryDown: true, downReason: input.reason ?? "manual failover", downSince: ctx.now };
  await putSetting(db, ROUTING_KEY, next, ctx, `gateway failover: ${primary} → ${backup}${input.reason ? ` (${input.reason})` : ""}`);
  dropGatewayHealthCache();
  return ok(routingView(next));
}

/** Marks the primary up again: new charges go back to it. */
export async function restore(s: Services, input: { reason?: string | undefined }) {
  const { env, db, audit: ctx } = s;
  const current = await s.gateways.routing();
  const configured = configuredGateway(env, current.primary, "primary");
  if (!configured.ok) return configured;
  const next: GatewayRouting = { ...current, primaryDown: false, downReason: null, downSince: null };
  await putSetting(db, ROUTING_KEY, next, ctx, `gateway restore: ${current.primary}${input.reason ? ` (${input.reason})` : ""}`);
  dropGatewayHealthCache();
  return ok(routingView(next));
}

export async function setSandboxFaults(s: Services, faults: Required<SandboxFaults>) {
  const { db, audit: ctx } = s;
  await putSetting(db, SANDBOX_FAULTS_KEY, faults, ctx, "sandbox fault injection");
  return faults;
}
