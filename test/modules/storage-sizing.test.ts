import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { api, createSubscription } from "../helpers";
import { cloneSubscriptions, deliver, drainTasks, recordingEnv, runScheduled } from "../scale";
import { CRON } from "../../src/scheduled";

// The sizing in docs/scale.md ("Storage and retention"): what one billing run adds to D1 per subscription, measured
// as the database file's growth (D1's `size_after`, i.e. page_count × page_size) and per table as bytes of row
// values, and what a meter object stores per usage event. Prints one JSON line per figure; asserts only sanity.

const DAY = 86_400_000;
const N = 50;
const TABLES = ["events", "audit_log", "invoices", "invoice_lines", "payments", "sandbox_ledger", "usage_rollups", "webhook_deliveries", "notifications", "idempotency_keys"];

const dbSize = async () => (await env.DB.prepare("SELECT 1").run()).meta.size_after as number;
async function tableBytes(): Promise<Record<string, { rows: number; bytes: number }>> {
  const out: Record<string, { rows: number; bytes: number }> = {};
  for (const t of TABLES) {
    const cols = (await env.DB.prepare(`PRAGMA table_info(${t})`).all<{ name: string }>()).results.map((c) => c.name);
    if (!cols.length) continue;
    const r = await env.DB.prepare(`SELECT count(*) AS rows, coalesce(sum(${cols.map((c) => `length(quote("${c}"))`).join(" + ")}), 0) AS bytes FROM ${t}`).first<{ rows: number; bytes: number }>();
    out[t] = r!;
  }
  return out;
}

describe("storage sizing", () => {
  it("measures D1 bytes per subscription per billing run", { timeout: 300_000 }, async () => {
    const now = Date.now();
    await cloneSubscriptions(N, { periodStart: now - 31 * DAY, periodEnd: now - 2 * 3_600_000 });
    const size0 = await dbSize();
    const rows0 = await tableBytes();
    const rec = recordingEnv();
    await runScheduled(rec.env, CRON.hourly, now);
    await drainTasks(rec);
    const jobs = rec.take("jobs").filter((m) => m.type === "billing.run_due");
    expect(jobs.length).toBe(N);
    for (let i = 0; i < jobs.length; i += 5) await deliver(rec.env, "billing-jobs", jobs.slice(i, i + 5));
    const charges = rec.take("payments").filter((m) => m.type === "payment.attempt");
    expect(charges.length).toBe(N);
    for (let i = 0; i < charges.length; i += 10) await deliver(rec.env, "billing-payments", charges.slice(i, i + 10));
    const size1 = await dbSize();
    const rows1 = await tableBytes();
    const perTable = Object.fromEntries(
      Object.keys(rows1)
        .map((t) => [t, { rows: (rows1[t]!.rows - (rows0[t]?.rows ?? 0)) / N, bytes: Math.round((rows1[t]!.bytes - (rows0[t]?.bytes ?? 0)) / N) }] as const)
        .filter(([, v]) => v.rows > 0),
    );
    const valueBytes = Object.values(perTable).reduce((s, v) => s + v.bytes, 0);
    const fileBytes = Math.round((size1 - size0) / N);
    console.log(JSON.stringify({ msg: "sizing d1", n: N, fileBytesPerSubscription: fileBytes, valueBytesPerSubscription: valueBytes, perTable }));
    expect(fileBytes).toBeGreaterThan(valueBytes / 2);
    expect(fileBytes).toBeLessThan(100_000);
  });

  it("measures a meter object's bytes per usage event", { timeout: 120_000 }, async () => {
    const sub = await createSubscription();
    const stub = env.USAGE_METER.get(env.USAGE_METER.idFromName(sub.id));
    const size = () => runInDurableObject(stub, async (_i, state) => state.storage.sql.databaseSize);
    const events = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({ eventId: `evt_sizing_${from + i}_0123456789`, subscriptionId: sub.id, meterId: "api_calls", quantity: 1, timestamp: new Date().toISOString() }));
    expect((await api("POST", "/api/v1/usage", { body: { events: events(0, 10) } })).status).toBe(202);
    const s0 = await size();
    const K = 1000;
    expect((await api("POST", "/api/v1/usage", { body: { events: events(10, K) } })).status).toBe(202);
    const s1 = await size();
    console.log(JSON.stringify({ msg: "sizing meter", events: K, bytesPerEvent: Math.round((s1 - s0) / K), objectBytes: s1 }));
    expect(s1).toBeGreaterThan(s0);
  });
});
