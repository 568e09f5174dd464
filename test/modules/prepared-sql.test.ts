import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { eq, inArray, sql } from "drizzle-orm";
import { dbOf } from "../../src/db/client";
import { auditLog, events } from "../../src/db/schema";
import { builtOnce, insertRow, insertRowIfChanged, insertRows, updateWhere } from "../../src/db/prepared";

// The billing run's hot path writes these rows with prepared SQL (src/db/prepared.ts) instead of drizzle's builder:
// what lands in D1, and what reads answer, must be what drizzle would have written and answered.

const eventRow = (id: string, over: Partial<typeof events.$inferInsert> = {}): typeof events.$inferInsert => ({
  id,
  type: "invoice.created",
  objectType: "invoice",
  objectId: "inv_prepared",
  customerId: null,
  livemode: true,
  requestId: "req_1",
  data: { object: { id: "inv_prepared", total: 1234, lines: [{ amount: "12.34" }], note: 'quote " and \\ backslash' }, previousAttributes: null },
  createdAt: 1_700_000_000_000,
  ...over,
});

describe("prepared SQL for hot-path inserts", () => {
  it("writes the same row drizzle's insert writes (JSON, booleans, nulls)", async () => {
    const db = dbOf(env);
    await db.batch([db.insert(events).values(eventRow("evt_prep_drizzle")), insertRow(db, events, eventRow("evt_prep_prepared"))]);
    const rows = await db.select().from(events).where(inArray(events.id, ["evt_prep_drizzle", "evt_prep_prepared"])).orderBy(events.id).all();
    expect(rows).toHaveLength(2);
    const [a, b] = rows.map(({ id: _id, ...rest }) => rest);
    expect(b).toEqual(a);
    expect(b!.livemode).toBe(true);
    expect(b!.data.object).toMatchObject({ total: 1234, note: 'quote " and \\ backslash' });
    // The raw stored values too (what other readers, e.g. json_extract in SQL, see).
    const raw = await env.DB.prepare("SELECT livemode, data, customer_id FROM events WHERE id IN ('evt_prep_drizzle', 'evt_prep_prepared') ORDER BY id").all();
    expect(raw.results[1]).toEqual(raw.results[0]);
  });

  it("a guarded update sets what drizzle's sets, only where every matched column (or one of a list) holds", async () => {
    const db = dbOf(env);
    await db.batch([insertRow(db, events, eventRow("evt_upd_drizzle")), insertRow(db, events, eventRow("evt_upd_prepared"))]);
    const data = { object: { id: "x", changed: true, text: 'a "quoted" value' }, previousAttributes: { n: 1 } };
    const [miss, listed] = await db.batch([
      // The type does not match: nothing changes.
      updateWhere(db, events, { livemode: false }, { id: "evt_upd_prepared", type: "invoice.paid" }),
      updateWhere(db, events, { livemode: false, data, requestId: null }, { id: "evt_upd_prepared", type: ["invoice.paid", "invoice.created"] }),
      db.update(events).set({ livemode: false, data, requestId: null }).where(eq(events.id, "evt_upd_drizzle")),
    ]);
    expect([(miss as D1Result).meta.changes, (listed as D1Result).meta.changes]).toEqual([0, 1]);
    const raw = await env.DB.prepare("SELECT livemode, data, request_id, type FROM events WHERE id IN ('evt_upd_drizzle', 'evt_upd_prepared') ORDER BY id").all();
    expect(raw.results[1]).toEqual(raw.results[0]);
    expect(raw.results[1]).toMatchObject({ livemode: 0, request_id: null });
  });

  it("inserts an if-changed row only when the statement before it changed a row", async () => {
    const db = dbOf(env);
    await db.batch([db.update(events).set({ requestId: "req_none" }).where(eq(events.id, "evt_prep_missing")), insertRowIfChanged(db, events, eventRow("evt_prep_skipped"))]);
    await db.insert(events).values(eventRow("evt_prep_target"));
    await db.batch([db.update(events).set({ requestId: "req_2" }).where(eq(events.id, "evt_prep_target")), insertRowIfChanged(db, events, eventRow("evt_prep_written", { livemode: false }))]);
    const ids = (await db.select({ id: events.id, livemode: events.livemode }).from(events).where(inArray(events.id, ["evt_prep_skipped", "evt_prep_written"])).all());
    expect(ids).toEqual([{ id: "evt_prep_written", livemode: false }]);
  });

  it("writes many rows in as few statements as 100 bound parameters allow, in the order given", async () => {
    const db = dbOf(env);
    const rows = Array.from({ length: 20 }, (_, i) => ({ id: `aud_prep_${String(i).padStart(2, "0")}`, at: 1, actor: "a", actorRole: "admin", action: `prep.${i}`, targetType: "t", targetId: "x", requestId: null, before: null, after: "{}", reason: null, mac: null }));
    const statements = insertRows(db, auditLog, rows);
    expect(statements).toHaveLength(3); // 12 columns: 8 rows a statement
    await db.batch(statements as [(typeof statements)[number], ...typeof statements]);
    const stored = await db.select().from(auditLog).where(sql`${auditLog.id} LIKE 'aud_prep_%'`).orderBy(auditLog.seq).all();
    expect(stored.map((r) => r.id)).toEqual(rows.map((r) => r.id));
    expect(stored[0]).toMatchObject({ action: "prep.0", after: "{}", before: null, reason: null });
  });

  it("a query built once answers each call's own rows, mapped as drizzle maps them", async () => {
    const db = dbOf(env);
    await db.batch([db.insert(events).values(eventRow("evt_prep_read_1")), db.insert(events).values(eventRow("evt_prep_read_2", { livemode: false, customerId: "cus_2" }))]);
    const byId = builtOnce((d: typeof db) => [d.select().from(events).where(eq(events.id, sql.placeholder("id")))] as const);
    const [first] = await db.batch(byId(db, { id: "evt_prep_read_1" }));
    const [second] = await db.batch(byId(db, { id: "evt_prep_read_2" }));
    expect(first).toEqual(await db.select().from(events).where(eq(events.id, "evt_prep_read_1")).all());
    expect(second).toEqual(await db.select().from(events).where(eq(events.id, "evt_prep_read_2")).all());
    expect(second[0]).toMatchObject({ livemode: false, customerId: "cus_2" });
  });
});
