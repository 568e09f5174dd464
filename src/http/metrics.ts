import { createMiddleware } from "hono/factory";
import { routePath } from "hono/route";
import type { BatchItem } from "drizzle-orm/batch";
import type { HonoEnv } from "../env";
import { dbOf } from "../db/client";
import { counterIncrement } from "../platform/metrics";

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const FLUSH_EVERY_MS = 10_000;

// Per-isolate accumulation of billing_http_request_duration_seconds, flushed to D1 in the background at most
// every 10 s; the usage hot path only adds to memory and never triggers the flush itself.
type Series = { buckets: number[]; inf: number; sumMilli: number; count: number };
let pending = new Map<string, { labels: Record<string, string>; s: Series }>();
let lastFlush = Date.now();

function observe(method: string, route: string, status: number, seconds: number) {
  const key = `${method} ${status} ${route}`;
  let entry = pending.get(key);
  if (!entry) {
    entry = { labels: { method, route, status: String(status) }, s: { buckets: BUCKETS.map(() => 0), inf: 0, sumMilli: 0, count: 0 } };
    pending.set(key, entry);
  }
  BUCKETS.forEach((le, i) => {
    if (seconds <= le) entry.s.buckets[i]! += 1;
  });
  entry.s.inf += 1;
  entry.s.sumMilli += Math.round(seconds * 1000);
  entry.s.count += 1;
}

/**
 * D1 statements one flush may spend. A flush runs inside some request's invocation (its waitUntil) and each batched
 * statement counts against that invocation's 1,000 D1 queries; an isolate that served a few hundred distinct
 * route/status pairs holds thousands of pending rows, so the rest waits for the next flush (a second later).
 */
export const MAX_FLUSH_STATEMENTS = 100;
const BACKLOG_FLUSH_MS = 1_000;

function statementsOf(db: ReturnType<typeof dbOf>, labels: Record<string, string>, s: Series): BatchItem<"sqlite">[] {
  const name = "billing_http_request_duration_seconds";
  const out: BatchItem<"sqlite">[] = [];
  BUCKETS.forEach((le, i) => {
    if (s.buckets[i]) out.push(counterIncrement(db, `${name}_bucket`, { ...labels, le: String(le) }, s.buckets[i]));
  });
  out.push(counterIncrement(db, `${name}_bucket`, { ...labels, le: "+Inf" }, s.inf));
  out.push(counterIncrement(db, `${name}_sum_milli`, labels, s.sumMilli));
  out.push(counterIncrement(db, `${name}_count`, labels, s.count));
  return out;
}

/** Puts series that were not flushed back, adding to what arrived meanwhile. */
function putBack(key: string, entry: { labels: Record<string, string>; s: Series }) {
  const now = pending.get(key);
  if (!now) return void pending.set(key, entry);
  now.s.buckets = now.s.buckets.map((n, i) => n + entry.s.buckets[i]!);
  now.s.inf += entry.s.inf;
  now.s.sumMilli += entry.s.sumMilli;
  now.s.count += entry.s.count;
}

/** Writes pending series to D1, at most MAX_FLUSH_STATEMENTS statements; what is left goes out with the next flush. */
export async function flushHttpMetrics(env: Env): Promise<{ statements: number; seriesLeft: number }> {
  const taken = pending;
  pending = new Map();
  const db = dbOf(env);
  const statements: BatchItem<"sqlite">[] = [];
  let left = 0;
  for (const [key, entry] of taken) {
    const own = statementsOf(db, entry.labels, entry.s);
    if (statements.length + own.length > MAX_FLUSH_STATEMENTS) {
      putBack(key, entry);
      left++;
    } else statements.push(...own);
  }
  // A backlog flushes again soon rather than in 10 s.
  lastFlush = left ? Date.now() - FLUSH_EVERY_MS + BACKLOG_FLUSH_MS : Date.now();
  for (let i = 0; i < statements.length; i += 50) {
    const chunk = statements.slice(i, i + 50);
    await db.batch(chunk as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
  }
  return { statements: statements.length, seriesLeft: left };
}

/** Test hook: records one request as the middleware does. */
export const recordHttpRequest = observe;

/**
 * Test hook: forgets what is pending and counts the last flush as now, as a fresh isolate starts. The test runtime
 * is shared by many files, and requests made without an execution context never flush: without this, the first
 * measured request of a file would carry a backlog of up to MAX_FLUSH_STATEMENTS statements into its invocation.
 */
export function dropHttpMetrics(): void {
  pending = new Map();
  lastFlush = Date.now();
}

export const httpMetrics = createMiddleware<HonoEnv>(async (c, next) => {
  const started = performance.now();
  await next();
  // Workers clocks only advance on I/O, which every measured route does.
  observe(c.req.method, routePath(c, -1), c.res.status, (performance.now() - started) / 1000);
  if (c.req.path !== "/api/v1/usage" && pending.size && Date.now() - lastFlush > FLUSH_EVERY_MS) {
    try {
      c.executionCtx.waitUntil(flushHttpMetrics(c.env).catch((e) => console.log(JSON.stringify({ level: "warn", msg: "metrics flush failed", error: String(e) }))));
    } catch {
      /* no execution context (direct app.request in tests): skip the flush */
    }
  }
});
