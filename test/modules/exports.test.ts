import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { dbOf } from "../../src/db/client";
import { auditKey, auditRowMac, chainLink, commitWithAudit } from "../../src/platform/audit";
import type { Actor } from "../../src/env";
import { decrypt, encrypt, keyIdOf } from "../../src/lib/crypto";
import { runDailyBackup } from "../../src/modules/exports/routes";
import { api, createCustomer, messageServicesOf, unique } from "../helpers";

const KEY = env.EXPORT_ENCRYPTION_KEY;
const t = (s: string) => Date.parse(s);
const user = (id: string, role: "admin" | "finance" = "admin"): Actor => ({ id, kind: "user", role, scopes: [] });
const system: Actor = { id: "system:billing", kind: "system", role: "system", scopes: [] };

async function auditAt(at: string, actor: Actor, action = "test.event") {
  await commitWithAudit(dbOf(env), [], [{ action, targetType: "test", targetId: unique("tgt"), after: { marker: at }, reason: 'has "quotes", commas\nand a newline' }], { actor, now: t(at) });
}

async function r2Bytes(key: string): Promise<Uint8Array> {
  const obj = await env.ARCHIVE.get(key);
  if (!obj) throw new Error(`no R2 object ${key}`);
  return new Uint8Array(await obj.arrayBuffer());
}

async function openR2(key: string): Promise<string> {
  const opened = await decrypt(KEY, await r2Bytes(key));
  if (!opened.ok) throw new Error(`cannot decrypt ${key}: ${opened.error}`);
  return new TextDecoder().decode(opened.value);
}

const countOf = async (table: string) => (await env.DB.prepare(`SELECT count(*) AS n FROM "${table}"`).first<{ n: number }>())!.n;

// Each describe uses its own far-future month, so rows dated by other tests never fall in its range.
describe("POST /api/v1/audit/export", () => {
  const seed = (async () => {
    await auditAt("2093-03-01T00:00:00Z", user("exp-alice"));
    await auditAt("2093-03-15T12:00:00Z", system, "invoices.sweep");
    await auditAt("2093-03-31T23:59:59.999Z", user("exp-bob", "finance"));
    await auditAt("2093-04-01T00:00:00Z", user("exp-carol")); // after the range
    await auditAt("2093-02-28T23:59:59.999Z", user("exp-dave")); // before it
  })();
  const body = { startDate: "2093-03-01", endDate: "2093-03-31", format: "json", includeSystemEvents: true };

  it("stores an encrypted export whose plaintext holds the rows of the range (end day included) with hashes and the chain head", async () => {
    await seed;
    const r = await api("POST", "/api/v1/audit/export", { as: "admin", body });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ rows: 3, format: "json", encrypted: true, keyId: await keyIdOf(KEY), from: "2093-03-01T00:00:00.000Z", to: "2093-04-01T00:00:00.000Z" });
    expect(r.body.key).toMatch(/^exports\/audit\/\d{8}T\d{6}\.\d{3}Z-2093-03-01-2093-03-31\.json\.enc$/);

    const stored = await r2Bytes(r.body.key);
    const asText = new TextDecoder().decode(stored);
    expect(asText).not.toContain("exp-alice");
    expect(asText).not.toContain("test.event");

    const plain = await openR2(r.body.key);
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(plain)))].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(digest).toBe(r.body.sha256);
    const doc = JSON.parse(plain);
    expect(doc.rows.map((x: any) => x.actor)).toEqual(["exp-alice", "system:billing", "exp-bob"]);
    expect(doc.rowCount).toBe(3);
    const head = await env.DB.prepare("SELECT seq, chain FROM audit_log WHERE seq = ?").bind(doc.chainHead.seq).first<{ seq: number; chain: string }>();
    expect(doc.chainHead).toEqual({ seq: head!.seq, chain: head!.chain });
    expect(doc.chainHead).toEqual(r.body.chainHead);
    // Each exported row's MAC and chain link recompute with the audit key: the export is checkable offline.
    const key = await auditKey(env.AUDIT_HMAC_KEY);
    for (const row of doc.rows) {
      expect(await auditRowMac(key, row)).toBe(row.mac);
      expect(await chainLink(key, row.prevChain, row.seq, row.mac)).toBe(row.chain);
      expect(row.atIso).toBe(new Date(row.at).toISOString());
    }

    const audit = await api("GET", `/api/v1/audit/search?action=audit.exported&target=${encodeURIComponent(r.body.key)}`);
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({ actor: "test-admin", after: { rows: 3, format: "json", sha256: r.body.sha256 } });
  });

  it("csv: a header and one exactly quoted line per row; includeSystemEvents false leaves out system actors", async () => {
    await seed;
    const r = await api("POST", "/api/v1/audit/export", { body: { ...body, format: "csv", includeSystemEvents: false } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ rows: 2, format: "csv" });
    expect(r.body.key).toMatch(/\.csv\.enc$/);
    const csv = await openR2(r.body.key);
    expect(csv.startsWith("seq,id,at,at_iso,actor,actor_role,action,target_type,target_id,request_id,reason,before,after,mac,prev_chain,chain,prev_hash,hash\r\n")).toBe(true);
    expect(csv).not.toContain("system:billing");
    expect(csv).toContain(',"has ""quotes"", commas\nand a newline",');
    expect(csv).toContain("exp-alice");
    expect(csv).toContain("exp-bob");
  });

  it("takes the runbook's curl -d body (no JSON Content-Type) and datetime bounds", async () => {
    await seed;
    const raw = JSON.stringify({ startDate: "2093-03-15T00:00:00Z", endDate: "2093-03-31T23:59:59.999Z", format: "json", includeSystemEvents: true });
    const r = await api("POST", "/api/v1/audit/export", { rawBody: raw, headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(r.status).toBe(201);
    expect(r.body.rows).toBe(2);
    const none = await api("POST", "/api/v1/audit/export", { rawBody: JSON.stringify({ startDate: "2093-05-01", endDate: "2093-05-02" }), headers: { "content-type": "text/plain" } });
    expect(none.status).toBe(201);
    expect(none.body).toMatchObject({ rows: 0, format: "json" });
    expect(JSON.parse(await openR2(none.body.key)).rows).toEqual([]);
  });

  it("rejects a bad range and malformed bodies; every role but admin is refused (like the download)", async () => {
    expect((await api("POST", "/api/v1/audit/export", { body: { startDate: "2093-03-31", endDate: "2093-03-01" } })).status).toBe(400);
    expect((await api("POST", "/api/v1/audit/export", { body: { startDate: "March", endDate: "2093-03-01" } })).status).toBe(400);
    expect((await api("POST", "/api/v1/audit/export", { rawBody: "{nope", headers: { "content-type": "text/plain" } })).status).toBe(400);
    const finance = await api("POST", "/api/v1/audit/export", { as: "finance", body });
    expect(finance.status).toBe(403);
    expect(finance.body.detail).toContain("admin");
    expect((await api("POST", "/api/v1/audit/export", { as: "support", body })).status).toBe(403);
    expect((await api("POST", "/api/v1/audit/export", { as: "viewer", body })).status).toBe(403);
    expect((await api("POST", "/api/v1/audit/export", { as: null, body })).status).toBe(401);
  });

  it("GET /exports/{key} decrypts for admins only, audits the download, and refuses a tampered object", async () => {
    await seed;
    const r = await api("POST", "/api/v1/audit/export", { body: { ...body, format: "csv" } });
    const name = r.body.download.split("/").pop();
    const dl = await api("GET", r.body.download);
    expect(dl.status).toBe(200);
    expect(dl.headers.get("content-type")).toContain("text/csv");
    expect(dl.headers.get("x-content-sha256")).toBe(r.body.sha256);
    expect(dl.headers.get("content-disposition")).toBe(`attachment; filename="${name.replace(/\.enc$/, "")}"`);
    expect(dl.body).toBe(await openR2(r.body.key));
    // The whole key, URL-encoded, works too.
    expect((await api("GET", `/api/v1/audit/exports/${encodeURIComponent(r.body.key)}`)).status).toBe(200);
    expect((await api("GET", `/api/v1/audit/search?action=audit.export_downloaded&target=${encodeURIComponent(r.body.key)}`)).body.data).toHaveLength(2);

    expect((await api("GET", r.body.download, { as: "finance" })).status).toBe(403);
    expect((await api("GET", "/api/v1/audit/exports/20930101T000000.000Z-x.json.enc")).status).toBe(404);
    expect((await api("GET", `/api/v1/audit/exports/${encodeURIComponent("../backups/manifest.json")}`)).status).toBe(400);

    const bytes = await r2Bytes(r.body.key);
    bytes[bytes.length - 5]! ^= 0x01;
    await env.ARCHIVE.put(r.body.key, bytes);
    const tampered = await api("GET", r.body.download);
    expect(tampered.status).toBe(422);
    expect(tampered.body.detail).toContain("authentication_failed");
  });
});

describe("POST /admin/emergency/export-all", () => {
  it("dumps every table with a manifest whose row counts equal the tables' counts; the curl -d form works", async () => {
    await createCustomer();
    const r = await api("POST", "/admin/emergency/export-all", {
      rawBody: JSON.stringify({ destination: "s3://emergency-backup/", encrypt: true }),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ encrypted: true, destination: "s3://emergency-backup/", binding: "ARCHIVE", keyId: await keyIdOf(KEY) });
    expect(r.body.prefix).toMatch(/^emergency\/\d{8}T\d{6}\.\d{3}Z\/$/);
    expect(r.body.note).toContain("cannot write to s3://emergency-backup/");
    expect(r.body.note).toContain("wrangler r2 object get");

    const manifest = JSON.parse(new TextDecoder().decode(await r2Bytes(r.body.manifestKey)));
    expect(manifest).toMatchObject({ kind: "emergency", encrypted: true, destination: "s3://emergency-backup/", totalRows: r.body.totalRows });
    const names = manifest.tables.map((f: any) => f.table);
    expect(names).toEqual(expect.arrayContaining(["customers", "audit_log", "payments", "subscriptions"]));
    expect(names.some((n: string) => n.startsWith("_cf_") || n.startsWith("sqlite_") || n === "d1_migrations")).toBe(false);

    for (const f of manifest.tables) {
      expect(f.key).toBe(`${r.body.prefix}${f.table}.json.enc`);
      const doc = JSON.parse(await openR2(f.key));
      expect(doc.rows).toHaveLength(f.rows);
      if (f.table === "metric_counters") continue; // flushed in the background by the metrics middleware
      // The export's own audit row is written after the dump.
      expect(await countOf(f.table)).toBe(f.table === "audit_log" ? f.rows + 1 : f.rows);
    }
    const customers = JSON.parse(await openR2(`${r.body.prefix}customers.json.enc`));
    expect(customers.columns).toContain("email");
    expect((await api("GET", `/api/v1/audit/search?action=emergency.exported&target=${encodeURIComponent(r.body.prefix)}`)).body.data).toHaveLength(1);
  });

  it("pages through tables larger than one query page", async () => {
    const before = await countOf("dead_letters");
    const stmts = Array.from({ length: 1203 }, (_, i) =>
      env.DB.prepare("INSERT INTO dead_letters (id, message_id, body, attempts, received_at) VALUES (?, ?, ?, 1, ?)").bind(unique("dl"), unique(`m${i}`), "{}", i),
    );
    await env.DB.batch(stmts);
    const r = await api("POST", "/admin/emergency/export-all", { body: {} });
    expect(r.status).toBe(201);
    const f = r.body.tables.find((x: any) => x.table === "dead_letters");
    expect(f.rows).toBe(before + 1203);
    const doc = JSON.parse(await openR2(f.key));
    expect(new Set(doc.rows.map((row: unknown[]) => row[0])).size).toBe(before + 1203);
  });

  it("encrypt: false writes plaintext and is audited as an unencrypted export", async () => {
    const r = await api("POST", "/admin/emergency/export-all", { body: { encrypt: false } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ encrypted: false, keyId: null, destination: null });
    const f = r.body.tables.find((x: any) => x.table === "customers");
    expect(f.key).toBe(`${r.body.prefix}customers.json`);
    expect(JSON.parse(new TextDecoder().decode(await r2Bytes(f.key))).table).toBe("customers");
    const audit = await api("GET", `/api/v1/audit/search?target=${encodeURIComponent(r.body.prefix)}`);
    expect(audit.body.data[0]).toMatchObject({ action: "emergency.exported_unencrypted", actor: "test-admin", after: { encrypted: false } });
  });

  it("is for admins only", async () => {
    expect((await api("POST", "/admin/emergency/export-all", { as: "finance", body: {} })).status).toBe(403);
    expect((await api("POST", "/admin/emergency/export-all", { as: "support", body: { encrypt: false } })).status).toBe(403);
    expect((await api("POST", "/admin/emergency/export-all", { body: { encrypt: "no" } })).status).toBe(400);
  });
});

describe("backups", () => {
  const verify = (date: string) => api("POST", `/admin/backups/${date}/verify`);

  it("runDailyBackup writes an encrypted dump under backups/<date>/ that lists and verifies", async () => {
    await createCustomer();
    const summary = await runDailyBackup(messageServicesOf().withNow(t("2091-01-15T03:00:00Z")));
    expect(summary).toMatchObject({ date: "2091-01-15", prefix: "backups/2091-01-15/", keyId: await keyIdOf(KEY) });
    expect(summary.rows).toBeGreaterThan(0);
    const customers = JSON.parse(await openR2("backups/2091-01-15/customers.json.enc"));
    expect(customers.rows).toHaveLength(await countOf("customers"));

    const list = await api("GET", "/admin/backups");
    expect(list.status).toBe(200);
    expect(list.body.data.find((b: any) => b.date === "2091-01-15")).toMatchObject({ complete: true, rows: summary.rows, bytes: summary.bytes, tables: summary.tables });

    const ok = await verify("2091-01-15");
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ ok: true, date: "2091-01-15", tablesChecked: summary.tables, rows: summary.rows });
    const audit = await api("GET", `/api/v1/audit/search?action=backup.created&target=${encodeURIComponent("backups/2091-01-15/")}`);
    expect(audit.body.data[0]).toMatchObject({ actor: "system:backup", actorRole: "system" });
  });

  it("verify reports a flipped byte, a re-encrypted edit, a missing object; unknown dates are 404", async () => {
    const date = "2091-02-20";
    await runDailyBackup(messageServicesOf().withNow(t(`${date}T03:00:00Z`)));
    const key = `backups/${date}/customers.json.enc`;
    const original = await r2Bytes(key);

    const flipped = original.slice();
    flipped[flipped.length - 1]! ^= 0x80;
    await env.ARCHIVE.put(key, flipped);
    let r = await verify(date);
    expect(r.body).toMatchObject({ ok: false, mismatch: { table: "customers", key } });
    expect(r.body.mismatch.problem).toContain("decryption failed");

    // Someone holding the key edits the rows and re-encrypts: the manifest's sha256 and size catch it.
    const opened = await decrypt(KEY, original);
    if (!opened.ok) throw new Error(opened.error);
    const doc = JSON.parse(new TextDecoder().decode(opened.value));
    doc.rows = doc.rows.slice(1);
    const resealed = await encrypt(KEY, new TextEncoder().encode(JSON.stringify(doc)));
    await env.ARCHIVE.put(key, resealed);
    r = await verify(date);
    expect(r.body.ok).toBe(false);
    expect(r.body.mismatch.problem).toMatch(/size is|sha256 is/);

    await env.ARCHIVE.delete(key);
    r = await verify(date);
    expect(r.body.mismatch).toMatchObject({ table: "customers", problem: "object is missing" });

    await env.ARCHIVE.put(key, original);
    expect((await verify(date)).body.ok).toBe(true);

    expect((await verify("1999-01-01")).status).toBe(404);
    expect((await verify("yesterday")).status).toBe(400);
  });

  it("an unfinished backup (no manifest) is listed as incomplete; POST /admin/backups backs up now", async () => {
    await env.ARCHIVE.put("backups/2090-12-31/customers.json.enc", "partial");
    const now = await api("POST", "/admin/backups");
    expect(now.status).toBe(201);
    expect(now.body.date).toBe(new Date().toISOString().slice(0, 10));
    const list = await api("GET", "/admin/backups?limit=400");
    expect(list.body.data.find((b: any) => b.date === "2090-12-31")).toMatchObject({ complete: false });
    const dates = list.body.data.map((b: any) => b.date);
    expect(dates).toEqual([...dates].sort().reverse());
  });

  it("backup routes are admin-only", async () => {
    expect((await api("GET", "/admin/backups", { as: "finance" })).status).toBe(403);
    expect((await api("POST", "/admin/backups/2091-01-15/verify", { as: "support" })).status).toBe(403);
    expect((await api("POST", "/admin/backups", { as: "viewer" })).status).toBe(403);
  });
});

describe("OpenAPI", () => {
  it("declares the JSON body of the routes the runbook calls with curl -d", async () => {
    const doc = (await api("GET", "/openapi.json")).body;
    for (const path of ["/api/v1/audit/export", "/admin/emergency/export-all", "/api/v1/compliance/sox-report"]) {
      const op = doc.paths[path].post;
      expect(op.requestBody.content["application/json"].schema).toBeDefined();
    }
    expect(doc.paths["/admin/backups/{date}/verify"].post).toBeDefined();
    expect(doc.paths["/api/v1/audit/exports/{key}"].get).toBeDefined();
  });
});
