import { env } from "cloudflare:workers";
import { createExecutionContext, createMessageBatch, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { vi } from "vitest";
import entry from "../src/index";
import { api, createCustomer, createPlan } from "./helpers";
import { dropHttpMetrics } from "../src/http/metrics";

/** The worker's handlers with the runtime's full signature. */
export const worker: Required<Pick<ExportedHandler<Env>, "fetch" | "queue" | "scheduled">> = entry;

export type InvocationLine = { msg: "invocation"; invocation: string; d1Queries: number; subrequests: number; queueSends: number; limitExceeded?: string; error?: string };

/**
 * Collects the wrapper's per-invocation log lines (src/platform/limits.ts) from here on. The HTTP metrics pending
 * from earlier requests are dropped first, so a measured invocation counts its own work, not a flush of other
 * tests' request metrics (in production a flush rides along at most once per 10 s, bounded by MAX_FLUSH_STATEMENTS).
 */
export function invocationLog() {
  dropHttpMetrics();
  const spy = vi.spyOn(console, "log");
  return () =>
    spy.mock.calls.flatMap(([a]) => {
      try {
        const l = JSON.parse(String(a)) as { msg?: string };
        return l.msg === "invocation" ? [l as InvocationLine] : [];
      } catch {
        return [];
      }
    });
}

type Sent = { queue: string; body: any };
/** The env with every producer replaced by a recorder: nothing is delivered unless a test drains it. */
export function recordingEnv(base: Env = env) {
  const sent: Sent[] = [];
  const fake = (queue: string) =>
    ({
      send: async (body: unknown) => void sent.push({ queue, body }),
      sendBatch: async (msgs: Iterable<MessageSendRequest>) => {
        for (const m of msgs) sent.push({ queue, body: m.body });
      },
    }) as unknown as Queue;
  const e = { ...base, JOB_QUEUE: fake("jobs"), TASK_QUEUE: fake("tasks"), PAYMENT_QUEUE: fake("payments"), WEBHOOK_QUEUE: fake("webhooks") } as Env;
  const take = (queue: string) => {
    const out: any[] = [];
    for (let i = sent.length - 1; i >= 0; i--) if (sent[i]!.queue === queue) out.unshift(sent.splice(i, 1)[0]!.body);
    return out;
  };
  return { env: e, sent, take };
}

let seq = 0;
/** Runs messages through the worker's queue handler as one batch (one invocation). */
export async function deliver(e: Env, queue: string, bodies: unknown[]) {
  const batch = createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `m-${Date.now()}-${seq++}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, e, ctx);
  await waitOnExecutionContext(ctx);
}

/** Delivers task messages one per invocation (the tasks queue's max_batch_size is 1) until none is left. */
export async function drainTasks(rec: ReturnType<typeof recordingEnv>, max = 1000) {
  let n = 0;
  for (let batch = rec.take("tasks"); batch.length; batch = rec.take("tasks")) {
    for (const body of batch) {
      if (++n > max) throw new Error(`more than ${max} task messages`);
      await deliver(rec.env, "billing-tasks", [body]);
    }
  }
  return n;
}

export async function runScheduled(e: Env, cron: string, scheduledTime = Date.now()) {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ scheduledTime, cron }), e, ctx);
  await waitOnExecutionContext(ctx);
}

/** Calls the fetch handler with a given env (e.g. recording queues), as an admin. */
export async function fetchAs(e: Env, method: string, path: string, body?: unknown) {
  const { tokenFor } = await import("./helpers");
  const headers: Record<string, string> = { authorization: `Bearer ${await tokenFor("admin")}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }) as any, e, ctx);
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/**
 * `n` copies of one subscription (a flat $10 monthly plan, no meters), written in one statement: the scale tests need
 * thousands of rows, and creating each through the API would take minutes. Returns the ids (sorted).
 */
export async function cloneSubscriptions(n: number, opts: { testClockId?: string; periodStart: number; periodEnd: number }) {
  const customer = await createCustomer(opts.testClockId ? { testClockId: opts.testClockId } : {});
  const plan = await createPlan({ name: "Scale", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "10" }] });
  const tmpl = await api("POST", "/api/v1/subscriptions", { body: { customerId: customer.id, planId: plan.id } });
  if (tmpl.status !== 201) throw new Error(`template subscription: ${tmpl.status} ${JSON.stringify(tmpl.body)}`);
  const cols = (await env.DB.prepare("PRAGMA table_info(subscriptions)").all<{ name: string }>()).results.map((c) => c.name);
  const prefix = `sub_scale_${(seq++).toString(36)}${Date.now().toString(36)}`;
  const set: Record<string, string> = {
    id: `printf('%s_%06d', ?2, n.i)`,
    current_period_start: "?3",
    current_period_end: "?4",
    billing_anchor: "?4",
  };
  const select = cols.map((c) => set[c] ?? c).join(", ");
  await env.DB.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) INSERT INTO subscriptions (${cols.join(", ")}) SELECT ${select} FROM n, subscriptions WHERE subscriptions.id = ?5`,
  )
    .bind(n, prefix, opts.periodStart, opts.periodEnd, tmpl.body.id)
    .run();
  // The template itself takes no part.
  await env.DB.prepare("UPDATE subscriptions SET status = 'canceled', ended_at = ?2 WHERE id = ?1").bind(tmpl.body.id, opts.periodStart).run();
  return { ids: Array.from({ length: n }, (_, i) => `${prefix}_${String(i + 1).padStart(6, "0")}`), customer, plan };
}
