import Stripe from "stripe";

/** Stripe signs `t=<unix seconds>`; older (or further in the future) than this and the delivery is refused. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

export type VerifiedEvent = { id: string; type: string };
export type VerifyResult = { ok: true; event: VerifiedEvent } | { ok: false; reason: string };

const cryptoProvider = Stripe.createSubtleCryptoProvider();
let client: { key: string; stripe: Stripe } | undefined;

/** Verification needs no API key, but the SDK wants one to construct: a placeholder when Stripe is not configured. */
function stripeClient(env: Env): Stripe {
  const key = env.STRIPE_SECRET_KEY || "sk_test_unused";
  if (client?.key !== key) client = { key, stripe: new Stripe(key, { httpClient: Stripe.createFetchHttpClient(), telemetry: false }) };
  return client.stripe;
}

function signedAt(header: string): number | null {
  const t = /(?:^|,)\s*t=(\d+)/.exec(header);
  return t ? Number(t[1]) : null;
}

/**
 * Checks `Stripe-Signature` against the raw body with STRIPE_WEBHOOK_SECRET. The SDK refuses a signature older
 * than the tolerance; one dated further ahead than the tolerance is refused here too (a clock that far off is
 * not Stripe's). `reason` is for our logs only: it never goes back to the caller.
 */
export async function verifyStripeSignature(env: Env, rawBody: string, header: string | undefined, now: number): Promise<VerifyResult> {
  if (!header) return { ok: false, reason: "missing Stripe-Signature header" };
  if (!env.STRIPE_WEBHOOK_SECRET) throw new Error("STRIPE_WEBHOOK_SECRET is not configured");
  let event: Stripe.Event;
  try {
    event = await stripeClient(env).webhooks.constructEventAsync(rawBody, header, env.STRIPE_WEBHOOK_SECRET, SIGNATURE_TOLERANCE_SECONDS, cryptoProvider, now);
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message.split("\n")[0]! : String(e) };
  }
  const t = signedAt(header);
  if (t !== null && t - Math.floor(now / 1000) > SIGNATURE_TOLERANCE_SECONDS) return { ok: false, reason: "timestamp is in the future beyond the tolerance" };
  if (typeof event?.id !== "string" || !event.id || typeof event.type !== "string" || !event.type) return { ok: false, reason: "signed payload is not a Stripe event" };
  return { ok: true, event: { id: event.id, type: event.type } };
}
