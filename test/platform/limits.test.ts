import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CLOUDFLARE_LIMITS, LimitExceeded, withLimits } from "../../src/platform/limits";
import { api } from "../helpers";

type Line = { msg?: string; invocation?: string; d1Queries?: number; subrequests?: number; queueSends?: number; limitExceeded?: string };
function logLines() {
  const spy = vi.spyOn(console, "log");
  return () =>
    spy.mock.calls.flatMap(([a]) => {
      try {
        return [JSON.parse(String(a)) as Line];
      } catch {
        return [];
      }
    });
}
afterEach(() => vi.restoreAllMocks());

describe("per-invocation limits", () => {
  it("logs each request's counts on one line", async () => {
    const lines = logLines();
    const r = await api("GET", "/api/v1/customers?limit=1");
    expect(r.status).toBe(200);
    const line = lines().find((l) => l.msg === "invocation" && l.invocation === "GET /api/v1/customers");
    expect(line).toBeDefined();
    expect(line!.d1Queries).toBeGreaterThan(0);
    expect(line!.subrequests).toBeGreaterThanOrEqual(0);
    expect(line!.queueSends).toBe(0);
  });

  it("counts every statement of a batch, queue sends, Durable Object calls and R2 operations", async () => {
    const lines = logLines();
    await withLimits(env, "test counts", async (e) => {
      await e.DB.prepare("SELECT 1").first();
      await e.DB.batch([e.DB.prepare("SELECT 1"), e.DB.prepare("SELECT ?").bind(2), e.DB.prepare("SELECT 3")]);
      await e.JOB_QUEUE.sendBatch([{ body: { type: "noop" } }, { body: { type: "noop" } }]);
      await e.WEBHOOK_QUEUE.send({ type: "noop" });
      await e.ARCHIVE.head("nothing-here");
      const anchor = e.AUDIT_ANCHOR.get(e.AUDIT_ANCHOR.idFromName("limits-test"));
      await anchor.poke();
    });
    expect(lines().find((l) => l.msg === "invocation" && l.invocation === "test counts")).toMatchObject({ d1Queries: 4, queueSends: 3, subrequests: 4 });
  });

  it("fails the invocation past 1,000 D1 queries, even when the code swallows the error", async () => {
    const lines = logLines();
    const run = withLimits(env, "test too many queries", async (e) => {
      await e.DB.batch(Array.from({ length: CLOUDFLARE_LIMITS.d1Queries }, () => e.DB.prepare("SELECT 1")));
      await e.DB.prepare("SELECT 1").first().catch(() => null);
      return "swallowed";
    });
    await expect(run).rejects.toBeInstanceOf(LimitExceeded);
    await expect(run).rejects.toThrow(/test too many queries.*more than 1000 D1 queries.*d1Queries 1001/);
    expect(lines().find((l) => l.msg === "cloudflare limit exceeded")).toMatchObject({ invocation: "test too many queries", d1Queries: 1001 });
  });

  it("refuses a sendBatch of more than 100 messages", async () => {
    const msgs = Array.from({ length: 101 }, () => ({ body: { type: "noop" } }));
    await expect(withLimits(env, "test big batch", (e) => e.JOB_QUEUE.sendBatch(msgs))).rejects.toThrow(/sendBatch of 101 messages/);
  });

  it("count mode logs the crossing without failing", async () => {
    const lines = logLines();
    const r = await withLimits({ ...env, LIMITS: "count" } as unknown as Env, "test count mode", async (e) => {
      await e.DB.batch(Array.from({ length: 1001 }, () => e.DB.prepare("SELECT 1")));
      return "ok";
    });
    expect(r).toBe("ok");
    expect(lines().find((l) => l.msg === "invocation" && l.invocation === "test count mode")).toMatchObject({ d1Queries: 1001, limitExceeded: "more than 1000 D1 queries" });
  });

  it("keeps the static assets binding a fetcher (counted), so /console and /docs assets are served under it", async () => {
    const r = await withLimits(env, "test assets", async (e) => {
      const res = await e.ASSETS.fetch("http://localhost/console/index.html");
      await res.arrayBuffer();
      return res.status;
    });
    // 200 when the console is built, 404 when not: never a TypeError (it was wrapped as a D1 database before).
    expect([200, 404]).toContain(r);
  });

  it("is not there at all when LIMITS is unset", async () => {
    const off = { ...env, LIMITS: undefined } as unknown as Env;
    let seen: Env | null = null;
    await withLimits(off, "test off", async (e) => void (seen = e));
    expect(seen).toBe(off);
  });
});
