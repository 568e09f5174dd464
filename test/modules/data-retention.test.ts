import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { api, attemptPayment, createSubscription, invoicesOf, spyQueue, messageServicesOf } from "../helpers";
import { deliver, drainTasks, recordingEnv } from "../scale";
import { startRetentionRun } from "../../src/modules/retention/run";
import { sealAuditChain } from "../../src/modules/audit/verify";

// Retention to R2 (docs/retention.md): rows past the policy leave D1 only once their archive is in R2 and verified;
// reads keep answering; the audit chain still verifies; a failure between the R2 write and the D1 delete converges.
// Storage is this file's own: counts are exact.

const DAY = 86_400_000;
const count = async (sql: string, ...args: unknown[]) => (await env.DB.prepare(sql).bind(...args).first<{ n: number }>())!.n;
/** A run at `now` (a time far enough ahead puts every row past the policy), delivered one message per invocation. */
async function runAt(now: number, e?: Env) {
  const rec = recordingEnv(e);
  const { run } = await startRetentionRun(messageServicesOf(rec.env), "api", now);
  const messages = await drainTasks(rec);
  return { run: run!, messages };
}
const status = async () => (await api("GET", "/admin/retention")).body;

describe("retention to R2", () => {
  const w: Record<string, any> = {};

  it("archives every kind, keeps reads working and the audit chain verifiable", { timeout: 60_000 }, async () => {
    for (let i = 0; i < 3; i++) {
      const sub = await createSubscription({ paymentMethod: "pm_card_visa" });
      const [inv] = await invoicesOf(sub.id);
      await attemptPayment(inv.id);
    }
    const invoices = (await api("GET", "/api/v1/invoices?limit=100")).body.data.filter((i: any) => i.status === "paid");
    expect(invoices.length).toBe(3);
    const before = await Promise.all(invoices.map(async (i: any) => (await api("GET", `/api/v1/invoices/${i.id}`)).body));
    expect(before.every((i) => i.lines.length > 0)).toBe(true);
    await sealAuditChain(env);
    const audit = await count("SELECT count(*) AS n FROM audit_log");
    const eventsBefore = await count("SELECT count(*) AS n FROM events");
    const paymentsBefore = await count("SELECT count(*) AS n FROM payments WHERE status = 'succeeded'");
    expect(eventsBefore).toBeGreaterThan(5);
    expect(paymentsBefore).toBe(3);

    const revenue = (await api("GET", "/api/v1/analytics/revenue/today")).body;
    expect(revenue.currencies.find((c: any) => c.currency === "USD").collected.count).toBe(3);
    const future = Date.now() + 3 * 365 * DAY;
    const { run } = await runAt(future);
    const keys = (await env.ARCHIVE.list({ prefix: "retention/" })).objects.map((o) => o.key).filter((k) => k.endsWith(".ndjson"));
    const archivesOf = (kind: string) => keys.filter((k) => k.startsWith(`retention/${kind}/`));
    w.future = future;

    // Rows left D1...
    expect(await count("SELECT count(*) AS n FROM events")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM payments")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.status = 'paid'")).toBe(0);
    // ...except the newest audit row (SQLite numbers the next one max + 1).
    expect(await count("SELECT count(*) AS n FROM audit_log")).toBe(1);

    // An invoice reads exactly as before, its lines from the archive.
    for (const b of before) {
      const after = (await api("GET", `/api/v1/invoices/${b.id}`)).body;
      expect(after.lines).toEqual(b.lines);
      expect(after.archived).toBe(true);
    }

    // The events list says where the older events went; so does a GET of one of them.
    const anEvent = (await env.ARCHIVE.get(archivesOf("events")[0]!))!;
    const evt = JSON.parse((await anEvent.text()).split("\n")[0]!);
    const listed = (await api("GET", "/api/v1/events?limit=100")).body;
    expect(listed).toMatchObject({ data: [], hasMore: false, archived: { through: expect.any(String), archives: "/admin/retention/archives?kind=events" } });
    const gone = await api("GET", `/api/v1/events/${evt.id}`);
    expect(gone.status).toBe(404);
    expect(gone.body.detail).toMatch(/archived to R2 by the retention policy/);
    expect((await api("GET", `/api/v1/events?createdGte=${new Date(Date.now() + DAY).toISOString()}`)).body.archived).toBeNull();

    const payment = JSON.parse((await (await env.ARCHIVE.get(archivesOf("payment_attempts")[0]!))!.text()).split("\n")[0]!);
    const paymentGone = await api("GET", `/api/v1/payments/${payment.id}`);
    expect(paymentGone.status).toBe(404);
    expect(paymentGone.body.detail).toMatch(/archived to R2 by the retention policy/);

    // The audit search says the older entries are in R2; an export of an archived range refuses.
    const search = (await api("GET", "/api/v1/audit/search?limit=200")).body;
    expect(search).toMatchObject({ hasMore: false, archived: { throughSeq: audit - 1, archives: "/admin/retention/archives?kind=audit" } });
    const today = new Date().toISOString().slice(0, 10);
    const exported = await api("POST", "/api/v1/audit/export", { body: { startDate: today, endDate: today } });
    expect(exported.status).toBe(422);
    expect(exported.body.detail).toMatch(/archived to R2 by the retention policy/);

    // A report whose window reaches archived rows refuses (422 naming the archive) instead of counting less.
    const refused = await api("GET", "/api/v1/analytics/revenue/today");
    expect(refused.status).toBe(422);
    expect(refused.body.detail).toMatch(/archived to R2 by the retention policy/);

    // The status says what moved; every archive verifies against its manifest (and chain, for audit).
    const s = await status();
    expect(s.lastRun).toMatchObject({ id: run.id, finishedAt: expect.any(String), currentKind: null, error: null });
    const by = Object.fromEntries(s.kinds.map((k: any) => [k.kind, k]));
    expect(by.events.rowsArchived).toBe(eventsBefore);
    expect(by.payment_attempts.rowsArchived).toBe(3);
    expect(by.invoice_lines.rowsArchived).toBe(before.reduce((n, i) => n + i.lines.length, 0));
    expect(by.audit.rowsArchived).toBe(audit - 1);
    const archives = (await api("GET", "/admin/retention/archives?limit=100")).body.data;
    expect(archives.length).toBeGreaterThanOrEqual(4);
    for (const a of archives) {
      const v = (await api("GET", `/admin/retention/archives/verify?key=${encodeURIComponent(a.key)}`)).body;
      expect(v).toMatchObject({ ok: true, problems: [], rows: a.rows });
      if (a.kind === "audit") expect(v.chain.linksChecked).toBe(a.rows);
    }

    // The live chain verifies from the archived checkpoint, also after new audited writes.
    await createSubscription();
    const verified = (await api("GET", "/api/v1/audit/verify-integrity")).body;
    expect(verified).toMatchObject({ ok: true, archivedThrough: { seq: audit - 1 } });

    // A changed archive is caught.
    const auditArchive = archives.find((a: any) => a.kind === "audit");
    const body = await (await env.ARCHIVE.get(auditArchive.key))!.text();
    await env.ARCHIVE.put(auditArchive.key, body.replace('"action":"customer.created"', '"action":"customer.deleted"'));
    const tampered = (await api("GET", `/admin/retention/archives/verify?key=${encodeURIComponent(auditArchive.key)}`)).body;
    expect(tampered.ok).toBe(false);
    expect(tampered.problems.join(" ")).toMatch(/sha-256|MAC/);
    await env.ARCHIVE.put(auditArchive.key, body);
  });

  it("leaves rows in D1 when the delete fails after the R2 write, and the next run converges to the same archive", { timeout: 60_000 }, async () => {
    const sub = await createSubscription({ paymentMethod: "pm_card_visa" });
    const [inv] = await invoicesOf(sub.id);
    await attemptPayment(inv.id);
    const lines = (await api("GET", `/api/v1/invoices/${inv.id}`)).body.lines;
    const future = w.future + 30 * DAY;
    // D1 refuses every batch (the delete) once: the R2 write happened, the rows stay.
    let failures = 0;
    const failingDb = new Proxy(env.DB, {
      get(target, prop) {
        if (prop === "batch") return async (...args: unknown[]) => (failures++ === 0 ? Promise.reject(new Error("D1 is down")) : (target.batch as any)(...args));
        const v = (target as any)[prop];
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const rec = recordingEnv({ ...env, DB: failingDb } as Env);
    await startRetentionRun(messageServicesOf(rec.env), "api", future);
    const [first] = rec.take("tasks");
    expect(first).toMatchObject({ type: "retention.run", kind: "events" });
    const logged = vi.spyOn(console, "log");
    await deliver(rec.env, "billing-tasks", [first]);
    // The consumer asks for the message again (retry), and nothing left D1.
    expect(logged.mock.calls.some(([l]) => String(l).includes('"msg":"queue message retry"') && String(l).includes("D1 is down"))).toBe(true);
    logged.mockRestore();
    expect(await count("SELECT count(*) AS n FROM events")).toBeGreaterThan(0);
    expect((await status()).lastRun.error).toMatch(/D1 is down/);
    const written = await env.ARCHIVE.list({ prefix: "retention/events/" });
    // The message is redelivered (here twice: a duplicate delivery too); the run completes once.
    await deliver(rec.env, "billing-tasks", [first]);
    await deliver(rec.env, "billing-tasks", [first]);
    await drainTasks(rec);
    expect(await count("SELECT count(*) AS n FROM events")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM invoice_lines WHERE invoice_id = ?", inv.id)).toBe(0);
    expect((await api("GET", `/api/v1/invoices/${inv.id}`)).body.lines).toEqual(lines);
    // Same objects: the page written before the failure was rewritten under the same key, with the same bytes.
    const after = await env.ARCHIVE.list({ prefix: "retention/events/" });
    expect(after.objects.map((o) => o.key).sort()).toEqual(written.objects.map((o) => o.key).sort());
    const etags = (l: R2Objects) => Object.fromEntries(l.objects.map((o) => [o.key, o.etag]));
    expect(etags(after)).toEqual(etags(written));
    const records = await count("SELECT count(*) AS n FROM retention_archives WHERE kind = 'events'");
    expect(records * 2).toBe(after.objects.length); // body + manifest each
    const s = await status();
    expect(s.lastRun).toMatchObject({ finishedAt: expect.any(String), error: null });
    expect((await api("GET", "/api/v1/audit/verify-integrity")).body).toMatchObject({ ok: true });
  });
});

describe("the policy", () => {
  it("is validated, audited, and a disabled policy stops the daily run", async () => {
    const bad = await api("PUT", "/admin/retention/policy", { body: { enabled: true, eventsDays: 30, auditMonths: 6, invoiceLinesMonths: 24, paymentAttemptsMonths: 24 } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toEqual([expect.objectContaining({ path: "auditMonths" })]);
    const ok = await api("PUT", "/admin/retention/policy", { body: { enabled: false, eventsDays: 45, auditMonths: 36, invoiceLinesMonths: 24, paymentAttemptsMonths: 24 } });
    expect(ok.status).toBe(200);
    const s = await status();
    expect(s.policy).toMatchObject({ enabled: false, eventsDays: 45 });
    expect(Date.parse(s.kinds.find((k: any) => k.kind === "events").cutoff)).toBeLessThan(Date.now() - 44 * DAY);
    const rec = recordingEnv();
    expect((await startRetentionRun(messageServicesOf(rec.env), "cron", Date.now())).started).toBe(false);
    expect(rec.take("tasks")).toEqual([]);
    expect(await count("SELECT count(*) AS n FROM audit_log WHERE action = 'config.updated' AND target_id = 'retention.policy'")).toBe(1);
  });

  it("runs now through the API, once per Idempotency-Key, even when disabled", async () => {
    const tasks = spyQueue();
    const headers = { "idempotency-key": "retention-run-1" };
    const first = await api("POST", "/admin/retention/run", { headers, env: { TASK_QUEUE: tasks } });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ started: true, run: { trigger: "api", finishedAt: null, currentKind: "events" } });
    const again = await api("POST", "/admin/retention/run", { headers, env: { TASK_QUEUE: tasks } });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body).toEqual(first.body);
    // A second key finds the run in progress instead of starting another.
    const other = await api("POST", "/admin/retention/run", { headers: { "idempotency-key": "retention-run-2" }, env: { TASK_QUEUE: tasks } });
    expect(other.body).toMatchObject({ started: false, run: { id: first.body.run.id } });
    expect(tasks.sent.map((m) => m.body)).toEqual([{ type: "retention.run", runId: first.body.run.id, kind: "events", after: null }]);
    expect((await api("POST", "/admin/retention/run", { as: "finance" })).status).toBe(403);
  });
});
