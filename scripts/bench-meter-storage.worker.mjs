// The worker `npm run bench:meter-storage` runs in workerd: a Durable Object with the usage meter's events and
// aggregates tables (DDL as durable-objects/usage-meter.ts creates them) running one storage step per variant, and
// a fetch handler that calls it. The statements are written out here, not imported: this compares shapes of
// statements and the runtime's fixed costs, it does not test the meter.
import { DurableObject } from "cloudflare:workers";

const EVENTS = `CREATE TABLE IF NOT EXISTS events (event_key TEXT PRIMARY KEY, meter_id TEXT NOT NULL, period_start INTEGER NOT NULL,
  quantity TEXT NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL, unique_value TEXT, metadata TEXT)`;
const AGGREGATES = `CREATE TABLE IF NOT EXISTS aggregates (meter_id TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
  sum TEXT NOT NULL, count INTEGER NOT NULL, max TEXT, latest TEXT, latest_at INTEGER, unique_count INTEGER NOT NULL,
  reset_at INTEGER, rev INTEGER NOT NULL, flushed_rev INTEGER NOT NULL, PRIMARY KEY (meter_id, period_start))`;
const PERIOD = 1_700_000_000_000;
// A pool of random keys (UUID-like ids, the worst case for the key's index), cheap to draw from; filled in the first
// handler (random values are not available at global scope).
let POOL;

export class Probe extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    POOL ??= Array.from({ length: 4096 }, () => crypto.randomUUID());
    ctx.storage.sql.exec(EVENTS);
    ctx.storage.sql.exec(AGGREGATES);
    ctx.storage.sql.exec("INSERT OR IGNORE INTO aggregates VALUES ('api_calls', ?, ?, '0', 0, NULL, NULL, NULL, 0, NULL, 1, 0)", PERIOD, PERIOD + 86_400_000);
    this.seq = PERIOD * 1024;
    this.n = 0;
  }

  /** `iterations` steps of `variant`, each over `rows` new events; keys "e<n>" (as bench:usage sends) or random. */
  run(variant, rows, iterations, keys) {
    const sql = this.ctx.storage.sql;
    for (let it = 0; it < iterations; it++) {
      const batch = [];
      for (let i = 0; i < rows; i++) {
        const n = ++this.n;
        batch.push({ key: keys === "random" ? `id:${POOL[n & 4095]}-${n >>> 12}` : `id:e${n}`, q: "1", ts: PERIOD + n, seq: ++this.seq });
      }
      const step = () => this.step(sql, variant, batch, it);
      if (variant === "call-without-savepoint") step();
      else this.ctx.storage.transactionSync(step);
    }
    return this.n;
  }

  /** What a meter's ingest is handed: the events as objects (structured clone), or as one JSON text it parses. */
  take(events) {
    return { accepted: events.map((_, i) => i), others: [] };
  }
  takeJson(text) {
    const events = JSON.parse(text);
    return { accepted: events.map((_, i) => i), others: [] };
  }
  takeRows(text) {
    const rows = JSON.parse(text);
    return JSON.stringify(rows.map((_, i) => i));
  }

  step(sql, variant, batch, it) {
    const first = batch[0].seq;
    switch (variant) {
      case "call":
      case "call-without-savepoint":
        return;
      case "chunk, 9 values a row": {
        // The meter's chunk insert before 3edd257: every column from the row's JSON, RETURNING the keys written.
        const json = JSON.stringify(batch.map((r) => [r.key, "api_calls", PERIOD, r.q, r.ts, null, null, r.seq, Math.floor(r.seq / 1024)]));
        const c = sql.exec(
          `INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata)
           SELECT value ->> 7, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 8, value ->> 5, value ->> 6 FROM json_each(?) WHERE true
           ON CONFLICT (event_key) DO NOTHING RETURNING event_key`,
          json,
        );
        for (const _ of c);
        return;
      }
      case "chunk, 4 values a row": {
        // As the meter inserts a chunk of one meter and period now.
        const json = JSON.stringify(batch.map((r) => [r.key, r.q, r.ts, null]));
        sql
          .exec(
            `INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata)
             SELECT CAST(?2 AS INTEGER) + key, value ->> 0, ?3, ?4, value ->> 1, value ->> 2, (CAST(?2 AS INTEGER) + key) / 1024, NULL, value ->> 3
             FROM json_each(?1) WHERE true ON CONFLICT (event_key) DO NOTHING`,
            json,
            first,
            "api_calls",
            PERIOD,
          )
          .toArray();
        sql.exec("SELECT changes() AS n").one();
        return;
      }
      case "chunk, key only": {
        // The floor of any chunk insert: nothing extracted but the key.
        sql
          .exec(
            `INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata)
             SELECT CAST(?2 AS INTEGER) + key, value, 'api_calls', ?3, '1', ?3 + key, (CAST(?2 AS INTEGER) + key) / 1024, NULL, NULL
             FROM json_each(?1) WHERE true ON CONFLICT (event_key) DO NOTHING`,
            JSON.stringify(batch.map((r) => r.key)),
            first,
            PERIOD,
          )
          .toArray();
        return;
      }
      case "one event":
      case "one event + aggregate, 7 values":
      case "one event + aggregate, 2 values": {
        const r = batch[0];
        const c = sql.exec(
          "INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
          r.seq,
          r.key,
          "api_calls",
          PERIOD,
          r.q,
          r.ts,
          Math.floor(r.seq / 1024),
          null,
          null,
        );
        c.toArray();
        void c.rowsWritten;
        if (variant.endsWith("7 values")) {
          const u = sql.exec(
            "UPDATE aggregates SET sum = ?, count = ?, max = ?, latest = ?, latest_at = ?, unique_count = ?, reset_at = ?, rev = rev + 1 WHERE meter_id = ? AND period_start = ?",
            String(this.n),
            this.n,
            null,
            null,
            null,
            0,
            null,
            "api_calls",
            PERIOD,
          );
          u.toArray();
          void u.rowsWritten;
        } else if (variant.endsWith("2 values")) {
          const u = sql.exec("UPDATE aggregates SET sum = ?, count = ?, rev = rev + 1 WHERE meter_id = ? AND period_start = ?", String(this.n), this.n, "api_calls", PERIOD);
          u.toArray();
          void u.rowsWritten;
        }
        return;
      }
      default:
        throw new Error(`unknown variant ${variant}`);
    }
  }
}

export default {
  /** ?variant=…&rows=…&iterations=…&calls=…&keys=…&object=…: `calls` sequential calls into one object, or D1 upserts. */
  async fetch(req, env) {
    const u = new URL(req.url);
    const p = (k, d) => u.searchParams.get(k) ?? d;
    const variant = p("variant");
    const calls = Number(p("calls", "1"));
    if (variant === "none") return new Response("ok");
    if (variant === "D1 batch of one upsert") {
      // As a meter's rollup flush writes usage_rollups (src/modules/usage/rollups.ts), through local D1.
      await env.DB.prepare(
        "CREATE TABLE IF NOT EXISTS usage_rollups (subscription_id TEXT NOT NULL, meter_id TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL, value TEXT NOT NULL, event_count INTEGER NOT NULL, closed INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (subscription_id, meter_id, period_start))",
      ).run();
      for (let i = 0; i < calls; i++) {
        await env.DB.batch([
          env.DB.prepare(
            "INSERT INTO usage_rollups VALUES (?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (subscription_id, meter_id, period_start) DO UPDATE SET value = excluded.value, event_count = excluded.event_count, updated_at = excluded.updated_at WHERE usage_rollups.updated_at <= excluded.updated_at",
          ).bind(`sub_${i % 50}`, "api_calls", PERIOD, PERIOD + 86_400_000, String(i), i, Date.now() + i),
        ]);
      }
      return new Response("ok");
    }
    const stub = env.PROBE.get(env.PROBE.idFromName(p("object", variant)));
    if (variant.startsWith("payload")) {
      const events = () =>
        Array.from({ length: Number(p("rows", "20")) }, (_, i) => ({ index: i * 5, eventKey: `id:e${i}`, eventId: `e${i}`, meterId: "api_calls", quantity: String(1 + (i % 9)), timestamp: PERIOD + i, metadata: null }));
      for (let i = 0; i < calls; i++) {
        const ev = events();
        if (variant === "payload: objects") await stub.take(ev);
        else if (variant === "payload: JSON text") await stub.takeJson(JSON.stringify(ev));
        else if (variant === "payload: JSON rows") JSON.parse(await stub.takeRows(JSON.stringify(ev.map((e) => [e.index, e.eventKey, e.eventId, e.meterId, e.quantity, e.timestamp, e.metadata]))));
        else if (variant === "payload: none") await stub.take([]);
      }
      return new Response("ok");
    }
    for (let i = 0; i < calls; i++) await stub.run(variant, Number(p("rows", "1")), Number(p("iterations", "1")), p("keys", "sequential"));
    return new Response("ok");
  },
};
