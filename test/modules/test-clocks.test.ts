import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, created } from "../helpers";

// GET /api/v1/test-clocks: the clocks that exist, newest first, so the console (and a script) can find a clock it did
// not create itself. Storage is this file's own: the list holds exactly the clocks made here.

describe("GET /api/v1/test-clocks", () => {
  it("lists every clock newest first with cursor pages, readable by every role; 404 where test clocks are off", async () => {
    const ids: string[] = [];
    for (const [i, at] of ["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"].entries()) {
      ids.push((await created("/api/v1/test-clocks", { frozenTime: at, name: `rehearsal ${i}` })).id);
    }
    // Same-millisecond creations are ordered by id: read the expected order from the stored rows.
    const rows = await env.DB.prepare("SELECT id FROM test_clocks ORDER BY created_at DESC, id DESC").all<{ id: string }>();
    const newestFirst = rows.results.map((r) => r.id);
    expect([...newestFirst].sort()).toEqual([...ids].sort());

    const first = await api("GET", "/api/v1/test-clocks?limit=2", { as: "viewer" });
    expect(first.status).toBe(200);
    expect(first.body.data.map((c: { id: string }) => c.id)).toEqual(newestFirst.slice(0, 2));
    expect(first.body).toMatchObject({ hasMore: true, nextCursor: newestFirst[1] });
    const second = await api("GET", `/api/v1/test-clocks?limit=2&startingAfter=${first.body.nextCursor}`, { as: "support" });
    expect(second.body).toMatchObject({ hasMore: false, nextCursor: null });
    expect(second.body.data.map((c: { id: string }) => c.id)).toEqual(newestFirst.slice(2));
    const clock = [...first.body.data, ...second.body.data].find((c: { id: string }) => c.id === ids[0]);
    expect(clock).toEqual({ id: ids[0], name: "rehearsal 0", frozenTime: "2024-01-01T00:00:00.000Z", status: "ready", createdAt: expect.any(String) });

    // The same roles as getTestClock: every reader; no token is 401; a cursor that names no clock is 400.
    for (const role of ["admin", "finance", "support", "viewer"] as const) expect((await api("GET", "/api/v1/test-clocks", { as: role })).status).toBe(200);
    expect((await api("GET", "/api/v1/test-clocks", { as: null })).status).toBe(401);
    const unknown = await api("GET", "/api/v1/test-clocks?startingAfter=clock_nope");
    expect(unknown.status).toBe(400);
    expect(unknown.body.detail).toContain("clock_nope");
    // Production has no test clocks: the list is refused like every test-clock route.
    expect((await api("GET", "/api/v1/test-clocks", { env: { TEST_CLOCKS: "off" } })).status).toBe(404);
  });
});

describe("a test clock's time", () => {
  it("stays between 1970 and 2200, for creation and advance alike, naming frozenTime", async () => {
    // Usage meters number events by arrival (durable-objects/usage-meter.ts, ARRIVAL_SLOTS): exact only until 2248.
    for (const frozenTime of ["9999-12-31T00:00:00Z", "2200-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]) {
      const r = await api("POST", "/api/v1/test-clocks", { body: { frozenTime } });
      expect(r.status).toBe(422);
      expect(r.body.errors).toEqual([{ path: "frozenTime", message: expect.stringContaining("2200-01-01") }]);
    }
    const clock = await created("/api/v1/test-clocks", { frozenTime: "2199-12-01T00:00:00Z" });
    const advance = await api("POST", `/api/v1/test-clocks/${clock.id}/advance`, { body: { frozenTime: "2300-01-01T00:00:00Z" } });
    expect(advance.status).toBe(422);
    expect(advance.body.errors[0].path).toBe("frozenTime");
    expect((await api("GET", `/api/v1/test-clocks/${clock.id}`)).body.frozenTime).toBe("2199-12-01T00:00:00.000Z");
  });
});
