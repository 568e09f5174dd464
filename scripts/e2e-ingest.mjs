#!/usr/bin/env node
// `npm run test:e2e:ingest`: drop-in ingestion driven by the vendors' own SDKs, unchanged, against a fresh
// `wrangler dev` (PORT, default 3470; state in .wrangler/e2e-ingest-state):
//  - Stripe's official `stripe` package with host/port/protocol pointed here: billing.meterEvents.create (v1, form
//    encoded), its errors (StripeInvalidRequestError with code and param), and v2.billing.meterEventStream.create;
//  - OpenMeter's `@openmeter/sdk` with baseUrl http://127.0.0.1:<port>/openmeter: events.ingest (one and a batch,
//    as CloudEvents) and events.list;
// then checks the subscription's stored usage through the native API: every event counted exactly once.
import Stripe from "stripe";
import { OpenMeter } from "@openmeter/sdk";
import { checks, client } from "./load-common.mjs";
import { localToken, startServer } from "./local-server.mjs";

const PORT = Number(process.env.PORT ?? 3470);
const PERSIST = process.env.PERSIST_TO ?? ".wrangler/e2e-ingest-state";
const t = checks();

const server = await startServer({ port: PORT, persist: PERSIST, fresh: true });
try {
  const admin = client(server.base, { authorization: `Bearer ${await localToken("admin")}` });
  const stripeCustomerId = "cus_NciAYcXfLnqBoz";
  const customer = await admin.call("POST", "/api/v1/customers", { email: "e2e-ingest@example.com", currency: "USD", metadata: { stripeCustomerId } });
  const plan = await admin.call("POST", "/api/v1/plans", {
    name: "Drop-in",
    currency: "USD",
    interval: "month",
    prices: [
      { type: "metered", meterId: "api_calls", eventName: "api_request", aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.001" },
      { type: "metered", meterId: "tokens", eventName: "prompt", valueProperty: "$.tokens", groupBy: { model: "$.model" }, aggregation: "sum", pricingModel: "per_unit", unitAmount: "0.0001" },
    ],
  });
  const sub = await admin.call("POST", "/api/v1/subscriptions", { customerId: customer.id, planId: plan.id });
  const { key } = await admin.call("POST", "/admin/api-keys", { name: "e2e-ingest", scopes: ["usage:write", "usage:read"] });
  const usage = async (meterId) => (await admin.call("GET", `/api/v1/usage/${sub.id}/summary`)).meters.find((m) => m.meterId === meterId);

  // --- Stripe's SDK, unchanged but for where it connects ---
  const stripe = new Stripe(key, { host: "127.0.0.1", port: PORT, protocol: "http", maxNetworkRetries: 2 });
  const ts = Math.floor(Date.now() / 1000) - 30;
  const created = await stripe.billing.meterEvents.create({ event_name: "api_request", payload: { stripe_customer_id: stripeCustomerId, value: "25" }, identifier: "stripe-e2e-1", timestamp: ts });
  t.check("stripe.billing.meterEvents.create answers a billing.meter_event", created.object === "billing.meter_event" && created.identifier === "stripe-e2e-1" && created.timestamp === ts, JSON.stringify(created));
  const again = await stripe.billing.meterEvents.create({ event_name: "api_request", payload: { stripe_customer_id: stripeCustomerId, value: "25" }, identifier: "stripe-e2e-1" });
  t.check("a repeated identifier answers the event again", again.identifier === "stripe-e2e-1");
  const noId = await stripe.billing.meterEvents.create({ event_name: "api_request", payload: { stripe_customer_id: customer.id, value: "5" } });
  t.check("our customer id works as payload[stripe_customer_id]; an identifier is generated", typeof noId.identifier === "string" && noId.identifier.length > 0, noId.identifier);
  try {
    await stripe.billing.meterEvents.create({ event_name: "api_request", payload: { stripe_customer_id: "cus_unknown", value: "1" } });
    t.check("an unknown customer is refused", false, "the SDK resolved");
  } catch (e) {
    t.check("an unknown customer → StripeInvalidRequestError resource_missing at payload[stripe_customer_id]", e.type === "StripeInvalidRequestError" && e.code === "resource_missing" && e.param === "payload[stripe_customer_id]" && e.statusCode === 400, `${e.type} ${e.code} ${e.param}`);
  }
  try {
    await new Stripe("bek_revoked_or_unknown", { host: "127.0.0.1", port: PORT, protocol: "http" }).billing.meterEvents.create({ event_name: "api_request", payload: { stripe_customer_id: stripeCustomerId, value: "1" } });
    t.check("an unknown key is refused", false, "the SDK resolved");
  } catch (e) {
    t.check("an unknown key → StripeAuthenticationError (401)", e.type === "StripeAuthenticationError" && e.statusCode === 401, `${e.type} ${e.statusCode}`);
  }
  const stream = stripe.v2?.billing?.meterEventStream;
  if (stream) {
    await stream.create({
      events: [
        { event_name: "api_request", identifier: "stream-1", payload: { stripe_customer_id: stripeCustomerId, value: "10" }, timestamp: new Date().toISOString() },
        { event_name: "api_request", identifier: "stream-2", payload: { stripe_customer_id: stripeCustomerId, value: "20" } },
      ],
    });
    t.check("stripe.v2.billing.meterEventStream.create resolves", true);
  } else t.check("this stripe package has v2.billing.meterEventStream", false);
  const calls = await usage("api_calls");
  t.check("api_calls counts every Stripe event once (25 + 5 + 10 + 20)", calls.value === "60" && calls.eventCount === 4, `${calls.value} over ${calls.eventCount} events`);

  // --- OpenMeter's SDK with base URL …/openmeter ---
  const om = new OpenMeter({ baseUrl: `${server.base}/openmeter`, apiKey: key });
  await om.events.ingest({ id: "om-1", source: "e2e", type: "prompt", subject: customer.id, data: { tokens: 1200, model: "gpt-4" } });
  await om.events.ingest([
    { id: "om-1", source: "e2e", type: "prompt", subject: customer.id, data: { tokens: 1200, model: "gpt-4" } },
    { id: "om-2", source: "e2e", type: "prompt", subject: sub.id, data: { tokens: 300, model: "small" }, time: new Date(Date.now() - 60_000) },
  ]);
  t.check("om.events.ingest (one event, then a batch with a repeat) resolves", true);
  const tokens = await usage("tokens");
  t.check("tokens sums the meter's valueProperty $.tokens, the repeated id once (1200 + 300)", tokens.value === "1500" && tokens.eventCount === 2, `${tokens.value} over ${tokens.eventCount} events`);
  const listed = await om.events.list({ subject: customer.id });
  const om1 = listed.find((e) => e.event.id === "om-1");
  t.check("om.events.list gives the events back as CloudEvents with their groupBy data", listed.length >= 2 && om1?.event.type === "prompt" && om1?.event.data?.model === "gpt-4" && om1?.ingestedAt instanceof Date, JSON.stringify(om1));
  // The SDK always sends a batch: a refused event comes back in a 207 with its reason (the SDK resolves with it).
  const refused = await om.events.ingest({ id: "om-bad", source: "e2e", type: "prompt", subject: "cus_nobody", data: { tokens: 1 } });
  t.check("an unknown subject → 207 naming unknown_subscription", refused?.rejected === 1 && refused.results?.[0]?.reason === "unknown_subscription", JSON.stringify(refused));
} catch (e) {
  t.check("the run completed", false, e?.stack ?? String(e));
} finally {
  server.stop();
}
console.log(`\n${t.failed === 0 ? "drop-in ingestion e2e: all checks passed" : `drop-in ingestion e2e: ${t.failed} check(s) failed`}`);
process.exitCode = t.exitCode();
