export type ComponentHealth = { status: "ok" | "down"; latencyMs: number; detail?: unknown; error?: string };

const TIMEOUT_MS = 3000;

/** Runs one probe with a deadline; any throw or timeout is reported as down with the reason. */
export async function probe(run: () => Promise<unknown>): Promise<ComponentHealth> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const detail = await Promise.race([
      run(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      }),
    ]);
    return { status: "ok", latencyMs: Date.now() - started, ...(detail === undefined ? {} : { detail }) };
  } catch (e) {
    return { status: "down", latencyMs: Date.now() - started, error: e instanceof Error ? e.message : String(e) };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

export async function checkDatabase(env: Env) {
  return probe(async () => {
    const row = await env.DB.prepare("SELECT count(*) AS customers FROM customers").first<{ customers: number }>();
    if (!row) throw new Error("D1 returned no row");
    return { engine: "d1", customers: row.customers };
  });
}

/** The runbook's "redis" check: the Durable Object layer, through a real RPC round trip. */
export async function checkDurableObjects(env: Env) {
  return probe(async () => {
    const guard = env.PAYMENT_GUARD.get(env.PAYMENT_GUARD.idFromName("global"));
    const pong = await guard.ping();
    return { engine: "durable-objects", note: "Redis is replaced by Durable Objects; this is the PaymentGuard round trip", paymentMode: pong.mode };
  });
}

export async function checkPaymentGateways(env: Env) {
  return probe(async () => {
    const stripeConfigured = Boolean(env.STRIPE_SECRET_KEY);
    return {
      primary: stripeConfigured ? "stripe" : "sandbox",
      gateways: [
        { name: "sandbox", status: "ok", mode: "embedded" },
        ...(stripeConfigured ? [{ name: "stripe", status: "configured", mode: env.STRIPE_SECRET_KEY.startsWith("sk_live_") ? "live" : "test" }] : []),
      ],
    };
  });
}
