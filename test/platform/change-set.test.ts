import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { dbOf } from "../../src/db/client";
import { events, testClocks } from "../../src/db/schema";
import { change, commit } from "../../src/platform/change-set";
import { eventInsertIfChanged, eventRow, toEvent } from "../../src/platform/events";
import type { AuditContext } from "../../src/platform/audit";

const ctx = (): AuditContext => ({ actor: { id: "test-platform", kind: "user", role: "admin", scopes: [] }, now: Date.now(), requestId: "req_platform" });

// A test clock is a small row with a status column: enough to exercise a guarded transition without an owner.
async function clock(id: string) {
  const now = Date.now();
  await dbOf(env).insert(testClocks).values({ id, name: null, frozenTime: now, status: "ready", createdAt: now, updatedAt: now });
}

describe("commit(change set)", () => {
  it("writes statements, events and audit rows in one batch, and an event row in its public shape", async () => {
    const db = dbOf(env);
    await clock("clock_cs1");
    const c = ctx();
    const { events: written } = await commit(
      db,
      change({
        statements: [db.update(testClocks).set({ name: "renamed" }).where(eq(testClocks.id, "clock_cs1"))],
        audit: [{ action: "test.renamed", targetType: "test_clock", targetId: "clock_cs1" }],
        events: [{ type: "test.webhook", objectType: "test_clock", objectId: "clock_cs1", object: { id: "clock_cs1", name: "renamed" }, previousAttributes: { name: null } }],
      }),
      c,
    );
    expect(written).toHaveLength(1);
    const row = await db.select().from(events).where(eq(events.id, written[0]!.id)).get();
    expect(toEvent(row!)).toMatchObject({ id: expect.stringMatching(/^evt_/), object: "event", type: "test.webhook", requestId: "req_platform", livemode: false, data: { object: { id: "clock_cs1", name: "renamed" }, previousAttributes: { name: null } } });
  });

  it("nothing is written when a statement of the batch fails: no event without its change", async () => {
    const db = dbOf(env);
    await clock("clock_cs2");
    const before = (await db.select().from(events).all()).length;
    await expect(
      commit(db, change({ statements: [db.insert(testClocks).values({ id: "clock_cs2", name: null, frozenTime: 0, status: "ready", createdAt: 0, updatedAt: 0 })], events: [{ type: "test.webhook", objectType: "test_clock", objectId: "clock_cs2", object: {} }] }), ctx()),
    ).rejects.toThrow();
    expect((await db.select().from(events).all()).length).toBe(before);
  });

  it("eventInsertIfChanged writes the event only when the guarded update before it moved the row", async () => {
    const db = dbOf(env);
    await clock("clock_cs3");
    const move = (from: "ready" | "advancing", to: "ready" | "advancing") => {
      const row = eventRow({ type: "test.webhook", objectType: "test_clock", objectId: "clock_cs3", object: { status: to }, previousAttributes: { status: from } }, ctx());
      return db.batch([db.update(testClocks).set({ status: to }).where(and(eq(testClocks.id, "clock_cs3"), eq(testClocks.status, from))), eventInsertIfChanged(db, row)]);
    };
    await move("ready", "advancing");
    await move("ready", "advancing"); // already moved: no-op, no event
    const rows = await db.select().from(events).where(eq(events.objectId, "clock_cs3")).all();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.data).toEqual({ object: { status: "advancing" }, previousAttributes: { status: "ready" } });
  });
});
