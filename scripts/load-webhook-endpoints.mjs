#!/usr/bin/env node
// `npm run load-test:webhook-endpoints`: outbound webhook fan-out. Three local receivers, each a webhook endpoint
// subscribed to `customer.*`, verify every signature with the `standardwebhooks` package and count per webhook-id.
// EVENTS customers are created through the API (CONNECTIONS at a time), each emitting one `customer.created`, so
// EVENTS × 3 deliveries. Checks: every (event, endpoint) delivered at least once and counted exactly once by webhook-id,
// every signature valid, and each endpoint's deliveries all `succeeded` on the engine's side. Reports creation and
// delivery throughput, delivery lag (event createdAt → first arrival) and duplicates (re-deliveries of a webhook-id).
// Env: EVENTS (1000), CONNECTIONS (16), ENDPOINTS (3), DELIVERY_TIMEOUT (s, 300), PORT (3419).
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import { CONNECTIONS, checks, examples, idempotencyKey, listAll, machineLoad, mapPool, percentile, sleep, startLoadServer, unwrap } from "./load-common.mjs";

const EVENTS = Number(process.env.EVENTS ?? 1000);
const ENDPOINTS = Number(process.env.ENDPOINTS ?? 3);
const DELIVERY_TIMEOUT = Number(process.env.DELIVERY_TIMEOUT ?? 300);

function startReceiver(n) {
  const r = { n, secret: null, requests: 0, rejected: [], seen: new Map(), lag: [], last: 0 };
  const server = createServer((req, res) => {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", () => {
      r.requests++;
      let event;
      try {
        event = new Webhook(r.secret).verify(Buffer.concat(parts).toString("utf8"), req.headers);
      } catch (e) {
        r.rejected.push(String(e?.message ?? e));
        res.writeHead(400).end();
        return;
      }
      const id = req.headers["webhook-id"];
      const count = (r.seen.get(id) ?? 0) + 1;
      r.seen.set(id, count);
      if (count === 1) {
        r.lag.push(Date.now() - Date.parse(event.createdAt));
        r.last = Date.now();
      }
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ ...r, state: r, url: `http://127.0.0.1:${server.address().port}/hooks`, close: () => server.close() })));
}

const receivers = await Promise.all(Array.from({ length: ENDPOINTS }, (_, i) => startReceiver(i + 1)));
const server = await startLoadServer("webhook-endpoints", 3419);
const { check, exitCode } = checks();
try {
  const { api } = server;
  const endpoints = [];
  for (const rc of receivers) {
    const ep = await unwrap(api.POST("/api/v1/webhook-endpoints", { body: { url: rc.url, enabledEvents: ["customer.*"], description: `load receiver ${rc.n}` } }));
    rc.state.secret = ep.secret;
    endpoints.push(ep);
  }
  console.log(`set-up: ${ENDPOINTS} endpoints (customer.*), ${EVENTS} customers created ${CONNECTIONS} at a time → ${EVENTS * ENDPOINTS} deliveries`);

  const started = Date.now();
  const createMs = [];
  await mapPool(
    Array.from({ length: EVENTS }, (_, i) => i),
    CONNECTIONS,
    async (i) => {
      const t = Date.now();
      for (let tries = 0; ; tries++) {
        try {
          await unwrap(api.POST("/api/v1/customers", { body: { id: `cus_load_wh_${i}`, email: `load${i}@hooks.test`, currency: "USD" }, headers: idempotencyKey(`load-wh-${i}`) }));
          break;
        } catch (e) {
          if (tries >= 5) throw e;
          await sleep(500);
        }
      }
      createMs.push(Date.now() - t);
    },
  );
  const created = Date.now();
  console.log(`created ${EVENTS} customers in ${((created - started) / 1000).toFixed(1)} s (${((EVENTS * 1000) / (created - started)).toFixed(1)}/s; p50 ${percentile(createMs, 50)} ms, p99 ${percentile(createMs, 99)} ms)`);

  const events = (await listAll(api, "/api/v1/events", { query: { type: "customer.created" } })).filter((e) => e.data.object.id.startsWith("cus_load_wh_"));
  check(`one customer.created event per customer`, events.length === EVENTS, `${events.length} listed`);
  const deadline = Date.now() + DELIVERY_TIMEOUT * 1000;
  const missingFor = (rc) => events.filter((e) => !rc.state.seen.has(e.id));
  while (receivers.some((rc) => missingFor(rc).length) && Date.now() < deadline) await sleep(250);
  const done = Math.max(...receivers.map((rc) => rc.state.last));
  // A moment for late duplicates to show before counting them.
  await sleep(2000);

  let delivered = 0;
  for (const [i, rc] of receivers.entries()) {
    const st = rc.state;
    const missing = missingFor(rc);
    const unexpected = [...st.seen.keys()].filter((id) => !events.some((e) => e.id === id));
    const dups = [...st.seen.values()].reduce((n, c) => n + c - 1, 0);
    delivered += events.length - missing.length;
    check(
      `receiver ${rc.n}: every event delivered at least once, counted once by webhook-id, every signature valid`,
      missing.length === 0 && unexpected.length === 0 && st.rejected.length === 0,
      `${events.length - missing.length}/${events.length} distinct webhook-ids from ${st.requests} requests; ${dups} duplicates; ${st.rejected.length} rejected; missing ${missing.length}${examples(missing.map((e) => e.id))}; lag p50 ${percentile(st.lag, 50)} ms, p99 ${percentile(st.lag, 99)} ms`,
    );
    const succeeded = await listAll(api, "/api/v1/webhook-endpoints/{id}/deliveries", { path: { id: endpoints[i].id }, query: { status: "succeeded" } });
    const mine = succeeded.filter((d) => d.eventType === "customer.created");
    check(`endpoint ${rc.n}: the engine recorded ${EVENTS} succeeded deliveries`, mine.length === EVENTS, `${mine.length} succeeded`);
  }
  const dupTotal = receivers.reduce((n, rc) => n + [...rc.state.seen.values()].reduce((m, c) => m + c - 1, 0), 0);
  console.log(
    `\ndeliveries: ${delivered}/${EVENTS * ENDPOINTS} in ${((done - started) / 1000).toFixed(1)} s from the first create → ${((delivered * 1000) / (done - started)).toFixed(1)} deliveries/s; ${dupTotal} duplicates; last delivery ${((done - created) / 1000).toFixed(1)} s after the last create (${machineLoad()})`,
  );
  process.exitCode = exitCode();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  server.stop();
  for (const rc of receivers) rc.close();
}
