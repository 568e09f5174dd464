import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { decrypt } from "../../src/lib/crypto";
import { continueDump, DUMP_BUDGET, PROGRESS, startDump } from "../../src/modules/exports/dump";
import { servicesFor } from "../../src/platform/services";
import { SYSTEM_ACTOR } from "../../src/platform/actor";
import { api } from "../helpers";
import { deliver, drainTasks, fetchAs, invocationLog, recordingEnv } from "../scale";

// Backups and emergency exports of a database larger than one invocation's share, under the limit wrapper
// (LIMITS=enforce): the request writes a bounded slice and the tasks queue writes the rest, a slice per message.
afterEach(() => vi.restoreAllMocks());

const ROWS = 26_000; // more than DUMP_BUDGET.rowsPerInvocation, and several parts of DUMP_BUDGET.partRows

let fills = 0;
/** `n` dead letters in one statement (ids unique across calls: storage is shared by this file's tests). */
async function fillDeadLetters(n: number) {
  const tag = `f${fills++}`;
  await env.DB.prepare(
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) INSERT INTO dead_letters (id, message_id, body, attempts, received_at) SELECT printf('dl_%s_%06d', ?2, i), printf('m_%s_%06d', ?2, i), '{\"type\":\"x\"}', 1, i FROM n",
  )
    .bind(n, tag)
    .run();
}

async function open(key: string) {
  const obj = await env.ARCHIVE.get(key);
  if (!obj) throw new Error(`no R2 object ${key}`);
  const opened = await decrypt(env.EXPORT_ENCRYPTION_KEY, new Uint8Array(await obj.arrayBuffer()));
  if (!opened.ok) throw new Error(opened.error);
  return JSON.parse(new TextDecoder().decode(opened.value)) as { table: string; columns: string[]; rows: unknown[][] };
}

describe("a dump larger than one invocation", () => {
  // One table larger than a slice for every test here (storage is shared by this file's tests).
  beforeAll(() => fillDeadLetters(ROWS), 60_000);

  it("answers 202, goes on through the tasks queue in bounded slices, and ends with a manifest whose parts hold every row once", { timeout: 120_000 }, async () => {
    expect(ROWS).toBeGreaterThan(DUMP_BUDGET.rowsPerInvocation);
    const total = (await env.DB.prepare("SELECT count(*) AS n FROM dead_letters").first<{ n: number }>())!.n;
    const rec = recordingEnv();
    const log = invocationLog();

    const r = await fetchAs(rec.env, "POST", "/admin/emergency/export-all", {});
    expect(r.status).toBe(202);
    expect(r.body.complete).toBe(false);
    expect(r.body.note).toContain("in the background");
    expect(await env.ARCHIVE.head(r.body.manifestKey)).toBeNull();
    expect(r.body.totalRows).toBeLessThanOrEqual(DUMP_BUDGET.rowsPerInvocation);

    // A duplicate of the continuation (at-least-once delivery) does nothing: only one chain writes the dump.
    const [first] = rec.sent.filter((m) => m.queue === "tasks").map((m) => m.body);
    expect(first).toMatchObject({ type: "dump.continue", prefix: r.body.prefix, step: 1 });
    await drainTasks(rec);
    await deliver(rec.env, "billing-tasks", [first]);
    expect(rec.take("tasks")).toEqual([]);

    const manifest = JSON.parse(await (await env.ARCHIVE.get(r.body.manifestKey))!.text());
    expect(await env.ARCHIVE.head(`${r.body.prefix}${PROGRESS}`)).toBeNull();
    const parts = manifest.tables.filter((f: any) => f.table === "dead_letters");
    expect(parts.length).toBeGreaterThan(1);
    // Part n of a table is <table>.<n>.json.enc, with a token of its slice's delivery when a queued slice wrote it.
    parts.forEach((f: any, i: number) => expect(f.key).toMatch(new RegExp(`^${r.body.prefix}dead_letters${i === 0 ? "" : `\\.${i + 1}`}(\\.[0-9a-f]{8})?\\.json\\.enc$`)));
    expect(parts.map((f: any) => f.part)).toEqual(parts.map((_: unknown, i: number) => i + 1));
    const ids: unknown[] = [];
    for (const f of parts) {
      const doc = await open(f.key);
      expect(doc.rows).toHaveLength(f.rows);
      ids.push(...doc.rows.map((row) => row[doc.columns.indexOf("id")]));
    }
    expect(ids).toHaveLength(total);
    expect(new Set(ids).size).toBe(total);
    // Every table is listed, each once as a first part, in table order.
    const firsts = manifest.tables.filter((f: any) => f.part === 1).map((f: any) => f.table);
    expect(firsts).toEqual([...firsts].sort());
    expect(firsts).toEqual(expect.arrayContaining(["customers", "audit_log", "dead_letters"]));
    expect(manifest.totalRows).toBe(manifest.tables.reduce((n: number, f: any) => n + f.rows, 0));

    // Audited once, when it finished, as the admin who asked for it.
    const audit = await api("GET", `/api/v1/audit/search?action=emergency.exported&target=${encodeURIComponent(r.body.prefix)}`);
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({ actor: "test-admin", after: { totalRows: manifest.totalRows, files: manifest.tables.length } });

    const lines = log();
    expect(lines.filter((l) => l.limitExceeded || l.error)).toEqual([]);
    expect(lines.filter((l) => l.invocation.startsWith("queue billing-tasks")).length).toBeGreaterThanOrEqual(2);
    // One slice reads at most rowsPerInvocation rows (a page query per 500) plus a query or two per small table.
    expect(Math.max(...lines.map((l) => l.d1Queries))).toBeLessThanOrEqual(DUMP_BUDGET.rowsPerInvocation / DUMP_BUDGET.pageRows + 2 * DUMP_BUDGET.filesPerInvocation + 10);
    expect(Math.max(...lines.map((l) => l.subrequests))).toBeLessThanOrEqual(DUMP_BUDGET.filesPerInvocation + 10);
  });

  it("a backup of it completes in the background, is listed complete, and verifies in bounded calls (from/nextFrom)", { timeout: 120_000 }, async () => {
    const rec = recordingEnv();
    const started = await fetchAs(rec.env, "POST", "/admin/backups");
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ complete: false, date: new Date().toISOString().slice(0, 10) });
    const listed = async () => (await api("GET", "/admin/backups")).body.data.find((b: any) => b.date === started.body.date);
    expect(await listed()).toMatchObject({ complete: false });
    await drainTasks(rec);
    const done = await listed();
    expect(done).toMatchObject({ complete: true });
    expect(done.rows).toBeGreaterThanOrEqual(ROWS);

    const checked: number[] = [];
    let from = 0;
    for (;;) {
      const v = await api("POST", `/admin/backups/${started.body.date}/verify?from=${from}`);
      expect(v.status).toBe(200);
      expect(v.body.ok).toBe(true);
      checked.push(v.body.tablesChecked);
      if (v.body.complete) break;
      from = v.body.nextFrom;
    }
    const manifest = JSON.parse(await (await env.ARCHIVE.get(`${started.body.prefix}manifest.json`))!.text());
    expect(checked.reduce((a, b) => a + b, 0)).toBe(manifest.tables.length);
    expect(Math.max(...checked)).toBeLessThanOrEqual(60);
  });

  it("a slice saved but whose message may be lost is re-sent once by the retried message; a message ahead of the saved step is retried; a foreign run's message does nothing", async () => {
    const rec = recordingEnv();
    const small = { ...DUMP_BUDGET, rowsPerInvocation: 1, partRows: 1, pageRows: 1, filesPerInvocation: 1 };
    const s = servicesFor(rec.env, { actor: SYSTEM_ACTOR, now: Date.now() });
    const prefix = `emergency/test-${Date.now()}/`;
    const state = await startDump(s, { prefix, kind: "emergency", encrypt: false, now: Date.now(), actor: SYSTEM_ACTOR }, small);
    expect(state.done).toBe(false);
    const [first] = rec.take("tasks");
    expect(first).toMatchObject({ type: "dump.continue", prefix, step: 1 });
    const runId = first.runId as string;
    // As if the slice of step 1 saved step 2 and died before sending its message: its retry sends step 2, once.
    const progress = JSON.parse(await (await env.ARCHIVE.get(`${prefix}${PROGRESS}`))!.text());
    await env.ARCHIVE.put(`${prefix}${PROGRESS}`, JSON.stringify({ ...progress, step: 2 }));
    expect(await continueDump(s, prefix, runId, 1, small)).toBeNull();
    expect(rec.take("tasks")).toEqual([{ type: "dump.continue", prefix, runId, step: 2 }]);
    expect(await continueDump(s, prefix, runId, 1, small)).toBeNull();
    expect(rec.take("tasks")).toEqual([]);
    // A message for a step not saved yet (it overtook its slice's save) throws, so the queue retries it.
    await expect(continueDump(s, prefix, runId, 3, small)).rejects.toThrow(/at step 2/);
    // Another run's message into the same folder does nothing.
    expect(await continueDump(s, prefix, "another-run", 2, small)).toBeNull();
    // The message of the saved step goes on, and its next message carries the run.
    expect(await continueDump(s, prefix, runId, 2, small)).toMatchObject({ done: false });
    expect(rec.take("tasks")).toEqual([{ type: "dump.continue", prefix, runId, step: 3 }]);
  });

  it("a finish that died after its claim is finished by the retried message, audited once", async () => {
    const rec = recordingEnv();
    const s = servicesFor(rec.env, { actor: SYSTEM_ACTOR, now: Date.now() });
    const prefix = `emergency/finish-${Date.now()}/`;
    const small = { ...DUMP_BUDGET, rowsPerInvocation: 1, partRows: 1, pageRows: 1, filesPerInvocation: 1 };
    await startDump(s, { prefix, kind: "emergency", encrypt: false, now: Date.now(), actor: SYSTEM_ACTOR }, small);
    const [first] = rec.take("tasks");
    // As if step 1's slice wrote the last table, claimed the finish, and died before the manifest.
    const progress = JSON.parse(await (await env.ARCHIVE.get(`${prefix}${PROGRESS}`))!.text());
    await env.ARCHIVE.put(`${prefix}${PROGRESS}`, JSON.stringify({ ...progress, table: progress.schema.length, step: 2, finishing: true }));
    expect(await continueDump(s, prefix, first.runId, 1, small)).toMatchObject({ done: true });
    expect(await env.ARCHIVE.head(`${prefix}manifest.json`)).not.toBeNull();
    expect(await env.ARCHIVE.head(`${prefix}${PROGRESS}`)).toBeNull();
    expect(await continueDump(s, prefix, first.runId, 1, small)).toBeNull();
    const audited = await env.DB.prepare("SELECT action FROM audit_log WHERE target_id = ? ORDER BY seq").bind(prefix).all<{ action: string }>();
    expect(audited.results.map((r) => r.action)).toEqual(["emergency.export_started", "emergency.exported_unencrypted"]);
  });

  it("the next slice may read the progress before the previous one marked its message sent: the chain still finishes", async () => {
    const rec = recordingEnv();
    const small = { ...DUMP_BUDGET, rowsPerInvocation: 10_000, partRows: 5_000 };
    const prefix = `emergency/race-${Date.now()}/`;
    // Each slice's message is delivered while its sender is still between the send and what follows it.
    const inner = rec.env.TASK_QUEUE;
    let pending: Promise<unknown> = Promise.resolve();
    const eager = {
      ...rec.env,
      TASK_QUEUE: {
        ...inner,
        send: async (body: any) => {
          await inner.send(body);
          pending = continueDump(servicesFor(eager, { actor: SYSTEM_ACTOR, now: Date.now() }), body.prefix, body.runId, body.step, small);
        },
      },
    } as unknown as Env;
    await startDump(servicesFor(eager, { actor: SYSTEM_ACTOR, now: Date.now() }), { prefix, kind: "emergency", encrypt: false, now: Date.now(), actor: SYSTEM_ACTOR }, small);
    for (let i = 0; i < 500 && !(await env.ARCHIVE.head(`${prefix}manifest.json`)); i++) await pending;
    expect(await env.ARCHIVE.head(`${prefix}manifest.json`)).not.toBeNull();
    expect(await env.ARCHIVE.head(`${prefix}${PROGRESS}`)).toBeNull();
  });
});
