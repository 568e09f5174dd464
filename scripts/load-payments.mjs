#!/usr/bin/env node
// `npm run load-test:payments`: creates paid subscriptions under load (each one finalizes an invoice and queues its
// first payment attempt on billing-payments), waits for the queue consumer to settle every attempt, then checks
// that each pm_card_visa invoice was charged exactly once and each pm_card_chargeDeclined one failed attempt 1
// without a success. Reports creation req/s, payments settled/s and creation → settlement latency.
// Env: DURATION (s, 10), CONNECTIONS (16), CUSTOMERS (16), DECLINE_SHARE (0.2), SETTLE_TIMEOUT (s, 90), PORT (3412).
import { randomUUID } from "node:crypto";
import { CONNECTIONS, DURATION, answer, checks, examples, header, idempotencyKey, listAll, machineLoad, mapPool, percentile, printTable, runLoad, sleep, startLoadServer, unwrap } from "./load-common.mjs";

const CUSTOMERS = Number(process.env.CUSTOMERS ?? 16);
const DECLINE_SHARE = Number(process.env.DECLINE_SHARE ?? 0.2);
const SETTLE_TIMEOUT = Number(process.env.SETTLE_TIMEOUT ?? 90);
const PRICE = "29.99";

const server = await startLoadServer("payments", 3412);
const { check, exitCode } = checks();
try {
  const { api } = server;
  const customers = [];
  for (let i = 0; i < CUSTOMERS; i++) customers.push((await unwrap(api.POST("/api/v1/customers", { body: { email: `load-pay-${i}@example.com`, currency: "USD" } }))).id);
  const plan = await unwrap(api.POST("/api/v1/plans", { body: { name: "Load payments", currency: "USD", interval: "month", prices: [{ type: "flat", amount: PRICE }] } }));
  console.log(`set-up: ${CUSTOMERS} customers, plan ${plan.id} (flat ${PRICE} USD/month); ${Math.round(DECLINE_SHARE * 100)}% of subscriptions use pm_card_chargeDeclined`);

  // Every subscription request by its Idempotency-Key: what was sent, when, and what the server confirmed.
  const run = randomUUID().slice(0, 8);
  const sent = new Map();
  let seq = 0;
  const headers = { authorization: `Bearer ${server.admin}`, "content-type": "application/json" };
  const newSubscription = () => {
    const i = seq++;
    const declined = Math.floor((i + 1) * DECLINE_SHARE) > Math.floor(i * DECLINE_SHARE);
    const body = { customerId: customers[i % customers.length], planId: plan.id, paymentMethod: declined ? "pm_card_chargeDeclined" : "pm_card_visa", metadata: { load: run } };
    const key = `load-pay-${run}-${i}`;
    sent.set(key, { body, declined, sentAt: Date.now(), subscriptionId: null, resent: false });
    return { key, body };
  };

  const loadStart = Date.now();
  const res = await runLoad(server.base, {
    requests: [
      {
        method: "POST",
        path: "/api/v1/subscriptions",
        headers,
        setupRequest: (req, context) => {
          const { key, body } = newSubscription();
          context.key = key;
          return { ...req, headers: { ...headers, "idempotency-key": key }, body: JSON.stringify(body) };
        },
        onResponse: (status, body, context, resHeaders) => {
          const s = sent.get(context.key);
          if (status === 201 && s) {
            s.subscriptionId = JSON.parse(body).id;
            s.replayed = header(resHeaders, "idempotent-replayed") === "true";
          }
        },
      },
    ],
  });
  const loadEnd = Date.now();
  printTable([{ name: "POST /api/v1/subscriptions (flat, queued pay)", res }]);

  // Requests without a confirmed answer (cut off at the end, timed out, 5xx) are sent again with the same key:
  // the server replays the stored answer or creates the subscription now, never a second one.
  let resent = 0;
  for (const [key, s] of sent) {
    if (s.subscriptionId) continue;
    resent++;
    s.resent = true;
    for (let tries = 0; tries < 60 && !s.subscriptionId; tries++) {
      const r = await answer(api.POST("/api/v1/subscriptions", { body: s.body, headers: idempotencyKey(key) }));
      if (r.status === 201) s.subscriptionId = r.json.id;
      else if (r.status === 409 || r.status >= 500) await sleep(1000);
      else throw new Error(`re-sending ${key}: ${r.status} ${JSON.stringify(r.json)}`);
    }
  }
  const subs = [...sent.values()];
  const created = subs.filter((s) => s.subscriptionId);
  console.log(`subscriptions requested: ${subs.length} (${subs.filter((s) => s.declined).length} with pm_card_chargeDeclined); unconfirmed re-sent after the run: ${resent}`);
  check("every subscription request ends in a subscription", created.length === subs.length, `${created.length}/${subs.length}`);
  const ids = new Set(created.map((s) => s.subscriptionId));
  check("one subscription per Idempotency-Key", ids.size === created.length, `${ids.size} distinct ids for ${created.length} keys`);

  // Invoice of each subscription (created and finalized in the creation request).
  const bySub = new Map();
  for (const inv of await listAll(api, "/api/v1/invoices")) {
    if (!inv.subscriptionId || !ids.has(inv.subscriptionId)) continue;
    bySub.set(inv.subscriptionId, [...(bySub.get(inv.subscriptionId) ?? []), inv]);
  }
  const invoiceProblems = created.filter((s) => (bySub.get(s.subscriptionId) ?? []).length !== 1 || bySub.get(s.subscriptionId)[0].status === "draft");
  check("each subscription has exactly one finalized invoice", invoiceProblems.length === 0, `${invoiceProblems.length} without${examples(invoiceProblems.map((s) => s.subscriptionId))}`);
  for (const s of created) s.invoiceId = bySub.get(s.subscriptionId)?.[0]?.id ?? null;
  const withInvoice = created.filter((s) => s.invoiceId);
  const invoiceIds = new Set(withInvoice.map((s) => s.invoiceId));

  // Wait for the queue consumer: attempt 1 of every invoice succeeded or failed.
  const FINAL = new Set(["succeeded", "failed"]);
  let attemptsByInvoice = new Map();
  const deadline = Date.now() + SETTLE_TIMEOUT * 1000;
  let lastReport = 0;
  for (;;) {
    attemptsByInvoice = new Map();
    for (const p of await listAll(api, "/api/v1/payments")) {
      if (!invoiceIds.has(p.invoiceId)) continue;
      attemptsByInvoice.set(p.invoiceId, [...(attemptsByInvoice.get(p.invoiceId) ?? []), p]);
    }
    const settled = [...invoiceIds].filter((id) => (attemptsByInvoice.get(id) ?? []).some((p) => p.attempt === 1 && FINAL.has(p.status))).length;
    if (settled === invoiceIds.size) break;
    if (Date.now() > deadline) {
      console.log(`settlement timeout after ${SETTLE_TIMEOUT} s: ${settled}/${invoiceIds.size} settled`);
      break;
    }
    if (Date.now() - lastReport > 5000) {
      console.log(`waiting for payments: ${settled}/${invoiceIds.size} settled (${((Date.now() - loadEnd) / 1000).toFixed(0)} s after the load)`);
      lastReport = Date.now();
    }
    await sleep(1000);
  }

  // Per invoice, as an operator would look: GET /api/v1/payments?invoiceId= and the invoice itself.
  const invoiceNow = new Map((await listAll(api, "/api/v1/invoices")).map((i) => [i.id, i]));
  const perInvoice = await mapPool(withInvoice, 8, async (s) => ({ s, payments: await listAll(api, "/api/v1/payments", { query: { invoiceId: s.invoiceId } }) }));
  const visaBad = [];
  const declinedBad = [];
  const latencies = [];
  const settledAts = [];
  for (const { s, payments } of perInvoice) {
    const inv = invoiceNow.get(s.invoiceId);
    const succeeded = payments.filter((p) => p.status === "succeeded");
    const first = payments.find((p) => p.attempt === 1);
    if (first && FINAL.has(first.status)) {
      // Settled when the consumer finished the gateway call: the attempt's timestamp plus the gateway latency.
      const settledAt = Date.parse(first.updatedAt) + (first.latencyMs ?? 0);
      settledAts.push(settledAt);
      // Only subscriptions answered during the load: a re-sent one's clock includes the re-send loop.
      if (!s.resent) latencies.push(settledAt - s.sentAt);
    }
    if (!s.declined) {
      const charges = new Set(succeeded.map((p) => p.gatewayPaymentId).filter(Boolean));
      const ok = succeeded.length === 1 && charges.size === 1 && payments.length === 1 && first?.status === "succeeded" && inv?.status === "paid" && inv.amountDue.amountMinor === 0;
      if (!ok) visaBad.push({ invoice: s.invoiceId, status: inv?.status, attempts: payments.map((p) => `${p.attempt}:${p.status}`).join("/"), charges: charges.size });
    } else {
      const ok = first?.status === "failed" && first.failureCode === "card_declined" && succeeded.length === 0 && inv?.status === "open" && inv.amountPaid.amountMinor === 0;
      if (!ok) declinedBad.push({ invoice: s.invoiceId, status: inv?.status, attempts: payments.map((p) => `${p.attempt}:${p.status}:${p.failureCode}`).join("/") });
    }
  }
  const visa = withInvoice.filter((s) => !s.declined).length;
  const declined = withInvoice.length - visa;
  check("each pm_card_visa invoice paid exactly once (one succeeded attempt, one sandbox charge)", visaBad.length === 0, `${visa - visaBad.length}/${visa} ok${examples(visaBad)}`);
  check("each pm_card_chargeDeclined invoice: attempt 1 failed (card_declined), no success, still open", declinedBad.length === 0, `${declined - declinedBad.length}/${declined} ok${examples(declinedBad)}`);

  // The sandbox ledger's own view: its succeeded charges for the day(s) of the run against ours (reconciliation).
  const days = [...new Set([new Date(loadStart).toISOString().slice(0, 10), new Date().toISOString().slice(0, 10)])];
  let gatewayCharges = 0;
  let localCharges = 0;
  let discrepancies = 0;
  for (const day of days) {
    const rec = await unwrap(api.GET("/api/v1/reconciliation/stripe/{date}", { params: { path: { date: day }, query: { gateway: "sandbox" } } }));
    gatewayCharges += rec.totals.USD?.gateway.count ?? 0;
    localCharges += rec.totals.USD?.local.count ?? 0;
    discrepancies += rec.discrepancies.length;
  }
  check(
    "sandbox ledger: succeeded charges = visa invoices, reconciliation clean",
    gatewayCharges === visa && localCharges === visa && discrepancies === 0,
    `ledger ${gatewayCharges}, local ${localCharges}, visa invoices ${visa}, discrepancies ${discrepancies}`,
  );

  // Figures.
  const settled = settledAts.length;
  const lastSettled = Math.max(...settledAts);
  const inWindow = settledAts.filter((t) => t <= loadEnd).length;
  console.log(`\npayments settled: ${settled} (${visa} visa, ${declined} declined) of ${withInvoice.length} invoices`);
  console.log(`payments settled/s: ${(settled / ((lastSettled - loadStart) / 1000)).toFixed(1)} over the whole run (load start → last settlement, ${((lastSettled - loadStart) / 1000).toFixed(1)} s); ${(inWindow / (DURATION || 1)).toFixed(1)} during the ${DURATION} s load`);
  console.log(`queue drain: last payment settled ${((lastSettled - loadEnd) / 1000).toFixed(1)} s after the load ended`);
  console.log(`creation → settlement latency (request sent → gateway answered, ${latencies.length} subscriptions answered during the load): p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms, max ${Math.max(...latencies)} ms`);
  console.log(`subscription creation: ${(res["2xx"] / res.duration).toFixed(1)} created/s during the load at ${CONNECTIONS} connections (${machineLoad()})`);
  process.exitCode = exitCode();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  server.stop();
}
