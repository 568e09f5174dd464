import { expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { api, createCustomer } from "../helpers";
import { legacyRowHash, GENESIS_CHAIN } from "../../src/platform/audit";

// Rows written before the keyed chain (migration 0008) carry only the unkeyed SHA-256 chain. Storage is per file,
// so the AuditAnchor here seals for the first time in this test and adopts them.
type Legacy = { seq: number; id: string; at: number; actor: string; actorRole: string; action: string; targetType: string; targetId: string; requestId: string | null; before: string | null; after: string | null; reason: string | null; prevHash: string; hash: string };

async function insertLegacy(rows: Legacy[]) {
  for (const r of rows) {
    await env.DB.prepare(
      "INSERT INTO audit_log (seq, id, at, actor, actor_role, action, target_type, target_id, request_id, before, after, reason, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
      .bind(r.seq, r.id, r.at, r.actor, r.actorRole, r.action, r.targetType, r.targetId, r.requestId, r.before, r.after, r.reason, r.prevHash, r.hash)
      .run();
  }
}

it("legacy rows are adopted when their old hash chain holds; one edited before adoption is reported, and new writes chain on", async () => {
  const rows: Legacy[] = [];
  let prevHash = GENESIS_CHAIN;
  for (let seq = 1; seq <= 4; seq++) {
    const content = { seq, id: `aud_legacy${seq}`, at: Date.UTC(2025, 0, seq), actor: "old-admin", actorRole: "admin", action: "customer.created", targetType: "customer", targetId: `cus_old${seq}`, requestId: null, before: null, after: `{"n":${seq}}`, reason: null, prevHash };
    const hash = await legacyRowHash(content);
    rows.push({ ...content, hash });
    prevHash = hash;
  }
  // Row 4 was edited after it was written (its old hash no longer matches): it must not be laundered by adoption.
  rows[3] = { ...rows[3]!, after: '{"n":400}' };
  await insertLegacy(rows);

  const v = await api("GET", "/api/v1/audit/verify-integrity");
  expect(v.body).toMatchObject({ valid: false, checked: 3, brokenAt: 4, firstBrokenRow: { seq: 4, id: "aud_legacy4" } });
  expect(v.body.reason).toContain("no MAC");
  const stored = (await env.DB.prepare("SELECT seq, mac, chain FROM audit_log ORDER BY seq").all<{ seq: number; mac: string | null; chain: string | null }>()).results;
  expect(stored.map((r) => [r.seq, r.mac !== null, r.chain !== null])).toEqual([
    [1, true, true],
    [2, true, true],
    [3, true, true],
    [4, false, true],
  ]);

  // Putting the original content back cannot help any more: a row without a MAC stays reported.
  await env.DB.prepare("UPDATE audit_log SET after = ? WHERE seq = 4").bind('{"n":4}').run();
  expect((await api("GET", "/api/v1/audit/verify-integrity")).body).toMatchObject({ valid: false, brokenAt: 4 });

  // New writes still land and are sealed; a row forged later without a MAC (above the legacy rows) is sealed as it
  // is, never adopted.
  const c = await createCustomer();
  expect((await env.DB.prepare("SELECT seq, mac FROM audit_log WHERE target_id = ?").bind(c.id).first<{ seq: number; mac: string }>())).toMatchObject({ seq: 5, mac: expect.stringMatching(/^[0-9a-f]{64}$/) });
  await env.DB.prepare("INSERT INTO audit_log (seq, id, at, actor, actor_role, action, target_type, target_id) VALUES (6, 'aud_forged', ?, 'mallory', 'admin', 'refund.created', 'refund', 're_forged')").bind(Date.now()).run();
  expect((await api("GET", "/api/v1/audit/verify-integrity")).body).toMatchObject({ valid: false, brokenAt: 4 });
  expect(await env.DB.prepare("SELECT mac, chain IS NOT NULL AS sealed FROM audit_log WHERE seq = 6").first()).toEqual({ mac: null, sealed: 1 });
});
