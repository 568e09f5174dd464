import { expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { api, unique } from "../helpers";

const maxSeq = async () => (await env.DB.prepare("SELECT coalesce(max(seq), 0) AS s FROM audit_log").first<{ s: number }>())!.s;

it("200 concurrent audited writes all land at once, without seq-conflict retries, in a gap-free chain that verifies", { timeout: 120_000 }, async () => {
  const before = await maxSeq();
  const logs = vi.spyOn(console, "log");
  try {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => api("POST", "/api/v1/customers", { body: { email: `${unique(`c${i}`)}@example.com` } })));
    expect(results.filter((r) => r.status !== 201).map((r) => r.body)).toEqual([]);
    const retries = logs.mock.calls.filter(([line]) => String(line).includes("audit seq conflict"));
    expect(retries).toHaveLength(0);
  } finally {
    logs.mockRestore();
  }
  const seqs = (await env.DB.prepare("SELECT seq FROM audit_log WHERE seq > ? ORDER BY seq").bind(before).all<{ seq: number }>()).results.map((r) => r.seq);
  expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => before + 1 + i));
  const verify = await api("GET", "/api/v1/audit/verify-integrity");
  expect(verify.body).toMatchObject({ valid: true, ok: true, brokenAt: null, checked: before + 200 });
});

it("audited commits in one isolate poke the one global AuditAnchor about once per seal, not once each; the seal still takes every row", { timeout: 60_000 }, async () => {
  const { commitWithAudit, forgetPendingSeal, AUDIT_ANCHOR_NAME } = await import("../../src/platform/audit");
  const { dbOf } = await import("../../src/db/client");
  const { SYSTEM_ACTOR } = await import("../../src/platform/actor");
  const { runDurableObjectAlarm } = await import("cloudflare:test");
  const real = env.AUDIT_ANCHOR;
  // A seal left pending by earlier writes runs first, so the first commit here schedules the next one.
  await runDurableObjectAlarm(real.get(real.idFromName(AUDIT_ANCHOR_NAME)));
  forgetPendingSeal();
  let pokes = 0;
  const pending: Promise<unknown>[] = [];
  const counting = {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id);
      return {
        poke: () => {
          pokes++;
          const p = stub.poke();
          pending.push(p);
          return p;
        },
      };
    },
  };
  const e = env as unknown as { AUDIT_ANCHOR: unknown };
  e.AUDIT_ANCHOR = counting;
  const before = await maxSeq();
  try {
    for (let i = 0; i < 20; i++) {
      await commitWithAudit(dbOf(env), [], [{ action: "test.poke", targetType: "test", targetId: `t${i}` }], { actor: SYSTEM_ACTOR, now: Date.now() });
      await Promise.all(pending); // as the waitUntil would: the poke's answer has arrived before the next commit
    }
  } finally {
    e.AUDIT_ANCHOR = real;
  }
  expect(pokes).toBeLessThanOrEqual(2);
  // The seal the first poke scheduled runs and takes all twenty rows.
  await vi.waitFor(async () => expect(await runDurableObjectAlarm(real.get(real.idFromName(AUDIT_ANCHOR_NAME)))).toBe(true), { timeout: 5_000 });
  const unsealed = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE seq > ? AND chain IS NULL").bind(before).first<{ n: number }>();
  expect(unsealed!.n).toBe(0);
});
