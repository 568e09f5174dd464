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

async function flush(env: Env) {
  const batch = pending;
  pending = new Map();
  lastFlush = Date.now();
  const db = dbOf(env);
  const name = "billing_http_request_duration_seconds";
  const statements: BatchItem<"sqlite">[] = [];
  for (const { labels, s } of batch.values()) {
    BUCKETS.forEach((le, i) => {
      if (s.buckets[i]) statements.push(counterIncrement(db, `${name}_bucket`, { ...labels, le: String(le) }, s.buckets[i]));
    });
    statements.push(counterIncrement(db, `${name}_bucket`, { ...labels, le: "+Inf" }, s.inf));
    statements.push(counterIncrement(db, `${name}_sum_milli`, labels, s.sumMilli));
    statements.push(counterIncrement(db, `${name}_count`, labels, s.count));
  }
  for (let i = 0; i < statements.length; i += 50) {
    const chunk = statements.slice(i, i + 50);
    await db.batch(chunk as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
  }
}

export const httpMetrics = createMiddleware<HonoEnv>(async (c, next) => {
  const started = performance.now();
  await next();
  // Workers clocks only advance on I/O, which every measured route does.
  observe(c.req.method, routePath(c, -1), c.res.status, (performance.now() - started) / 1000);
  if (c.req.path !== "/api/v1/usage" && pending.size && Date.now() - lastFlush > FLUSH_EVERY_MS) {
    try {
      c.executionCtx.waitUntil(flush(c.env).catch((e) => console.log(JSON.stringify({ level: "warn", msg: "metrics flush failed", error: String(e) }))));
    } catch {
      /* no execution context (direct app.request in tests): skip the flush */
    }
  }
});
