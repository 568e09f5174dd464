#!/usr/bin/env node
// `npm run load-test:subscriptions`: subscription creation throughput with Idempotency-Keys. A share of the
// requests repeats a recent key with the same body (some still in flight, some done): a done one must be replayed
// (`Idempotent-Replayed: true`, same subscription), an in-flight one may answer 409; none may create a second
// subscription. Checked afterwards by listing each customer's subscriptions (all pages) against the keys sent.
// Env: DURATION (s, 10), CONNECTIONS (16), CUSTOMERS (4), REPEAT_SHARE (0.25), PORT (3413).
import { randomUUID } from "node:crypto";
import { CONNECTIONS, DURATION, answer, checks, examples, header, idempotencyKey, listAll, machineLoad, percentile, printTable, runLoad, sleep, startLoadServer, unwrap } from "./load-common.mjs";

const CUSTOMERS = Number(process.env.CUSTOMERS ?? 4);
const REPEAT_SHARE = Number(process.env.REPEAT_SHARE ?? 0.25);
const PAGE_SIZE = 20;

const server = await startLoadServer("subscriptions", 3413);
const { check, exitCode } = checks();
try {
  const { api } = server;
  const customers = [];
  for (let i = 0; i < CUSTOMERS; i++) customers.push((await unwrap(api.POST("/api/v1/customers", { body: { email: `load-sub-${i}@example.com`, currency: "USD" } }))).id);
  const plan = await unwrap(api.POST("/api/v1/plans", { body: { name: "Load subscriptions", currency: "USD", interval: "month", prices: [{ type: "flat", amount: "9.99" }] } }));
  console.log(`set-up: ${CUSTOMERS} customers, plan ${plan.id} (flat 9.99 USD/month, pm_card_visa); ${Math.round(REPEAT_SHARE * 100)}% of requests repeat one of the last ${2 * CONNECTIONS} keys`);

  // Per Idempotency-Key: the exact body sent, and every answer it got.
  const run = randomUUID().slice(0, 8);
  const keys = new Map();
  const order = [];
  let seq = 0;
  const stats = { fresh: 0, repeats: 0, created: 0, replayed: 0, inFlight409: 0, unexpected: [] };
  const latency = { fresh: [], replayed: [] };
  const pick = () => {
    const i = seq++;
    const repeat = order.length > 0 && Math.floor((i + 1) * REPEAT_SHARE) > Math.floor(i * REPEAT_SHARE);
    if (repeat) {
      const recent = order.slice(-2 * CONNECTIONS);
      return { key: recent[Math.floor(Math.random() * recent.length)], repeat: true };
    }
    const key = `load-sub-${run}-${i}`;
    const body = JSON.stringify({ customerId: customers[i % customers.length], planId: plan.id, paymentMethod: "pm_card_visa", metadata: { loadKey: key } });
    keys.set(key, { body, created: [], replayed: [], statuses: {} });
    order.push(key);
    return { key, repeat: false };
  };
  const headers = { authorization: `Bearer ${server.admin}`, "content-type": "application/json" };

  const res = await runLoad(server.base, {
    requests: [
      {
        method: "POST",
        path: "/api/v1/subscriptions",
        headers,
        setupRequest: (req, context) => {
          const { key, repeat } = pick();
          Object.assign(context, { key, repeat, t0: Date.now() });
          if (repeat) stats.repeats++;
          else stats.fresh++;
          return { ...req, headers: { ...headers, "idempotency-key": key }, body: keys.get(key).body };
        },
        onResponse: (status, body, context, resHeaders) => {
          const k = keys.get(context.key);
          const ms = Date.now() - context.t0;
          k.statuses[status] = (k.statuses[status] ?? 0) + 1;
          if (status === 201) {
            const id = JSON.parse(body).id;
            if (header(resHeaders, "idempotent-replayed") === "true") {
              k.replayed.push(id);
              stats.replayed++;
              latency.replayed.push(ms);
            } else {
              k.created.push(id);
              stats.created++;
              latency.fresh.push(ms);
            }
          } else if (status === 409) stats.inFlight409++;
          else stats.unexpected.push(`${context.key}:${status}`);
        },
      },
    ],
  });
  printTable([{ name: `POST /api/v1/subscriptions (${Math.round(REPEAT_SHARE * 100)}% repeats)`, res }]);
  console.log(`answered: ${stats.created} created (201), ${stats.replayed} replayed (201, Idempotent-Replayed: true), ${stats.inFlight409} 409 (same key still in flight), ${stats.unexpected.length} other`);
  console.log(`sent: ${stats.fresh} new keys, ${stats.repeats} repeats`);
  console.log(`latency: created p50 ${percentile(latency.fresh, 50)} ms / p99 ${percentile(latency.fresh, 99)} ms; replayed p50 ${percentile(latency.replayed, 50)} ms / p99 ${percentile(latency.replayed, 99)} ms`);
  console.log(`creation throughput: ${(stats.created / res.duration).toFixed(1)} subscriptions/s, ${((stats.created + stats.replayed) / res.duration).toFixed(1)} 201s/s (${machineLoad()})\n`);

  // Keys without any 201 (cut off at the end, or only 409s) are sent again until they answer 201.
  let resent = 0;
  for (const [key, k] of keys) {
    if (k.created.length || k.replayed.length) continue;
    resent++;
    for (let tries = 0; tries < 60; tries++) {
      // k.body is the exact JSON sent during the run; parsed back, the client serializes it to the same bytes.
      const r = await answer(api.POST("/api/v1/subscriptions", { body: JSON.parse(k.body), headers: idempotencyKey(key) }));
      if (r.status === 201) {
        (r.headers.get("idempotent-replayed") === "true" ? k.replayed : k.created).push(r.json.id);
        break;
      }
      if (r.status === 409 || r.status >= 500) await sleep(1000);
      else throw new Error(`re-sending ${key}: ${r.status} ${JSON.stringify(r.json)}`);
    }
  }
  console.log(`keys without a 201 during the run, re-sent: ${resent}`);

  const all = [...keys.entries()];
  const twice = all.filter(([, k]) => k.created.length > 1);
  check("no key created twice (at most one non-replayed 201 per key)", twice.length === 0, `${twice.length} keys${examples(twice.map(([key]) => key))}`);
  const disagree = all.filter(([, k]) => new Set([...k.created, ...k.replayed]).size > 1);
  check("every replay carries the key's one subscription", disagree.length === 0, `${disagree.length} keys with different ids${examples(disagree.map(([key]) => key))}`);
  check("every answer was 201 (created or replayed) or 409 (same key in flight)", stats.unexpected.length === 0, `${stats.unexpected.length} other answers${examples(stats.unexpected)}`);
  const answered = all.filter(([, k]) => k.created.length || k.replayed.length);
  check("every key ends in a subscription", answered.length === all.length, `${answered.length}/${all.length}`);

  // The server's view: every subscription of the load customers, all pages (small pages, so paging is exercised).
  const listed = [];
  let pages = 0;
  for (const c of customers) listed.push(...(await listAll(api, "/api/v1/subscriptions", { query: { customerId: c } }, { pageSize: PAGE_SIZE, onPage: () => pages++ })));
  const listedIds = new Set(listed.map((s) => s.id));
  const expectedIds = new Set(all.map(([, k]) => k.created[0] ?? k.replayed[0]).filter(Boolean));
  const missing = [...expectedIds].filter((id) => !listedIds.has(id));
  const extra = [...listedIds].filter((id) => !expectedIds.has(id));
  const perKey = new Map();
  for (const s of listed) perKey.set(s.metadata.loadKey, (perKey.get(s.metadata.loadKey) ?? 0) + 1);
  const dupKeys = [...perKey].filter(([, n]) => n > 1);
  check(
    "subscriptions listed = unique keys sent",
    listed.length === keys.size && listedIds.size === keys.size && missing.length === 0 && extra.length === 0 && dupKeys.length === 0,
    `${listed.length} listed over ${CUSTOMERS} customers (${pages} pages of ≤${PAGE_SIZE}), ${keys.size} unique keys; missing ${missing.length}, extra ${extra.length}, keys with >1 subscription ${dupKeys.length}${examples(dupKeys.map(([k]) => k))}`,
  );

  // And no duplicated side effect: one first invoice per subscription.
  const invoicesPerSub = new Map();
  for (const inv of await listAll(api, "/api/v1/invoices")) if (listedIds.has(inv.subscriptionId)) invoicesPerSub.set(inv.subscriptionId, (invoicesPerSub.get(inv.subscriptionId) ?? 0) + 1);
  const badInvoices = [...listedIds].filter((id) => invoicesPerSub.get(id) !== 1);
  check("one invoice per subscription", badInvoices.length === 0, `${badInvoices.length} subscriptions without exactly one${examples(badInvoices)}`);
  process.exitCode = exitCode();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  server.stop();
}
