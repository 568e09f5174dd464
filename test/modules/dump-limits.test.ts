import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
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
  it("answers 202, goes on through the tasks queue in bounded slices, and ends with a manifest whose parts hold every row once", { timeout: 120_000 }, async () => {
    expect(ROWS).toBeGreaterThan(DUMP_BUDGET.rowsPerInvocation);
    await fillDeadLetters(ROWS);
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
    expect(parts.map((f: any) => f.key)).toEqual(parts.map((_: unknown, i: number) => `${r.body.prefix}dead_letters${i === 0 ? "" : `.${i + 1}`}.json.enc`));
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
    await fillDeadLetters(ROWS);
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

  it("a slice saved but whose message may be lost is re-sent by the retried message; a message ahead of the saved step is retried", async () => {
    const rec = recordingEnv();
    const small = { ...DUMP_BUDGET, rowsPerInvocation: 1, partRows: 1, pageRows: 1, filesPerInvocation: 1 };
    const s = servicesFor(rec.env, { actor: SYSTEM_ACTOR, now: Date.now() });
    const prefix = `emergency/test-${Date.now()}/`;
    const state = await startDump(s, { prefix, kind: "emergency", encrypt: false, now: Date.now(), actor: SYSTEM_ACTOR }, small);
    expect(state.done).toBe(false);
    expect(rec.take("tasks")).toEqual([{ type: "dump.continue", prefix, step: 1 }]);
    // As if the slice of step 1 saved step 2 and died before sending its message: its retry sends step 2.
    const progress = JSON.parse(await (await env.ARCHIVE.get(`${prefix}${PROGRESS}`))!.text());
    await env.ARCHIVE.put(`${prefix}${PROGRESS}`, JSON.stringify({ ...progress, step: 2, sent: false }));
    expect(await continueDump(s, prefix, 1, small)).toBeNull();
    expect(rec.take("tasks")).toEqual([{ type: "dump.continue", prefix, step: 2 }]);
    // A message for a step not saved yet (it overtook its slice's save) throws, so the queue retries it.
    await expect(continueDump(s, prefix, 3, small)).rejects.toThrow(/at step 2/);
    // The message of the saved step goes on.
    expect(await continueDump(s, prefix, 2, small)).toMatchObject({ done: false });
    expect(rec.take("tasks")).toEqual([{ type: "dump.continue", prefix, step: 3 }]);
  });
});
