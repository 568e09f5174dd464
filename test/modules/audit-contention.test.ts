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

it("audited commits in one isolate poke the one global AuditAnchor once per pending seal, not once each", { timeout: 60_000 }, async () => {
  const { commitWithAudit, forgetPendingSeal } = await import("../../src/platform/audit");
  const { dbOf } = await import("../../src/db/client");
  const { SYSTEM_ACTOR } = await import("../../src/platform/actor");
  forgetPendingSeal();
  const real = env.AUDIT_ANCHOR;
  let pokes = 0;
  const answered: Promise<unknown>[] = [];
  // An anchor whose pending seal runs in a minute (whatever the machine's load, the commits below come before it).
  const anchor = { idFromName: (name: string) => real.idFromName(name), get: () => ({ poke: () => (pokes++, answered.push(Promise.resolve()), Promise.resolve(Date.now() + 60_000)) }) };
  const e = env as unknown as { AUDIT_ANCHOR: unknown };
  e.AUDIT_ANCHOR = anchor;
  try {
    for (let i = 0; i < 20; i++) {
      await commitWithAudit(dbOf(env), [], [{ action: "test.poke", targetType: "test", targetId: `t${i}` }], { actor: SYSTEM_ACTOR, now: Date.now() });
      await Promise.all(answered); // as the waitUntil would: the poke's answer has arrived before the next commit
    }
  } finally {
    e.AUDIT_ANCHOR = real;
    forgetPendingSeal();
  }
  expect(pokes).toBe(1);
});

/**
 * Runs `body` with an AuditAnchor whose first poke's answer waits on a latch (`answer(at)`: the seal it names runs at
 * `at`), and later pokes answer a seal in a minute; counts the pokes.
 */
async function withLatchedAnchor(body: (t: { commit: (id: string) => Promise<unknown>; answer: (at: number) => void; pokes: () => number; settled: () => Promise<void> }) => Promise<void>) {
  const { commitWithAudit, forgetPendingSeal, sealerPokesSettled } = await import("../../src/platform/audit");
  const { dbOf } = await import("../../src/db/client");
  const { SYSTEM_ACTOR } = await import("../../src/platform/actor");
  forgetPendingSeal();
  const real = env.AUDIT_ANCHOR;
  let pokes = 0;
  let answer!: (at: number) => void;
  const anchor = {
    idFromName: (name: string) => real.idFromName(name),
    get: () => ({ poke: () => (pokes++, pokes === 1 ? new Promise<number>((r) => (answer = r)) : Promise.resolve(Date.now() + 60_000)) }),
  };
  const e = env as unknown as { AUDIT_ANCHOR: unknown };
  e.AUDIT_ANCHOR = anchor;
  try {
    await body({
      commit: (id) => commitWithAudit(dbOf(env), [], [{ action: "test.poke", targetType: "test", targetId: id }], { actor: SYSTEM_ACTOR, now: Date.now() }),
      answer: (at) => answer(at),
      pokes: () => pokes,
      settled: sealerPokesSettled,
    });
  } finally {
    e.AUDIT_ANCHOR = real;
    forgetPendingSeal();
  }
}

it("concurrent audited commits (a queue batch's messages) poke once while the first poke's answer is on its way, and again only past its seal", { timeout: 60_000 }, async () => {
  await withLatchedAnchor(async ({ commit, answer, pokes, settled }) => {
    // Every commit happens while the first poke is on its way.
    await Promise.all(Array.from({ length: 10 }, (_, i) => commit(`c${i}`)));
    expect(pokes()).toBe(1);
    // Its seal runs in a minute: every one of them is before it, so none pokes again.
    answer(Date.now() + 60_000);
    await settled();
    expect(pokes()).toBe(1);
  });
});

it("a commit waiting on a poke whose seal comes too early pokes again", { timeout: 60_000 }, async () => {
  await withLatchedAnchor(async ({ commit, answer, pokes, settled }) => {
    await commit("early1");
    await commit("early2");
    // The seal the first poke scheduled ran already (before the second commit): the second must poke on its own.
    answer(Date.now() - 1_000);
    await settled();
    expect(pokes()).toBe(2);
  });
});

it("the anchor's poke answers when its pending seal runs, and that seal takes every row committed before it", { timeout: 60_000 }, async () => {
  const { commitWithAudit, AUDIT_ANCHOR_NAME } = await import("../../src/platform/audit");
  const { dbOf } = await import("../../src/db/client");
  const { SYSTEM_ACTOR } = await import("../../src/platform/actor");
  const { runDurableObjectAlarm } = await import("cloudflare:test");
  const stub = env.AUDIT_ANCHOR.get(env.AUDIT_ANCHOR.idFromName(AUDIT_ANCHOR_NAME));
  await runDurableObjectAlarm(stub); // whatever earlier writes left pending
  const before = await maxSeq();
  const t0 = Date.now();
  const [first, second] = await Promise.all([stub.poke(), stub.poke()]);
  expect(first).toBeGreaterThan(t0); // a seal scheduled ahead (debounced)
  expect(second).toBe(first); // still pending: the same seal
  for (let i = 0; i < 5; i++) await commitWithAudit(dbOf(env), [], [{ action: "test.poke", targetType: "test", targetId: `s${i}` }], { actor: SYSTEM_ACTOR, now: Date.now() });
  await runDurableObjectAlarm(stub);
  const unsealed = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE seq > ? AND chain IS NULL").bind(before).first<{ n: number }>();
  expect(unsealed!.n).toBe(0);
});
