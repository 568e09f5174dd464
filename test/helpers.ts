// The shared test kit: one way to call the worker, create objects, deliver queue messages and run cron, so test
// files hold behaviour, not plumbing. Integration tests only (it imports the Workers runtime).
import { env, exports } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, createScheduledController, getQueueResult, waitOnExecutionContext } from "cloudflare:test";
import entry from "../src/index";
import { signToken, type Role } from "../src/http/auth";
import type { AuditContext } from "../src/platform/audit";
import { SYSTEM_ACTOR } from "../src/platform/actor";
import { servicesFor, type Services } from "../src/platform/services";

const worker = entry as Required<Pick<ExportedHandler<Env>, "fetch" | "queue" | "scheduled">>;

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

export type CallOptions = {
  /** Role of the bearer token (default admin); null sends no credentials. */
  as?: Role | null;
  /** A literal Authorization header instead (an API key, a bad token). */
  auth?: string;
  /** JSON-encoded unless a string, which is sent as is. */
  body?: unknown;
  rawBody?: string;
  /** Sends the body as `curl -d` does: application/x-www-form-urlencoded. */
  form?: string;
  /** Content type of the body (default application/json); null sends none. */
  contentType?: string | null;
  headers?: Record<string, string>;
  /** Bindings to override for this call (spy queues, a patched secret); the call then waits for its waitUntil work. */
  env?: Partial<Env>;
};

/** Calls the real worker (fetch handler) as `as` (default admin). */
export async function api<T = any>(method: string, path: string, opts: CallOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  const role = opts.as === undefined ? "admin" : opts.as;
  if (opts.auth) headers.authorization = opts.auth;
  else if (role) headers.authorization = `Bearer ${await tokenFor(role)}`;
  let body: string | undefined;
  let contentType: string | null = opts.contentType === undefined ? "application/json" : opts.contentType;
  if (opts.form !== undefined) {
    body = opts.form;
    contentType = "application/x-www-form-urlencoded";
  } else if (opts.rawBody !== undefined) body = opts.rawBody;
  else if (opts.body !== undefined) body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
  if (body !== undefined && contentType && !headers["content-type"]) headers["content-type"] = contentType;
  const req = new Request(`http://localhost${path}`, { method, headers, body });
  let res: Response;
  if (opts.env) {
    const ctx = createExecutionContext();
    res = await worker.fetch(req as Request<unknown, IncomingRequestCfProperties>, { ...env, ...opts.env } as Env, ctx);
    await waitOnExecutionContext(ctx);
  } else {
    res = await exports.default.fetch(req);
  }
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

/** POSTs and returns the created object, failing the test with the problem+json when it is not a 201. */
export async function created<T = any>(path: string, body: unknown, opts: CallOptions = {}): Promise<T> {
  const r = await api<T>("POST", path, { ...opts, body });
  if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export type SentMessage = { body: any; delaySeconds?: number };

/** A queue binding that records what the code sends instead of delivering it: tests decide what runs and when. */
export function spyQueue(into: SentMessage[] = []): Queue & { sent: SentMessage[] } {
  const record = (body: unknown, delaySeconds?: number) => void into.push({ body, ...(delaySeconds !== undefined ? { delaySeconds } : {}) });
  return {
    sent: into,
    send: async (body: unknown, o?: { delaySeconds?: number }) => record(body, o?.delaySeconds),
    sendBatch: async (msgs: Iterable<{ body: unknown; delaySeconds?: number }>) => {
      for (const m of msgs) record(m.body, m.delaySeconds);
    },
  } as unknown as Queue & { sent: SentMessage[] };
}

let messageSeq = 0;

/** Delivers message bodies to the worker's queue consumer as one batch; returns what it acked and retried. */
export async function deliver(queue: string, bodies: unknown[], opts: { env?: Partial<Env>; attempts?: number } = {}) {
  const batch = createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `msg-${messageSeq++}`, timestamp: new Date(), attempts: opts.attempts ?? 1, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, { ...env, ...opts.env } as Env, ctx);
  return getQueueResult(batch, ctx);
}

/** One payment attempt for an invoice, as the payments queue would deliver it. */
export const attemptPayment = (invoiceId: string, attempt = 1, opts: { env?: Partial<Env> } = {}) =>
  deliver("billing-payments", [{ type: "payment.attempt", invoiceId, attempt }], opts);

/**
 * Runs a cron trigger (e.g. "0 * * * *") to completion, at `scheduledTime` (default now): the trigger queues one
 * `cron.task` message per task, and each runs here from the tasks queue, one message per invocation, with the
 * continuations they queue, until none is left. Returns the messages a consumer retried (a failed task).
 */
export async function runCron(cron: string, opts: { env?: Partial<Env>; scheduledTime?: number } = {}) {
  const tasks = spyQueue();
  const e = { ...opts.env, TASK_QUEUE: tasks } as Partial<Env>;
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime: opts.scheduledTime ?? Date.now(), cron }), { ...env, ...e } as Env, ctx);
  await waitOnExecutionContext(ctx);
  const retried: unknown[] = [];
  for (let i = 0; i < 10_000; i++) {
    const next = tasks.sent.shift();
    if (!next) return { retried };
    const r = await deliver("billing-tasks", [next.body], { env: e });
    if (r.retryMessages.length) retried.push(next.body);
  }
  throw new Error(`cron ${cron}: tasks still queued after 10,000 messages`);
}

/** A test clock frozen at `time` (ISO); its subscriptions bill in its time. */
export async function clockAt(time: string, name = "test"): Promise<string> {
  const r = await api("POST", "/api/v1/test-clocks", { body: { frozenTime: time, name } });
  if (r.status !== 201) throw new Error(`test clock: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

/** Advances a test clock to `time`, running everything that fell due; returns the clock and the steps it ran. */
export async function advance(clockId: string, time: string): Promise<any> {
  const r = await api("POST", `/api/v1/test-clocks/${clockId}/advance`, { body: { frozenTime: time } });
  if (r.status !== 200) throw new Error(`advance: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A subscription's invoices, oldest first. */
export async function invoicesOf(subscriptionId: string): Promise<any[]> {
  const r = await api("GET", `/api/v1/invoices?subscriptionId=${subscriptionId}&limit=100`);
  if (r.status !== 200) throw new Error(`invoices: ${r.status} ${JSON.stringify(r.body)}`);
  return (r.body.data as any[]).reverse();
}

/** How many `customer.notification` events the notification has (each notification is written with one; a resend adds one). */
export async function notificationEventCount(notificationId: string): Promise<number> {
  const r = await env.DB.prepare("SELECT count(*) AS n FROM events WHERE type = 'customer.notification' AND object_id = ?").bind(notificationId).first<{ n: number }>();
  return r!.n;
}

/**
 * A Services for calling use cases directly, as the worker makes one per request: the real bindings (with `patch`
 * over them), acting as `ctx.actor` (default the system) at `ctx.now` (default the wall clock, as a request does).
 */
export function servicesOf(ctx: Partial<AuditContext> = {}, patch: Partial<Env> = {}): Services {
  const wall = Date.now();
  const audit: AuditContext = { actor: SYSTEM_ACTOR, now: wall, ...(ctx.now === undefined ? { wallClock: wall } : {}), ...ctx };
  return servicesFor({ ...env, ...patch } as Env, audit);
}

/** A Services as the queue consumer makes one per message: the system acting at the current time (no request clock). */
export const messageServicesOf = (patch: Partial<Env> = {}): Services => servicesFor({ ...env, ...patch } as Env, { actor: SYSTEM_ACTOR, now: Date.now() });
