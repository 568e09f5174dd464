#!/usr/bin/env node
// `npm run test:e2e:webhooks`: webhook endpoints end to end against a fresh `wrangler dev` (port 3417, state in
// .wrangler/e2e-webhooks-state) and a local Node receiver that verifies every signature with the `standardwebhooks`
// package and dedupes on webhook-id.
//  1. A subscription's whole life through the public API: customer, plan, subscription on a declining card (its first
//     invoice is finalized at once and its charge fails), usage, a retry of the failed payment with pm_card_visa (paid),
//     a partial refund, a cancellation now; and a subscription on a test clock frozen in 2024 (events in clock time).
//     Every event GET /api/v1/events lists must reach the receiver, verified, and be counted once by webhook-id.
//  2. The receiver answers 500 to the next deliveries, then recovers: each failed delivery must be recorded (attempt
//     with 500, still pending, next attempt scheduled by the backoff), and every event must still arrive.
//  3. The worker is killed (its process group) while deliveries are in flight, started again on the same state, and
//     every event committed before the kill must still arrive.
// How phases 2 and 3 shortcut time: the real backoff is 5 minutes, and the hourly sweep only takes up deliveries
// 15 minutes overdue (events without deliveries after 5 minutes). So the script checks that the engine kept each
// undelivered event (a pending delivery with its 500 attempt and a retry scheduled ≥ 1 minute out; after the kill,
// every event still listed), runs the hourly cron once, and then sends each event the receiver has not had with
// POST /api/v1/events/{id}/resend, as an operator would. With REAL_BACKOFF=1, phase 2 resends nothing and waits (up
// to 7 minutes) for the queue's own delayed retry instead (it came after ≈ 301 s under `wrangler dev` here).
// Env: PORT (3417), PERSIST_TO (.wrangler/e2e-webhooks-state), RECEIVER_FAILURES (4), REAL_BACKOFF (unset), PHASE3
// (1; 0 skips it).
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";
import { client, checks, examples, sleep } from "./load-common.mjs";
import { localToken, startServer } from "./local-server.mjs";

const PORT = Number(process.env.PORT ?? 3417);
const PERSIST = process.env.PERSIST_TO ?? ".wrangler/e2e-webhooks-state";
const RECEIVER_FAILURES = Number(process.env.RECEIVER_FAILURES ?? 4);
const PHASE3 = process.env.PHASE3 !== "0";
const REAL_BACKOFF = process.env.REAL_BACKOFF === "1";
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

/** Polls `fn` until it returns a truthy value; throws with `what` (and the last value's description) at the deadline. */
async function until(what, fn, { timeoutMs = 60_000, every = 250, describe = () => "" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${describe() ? `: ${describe()}` : ""}`);
    await sleep(every);
  }
}

/**
 * A Standard Webhooks receiver: verifies with the `standardwebhooks` package, dedupes on webhook-id. `failNext`
 * answers 500 to that many requests (before verifying); `hold` delays answers (to keep deliveries in flight).
 */
function startReceiver() {
  const state = {
    secret: null,
    failNext: 0,
    holdMs: 0,
    requests: 0,
    answered500: [], // webhook-ids answered 500
    rejected: [], // { id, reason }: signature or payload refused
    events: new Map(), // webhook-id → { type, deliveries, verified }
    inFlight: 0,
    cutOff: 0, // held answers whose connection the worker closed meanwhile: not counted as received
  };
  const server = createServer((req, res) => {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", async () => {
      state.requests++;
      const id = req.headers["webhook-id"];
      if (state.failNext > 0) {
        state.failNext--;
        state.answered500.push(id);
        res.writeHead(500).end("receiver down for the test");
        return;
      }
      const body = Buffer.concat(parts).toString("utf8");
      let event;
      try {
        event = new Webhook(state.secret).verify(body, req.headers);
      } catch (e) {
        state.rejected.push({ id, reason: String(e?.message ?? e) });
        res.writeHead(400).end();
        return;
      }
      if (event.id !== id) {
        state.rejected.push({ id, reason: `body id ${event.id}` });
        res.writeHead(400).end();
        return;
      }
      if (state.holdMs) {
        state.inFlight++;
        await sleep(state.holdMs);
        state.inFlight--;
        if (req.socket.destroyed) {
          state.cutOff++;
          return;
        }
      }
      const seen = state.events.get(id);
      if (seen) seen.deliveries++;
      else state.events.set(id, { type: event.type, deliveries: 1, verified: true });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ state, url: `http://127.0.0.1:${server.address().port}/webhooks`, close: () => server.close() })),
  );
}

const { check, exitCode } = checks();
let server = null;
const receiver = await startReceiver();
const onSignal = () => {
  server?.stop();
  process.exit(130);
};
process.once("SIGINT", onSignal);
process.once("SIGTERM", onSignal);

/** Every event the engine lists (all pages), oldest first. */
const allEvents = async (api) => (await api.listAll("/api/v1/events")).reverse();

/** Waits until each listed event (but those in `except`) has reached the receiver; returns them all. */
async function allArrive(api, label, { timeoutMs = 60_000, except = new Set() } = {}) {
  let missing = [];
  let listed = [];
  await until(
    `${label}: every listed event at the receiver`,
    async () => {
      // All of them: the endpoint is the first thing created on this fresh state (test-clock events carry clock time).
      listed = await allEvents(api);
      missing = listed.filter((e) => !receiver.state.events.has(e.id) && !except.has(e.id));
      return missing.length === 0;
    },
    { timeoutMs, describe: () => `${missing.length} of ${listed.length} missing${examples(missing.map((e) => `${e.type} ${e.id}`))}` },
  );
  return listed;
}

/** Resends, through the API, each listed event the receiver has not had yet; returns how many. */
async function resendMissing(api, endpoint) {
  const missing = (await allEvents(api)).filter((e) => !receiver.state.events.has(e.id));
  for (const e of missing) {
    const d = await api.call("POST", `/api/v1/events/${e.id}/resend?endpoint=${endpoint.id}`);
    if (d.status !== "succeeded") throw new Error(`resend of ${e.id}: delivery ${d.status} (${d.lastError})`);
  }
  return missing.length;
}

function summarize(label, listed) {
  const st = receiver.state;
  const counted = listed.filter((e) => st.events.get(e.id)?.deliveries >= 1);
  const dup = listed.filter((e) => st.events.get(e.id)?.deliveries > 1);
  const unverified = listed.filter((e) => st.events.get(e.id) && !st.events.get(e.id).verified);
  check(`${label}: every listed event received, verified, counted once by webhook-id`, counted.length === listed.length && unverified.length === 0 && st.rejected.length === 0, `${counted.length}/${listed.length} received; ${dup.length} delivered more than once (deduped); ${st.rejected.length} rejected${examples(st.rejected)}`);
  const types = new Map();
  for (const e of listed) types.set(e.type, (types.get(e.type) ?? 0) + 1);
  return types;
}

try {
  console.log(`e2e-webhooks: starting wrangler dev on :${PORT} with fresh state; receiver at ${receiver.url}`);
  server = await startServer({ port: PORT, persist: PERSIST, fresh: true });
  const api = client(server.base, { authorization: `Bearer ${await localToken("admin")}` });

  const endpoint = await api.call("POST", "/api/v1/webhook-endpoints", { url: receiver.url, enabledEvents: ["*"], description: "e2e receiver" });
  receiver.state.secret = endpoint.secret;
  check("endpoint created with a whsec_ secret", /^whsec_/.test(endpoint.secret), endpoint.id);

  // ── Phase 1: a subscription's whole life ──
  console.log(`\nphase 1: a subscription's life (${elapsed()})`);
  await api.call("POST", "/api/v1/customers", { id: "cus_e2e_hooks", email: "hooks@e2e.test", name: "E2E", currency: "USD", country: "US", region: "CA" });
  await api.call("POST", "/api/v1/plans", {
    id: "plan_e2e_hooks",
    name: "E2E hooks",
    currency: "USD",
    interval: "month",
    trialDays: 0,
    prices: [
      { type: "flat", amount: "29.99", billing: "advance" },
      { type: "metered", meterId: "api_calls", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001" },
    ],
  });
  const sub = await api.call("POST", "/api/v1/subscriptions", { customerId: "cus_e2e_hooks", planId: "plan_e2e_hooks", paymentMethod: "pm_card_chargeDeclined" }, { "idempotency-key": "e2e-hooks-sub" });
  // The subscription's meter is set up right after the subscription; usage is accepted once it is.
  await until("usage accepted", async () => {
    const r = await api.request("POST", "/api/v1/usage", { subscriptionId: sub.id, meterId: "api_calls", quantity: 1500, eventId: "e2e-hooks-u1" });
    return r.status >= 200 && r.status < 300;
  });
  // The first invoice (fee in advance) is finalized at once; its charge on the declining card fails.
  const failed = await until("the first charge to fail", async () => (await api.call("GET", `/api/v1/payments?status=failed&customerId=cus_e2e_hooks`)).data.find((p) => p.customerId === "cus_e2e_hooks"));
  const invoiceId = failed.invoiceId;
  // Retry with a card that pays.
  const retried = await api.call("POST", `/api/v1/payments/${failed.id}/retry`, { paymentMethod: "pm_card_visa" });
  check("retry with pm_card_visa succeeds", retried.outcome === "succeeded" && retried.payment?.status === "succeeded", `${retried.outcome} ${retried.payment?.id}`);
  const paid = await until("the invoice to be paid", async () => {
    const inv = await api.call("GET", `/api/v1/invoices/${invoiceId}`);
    return inv.status === "paid" && inv;
  });
  const refund = await api.call("POST", "/api/v1/refunds", { paymentId: retried.payment.id, amount: 9.99, reason: "customer_request" });
  await until("the refund to settle", async () => (await api.call("GET", `/api/v1/events?objectId=${refund.id}`)).data.some((e) => e.type === "refund.succeeded"));
  await api.call("POST", `/api/v1/subscriptions/${sub.id}/cancel`, { reason: "customer_request", cancelAtPeriodEnd: false });
  console.log(`  ${sub.id}: invoice ${paid.number} paid by ${retried.payment.id} after ${failed.id} failed; refund ${refund.id}; canceled (${elapsed()})`);

  // A second customer on a test clock frozen in 2024: its subscription's events are stamped in the clock's time.
  const clock = await api.call("POST", "/api/v1/test-clocks", { frozenTime: "2024-03-01T00:00:00Z", name: "e2e hooks" });
  await api.call("POST", "/api/v1/customers", { id: "cus_e2e_clock", email: "clock@e2e.test", currency: "USD", testClockId: clock.id });
  const clockSub = await api.call("POST", "/api/v1/subscriptions", { customerId: "cus_e2e_clock", planId: "plan_e2e_hooks", paymentMethod: "pm_card_visa" });
  await until("the clock subscription's first invoice to be paid", async () => (await api.call("GET", `/api/v1/invoices?subscriptionId=${clockSub.id}`)).data.some((i) => i.status === "paid"));

  const lifeTypes = [
    "customer.created",
    "customer.subscription.created",
    "invoice.created",
    "invoice.finalized",
    "payment.failed",
    "invoice.payment_failed",
    "payment.succeeded",
    "invoice.paid",
    "refund.created",
    "refund.succeeded",
    "charge.refunded",
    "customer.subscription.deleted",
  ];
  await until("the cancellation's event", async () => (await api.call("GET", `/api/v1/events?objectId=${sub.id}&type=customer.subscription.deleted`)).data.length > 0);
  const listed1 = await allArrive(api, "phase 1");
  const types1 = summarize("phase 1", listed1);
  const absent = lifeTypes.filter((t) => !types1.has(t));
  check("the life emitted every expected event type", absent.length === 0, `${listed1.length} events: ${[...types1].map(([t, n]) => `${t}×${n}`).join(", ")}${absent.length ? `; absent: ${absent.join(", ")}` : ""}`);
  const clockEvents = listed1.filter((e) => e.createdAt < "2025");
  check("test-clock events (stamped in the clock's 2024) were received", clockEvents.length > 0 && clockEvents.every((e) => receiver.state.events.has(e.id)), `${clockEvents.length} events: ${[...new Set(clockEvents.map((e) => e.type))].join(", ")}`);
  // Per object, as an application would ask for them.
  const objectIds = [...new Set(listed1.map((e) => e.data.object.id))];
  const perObject = (await Promise.all(objectIds.map((id) => api.listAll(`/api/v1/events?objectId=${encodeURIComponent(id)}`)))).flat();
  const perObjectMissing = perObject.filter((e) => !receiver.state.events.has(e.id));
  check("every event listed per object (objectId filter) was received", perObjectMissing.length === 0, `${objectIds.length} objects, ${perObject.length} events${examples(perObjectMissing.map((e) => e.id))}`);

  // ── Phase 2: the receiver answers 500, then recovers ──
  console.log(`\nphase 2: the receiver answers 500 to the next ${RECEIVER_FAILURES} deliveries (${elapsed()})`);
  receiver.state.failNext = RECEIVER_FAILURES;
  const before2 = receiver.state.answered500.length;
  const phase2Customers = [];
  for (let i = 0; i < RECEIVER_FAILURES + 2; i++) {
    phase2Customers.push((await api.call("POST", "/api/v1/customers", { email: `down${i}@e2e.test`, currency: "USD" })).id);
  }
  await until(`${RECEIVER_FAILURES} answers of 500`, async () => receiver.state.answered500.length - before2 >= RECEIVER_FAILURES);
  const failedIds = receiver.state.answered500.slice(before2);
  // The engine recorded each failure and kept the delivery pending with a retry scheduled (5 minutes out).
  const pendings = await until("the failed deliveries recorded as pending", async () => {
    const page = await api.call("GET", `/api/v1/webhook-endpoints/${endpoint.id}/deliveries?status=pending&limit=100`);
    const mine = page.data.filter((d) => failedIds.includes(d.eventId) && d.attempts?.some?.((a) => a.statusCode === 500));
    return mine.length === new Set(failedIds).size && mine;
  });
  const soonest = Math.min(...pendings.map((d) => Date.parse(d.nextAttemptAt) - Date.now()));
  check("each 500 left its delivery pending with a retry scheduled by the backoff", pendings.length > 0 && soonest > 60_000, `${pendings.length} pending, next attempt in ≥ ${Math.round(soonest / 1000)} s`);
  // Everything else arrives on its own; then the shortcut for the four.
  await allArrive(api, "phase 2 (the events not answered 500)", { except: new Set(failedIds) });
  // The hourly sweep's own pass (it takes up deliveries only 15 minutes overdue, so it resends none of these yet).
  const cron = await fetch(`${server.base}/cdn-cgi/local/scheduled?cron=0+*+*+*+*`);
  check("the hourly cron runs", cron.ok, `status ${cron.status}`);
  let resent2 = 0;
  if (REAL_BACKOFF) {
    console.log("  REAL_BACKOFF=1: waiting for the queue's own delayed retries (about 5 minutes), no resend");
    await allArrive(api, "phase 2 (real backoff)", { timeoutMs: 7 * 60_000 });
  } else resent2 = await resendMissing(api, endpoint);
  const listed2 = await allArrive(api, "phase 2");
  summarize("phase 2", listed2);
  console.log(`  ${failedIds.length} deliveries answered 500; ${REAL_BACKOFF ? "recovered by the queue's delayed retries, none resent" : `${resent2} events resent through POST /api/v1/events/{id}/resend`} (${elapsed()})`);

  // ── Phase 3: the worker is killed while deliveries are in flight ──
  if (PHASE3) {
    console.log(`\nphase 3: kill the worker with deliveries in flight (${elapsed()})`);
    receiver.state.holdMs = 3_000;
    const created3 = [];
    for (let i = 0; i < 8; i++) created3.push((await api.call("POST", "/api/v1/customers", { email: `crash${i}@e2e.test`, currency: "USD" })).id);
    await until("deliveries in flight", async () => receiver.state.inFlight > 0, { every: 20 });
    const committedBefore = (await allEvents(api)).length;
    const inFlightAtKill = receiver.state.inFlight;
    server.stop();
    await until("the worker to stop", async () => {
      try {
        await fetch(`${server.base}/health/live`);
        return false;
      } catch {
        return true;
      }
    });
    const receivedAtKill = receiver.state.events.size;
    receiver.state.holdMs = 0;
    console.log(`  killed with ${inFlightAtKill} deliveries in flight; ${committedBefore} events committed, ${receivedAtKill} received (${elapsed()})`);
    server = await startServer({ port: PORT, persist: PERSIST, fresh: false });
    const listedAfter = await allEvents(api);
    // Where each event the receiver has not had stands after the restart.
    const deliveryRows = await api.listAll(`/api/v1/webhook-endpoints/${endpoint.id}/deliveries`);
    const byEvent = new Map(deliveryRows.map((d) => [d.eventId, d]));
    const notReceived = listedAfter.filter((e) => !receiver.state.events.has(e.id));
    const states = {};
    for (const e of notReceived) {
      const k = byEvent.get(e.id)?.status ?? "no delivery yet (fan-out message lost)";
      states[k] = (states[k] ?? 0) + 1;
    }
    console.log(`  after the restart, not yet received: ${notReceived.length} ${JSON.stringify(states)}; answers cut off by the kill: ${receiver.state.cutOff}`);
    check("every event committed before the kill is still listed", listedAfter.length >= committedBefore, `${listedAfter.length} listed, ${committedBefore} before`);
    const cron = await fetch(`${server.base}/cdn-cgi/local/scheduled?cron=0+*+*+*+*`);
    check("the hourly cron (sweep) runs after the restart", cron.ok, `status ${cron.status}`);
    const resent3 = await resendMissing(api, endpoint);
    const listed3 = await allArrive(api, "phase 3");
    summarize("phase 3", listed3);
    console.log(`  ${receivedAtKill} events received before the restart; ${resent3} resent after it (${elapsed()})`);
  }

  const st = receiver.state;
  const deliveries = [...st.events.values()].reduce((n, e) => n + e.deliveries, 0);
  console.log(`\nreceiver: ${st.requests} requests, ${st.events.size} distinct webhook-ids, ${deliveries - st.events.size} duplicates deduped, ${st.answered500.length} answered 500, ${st.rejected.length} rejected (${elapsed()})`);
} catch (e) {
  console.error(e);
  check("script ran to the end", false, String(e?.message ?? e));
} finally {
  server?.stop();
  receiver.close();
}
process.exitCode = exitCode();
console.log(process.exitCode === 0 ? "e2e-webhooks: PASS" : "e2e-webhooks: FAIL");
