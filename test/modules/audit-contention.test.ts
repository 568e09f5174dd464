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
