import { env, exports } from "cloudflare:workers";
import { signToken, type Role } from "../src/http/auth";

export type ApiResponse<T = any> = { status: number; body: T; headers: Headers };

const tokens = new Map<Role, string>();
export async function tokenFor(role: Role): Promise<string> {
  let t = tokens.get(role);
  if (!t) {
    t = await signToken(env, `test-${role}`, role);
    tokens.set(role, t);
  }
  return t;
}

type Options = { as?: Role | null; auth?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> };

/** Calls the real worker (fetch handler) as `as` (default admin). */
export async function api<T = any>(method: string, path: string, opts: Options = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  const role = opts.as === undefined ? "admin" : opts.as;
  if (opts.auth) headers.authorization = opts.auth;
  else if (role) headers.authorization = `Bearer ${await tokenFor(role)}`;
  let body: string | undefined;
  if (opts.rawBody !== undefined) body = opts.rawBody;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
  const res = await exports.default.fetch(new Request(`http://localhost${path}`, { method, headers, body }));
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

let seq = 0;
export const unique = (prefix: string) => `${prefix}_${Date.now().toString(36)}${(seq++).toString(36)}`;

export async function createCustomer(overrides: Record<string, unknown> = {}) {
  const r = await api("POST", "/api/v1/customers", { body: { email: `${unique("c")}@example.com`, currency: "USD", ...overrides } });
  if (r.status !== 201) throw new Error(`customer: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function createPlan(overrides: Record<string, unknown> = {}) {
  const r = await api("POST", "/api/v1/plans", {
    body: {
      name: "Pro",
      currency: "USD",
      interval: "month",
      prices: [
        { type: "flat", amount: "29.99" },
        { type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001" },
      ],
      ...overrides,
    },
  });
  if (r.status !== 201) throw new Error(`plan: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function createSubscription(overrides: Record<string, unknown> = {}) {
  const customer = overrides.customerId ? null : await createCustomer();
  const plan = overrides.planId ? null : await createPlan();
  const r = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer?.id, planId: plan?.id, ...overrides } });
  if (r.status !== 201) throw new Error(`subscription: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function createApiKey(scopes = ["usage:write"]) {
  const r = await api("POST", "/admin/api-keys", { body: { name: "test", scopes } });
  if (r.status !== 201) throw new Error(`api key: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as { id: string; key: string };
}
