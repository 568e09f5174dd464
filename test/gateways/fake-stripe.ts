/**
 * A fake of the parts of Stripe's HTTP API the gateway uses, served from inside the test as a fetch function.
 * It answers only its own origin: any other host (api.stripe.com above all) is refused and recorded, so a test
 * can prove nothing left the machine. Form-encoded bodies, Idempotency-Key replay, Stripe-shaped objects and errors.
 */
export const FAKE_STRIPE_BASE = "http://stripe.fake:12111";
export const FAKE_STRIPE_KEY = "sk_test_fake_0123456789";

type Json = Record<string, unknown>;
export type Call = { method: string; path: string; query: URLSearchParams; form: URLSearchParams; idempotencyKey: string | null; replayed: boolean };

type Intent = { id: string; amount: number; currency: string; status: string; metadata: Record<string, string>; latest_charge: string | null; payment_method: string; last_payment_error: Json | null; created: number };
type Charge = { id: string; amount: number; amount_refunded: number; currency: string; payment_intent: string; refunded: boolean };
type Txn = { id: string; type: string; amount: number; currency: string; created: number; source: string | null };

// Outcome per Stripe test payment method (declines as Stripe reports them with confirm=true: HTTP 402).
const DECLINES: Record<string, { code: string; decline_code?: string; message: string }> = {
  pm_card_chargeDeclined: { code: "card_declined", decline_code: "generic_decline", message: "Your card was declined." },
  pm_card_chargeDeclinedInsufficientFunds: { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." },
  pm_card_chargeDeclinedExpiredCard: { code: "expired_card", decline_code: "expired_card", message: "Your card has expired." },
  pm_card_chargeDeclinedFraudulent: { code: "card_declined", decline_code: "fraudulent", message: "Your card was declined." },
};

export class FakeStripe {
  readonly calls: Call[] = [];
  readonly foreignHosts: string[] = [];
  readonly intents = new Map<string, Intent>();
  readonly charges = new Map<string, Charge>();
  readonly refunds = new Map<string, Json>();
  txns: Txn[] = [];
  /** PaymentIntents actually created (replays excluded). */
  creates = 0;
  /** When set, every request answers this HTTP status with an api_error. */
  outage: number | null = null;
  private readonly idempotent = new Map<string, { form: string; status: number; body: unknown }>();
  private seq = 0;

  constructor(private readonly key = FAKE_STRIPE_KEY) {}

  private nextId(prefix: string) {
    return `${prefix}_fake${(++this.seq).toString().padStart(6, "0")}`;
  }

  private now() {
    return Math.floor(Date.now() / 1000);
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.origin !== FAKE_STRIPE_BASE) {
      this.foreignHosts.push(url.host);
      throw new TypeError(`fake stripe: refused a network call to ${url.host}`);
    }
    const method = (init?.method ?? "GET").toUpperCase();
    const headers = new Headers(init?.headers);
    const rawBody = typeof init?.body === "string" ? init.body : "";
    const form = new URLSearchParams(rawBody);
    const idempotencyKey = headers.get("idempotency-key");
    const call: Call = { method, path: url.pathname, query: url.searchParams, form, idempotencyKey, replayed: false };
    this.calls.push(call);

    if (headers.get("authorization") !== `Bearer ${this.key}`) return this.error(401, { type: "invalid_request_error", message: "Invalid API Key provided" });
    if (this.outage) return this.error(this.outage, { type: "api_error", message: "An unknown error occurred" });

    if (method === "POST" && idempotencyKey) {
      const prior = this.idempotent.get(idempotencyKey);
      if (prior) {
        if (prior.form !== rawBody) {
          return this.error(400, { type: "idempotency_error", message: "Keys for idempotent requests can only be used with the same parameters they were first used with." });
        }
        call.replayed = true;
        return this.json(prior.status, prior.body, { "idempotent-replayed": "true" });
      }
      const [status, body] = this.route(method, url, form);
      if (status < 500) this.idempotent.set(idempotencyKey, { form: rawBody, status, body });
      return this.json(status, body);
    }
    const [status, body] = this.route(method, url, form);
    return this.json(status, body);
  };

  private json(status: number, body: unknown, extra: Record<string, string> = {}) {
    return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", "request-id": `req_${++this.seq}`, ...extra } });
  }

  private error(status: number, error: Json) {
    return this.json(status, { error });
  }

  private route(method: string, url: URL, form: URLSearchParams): [number, unknown] {
    const path = url.pathname;
    if (method === "POST" && path === "/v1/payment_intents") return this.createIntent(form);
    const intent = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
    if (method === "GET" && intent) return this.retrieveIntent(intent[1]!, url.searchParams);
    if (method === "POST" && path === "/v1/refunds") return this.createRefund(form);
    if (method === "GET" && path === "/v1/balance_transactions") return this.listTxns(url.searchParams);
    if (method === "GET" && path === "/v1/balance") return [200, { object: "balance", livemode: false, available: [{ amount: 0, currency: "usd" }], pending: [] }];
    return [404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path})` } }];
  }

  private intentJson(pi: Intent, expandCharge = false) {
    const latest = pi.latest_charge && expandCharge ? { object: "charge", ...this.charges.get(pi.latest_charge) } : pi.latest_charge;
    return { object: "payment_intent", ...pi, amount_received: pi.status === "succeeded" ? pi.amount : 0, latest_charge: latest };
  }

  private createIntent(form: URLSearchParams): [number, unknown] {
    const amount = Number(form.get("amount"));
    const currency = form.get("currency") ?? "";
    const pm = form.get("payment_method") ?? "";
    if (!Number.isInteger(amount) || amount < 1) return [400, { error: { type: "invalid_request_error", code: "parameter_invalid_integer", param: "amount", message: "Invalid integer" } }];
    const known = pm === "pm_card_visa" || pm === "pm_card_processing" || pm in DECLINES;
    if (!known) return [400, { error: { type: "invalid_request_error", code: "resource_missing", param: "payment_method", message: `No such PaymentMethod: '${pm}'` } }];
    const metadata: Record<string, string> = {};
    for (const [k, v] of form) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m) metadata[m[1]!] = v;
    }
    this.creates++;
    const pi: Intent = { id: this.nextId("pi"), amount, currency, status: "requires_payment_method", metadata, latest_charge: null, payment_method: pm, last_payment_error: null, created: this.now() };
    this.intents.set(pi.id, pi);
    const decline = DECLINES[pm];
    if (decline) {
      const chargeId = this.nextId("ch");
      pi.last_payment_error = { type: "card_error", ...decline, charge: chargeId };
      return [402, { error: { type: "card_error", ...decline, charge: chargeId, payment_intent: this.intentJson(pi) } }];
    }
    if (pm === "pm_card_processing") {
      pi.status = "processing";
      return [200, this.intentJson(pi)];
    }
    const charge: Charge = { id: this.nextId("ch"), amount, amount_refunded: 0, currency, payment_intent: pi.id, refunded: false };
    this.charges.set(charge.id, charge);
    pi.status = "succeeded";
    pi.latest_charge = charge.id;
    this.txns.push({ id: this.nextId("txn"), type: "charge", amount, currency, created: this.now(), source: charge.id });
    return [200, this.intentJson(pi)];
  }

  private retrieveIntent(id: string, query: URLSearchParams): [number, unknown] {
    const pi = this.intents.get(id);
    if (!pi) return [404, { error: { type: "invalid_request_error", code: "resource_missing", param: "intent", message: `No such payment_intent: '${id}'` } }];
    return [200, this.intentJson(pi, query.getAll("expand[0]").includes("latest_charge") || query.getAll("expand[]").includes("latest_charge"))];
  }

  private createRefund(form: URLSearchParams): [number, unknown] {
    const pi = this.intents.get(form.get("payment_intent") ?? "");
    const charge = pi?.latest_charge ? this.charges.get(pi.latest_charge) : undefined;
    if (!pi || !charge) return [400, { error: { type: "invalid_request_error", code: "resource_missing", param: "payment_intent", message: "No such payment_intent" } }];
    const amount = form.has("amount") ? Number(form.get("amount")) : charge.amount - charge.amount_refunded;
    if (charge.refunded) return [400, { error: { type: "invalid_request_error", code: "charge_already_refunded", message: `Charge ${charge.id} has already been refunded.` } }];
    if (amount > charge.amount - charge.amount_refunded) {
      return [400, { error: { type: "invalid_request_error", code: "amount_too_large", param: "amount", message: "Refund amount is greater than unrefunded amount on charge" } }];
    }
    charge.amount_refunded += amount;
    charge.refunded = charge.amount_refunded === charge.amount;
    const refund = { id: this.nextId("re"), object: "refund", amount, currency: charge.currency, charge: charge.id, payment_intent: pi.id, status: "succeeded", reason: form.get("reason"), created: this.now() };
    this.refunds.set(refund.id, refund);
    this.txns.push({ id: this.nextId("txn"), type: "refund", amount: -amount, currency: charge.currency, created: this.now(), source: refund.id });
    return [200, refund];
  }

  private sourceJson(id: string | null): unknown {
    if (!id) return null;
    const charge = this.charges.get(id);
    if (charge) return { object: "charge", ...charge };
    const refund = this.refunds.get(id);
    return refund ?? id;
  }

  /** Newest first, like Stripe; `created[gte]`/`created[lt]` filter, `starting_after` pages. */
  private listTxns(q: URLSearchParams): [number, unknown] {
    const gte = q.has("created[gte]") ? Number(q.get("created[gte]")) : -Infinity;
    const lt = q.has("created[lt]") ? Number(q.get("created[lt]")) : Infinity;
    const limit = Math.min(Number(q.get("limit") ?? 10), 100);
    const expand = [...q.entries()].some(([k, v]) => k.startsWith("expand") && v === "data.source");
    const all = this.txns.filter((t) => t.created >= gte && t.created < lt).sort((a, b) => b.created - a.created || b.id.localeCompare(a.id));
    const after = q.get("starting_after");
    const start = after ? all.findIndex((t) => t.id === after) + 1 : 0;
    const page = all.slice(start, start + limit);
    return [
      200,
      {
        object: "list",
        url: "/v1/balance_transactions",
        has_more: start + limit < all.length,
        data: page.map((t) => ({ object: "balance_transaction", ...t, source: expand ? this.sourceJson(t.source) : t.source })),
      },
    ];
  }

  /** Calls to one endpoint. */
  callsTo(method: string, path: string) {
    return this.calls.filter((c) => c.method === method && c.path === path);
  }
}
