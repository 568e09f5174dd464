import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { dbOf } from "../../src/db/client";
import { events, webhookDeliveries, webhookDeliveryAttempts, webhookEndpoints } from "../../src/db/schema";
import { eventRow } from "../../src/platform/events";
import {
  cleanupWebhookDeliveries,
  DELIVERY_RETENTION_MS,
  enqueueFanout,
  forgetEndpointsCache,
  sweepWebhookDeliveries,
  SWEEP_ENDPOINTS_PER_RUN,
} from "../../src/modules/webhook-endpoints/delivery";
import { messageServicesOf, unique } from "../helpers";

// Own file: these tests need a store with no endpoints at first (storage is per test file).

function recordingEnv() {
  const sent: unknown[] = [];
  const queue = {
    send: async (body: unknown) => void sent.push(body),
    sendBatch: async (msgs: Iterable<MessageSendRequest>) => {
      for (const m of msgs) sent.push(m.body);
    },
  };
  return { sent, env: { ...env, WEBHOOK_QUEUE: queue } as unknown as Env };
}

const HOUR = 60 * 60_000;
const DAY = 24 * HOUR;

async function insertEndpoints(n: number, enabledEvents: string[], createdAt: number) {
  const db = dbOf(env);
  const rows = Array.from({ length: n }, (_, i) => ({
    id: `we_bound_${String(i).padStart(4, "0")}_${unique("x")}`,
    url: "https://receiver.example/hook",
    enabledEvents,
    secretCiphertext: "not-used-by-the-sweep",
    createdAt: createdAt + i,
    updatedAt: createdAt + i,
  }));
  for (let i = 0; i < rows.length; i += 8) await db.insert(webhookEndpoints).values(rows.slice(i, i + 8));
  return rows.map((r) => r.id);
}

describe("webhook delivery stays bounded", () => {
  it("sends no fan-out message while no endpoint is enabled, and does once one exists", async () => {
    const { sent, env: e } = recordingEnv();
    forgetEndpointsCache();
    await enqueueFanout(e, ["evt_a", "evt_b"]);
    expect(sent).toEqual([]);
    await insertEndpoints(1, ["*"], Date.now());
    forgetEndpointsCache(); // what creating an endpoint through the API does in its isolate
    await enqueueFanout(e, ["evt_a", "evt_b"]);
    expect(sent).toEqual([{ type: "events.fanout", eventIds: ["evt_a", "evt_b"] }]);
    await dbOf(env).delete(webhookEndpoints);
    forgetEndpointsCache();
  });

  it(`the hourly sweep scans at most ${SWEEP_ENDPOINTS_PER_RUN} endpoints a run, and every endpoint within a few hours`, async () => {
    const base = Math.floor(Date.now() / HOUR) * HOUR + 30 * 60_000;
    const ids = await insertEndpoints(450, ["invoice.voided"], base - 2 * HOUR);
    const event = eventRow({ type: "invoice.voided", objectType: "invoice", objectId: unique("inv"), object: {} }, { now: base - 10 * 60_000 });
    await dbOf(env).insert(events).values(event);
    const reached = new Set<string>();
    for (let hour = 0; hour < 3; hour++) {
      const { env: e } = recordingEnv();
      const r = await sweepWebhookDeliveries(messageServicesOf(e), base + hour * HOUR, 1000);
      expect(r.refanned).toBeLessThanOrEqual(SWEEP_ENDPOINTS_PER_RUN);
      const rows = await dbOf(env).select({ endpointId: webhookDeliveries.endpointId }).from(webhookDeliveries).where(eq(webhookDeliveries.eventId, event.id)).all();
      for (const row of rows) reached.add(row.endpointId);
    }
    expect(reached.size).toBe(ids.length);
    await dbOf(env).delete(webhookEndpoints);
  }, 60_000);

  it("the daily cleanup deletes finished deliveries older than 30 days with their attempts, and keeps the rest", async () => {
    const db = dbOf(env);
    const now = Date.now();
    const old = now - DELIVERY_RETENTION_MS - DAY;
    const row = (id: string, status: "pending" | "succeeded" | "failed", createdAt: number) => ({ id, eventId: unique("evt"), endpointId: "we_x", status, attempts: 1, createdAt, updatedAt: createdAt });
    await db.insert(webhookDeliveries).values([row("wd_old_ok", "succeeded", old), row("wd_old_failed", "failed", old), row("wd_old_pending", "pending", old), row("wd_new", "succeeded", now)]);
    await db.insert(webhookDeliveryAttempts).values([
      { id: "wda_1", deliveryId: "wd_old_ok", at: old, statusCode: 200, latencyMs: 5, error: null },
      { id: "wda_2", deliveryId: "wd_new", at: now, statusCode: 200, latencyMs: 5, error: null },
    ]);
    expect(await cleanupWebhookDeliveries(db, now)).toEqual({ deleted: 2, hasMore: false });
    const left = (await db.select({ id: webhookDeliveries.id }).from(webhookDeliveries).all()).map((r) => r.id).filter((id) => id.startsWith("wd_old") || id === "wd_new");
    expect(left.sort()).toEqual(["wd_new", "wd_old_pending"]);
    expect((await db.select({ id: webhookDeliveryAttempts.id }).from(webhookDeliveryAttempts).all()).map((r) => r.id)).toEqual(["wda_2"]);
  });
});
