import type { Db } from "../db/client";
import { getSetting } from "../platform/settings";
import { guarded, type Admitted } from "./guard";
import { SandboxGateway } from "./sandbox";
import type { GatewayName, PaymentGateway } from "./types";

export type GatewayRouting = { primary: GatewayName; backup: GatewayName | null; primaryDown: boolean; downReason: string | null; downSince: number | null };
export const ROUTING_KEY = "gateways.routing";
export const SANDBOX_FAULTS_KEY = "gateways.sandbox.faults";

export const defaultPrimary = (env: Env): GatewayName => (env.STRIPE_SECRET_KEY ? "stripe" : "sandbox");

export function configuredGateways(env: Env): GatewayName[] {
  return env.STRIPE_SECRET_KEY ? ["stripe", "sandbox"] : ["sandbox"];
}

/**
 * A gateway by name; stripe only when a key is configured. This is the only way the application gets a gateway,
 * and its charge and refund pass the PaymentGuard: under `held`, the admission the caller already holds for the
 * whole operation, or else admitted per call (refused with 423 while frozen or in queue mode).
 */
export async function gatewayByName(env: Env, db: Db, name: GatewayName, held?: Admitted): Promise<PaymentGateway> {
  return guarded(env, await rawGateway(env, db, name), held);
}

async function rawGateway(env: Env, db: Db, name: GatewayName): Promise<PaymentGateway> {
  if (name === "stripe") {
    if (!env.STRIPE_SECRET_KEY) throw new Error("the stripe gateway is not configured (STRIPE_SECRET_KEY is empty)");
    const { StripeGateway } = await import("./stripe");
    return new StripeGateway(env);
  }
  return new SandboxGateway(db, await getSetting(db, SANDBOX_FAULTS_KEY, {}));
}

export async function routing(env: Env, db: Db): Promise<GatewayRouting> {
  return getSetting<GatewayRouting>(db, ROUTING_KEY, { primary: defaultPrimary(env), backup: null, primaryDown: false, downReason: null, downSince: null });
}

/** Where new charges go: the primary, or the backup while the primary is marked down. */
export async function chargeGateway(env: Env, db: Db, held?: Admitted): Promise<PaymentGateway> {
  const r = await routing(env, db);
  return gatewayByName(env, db, r.primaryDown && r.backup ? r.backup : r.primary, held);
}
