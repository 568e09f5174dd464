// Shared helpers for the load-test scripts (`npm run load-test:*`): a fresh `wrangler dev` on the script's own
// port and state dir, an authenticated API client, autocannon runs, the results table, percentiles and checks.
import { cpus, loadavg } from "node:os";
import autocannon from "autocannon";
import { createBillingClient, idempotencyKey, unwrap } from "@billing-engine/client";
import { localToken, startServer } from "./local-server.mjs";

export { idempotencyKey, unwrap };

export const DURATION = Number(process.env.DURATION ?? 10);
export const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function machineLoad() {
  const [one, five, fifteen] = loadavg();
  return `load average ${one.toFixed(2)}, ${five.toFixed(2)}, ${fifteen.toFixed(2)} on ${cpus().length} CPUs`;
}

/**
 * Starts the worker with fresh state on `port` (state in .wrangler/load-<name>, so the scripts can run side by
 * side), and returns the base URL, `api` (the typed client of clients/typescript, as admin) and `stop`. The server
 * is stopped on Ctrl-C too.
 */
export async function startLoadServer(name, defaultPort) {
  const port = Number(process.env.PORT ?? defaultPort);
  console.log(`${name}: starting wrangler dev on :${port} with fresh state (${machineLoad()})`);
  const server = await startServer({ port, persist: `.wrangler/load-${name}`, fresh: true });
  const onSignal = () => {
    server.stop();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const admin = await localToken("admin");
  const api = createBillingClient({ baseUrl: server.base, token: admin });
  return { ...server, admin, api, port };
}

/** A typed client's answer as `{ status, headers, json }` whatever the status (json: the body or the problem). */
export async function answer(result) {
  const { data, error, response } = await result;
  return { status: response.status, headers: response.headers, json: data ?? error ?? null };
}

/**
 * Every item of a paginated list through the typed client: `path` is the documented path ("/api/v1/payments",
 * "/api/v1/webhook-endpoints/{id}/deliveries"), `params` its path and query parameters; `onPage` counts the pages.
 * Refuses a page that repeats an id already seen (a cursor that does not move on).
 */
export async function listAll(api, path, params = {}, { pageSize = 100, onPage } = {}) {
  const out = [];
  const seen = new Set();
  let startingAfter;
  for (;;) {
    const page = await unwrap(api.GET(path, { params: { ...params, query: { ...params.query, limit: pageSize, startingAfter } } }));
    onPage?.(page);
    for (const item of page.data) {
      if (seen.has(item.id)) throw new Error(`GET ${path}: ${item.id} returned on two pages`);
      seen.add(item.id);
      out.push(item);
    }
    if (!page.hasMore) return out;
    startingAfter = page.nextCursor;
  }
}

/**
 * An untyped client over plain fetch, for scripts that build paths by hand (scripts/e2e-webhooks.mjs); load tests
 * and benchmarks use the typed client (`startLoadServer().api`). `request` answers { status, headers, json }
 * whatever the status; `call` throws unless 2xx.
 */
export function client(base, defaultHeaders = {}) {
  const request = async (method, path, body, headers = {}) => {
    const r = await fetch(base + path, {
      method,
      headers: { ...defaultHeaders, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: r.status, headers: r.headers, json };
  };
  const call = async (method, path, body, headers) => {
    const r = await request(method, path, body, headers);
    if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  };
  /**
   * Every item of a paginated list (`limit`/`startingAfter`, answers { data, hasMore, nextCursor }); `onPage`
   * counts the pages. Refuses a page that repeats an id already seen (a cursor that does not move on).
   */
  const listAll = async (path, { pageSize = 100, onPage } = {}) => {
    const out = [];
    const seen = new Set();
    let cursor = null;
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const page = await call("GET", `${path}${sep}limit=${pageSize}${cursor ? `&startingAfter=${encodeURIComponent(cursor)}` : ""}`);
      onPage?.(page);
      for (const item of page.data) {
        if (seen.has(item.id)) throw new Error(`GET ${path}: ${item.id} returned on two pages`);
        seen.add(item.id);
        out.push(item);
      }
      if (!page.hasMore) return out;
      cursor = page.nextCursor;
    }
  };
  return { request, call, listAll };
}

/** Maps `items` through `fn` with at most `concurrency` calls in flight; results keep the input order. */
export async function mapPool(items, concurrency, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

/** One autocannon run against `base`; resolves with autocannon's result. */
export function runLoad(base, opts) {
  return new Promise((resolve, reject) => {
    autocannon({ url: base, connections: CONNECTIONS, duration: DURATION, ...opts }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Header lookup on autocannon's header object (names as the server sent them). */
export function header(headers, name) {
  if (!headers) return undefined;
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}

/** Nearest-rank percentile of numbers (unsorted input is fine); NaN for none. */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const statusSummary = (res) =>
  Object.entries(res.statusCodeStats ?? {})
    .map(([code, { count }]) => `${code}×${count}`)
    .join(" ");

/** The results table: one row per run (`{ name, res }` with autocannon's result). */
export function printTable(rows) {
  const num = (n, w = 9) => (Number.isFinite(n) ? n.toFixed(0) : "–").padStart(w);
  console.log(`\n${"run".padEnd(44)}    req/s   p50 ms   p99 ms  non-2xx   errors  statuses`);
  for (const { name, res } of rows) {
    const rps = res.requests.total / res.duration;
    console.log(`${name.padEnd(44)}${num(rps)}${num(res.latency.p50)}${num(res.latency.p99)}${num(res.non2xx)}${num(res.errors + res.timeouts)}  ${statusSummary(res)}`);
  }
  console.log(`(${CONNECTIONS} connections, ${DURATION} s; req/s counts every answered request; ${machineLoad()})\n`);
}

/** Correctness checks: each prints PASS/FAIL; `exitCode()` is 1 when any failed. */
export function checks() {
  let failed = 0;
  return {
    check(label, ok, detail = "") {
      if (!ok) failed++;
      console.log(`${ok ? "PASS" : "FAIL"}  ${label}${detail ? ` — ${detail}` : ""}`);
      return ok;
    },
    get failed() {
      return failed;
    },
    exitCode: () => (failed === 0 ? 0 : 1),
  };
}

/** Lists at most `max` examples of a problem for the log. */
export const examples = (xs, max = 5) => (xs.length ? ` e.g. ${xs.slice(0, max).map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(", ")}` : "");
