#!/usr/bin/env node
// `npm run load-test:webhooks`: signed Stripe `payment_intent.succeeded` deliveries to POST /webhooks/stripe for
// intents the engine does not know (stored, then retried by the webhooks queue — expected). A share are exact
// re-deliveries of a recent event (same bytes, same signature; some still in flight), a share carry a forged
// signature. Checks: forged → 400 and never stored; each event id stored exactly once (GET /admin/webhooks/events,
// all pages); at most one "new" answer per id, the rest `duplicate: true`.
// Env: DURATION (s, 10), CONNECTIONS (16), DUPLICATE_SHARE (0.3), FORGED_SHARE (0.1), PORT (3414).
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import Stripe from "stripe";
import { parseDotenv } from "./wrangler-env.mjs";
import { CONNECTIONS, answer, checks, examples, listAll, machineLoad, percentile, printTable, runLoad, sleep, startLoadServer } from "./load-common.mjs";

const DUPLICATE_SHARE = Number(process.env.DUPLICATE_SHARE ?? 0.3);
const FORGED_SHARE = Number(process.env.FORGED_SHARE ?? 0.1);

const server = await startLoadServer("webhooks", 3414);
const { check, exitCode } = checks();
try {
  const { api } = server;
  const secret = parseDotenv(readFileSync(".dev.vars", "utf8")).STRIPE_WEBHOOK_SECRET;
  if (!secret) throw new Error(".dev.vars has no STRIPE_WEBHOOK_SECRET");
  const stripe = new Stripe("sk_test_unused");
  const sign = (payload, key = secret) => stripe.webhooks.generateTestHeaderString({ payload, secret: key });
  console.log(`set-up: ${Math.round(DUPLICATE_SHARE * 100)}% exact re-deliveries of one of the last ${2 * CONNECTIONS} events, ${Math.round(FORGED_SHARE * 100)}% forged signatures`);

  const run = randomUUID().slice(0, 8);
  const events = new Map(); // id → { payload, signature, answers: { new, duplicate, other[] }, unconfirmed }
  const order = [];
  const forged = new Map(); // id → statuses
  const stats = { new: 0, duplicate: 0, forged: 0, sentValid: 0, sentDuplicate: 0 };
  const latency = { new: [], duplicate: [], forged: [] };
  let seq = 0;
  const eventPayload = (id, i) =>
    JSON.stringify({
      id,
      object: "event",
      api_version: "2024-06-20",
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      type: "payment_intent.succeeded",
      data: { object: { id: `pi_load_${run}_${i}`, object: "payment_intent", amount: 2999, amount_received: 2999, currency: "usd", status: "succeeded", metadata: {} } },
    });
  const next = () => {
    const i = seq++;
    const bucket = (share, offset) => Math.floor((i + offset + 1) * share) > Math.floor((i + offset) * share);
    if (bucket(FORGED_SHARE, 3)) {
      const id = `evt_forged_${run}_${i}`;
      forged.set(id, []);
      return { kind: "forged", id, payload: eventPayload(id, i), signature: sign(eventPayload(id, i), "whsec_not_the_secret") };
    }
    if (order.length && bucket(DUPLICATE_SHARE, 0)) {
      const recent = order.slice(-2 * CONNECTIONS);
      const id = recent[Math.floor(Math.random() * recent.length)];
      const e = events.get(id);
      return { kind: "duplicate", id, payload: e.payload, signature: e.signature };
    }
    const id = `evt_load_${run}_${i}`;
    const payload = eventPayload(id, i);
    events.set(id, { payload, signature: sign(payload), answers: { new: 0, duplicate: 0, other: [] }, unconfirmed: 0 });
    order.push(id);
    return { kind: "new", id, payload, signature: events.get(id).signature };
  };

  const res = await runLoad(server.base, {
    requests: [
      {
        method: "POST",
        path: "/webhooks/stripe",
        setupRequest: (req, context) => {
          const d = next();
          Object.assign(context, { id: d.id, kind: d.kind, t0: Date.now() });
          if (d.kind === "forged") stats.forged++;
          else {
            stats.sentValid++;
            if (d.kind === "duplicate") stats.sentDuplicate++;
            events.get(d.id).unconfirmed++;
          }
          return { ...req, headers: { "content-type": "application/json", "stripe-signature": d.signature }, body: d.payload };
        },
        onResponse: (status, body, context) => {
          const ms = Date.now() - context.t0;
          if (context.kind === "forged") {
            forged.get(context.id).push(status);
            latency.forged.push(ms);
            return;
          }
          const e = events.get(context.id);
          if (status !== 200) {
            e.answers.other.push(status);
            return;
          }
          e.unconfirmed--;
          if (JSON.parse(body).duplicate === true) {
            e.answers.duplicate++;
            latency.duplicate.push(ms);
          } else {
            e.answers.new++;
            latency.new.push(ms);
          }
        },
      },
    ],
  });
  printTable([{ name: `POST /webhooks/stripe (${Math.round(DUPLICATE_SHARE * 100)}% dup, ${Math.round(FORGED_SHARE * 100)}% forged)`, res }]);
  const all = [...events.entries()];
  const sum = (f) => all.reduce((n, [, e]) => n + f(e), 0);
  console.log(
    `sent: ${events.size} unique events, ${stats.sentDuplicate} re-deliveries, ${stats.forged} forged; answered: ${sum((e) => e.answers.new)} new, ${sum((e) => e.answers.duplicate)} duplicate, ${[...forged.values()].flat().length} forged, ${sum((e) => e.answers.other.length)} other`,
  );
  console.log(
    `latency: new p50 ${percentile(latency.new, 50)} ms / p99 ${percentile(latency.new, 99)} ms; duplicate p50 ${percentile(latency.duplicate, 50)} ms / p99 ${percentile(latency.duplicate, 99)} ms; forged p50 ${percentile(latency.forged, 50)} ms / p99 ${percentile(latency.forged, 99)} ms`,
  );
  console.log(`stored events/s: ${(sum((e) => e.answers.new) / res.duration).toFixed(1)}; valid deliveries/s: ${((sum((e) => e.answers.new) + sum((e) => e.answers.duplicate)) / res.duration).toFixed(1)} (${machineLoad()})\n`);

  // Deliveries not answered 200 (cut off at the end, timed out, 5xx) are delivered again, as Stripe would (re-signed).
  let redelivered = 0;
  for (const [id, e] of all) {
    if (e.unconfirmed <= 0) continue;
    e.cutOff = true;
    for (let n = 0; n < e.unconfirmed; n++) {
      redelivered++;
      for (let tries = 0; ; tries++) {
        // The raw payload as signed: no JSON serialization on the way.
        const r = await answer(api.POST("/webhooks/stripe", { body: e.payload, bodySerializer: (raw) => raw, headers: { "stripe-signature": sign(e.payload) } }));
        if (r.status === 200) {
          r.json.duplicate === true ? e.answers.duplicate++ : e.answers.new++;
          break;
        }
        if (tries >= 30 || (r.status < 500 && r.status !== 429)) throw new Error(`re-delivering ${id}: ${r.status} ${JSON.stringify(r.json)}`);
        await sleep(1000);
      }
    }
    e.unconfirmed = 0;
  }
  console.log(`deliveries without a 200 during the run, re-delivered: ${redelivered}`);

  const forgedStatuses = [...forged.values()].flat();
  const forgedAnswered = [...forged.entries()].filter(([, s]) => s.length);
  const forgedNot400 = forgedStatuses.filter((s) => s !== 400);
  check("forged signatures answered 400", forgedNot400.length === 0 && forgedAnswered.length > 0, `${forgedStatuses.length - forgedNot400.length}/${forgedStatuses.length} answered 400${examples(forgedNot400.map(String))}`);
  const twiceNew = all.filter(([, e]) => e.answers.new > 1);
  check("at most one non-duplicate answer per event id", twiceNew.length === 0, `${twiceNew.length} ids stored twice by their answers${examples(twiceNew.map(([id]) => id))}`);
  // An id with a delivery cut off at the end may have been stored with nobody seeing the "new" answer; any other
  // id must have had exactly one.
  const neverNew = all.filter(([, e]) => e.answers.new === 0);
  const neverNewAnswered = neverNew.filter(([, e]) => !e.cutOff);
  check(
    "exactly one non-duplicate answer for every id whose deliveries were all answered",
    neverNewAnswered.length === 0,
    `${neverNew.length} ids never answered "new", all with a delivery cut off at the end: ${neverNewAnswered.length === 0 ? "yes" : `no${examples(neverNewAnswered.map(([id]) => id))}`}`,
  );

  // The server's view: all stored events, all pages.
  let pages = 0;
  const stored = await listAll(api, "/admin/webhooks/events", { query: { type: "payment_intent.succeeded" } }, { onPage: () => pages++ });
  const storedCount = new Map();
  for (const ev of stored) storedCount.set(ev.id, (storedCount.get(ev.id) ?? 0) + 1);
  const missing = all.filter(([id]) => !storedCount.has(id)).map(([id]) => id);
  const doubled = [...storedCount].filter(([, n]) => n > 1).map(([id]) => id);
  const forgedStored = [...forged.keys()].filter((id) => storedCount.has(id));
  const unknown = [...storedCount.keys()].filter((id) => !events.has(id) && !forged.has(id));
  check(
    "every unique event id stored exactly once",
    missing.length === 0 && doubled.length === 0 && unknown.length === 0 && stored.length === events.size,
    `${stored.length} stored (${pages} pages), ${events.size} unique ids sent; missing ${missing.length}, stored twice ${doubled.length}, unexpected ${unknown.length}${examples([...missing, ...doubled, ...unknown])}`,
  );
  check("no forged event stored", forgedStored.length === 0, `${forgedStored.length} of ${forged.size}${examples(forgedStored)}`);
  const statuses = {};
  for (const ev of stored) statuses[ev.status] = (statuses[ev.status] ?? 0) + 1;
  console.log(`stored statuses (unknown intents wait for retry): ${JSON.stringify(statuses)}`);
  process.exitCode = exitCode();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  server.stop();
}
