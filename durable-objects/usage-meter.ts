import { DurableObject } from "cloudflare:workers";
import type { MeterConfig } from "../src/modules/usage/meter-config";
import { applyEvent, aggregateValue, emptyAggregate, type AggregateState } from "../src/domain/aggregation";
import { formatDecimal, parseDecimal } from "../src/domain/decimal";
import { periodAt } from "../src/domain/periods";
import { MAX_METERED_AMOUNT_MINOR, maxPriceableQuantity } from "../src/domain/pricing";
import { dbOf, type Db } from "../src/db/client";
import { sortableIdFrom } from "../src/lib/ids";
import { events as eventsTable } from "../src/db/schema";
import { rollupUpsert, type ClosedRollup, type RollupValues } from "../src/modules/usage/rollups";
import { decodeEvents } from "../src/modules/usage/meter-wire";
import { eventRow, eventsCommitted } from "../src/platform/events";
import type {
  EventCursor,
  EventsOutcome,
  IngestEvent,
  IngestOutcome,
  IngestReply,
  MeterAggregate,
  PeriodSelector,
  RejectReason,
  ResetOutcome,
  StoredEvent,
  SummaryOutcome,
} from "../src/modules/usage/meter-types";

/** Clock skew tolerated: future events beyond it are refused; events this much before the first period join it. */
export const MAX_FUTURE_MS = 5 * 60_000;
/** Event ids are remembered at least this long (the issue asks for 35 days). */
export const DEDUP_RETENTION_MS = 40 * 86_400_000;
/**
 * An event's rowid is its arrival: `seq = max(previous + 1, now × ARRIVAL_SLOTS)`, and its `received_at` is
 * `floor(seq / ARRIVAL_SLOTS)`. So a range of arrival times is a rowid range of the table's own b-tree, and the
 * table needs no arrival-time index (one b-tree fewer written per accepted event: docs/benchmarks.md measured it at
 * about 7% of a single event). Past ARRIVAL_SLOTS events in one millisecond the recorded arrival runs ahead of the
 * clock until it catches up. now × 1024 stays an exact JavaScript integer until the year 2248.
 */
export const ARRIVAL_SLOTS = 1024;
/** Aggregates reach D1 at most this long after they change. */
export const ROLLUP_DELAY_MS = 10_000;

type Period = { start: number; end: number; closedAt: number | null };
/** `stored`: its row exists in storage, so a save is a plain UPDATE (an upsert costs about half as much again). */
type HeldAggregate = { state: AggregateState; resetAt: number | null; stored: boolean };
/** An event that passed every check, waiting for its insert to tell whether it is new. */
type Candidate = {
  slot: number;
  event: IngestEvent & { timestamp: number };
  period: { start: number; end: number; closedAt: number | null; known: boolean };
  quantity: bigint;
  uniqueValue: string | null;
  meter: MeterConfig["meters"][number];
};
/** Fired alerts written to D1 per alarm run (one batch). */
const ALERT_DELIVERY_BATCH = 50;
/** Deterministic event id of an alert's crossing in a period: a redelivery after a lost acknowledgement is a no-op. */
export async function thresholdEventId(subscriptionId: string, alertId: string, periodStart: number, firedAt: number): Promise<string> {
  // Sorts by the time it fired (like every event id); the rest is fixed by (subscription, alert, period). Plan-level
  // alerts share their id across subscriptions, hence the subscription in the digest.
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${subscriptionId}\u0000${alertId}\u0000${periodStart}`));
  return sortableIdFrom("evt", firedAt, new Uint8Array(digest));
}
/** Whether a string survives a trip through SQLite's JSON functions unchanged. */
const jsonSafe = (v: string) => v.isWellFormed() && !v.includes("\u0000");
/** Characters of event rows per insert statement (their JSON parameter stays far below the 2 MB value limit). */
const INSERT_JSON_CHARS = 256 * 1024;
/** A chunk of events of one meter and period without unique values: rows are [key, quantity, ts, metadata]. */
const INSERT_UNIFORM_CHUNK = `INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata)
  SELECT CAST(?2 AS INTEGER) + key, value ->> 0, ?3, ?4, value ->> 1, value ->> 2, (CAST(?2 AS INTEGER) + key) / ${ARRIVAL_SLOTS}, NULL, value ->> 3
  FROM json_each(?1) WHERE true ON CONFLICT (event_key) DO NOTHING`;
/** Any chunk: rows are [key, quantity, ts, metadata, meter, period start, unique value]. */
const INSERT_MIXED_CHUNK = `INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata)
  SELECT CAST(?2 AS INTEGER) + key, value ->> 0, value ->> 4, value ->> 5, value ->> 1, value ->> 2, (CAST(?2 AS INTEGER) + key) / ${ARRIVAL_SLOTS}, value ->> 6, value ->> 3
  FROM json_each(?1) WHERE true ON CONFLICT (event_key) DO NOTHING`;
const aggregateKey = (meterId: string, periodStart: number) => `${meterId}\u0000${periodStart}`;
type Touched = { meterId: string; period: { start: number; end: number }; state: AggregateState; resetAt: number | null };
type AggRow = {
  meter_id: string;
  period_start: number;
  period_end: number;
  sum: string;
  count: number;
  max: string | null;
  latest: string | null;
  latest_at: number | null;
  unique_count: number;
  reset_at: number | null;
  rev: number;
  flushed_rev: number;
};

/**
 * The object's tables. Written down in `meta` ('schema') once applied, so an object starting again (every renewal
 * starts its subscription's meter, which has usually been evicted since its last event) reads one row instead of
 * running each statement: **bump SCHEMA_VERSION whenever SCHEMA changes**, and existing objects apply it on their
 * next start (the statements are idempotent).
 */
// 2: arrival rowids, no arrival index for new meters. A meter last run by version 1 code (including after a
// rollback, which recreates the index) lists and sweeps through the index until its rows from then are swept.
const SCHEMA_VERSION = "2";
const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  "CREATE TABLE IF NOT EXISTS periods (start INTEGER PRIMARY KEY, end INTEGER NOT NULL, closed_at INTEGER)",
  `CREATE TABLE IF NOT EXISTS events (event_key TEXT PRIMARY KEY, meter_id TEXT NOT NULL, period_start INTEGER NOT NULL,
     quantity TEXT NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL, unique_value TEXT, metadata TEXT)`,
  // No arrival-time index: the rowid is the arrival (ARRIVAL_SLOTS). Meters created before that still carry
  // events_received_idx until their last row from before it is swept (UsageMeter.arrivalFrom).
  `CREATE TABLE IF NOT EXISTS aggregates (meter_id TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
     sum TEXT NOT NULL, count INTEGER NOT NULL, max TEXT, latest TEXT, latest_at INTEGER, unique_count INTEGER NOT NULL,
     reset_at INTEGER, rev INTEGER NOT NULL, flushed_rev INTEGER NOT NULL, PRIMARY KEY (meter_id, period_start))`,
  "CREATE TABLE IF NOT EXISTS uniques (meter_id TEXT NOT NULL, period_start INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (meter_id, period_start, value))",
  // One row per (alert, period) whose threshold was reached: written in the ingest's transaction (so it fires once),
  // delivered to D1's events table by the alarm (delivered_at set once written).
  `CREATE TABLE IF NOT EXISTS alerts_fired (alert_id TEXT NOT NULL, period_start INTEGER NOT NULL, fired_at INTEGER NOT NULL,
     livemode INTEGER, object TEXT NOT NULL, delivered_at INTEGER, PRIMARY KEY (alert_id, period_start))`,
  `CREATE TABLE IF NOT EXISTS resets (id INTEGER PRIMARY KEY AUTOINCREMENT, meter_id TEXT NOT NULL, period_start INTEGER NOT NULL,
     at INTEGER NOT NULL, actor TEXT NOT NULL, reason TEXT, before TEXT NOT NULL)`,
];

const big = (s: string | null): bigint | null => (s === null ? null : BigInt(s));

function toState(r: AggRow): AggregateState {
  return { sum: BigInt(r.sum), count: r.count, max: big(r.max), latest: big(r.latest), latestAt: r.latest_at, uniqueCount: r.unique_count };
}

/**
 * One object per subscription: its raw usage events (deduplicated by event key), running aggregates per meter
 * per period, and period close. It holds its own copy of the subscription (pushed by `configure`), so
 * ingestion never touches D1. Every ingest is one synchronous storage transaction: acknowledged means stored.
 */
export class UsageMeter extends DurableObject<Env> {
  private config: MeterConfig | null = null;
  private periods: Period[] = [];
  /** A test clock's frozen time, for subscriptions on a clock: their "now" for ingestion and summaries. */
  private clockTime: number | null = null;
  /** Write-through copy of the aggregates this instance has touched, so an ingest does not read them back. */
  private aggregates = new Map<string, HeldAggregate>();
  /** Per meter id, the most its period total may reach (priceableLimit); emptied when the configuration changes. */
  private priceable = new Map<string, bigint | null>();
  /** (alert, period) keys known to have fired, so later ingests skip the fired-row insert. */
  private firedKeys = new Set<string>();
  /** The last arrival rowid handed out (at least the largest stored), or null when no event was ever stored. */
  private lastSeq: number | null = null;
  /**
   * Null on a meter without the arrival index. A meter created by earlier code keeps the index, and lists and sweeps
   * through it, while any row below this rowid (written by that code: rowid max + 1, received_at its caller's now)
   * remains; the sweep that removes the last one drops the index. Kept in meta as 'arrival_from'.
   */
  private arrivalFrom: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      const meta = this.readMeta();
      const upgraded = meta.get("schema") !== SCHEMA_VERSION;
      if (upgraded) {
        for (const stmt of SCHEMA) ctx.storage.sql.exec(stmt);
        ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", SCHEMA_VERSION);
      }
      const config = meta.get("config");
      this.config = config ? (JSON.parse(config) as MeterConfig) : null;
      const clock = meta.get("clock");
      this.clockTime = clock ? Number(clock) : null;
      this.loadPeriods();
      this.lastSeq = ctx.storage.sql.exec<{ m: number | null }>("SELECT max(rowid) AS m FROM events").one().m;
      const known = meta.get("arrival_from");
      if (!upgraded) this.arrivalFrom = known === undefined ? null : Number(known);
      else if (ctx.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'events_received_idx'").toArray().length) {
        // Earlier code ran last (it creates the index): the line is drawn once per upgrade, after its last row, so a
        // restart of this version does not move it.
        this.arrivalFrom = (this.lastSeq ?? 0) + 1;
        ctx.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('arrival_from', ?)", String(this.arrivalFrom));
      } else this.arrivalFrom = null;
    });
  }

  private get sql() {
    return this.ctx.storage.sql;
  }

  /** The `meta` rows the object starts from, in one statement; none for a new object (no tables yet). */
  private readMeta(): Map<string, string> {
    try {
      const rows = this.sql.exec<{ key: string; value: string }>("SELECT key, value FROM meta WHERE key IN ('schema', 'config', 'clock', 'arrival_from')").toArray();
      return new Map(rows.map((r) => [r.key, r.value]));
    } catch (e) {
      if (/no such table/i.test(String(e))) return new Map();
      throw e;
    }
  }

  private loadPeriods() {
    this.periods = this.sql
      .exec<{ start: number; end: number; closed_at: number | null }>("SELECT start, end, closed_at FROM periods ORDER BY start")
      .toArray()
      .map((p) => ({ start: p.start, end: p.end, closedAt: p.closed_at }));
  }

  private rememberPeriod(start: number, end: number): Period {
    const known = this.periods.find((p) => p.start === start);
    if (known) return known;
    this.sql.exec("INSERT OR IGNORE INTO periods (start, end) VALUES (?, ?)", start, end);
    const p = { start, end, closedAt: null };
    this.periods.push(p);
    this.periods.sort((a, b) => a.start - b.start);
    return p;
  }

  /**
   * Stores the subscription's state if newer than what is held; returns the version held. `written`: rollups of a
   * closed period the caller's D1 batch wrote (`closePeriod` with `rollups: "return"`), so the meter does not write
   * them again.
   */
  async configure(config: MeterConfig, written: { meterId: string; periodStart: number; rev: number }[] = []): Promise<number> {
    for (const w of written) {
      this.sql.exec("UPDATE aggregates SET flushed_rev = ? WHERE meter_id = ? AND period_start = ? AND flushed_rev < ?", w.rev, w.meterId, w.periodStart, w.rev);
    }
    // The alarm a close scheduled only for these rows is not needed any more (one alarm run less per renewal).
    if (written.length && this.flushScheduled && !this.flushPending()) {
      await this.ctx.storage.deleteAlarm();
      this.flushScheduled = false;
    }
    const held = this.config?.version ?? 0;
    if (config.version > held) {
      this.ctx.storage.transactionSync(() => {
        this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('config', ?)", JSON.stringify(config));
        const p = this.rememberPeriod(config.currentPeriodStart, config.currentPeriodEnd);
        // The subscription is authoritative: a period first guessed from the anchor grid (events that arrived before
        // this push, e.g. across an interval change) takes the subscription's end, so no usage falls between periods.
        if (p.end !== config.currentPeriodEnd && p.closedAt === null) {
          this.sql.exec("UPDATE periods SET end = ? WHERE start = ?", config.currentPeriodEnd, p.start);
          this.sql.exec("UPDATE aggregates SET period_end = ?, rev = rev + 1 WHERE period_start = ?", config.currentPeriodEnd, p.start);
          p.end = config.currentPeriodEnd;
        }
      });
      this.config = config;
      this.priceable.clear();
    }
    // Whatever the version: a clock only moves forward, so a later time is always news.
    if (config.testClockId && config.clockTime != null) this.setClock(config.clockTime);
    return Math.max(held, config.version);
  }

  /**
   * Test clocks push their time here (on every configuration, and at each step of an advance); only used while
   * the configuration names a test clock. Never moves back: a push built before an advance may arrive after it.
   */
  setClock(time: number): number {
    if (this.clockTime !== null && time <= this.clockTime) return this.clockTime;
    this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?)", String(time));
    this.clockTime = time;
    return time;
  }

  /**
   * "Now" for this subscription: its test clock's time when it lives on one, else the real time. A meter configured
   * before configurations carried the clock's time falls back to the start of its current period (clock time too).
   */
  private effectiveNow(realNow: number): number {
    const c = this.config;
    if (!c?.testClockId) return realNow;
    return this.clockTime ?? c.currentPeriodStart;
  }

  /**
   * The most a meter's period total may reach: past it its price would bill more than MAX_METERED_AMOUNT_MINOR, which
   * the summary and the invoice could not price exactly. Null: no limit (nothing is charged per unit, or a price the
   * pricing code cannot read, which is refused where it is priced).
   */
  private priceableLimit(meter: MeterConfig["meters"][number]): bigint | null {
    let limit = this.priceable.get(meter.meterId);
    if (limit === undefined) {
      try {
        limit = maxPriceableQuantity(meter, this.config!.currency);
      } catch {
        limit = null;
      }
      this.priceable.set(meter.meterId, limit);
    }
    return limit;
  }

  getConfig(): MeterConfig | null {
    return this.config;
  }

  /**
   * The period an instant belongs to: a known period (the subscription's own, e.g. a trial), else the anchor's
   * grid after the last known period. Null before the subscription's first period.
   */
  private periodFor(ts: number): { start: number; end: number; closedAt: number | null; known: boolean } | null {
    for (let i = this.periods.length - 1; i >= 0; i--) {
      const p = this.periods[i]!;
      if (ts >= p.start && ts < p.end) return { ...p, known: true };
    }
    const first = this.periods[0];
    // Clock skew: an event stamped moments before the subscription began belongs to its first period.
    if (first && ts < first.start && ts >= first.start - MAX_FUTURE_MS) return { ...first, known: true };
    const last = this.periods[this.periods.length - 1];
    const c = this.config!;
    if (!last || ts < last.end) return null;
    const g = periodAt(c.billingAnchor, c.interval, c.intervalCount, ts);
    return { start: Math.max(g.start, last.end), end: g.end, closedAt: null, known: false };
  }

  private grace: number | null = null;
  private graceMs(): number {
    return (this.grace ??= Number(this.env.USAGE_GRACE_SECONDS ?? "3600") * 1000);
  }

  private loadAggregate(meterId: string, periodStart: number): AggRow | undefined {
    return this.sql.exec<AggRow>("SELECT * FROM aggregates WHERE meter_id = ? AND period_start = ?", meterId, periodStart).toArray()[0];
  }

  /** The running aggregate, from memory when this instance has seen it (every write goes through saveAggregate). */
  private heldAggregate(meterId: string, periodStart: number): HeldAggregate {
    const key = aggregateKey(meterId, periodStart);
    let held = this.aggregates.get(key);
    if (!held) {
      const row = this.loadAggregate(meterId, periodStart);
      held = { state: row ? toState(row) : emptyAggregate(), resetAt: row?.reset_at ?? null, stored: row !== undefined };
      this.aggregates.set(key, held);
    }
    return held;
  }

  private saveAggregate(meterId: string, period: { start: number; end: number }, s: AggregateState, resetAt: number | null) {
    const key = aggregateKey(meterId, period.start);
    const stored = this.aggregates.get(key)?.stored ?? false;
    this.aggregates.set(key, { state: s, resetAt, stored: true });
    const values = [s.sum.toString(), s.count, s.max?.toString() ?? null, s.latest?.toString() ?? null, s.latestAt, s.uniqueCount, resetAt];
    if (stored) {
      const updated = this.sql.exec(
        "UPDATE aggregates SET sum = ?, count = ?, max = ?, latest = ?, latest_at = ?, unique_count = ?, reset_at = ?, rev = rev + 1 WHERE meter_id = ? AND period_start = ?",
        ...values,
        meterId,
        period.start,
      );
      updated.toArray(); // rowsWritten is final once the cursor is consumed
      if (updated.rowsWritten > 0) return; // counts index entries too, so not exactly 1
    }
    this.sql.exec(
      `INSERT INTO aggregates (meter_id, period_start, period_end, sum, count, max, latest, latest_at, unique_count, reset_at, rev, flushed_rev)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0)
       ON CONFLICT (meter_id, period_start) DO UPDATE SET sum = excluded.sum, count = excluded.count, max = excluded.max,
         latest = excluded.latest, latest_at = excluded.latest_at, unique_count = excluded.unique_count,
         reset_at = excluded.reset_at, rev = aggregates.rev + 1`,
      meterId,
      period.start,
      period.end,
      ...values,
    );
  }

  /**
   * Decides accept / duplicate / reject for each event and stores the accepted ones, all in one transaction. The
   * worker sends the events as encodeEvents' text (usage/meter-wire.ts); an array is still taken, as a caller
   * deployed before the text was would send it.
   */
  async ingest(sent: IngestEvent[] | string, realNow: number): Promise<IngestReply> {
    const events = typeof sent === "string" ? decodeEvents(sent) : sent;
    const now = this.effectiveNow(realNow);
    const touched = new Map<string, Touched>();
    let fired = 0;
    let reply: IngestReply;
    try {
      reply = this.ctx.storage.transactionSync(() => {
        const out: (IngestOutcome | undefined)[] = new Array(events.length);
        const accepted: number[] = [];
        const candidates: Candidate[] = [];
        const seen = new Set<string>();
        events.forEach((raw, i) => {
          const verdict = this.check(raw, i, now, seen);
          if ("status" in verdict) out[i] = verdict;
          else if (seen.has(verdict.event.eventKey)) out[i] = { index: raw.index, eventId: raw.eventId, status: "duplicate" };
          else {
            seen.add(verdict.event.eventKey);
            candidates.push(verdict);
          }
        });
        const stored = this.insertEvents(candidates, now);
        for (const c of candidates) {
          const e = c.event;
          if (!stored.has(e.eventKey)) {
            out[c.slot] = { index: e.index, eventId: e.eventId, status: "duplicate" };
            continue;
          }
          let isNewUnique = false;
          if (c.uniqueValue !== null) {
            const cursor = this.sql.exec("INSERT OR IGNORE INTO uniques (meter_id, period_start, value) VALUES (?, ?, ?)", e.meterId, c.period.start, c.uniqueValue);
            cursor.toArray();
            isNewUnique = cursor.rowsWritten > 0;
          }
          const key = aggregateKey(e.meterId, c.period.start);
          let t = touched.get(key);
          if (!t) {
            const held = this.heldAggregate(e.meterId, c.period.start);
            t = { meterId: e.meterId, period: { start: c.period.start, end: c.period.end }, state: held.state, resetAt: held.resetAt };
            touched.set(key, t);
          }
          const next = applyEvent(t.state, c.quantity, e.timestamp, isNewUnique);
          const limit = this.priceableLimit(c.meter);
          if (limit !== null && aggregateValue(next, c.meter.aggregation) > limit) {
            // Stored a moment ago in this transaction: taken back, so the period's total stays billable.
            this.sql.exec("DELETE FROM events WHERE event_key = ?", e.eventKey);
            if (isNewUnique) this.sql.exec("DELETE FROM uniques WHERE meter_id = ? AND period_start = ? AND value = ?", e.meterId, c.period.start, c.uniqueValue);
            out[c.slot] = {
              index: e.index,
              eventId: e.eventId,
              status: "rejected",
              reason: "invalid_quantity",
              detail: `it would take the meter's ${c.meter.aggregation} for the period past ${formatDecimal(limit)}, more than its price can bill (${MAX_METERED_AMOUNT_MINOR} minor units)`,
            };
            continue;
          }
          if (!c.period.known) this.rememberPeriod(c.period.start, c.period.end);
          t.state = next;
          accepted.push(c.slot);
        }
        // One aggregate write per meter and period touched, not one per event.
        for (const t of touched.values()) this.saveAggregate(t.meterId, t.period, t.state, t.resetAt);
        // Alerts: only when the configuration has some (an ingest without alerts does no extra storage work).
        const alerts = this.config?.alerts;
        // Stamped in the subscription's time (its test clock's, if any), as its other events are.
        if (alerts?.length) for (const t of touched.values()) fired += this.fireAlerts(t, alerts, now);
        return { accepted, others: out.filter((o) => o !== undefined) };
      });
    } catch (e) {
      // The transaction rolled back: the in-memory aggregates (and fired marks) may be ahead of storage.
      this.aggregates.clear();
      this.firedKeys.clear();
      throw e;
    }
    if (fired) await this.scheduleAlertDelivery(realNow);
    if (touched.size) await this.scheduleFlush(realNow);
    return reply;
  }

  /**
   * Records each alert of this meter whose threshold the period's aggregate has reached, once per (alert, period):
   * the INSERT OR IGNORE runs inside the ingest's storage transaction, so concurrent or repeated ingests cannot fire
   * twice, and a rolled-back ingest fires nothing. Returns how many fired now.
   */
  private fireAlerts(t: Touched, alerts: NonNullable<MeterConfig["alerts"]>, firedAt: number): number {
    const c = this.config!;
    const meter = c.meters.find((m) => m.meterId === t.meterId);
    if (!meter) return 0;
    let value: bigint | null = null;
    let fired = 0;
    for (const a of alerts) {
      if (a.meterId !== t.meterId) continue;
      const key = `${a.id}\u0000${t.period.start}`;
      if (this.firedKeys.has(key)) continue;
      const threshold = parseDecimal(a.threshold);
      if (!threshold.ok) continue;
      value ??= aggregateValue(t.state, meter.aggregation);
      if (value < threshold.value) continue;
      const object = {
        id: a.id,
        object: "usage_alert",
        /** "plan": a threshold of the plan's metered price; "subscription": POST /subscriptions/:id/usage-alerts. */
        source: a.id.startsWith("plan_alert:") ? "plan" : "subscription",
        subscriptionId: c.subscriptionId,
        customerId: c.customerId,
        meterId: a.meterId,
        threshold: formatDecimal(threshold.value),
        value: formatDecimal(value),
        period: { start: new Date(t.period.start).toISOString(), end: new Date(t.period.end).toISOString() },
      };
      const cursor = this.sql.exec(
        "INSERT OR IGNORE INTO alerts_fired (alert_id, period_start, fired_at, livemode, object) VALUES (?, ?, ?, ?, ?)",
        a.id,
        t.period.start,
        firedAt,
        c.testClockId ? 0 : null,
        JSON.stringify(object),
      );
      cursor.toArray();
      if (cursor.rowsWritten > 0) fired++;
      this.firedKeys.add(key);
    }
    return fired;
  }

  /**
   * Fired alerts reach D1 from the alarm, not from the ingest: ingestion never waits on (or fails with) D1, the
   * fired row is already durable in this object's storage, and the alarm retries until the write succeeds
   * (Durable Object alarms are retried by the runtime, and we reschedule while rows are pending). The event id is
   * deterministic per (alert, period), so a retry after a write whose acknowledgement was lost is a no-op.
   * A queue would need a second durable hand-off for the same guarantee; the alarm already exists for rollups.
   */
  private async scheduleAlertDelivery(realNow: number) {
    const at = await this.ctx.storage.getAlarm();
    if (at === null || at > realNow) await this.ctx.storage.setAlarm(realNow);
  }

  /** Writes pending fired alerts to D1's `events` (the outbox) and hands them to webhook delivery. */
  async deliverAlerts(): Promise<number> {
    const rows = this.sql
      .exec<{ alert_id: string; period_start: number; fired_at: number; livemode: number | null; object: string }>(
        "SELECT alert_id, period_start, fired_at, livemode, object FROM alerts_fired WHERE delivered_at IS NULL ORDER BY fired_at LIMIT ?",
        ALERT_DELIVERY_BATCH,
      )
      .toArray();
    if (!rows.length) return 0;
    const db = dbOf(this.env);
    const eventRows = await Promise.all(
      rows.map(async (r) => {
        const object = JSON.parse(r.object) as { id: string; customerId: string; subscriptionId: string };
        const row = eventRow(
          {
            type: "usage.threshold_crossed",
            objectType: "usage_alert",
            objectId: r.alert_id,
            customerId: object.customerId,
            object,
            livemode: r.livemode === null ? undefined : Boolean(r.livemode),
          },
          { now: r.fired_at },
        );
        return { ...row, id: await thresholdEventId(this.config?.subscriptionId ?? object.subscriptionId, r.alert_id, r.period_start, r.fired_at) };
      }),
    );
    const inserts = eventRows.map((row) => db.insert(eventsTable).values(row).onConflictDoNothing());
    await db.batch(inserts as [(typeof inserts)[number], ...typeof inserts]);
    const now = Date.now();
    for (const r of rows) this.sql.exec("UPDATE alerts_fired SET delivered_at = ? WHERE alert_id = ? AND period_start = ?", now, r.alert_id, r.period_start);
    eventsCommitted(eventRows.map((r) => r.id));
    return rows.length;
  }

  private isDuplicate(eventKey: string): boolean {
    return this.sql.exec("SELECT 1 FROM events WHERE event_key = ?", eventKey).toArray().length > 0;
  }

  /** Everything that decides an event's fate except whether it was stored before (that is the insert's job). */
  private check(raw: IngestEvent, slot: number, now: number, seen: Set<string>): IngestOutcome | Candidate {
    // Copied only to fill in a missing time: the caller's events are not changed.
    const e = raw.timestamp == null ? { ...raw, timestamp: now } : (raw as IngestEvent & { timestamp: number });
    // A retried event that was stored before is a duplicate even if it would be refused now (e.g. late).
    const reject = (reason: RejectReason, detail: string): IngestOutcome =>
      seen.has(e.eventKey) || this.isDuplicate(e.eventKey)
        ? { index: e.index, eventId: e.eventId, status: "duplicate" }
        : { index: e.index, eventId: e.eventId, status: "rejected", reason, detail };
    const c = this.config;
    if (!c) return { index: e.index, eventId: e.eventId, status: "rejected", reason: "unknown_subscription", detail: "no such subscription" };
    if (c.status === "canceled") return reject("subscription_canceled", "the subscription is canceled");
    if (c.status === "paused") return reject("subscription_paused", "the subscription is paused and not billed");
    const meter = c.meters.find((m) => m.meterId === e.meterId);
    if (!meter) return reject("unknown_meter", `the subscription's plan has no meter ${e.meterId}`);
    if (e.timestamp > now + MAX_FUTURE_MS) return reject("timestamp_in_future", "timestamp is more than 5 minutes in the future");
    const period = this.periodFor(e.timestamp);
    if (!period) return reject("before_subscription_start", "timestamp is before the subscription's first period");
    if (period.closedAt !== null) return reject("period_closed", "the event's billing period is closed (invoiced)");
    if (now >= period.end + this.graceMs()) {
      return reject("period_closed", `the event's billing period ended ${new Date(period.end).toISOString()} and its grace window has passed`);
    }
    let uniqueValue: string | null = null;
    if (meter.aggregation === "unique_count") {
      const field = meter.aggregationField ?? "";
      // Own keys only: a field named like an Object method ("constructor") must not read the prototype's.
      const v = e.metadata && Object.hasOwn(e.metadata, field) ? e.metadata[field] : undefined;
      if (v === undefined || v === null || v === "") {
        return reject("missing_unique_field", `metadata.${meter.aggregationField} is required by the unique_count meter ${meter.meterId}`);
      }
      uniqueValue = String(v);
    }
    const quantity = parseDecimal(e.quantity);
    if (!quantity.ok) return reject("invalid_quantity", `quantity ${quantity.error}`);
    return { slot, event: e, period, quantity: quantity.value, uniqueValue, meter };
  }

  /**
   * Stores events, one statement per chunk; returns the keys actually written, so a key already stored (a duplicate)
   * is simply absent. The rows travel as one JSON parameter read by json_each (cheaper than binding values per row,
   * and free of the 100-parameter limit), holding only what differs from row to row: a chunk's arrival rowids are
   * consecutive, so they and `received_at` come from the row's position, and a chunk of one meter and period (the
   * usual case) binds those once. Each value SQLite extracts from a row's JSON costs about as much as inserting the
   * row's key (docs/benchmarks.md). One event (a single-event request) binds its values directly.
   */
  private insertEvents(candidates: Candidate[], now: number): Set<string> {
    const stored = new Set<string>();
    // Each candidate takes the next arrival rowid (a duplicate's is simply never used).
    const nextSeq = () => {
      const seq = Math.max((this.lastSeq ?? -Infinity) + 1, Math.floor(now) * ARRIVAL_SLOTS);
      // Unreachable while test clocks stay before 2200 (src/modules/test-clocks): refuse rather than reuse a rowid.
      if (!Number.isSafeInteger(seq)) throw new Error(`arrival ${now} is beyond what the meter can number`);
      return (this.lastSeq = seq);
    };
    const insertOne = ({ event: e, period, uniqueValue }: Candidate) => {
      const seq = nextSeq();
      const written = this.sql.exec(
        "INSERT INTO events (rowid, event_key, meter_id, period_start, quantity, ts, received_at, unique_value, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
        seq,
        e.eventKey,
        e.meterId,
        period.start,
        e.quantity,
        e.timestamp,
        Math.floor(seq / ARRIVAL_SLOTS),
        uniqueValue,
        e.metadata ? JSON.stringify(e.metadata) : null,
      );
      written.toArray();
      if (written.rowsWritten > 0) stored.add(e.eventKey); // counts index entries too: 0 means a duplicate
    };
    if (candidates.length === 1) {
      insertOne(candidates[0]!);
      return stored;
    }
    // The chunk being gathered: its rows' rowids run from `first` (each took the next one, in order).
    let chunk: { c: Candidate; metadata: string | null }[] = [];
    let first = 0;
    let chars = 0;
    const flush = () => {
      const head = chunk[0]!.c;
      const uniform = chunk.every(({ c }) => c.event.meterId === head.event.meterId && c.period.start === head.period.start && c.uniqueValue === null);
      const rows = JSON.stringify(
        chunk.map(({ c, metadata }) =>
          uniform ? [c.event.eventKey, c.event.quantity, c.event.timestamp, metadata] : [c.event.eventKey, c.event.quantity, c.event.timestamp, metadata, c.event.meterId, c.period.start, c.uniqueValue],
        ),
      );
      // Bound numbers arrive as REAL: the rowid base is cast so `received_at` is an integer division.
      if (uniform) this.sql.exec(INSERT_UNIFORM_CHUNK, rows, first, head.event.meterId, head.period.start).toArray();
      else this.sql.exec(INSERT_MIXED_CHUNK, rows, first).toArray();
      const written = this.sql.exec<{ n: number }>("SELECT changes() AS n").one().n;
      if (written === chunk.length) for (const { c } of chunk) stored.add(c.event.eventKey);
      else if (written > 0) {
        // Some keys were stored before (duplicates, skipped by ON CONFLICT): a row of this chunk exists exactly when
        // its rowid does, since every rowid from `first` on is new.
        const present = new Set(this.sql.exec<{ r: number }>("SELECT rowid AS r FROM events WHERE rowid BETWEEN ? AND ?", first, first + chunk.length - 1).toArray().map((x) => x.r));
        chunk.forEach(({ c }, i) => present.has(first + i) && stored.add(c.event.eventKey));
      }
      chunk = [];
      chars = 0;
    };
    for (const c of candidates) {
      const { event: e, uniqueValue } = c;
      // SQLite's JSON functions cut a string at a NUL and replace lone surrogates: such keys would collide with
      // others. They are bound as values instead, which keeps them whole (as a single event does).
      if (!jsonSafe(e.eventKey) || !jsonSafe(e.meterId) || (uniqueValue !== null && !jsonSafe(uniqueValue))) {
        if (chunk.length) flush(); // rows keep their arrival order (the events listing pages by it)
        insertOne(c);
        continue;
      }
      const metadata = e.metadata ? JSON.stringify(e.metadata) : null; // JSON.stringify escapes NULs and lone surrogates
      const seq = nextSeq();
      if (chunk.length && seq !== first + chunk.length) flush(); // cannot happen (rowids are taken in order), but the chunk's rowids depend on it
      if (!chunk.length) first = seq;
      chunk.push({ c, metadata });
      // Well under a Durable Object's 2 MB limit on one SQL string or value: the chunk's JSON escapes the metadata's
      // JSON once more (at most doubling it), and an event's metadata is at most 32 KB (MAX_METADATA_CHARS).
      chars += e.eventKey.length + 2 * (metadata?.length ?? 0) + (uniqueValue?.length ?? 0) + 64;
      if (chars > INSERT_JSON_CHARS) flush();
    }
    if (chunk.length) flush();
    return stored;
  }

  private flushScheduled = false;

  private async scheduleFlush(now: number) {
    if (this.flushScheduled) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + ROLLUP_DELAY_MS);
    this.flushScheduled = true;
  }

  /** `known`: the row as the caller read it (null: none), else it is read here. */
  private aggregateOf(meterId: string, aggregation: MeterConfig["meters"][number]["aggregation"], period: { start: number; end: number; closedAt: number | null }, known?: AggRow | null): MeterAggregate {
    const row = known === undefined ? this.loadAggregate(meterId, period.start) : (known ?? undefined);
    const state = row ? toState(row) : emptyAggregate();
    return {
      meterId,
      aggregation,
      value: formatDecimal(aggregateValue(state, aggregation)),
      eventCount: state.count,
      periodStart: period.start,
      periodEnd: period.end,
      closed: period.closedAt !== null,
      resetAt: row?.reset_at ?? null,
    };
  }

  private resolvePeriod(selector: PeriodSelector, now: number) {
    const current = this.periodFor(now) ?? this.periods[this.periods.length - 1];
    if (!current) return null;
    if (selector.kind === "current") return current;
    if (selector.kind === "previous") {
      const known = this.periods.filter((p) => p.end <= current.start);
      const prev = known[known.length - 1];
      if (prev) return prev;
      const c = this.config!;
      const g = periodAt(c.billingAnchor, c.interval, c.intervalCount, current.start - 1);
      return this.periods[0] && g.end <= this.periods[0].start ? null : { start: g.start, end: g.end, closedAt: null };
    }
    return this.periods.find((p) => p.start === selector.start) ?? this.periodFor(selector.start);
  }

  /**
   * A period's stored events, newest arrival first, for support ("which events make up this figure?"). Events of a
   * period arrive between its start less the clock skew allowed and its end plus the grace window, so the scan
   * walks that slice of arrivals only (a rowid range; the arrival index on a meter that still has one), whatever
   * the period.
   */
  events(selector: PeriodSelector, meterId: string | null, limit: number, after: EventCursor | null, realNow: number): EventsOutcome {
    const now = this.effectiveNow(realNow);
    if (!this.config) return { ok: false, error: "unknown_subscription" };
    const period = this.resolvePeriod(selector, now);
    if (!period) return { ok: false, error: "no_such_period" };
    const from = period.start - MAX_FUTURE_MS;
    const to = after ? after.receivedAt : period.end + this.graceMs();
    type Row = { seq: number; event_key: string; meter_id: string; quantity: string; ts: number; received_at: number; metadata: string | null };
    const rows = this.arrivalFrom !== null
      ? this.sql
          .exec<Row>(
            `SELECT rowid AS seq, event_key, meter_id, quantity, ts, received_at, metadata FROM events INDEXED BY events_received_idx
             WHERE received_at >= ? AND received_at <= ? AND period_start = ? AND (? IS NULL OR meter_id = ?)
               AND (? IS NULL OR received_at < ? OR rowid < ?)
             ORDER BY received_at DESC, rowid DESC LIMIT ?`,
            from,
            to,
            period.start,
            meterId,
            meterId,
            after?.seq ?? null,
            after?.receivedAt ?? null,
            after?.seq ?? null,
            limit + 1,
          )
          .toArray()
      : this.sql
          .exec<Row>(
            `SELECT rowid AS seq, event_key, meter_id, quantity, ts, received_at, metadata FROM events
             WHERE rowid >= ? AND rowid <= ? AND period_start = ? AND (? IS NULL OR meter_id = ?)
             ORDER BY rowid DESC LIMIT ?`,
            from * ARRIVAL_SLOTS,
            after ? after.seq - 1 : (to + 1) * ARRIVAL_SLOTS - 1,
            period.start,
            meterId,
            meterId,
            limit + 1,
          )
          .toArray();
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      ok: true,
      periodStart: period.start,
      periodEnd: period.end,
      events: page.map((r) => ({
        eventId: r.event_key.startsWith("id:") ? r.event_key.slice(3) : null,
        dedupeKey: r.event_key,
        meterId: r.meter_id,
        quantity: r.quantity,
        timestamp: r.ts,
        receivedAt: r.received_at,
        metadata: r.metadata ? (JSON.parse(r.metadata) as StoredEvent["metadata"]) : null,
      })),
      next: rows.length > limit && last ? { receivedAt: last.received_at, seq: last.seq } : null,
    };
  }

  /** Per-meter aggregates of one period (current, previous, or the one starting/containing an instant). */
  summary(selector: PeriodSelector, realNow: number): SummaryOutcome {
    const now = this.effectiveNow(realNow);
    const c = this.config;
    if (!c) return { ok: false, error: "unknown_subscription" };
    const period = this.resolvePeriod(selector, now);
    if (!period) return { ok: false, error: "no_such_period" };
    return { ok: true, config: c, periodStart: period.start, periodEnd: period.end, meters: c.meters.map((m) => this.aggregateOf(m.meterId, m.aggregation, period)) };
  }

  /** Zeroes one meter for the open period; the events stay, and a reset marker records who and why. */
  async reset(meterId: string, actor: string, reason: string | null, realNow: number): Promise<ResetOutcome> {
    const now = this.effectiveNow(realNow);
    const c = this.config;
    if (!c) return { ok: false, error: "unknown_subscription" };
    const meter = c.meters.find((m) => m.meterId === meterId);
    if (!meter) return { ok: false, error: "unknown_meter" };
    const period = this.periodFor(now);
    if (!period) return { ok: false, error: "no_such_period" };
    let outcome: ResetOutcome;
    try {
      outcome = this.ctx.storage.transactionSync(() => {
        if (!period.known) this.rememberPeriod(period.start, period.end);
        const before = this.aggregateOf(meterId, meter.aggregation, period);
        this.sql.exec("DELETE FROM uniques WHERE meter_id = ? AND period_start = ?", meterId, period.start);
        this.saveAggregate(meterId, period, emptyAggregate(), now);
        this.sql.exec("INSERT INTO resets (meter_id, period_start, at, actor, reason, before) VALUES (?, ?, ?, ?, ?, ?)", meterId, period.start, now, actor, reason, JSON.stringify(before));
        return { ok: true as const, before, after: this.aggregateOf(meterId, meter.aggregation, period) };
      });
    } catch (e) {
      this.aggregates.clear();
      throw e;
    }
    await this.scheduleFlush(realNow);
    return outcome;
  }

  /**
   * Closes a period for invoicing: later events for it are refused, the final aggregates are written to D1
   * (closed) and returned. Closing again returns the same figures.
   */
  async closePeriod(
    periodStart: number,
    now: number,
    opts: { rollups?: "write" | "return" } = {},
  ): Promise<{ ok: true; meters: MeterAggregate[]; rollups?: ClosedRollup[] } | { ok: false; error: string }> {
    const c = this.config;
    if (!c) return { ok: false, error: "unknown_subscription" };
    const period = this.periods.find((p) => p.start === periodStart);
    if (!period) return { ok: false, error: "no_such_period" };
    if (period.closedAt === null) {
      this.sql.exec("UPDATE periods SET closed_at = ? WHERE start = ?", now, periodStart);
      period.closedAt = now;
    }
    // "return": the caller writes the closed period's rollups in its own D1 batch (a renewal: one round trip less)
    // and hands their revisions back through `configure`; until then they count as not written, so an alarm after a
    // batch that failed writes them itself. One read of the period's aggregates answers both.
    if (opts.rollups === "return") {
      // Rows an earlier flush wrote (as open) count as unwritten again: their closed figures are not in D1 until the
      // caller's batch commits, and should it never commit, the meter's next alarm writes them.
      const bumped = this.sql.exec("UPDATE aggregates SET rev = rev + 1 WHERE period_start = ? AND rev = flushed_rev", periodStart).rowsWritten;
      // Nothing else may wake the meter (a subscription that ends here): an alarm does, and the hand-back cancels it.
      if (bumped > 0) await this.scheduleFlush(now);
      const rows = this.sql.exec<AggRow>("SELECT * FROM aggregates WHERE period_start = ?", periodStart).toArray();
      const byMeter = new Map(rows.map((r) => [r.meter_id, r]));
      const meters = c.meters.map((m) => this.aggregateOf(m.meterId, m.aggregation, period, byMeter.get(m.meterId) ?? null));
      return { ok: true, meters, rollups: rows.map((r) => ({ rev: r.rev, values: this.rollupValues(r, now) })) };
    }
    const meters = c.meters.map((m) => this.aggregateOf(m.meterId, m.aggregation, period));
    await this.flush(now, periodStart);
    return { ok: true, meters };
  }

  private rollupValues(r: AggRow, now: number): RollupValues {
    const c = this.config!;
    const meter = c.meters.find((m) => m.meterId === r.meter_id);
    const period = this.periods.find((p) => p.start === r.period_start);
    return {
      subscriptionId: c.subscriptionId,
      meterId: r.meter_id,
      periodStart: r.period_start,
      periodEnd: r.period_end,
      value: formatDecimal(aggregateValue(toState(r), meter?.aggregation ?? "sum")),
      eventCount: r.count,
      closed: Boolean(period?.closedAt),
      updatedAt: now,
    };
  }

  /** Writes changed aggregates to D1 `usage_rollups`; marks them flushed only at the revision written. */
  async flush(now: number, onlyPeriod?: number): Promise<number> {
    const c = this.config;
    if (!c) return 0;
    const rows = this.sql
      .exec<AggRow>(
        onlyPeriod === undefined ? "SELECT * FROM aggregates WHERE rev > flushed_rev" : "SELECT * FROM aggregates WHERE rev > flushed_rev OR period_start = ?",
        ...(onlyPeriod === undefined ? [] : [onlyPeriod]),
      )
      .toArray();
    if (!rows.length) return 0;
    const db = dbOf(this.env);
    const statements = rows.map((r) => rollupUpsert(db, this.rollupValues(r, now)));
    await db.batch(statements as [(typeof statements)[number], ...typeof statements]);
    for (const r of rows) {
      this.sql.exec("UPDATE aggregates SET flushed_rev = ? WHERE meter_id = ? AND period_start = ? AND flushed_rev < ?", r.rev, r.meter_id, r.period_start, r.rev);
    }
    return rows.length;
  }

  /** Whether the alarm has work: aggregates not written to D1, alerts not delivered. */
  private flushPending(): boolean {
    return (
      this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM aggregates WHERE rev > flushed_rev").one().n +
        this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM alerts_fired WHERE delivered_at IS NULL").one().n >
      0
    );
  }

  /**
   * Forgets events received before `cutoff` (their ids leave the dedup window). A meter that still has its arrival
   * index sweeps through it, and drops it once no row from before arrival rowids is left.
   */
  private sweepEvents(cutoff: number) {
    if (this.arrivalFrom === null) {
      this.sql.exec("DELETE FROM events WHERE rowid < ?", cutoff * ARRIVAL_SLOTS);
      return;
    }
    this.sql.exec("DELETE FROM events WHERE received_at < ?", cutoff);
    const oldest = this.sql.exec<{ m: number | null }>("SELECT min(rowid) AS m FROM events").one().m;
    if (oldest === null || oldest >= this.arrivalFrom) {
      this.sql.exec("DROP INDEX IF EXISTS events_received_idx");
      this.sql.exec("DELETE FROM meta WHERE key = 'arrival_from'");
      this.arrivalFrom = null;
    }
  }

  /** Rollup flush and dedup-window housekeeping. */
  override async alarm(): Promise<void> {
    const realNow = Date.now();
    // Events are stamped and received in the subscription's time (its test clock's, if on one): so is their retention.
    const now = this.effectiveNow(realNow);
    this.flushScheduled = false;
    try {
      await this.deliverAlerts();
    } catch (e) {
      console.log(JSON.stringify({ level: "error", msg: "usage alert delivery failed; retrying", subscriptionId: this.config?.subscriptionId, error: String(e) }));
    }
    await this.flush(now);
    this.sweepEvents(now - DEDUP_RETENTION_MS);
    if (this.flushPending()) {
      await this.ctx.storage.setAlarm(realNow + ROLLUP_DELAY_MS);
      this.flushScheduled = true;
    }
  }
}
