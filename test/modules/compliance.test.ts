import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { dbOf } from "../../src/db/client";
import { commitWithAudit, type AuditEntry } from "../../src/platform/audit";
import type { Actor } from "../../src/env";
import { keyIdOf } from "../../src/lib/crypto";
import { looksLikeCardNumber } from "../../src/modules/compliance/security";
import { api, createCustomer, createSubscription, unique } from "../helpers";

const t = (s: string) => Date.parse(s);
const actor = (id: string, role: Actor["role"]): Actor => ({ id, kind: role === "system" ? "system" : "user", role, scopes: [] });
const audit = (at: string, who: Actor, e: Partial<AuditEntry> & { action: string }) =>
  commitWithAudit(dbOf(env), [], [{ targetType: "test", targetId: unique("tgt"), ...e }], { actor: who, now: t(at) });

async function insertInvoice(o: { subscriptionId?: string | null; status?: string; voidedAt?: number | null; voidReason?: string | null; at: number }) {
  const id = unique("inv");
  await env.DB.prepare(
    `INSERT INTO invoices (id, customer_id, subscription_id, status, billing_reason, currency, period_start, period_end, subtotal, discount, tax, total, amount_due, generation_key, voided_at, void_reason, created_at, updated_at)
     VALUES (?, 'cus_x', ?, ?, 'manual', 'USD', ?, ?, 1000, 0, 0, 1000, 1000, ?, ?, ?, ?, ?)`,
  )
    .bind(id, o.subscriptionId ?? null, o.status ?? "open", o.at, o.at, unique("gen"), o.voidedAt ?? null, o.voidReason ?? null, o.at, o.at)
    .run();
  return id;
}

async function insertPayment(o: { invoiceId: string; amount: number; refunded?: number; method?: string | null; at: number; status?: string; attempt?: number }) {
  const id = unique("pay");
  await env.DB.prepare(
    `INSERT INTO payments (id, invoice_id, customer_id, attempt, amount, currency, status, gateway, gateway_payment_id, payment_method, idempotency_key, amount_refunded, created_at, updated_at)
     VALUES (?, ?, 'cus_x', ?, ?, 'USD', ?, 'sandbox', ?, ?, ?, ?, ?, ?)`,
  )
    .bind(id, o.invoiceId, o.attempt ?? 1, o.amount, o.status ?? "succeeded", unique("ch"), o.method ?? null, unique("idem"), o.refunded ?? 0, o.at, o.at)
    .run();
  return id;
}

async function insertRefund(o: { paymentId: string; amount: number; status: string; reason: string; at: number }) {
  await env.DB.prepare(
    `INSERT INTO refunds (id, payment_id, amount, currency, reason, status, idempotency_key, created_by, created_at, updated_at) VALUES (?, ?, ?, 'USD', ?, ?, ?, 'test-finance', ?, ?)`,
  )
    .bind(unique("re"), o.paymentId, o.amount, o.reason, o.status, unique("idem"), o.at, o.at)
    .run();
}

const sox = (body: unknown, as: "admin" | "finance" | "support" | "viewer" = "finance") => api("POST", "/api/v1/compliance/sox-report", { body, as });
const controlsOf = (r: { body: { controls: { name: string; status: string; evidence: string }[] } }) => Object.fromEntries(r.body.controls.map((c) => [c.name, c]));

describe("POST /api/v1/compliance/sox-report", () => {
  // Q1-2091 holds problems; Q3-2091 is clean. Nothing else in the suite is dated in 2091 with these actions.
  const seeded = (async () => {
    const alice = actor("sox-alice", "admin");
    const bob = actor("sox-bob", "finance");
    const carol = actor("sox-carol", "admin");
    const dave = actor("sox-dave", "support");
    const eve = actor("sox-eve", "finance");
    await audit("2091-01-10T10:00:00Z", alice, { action: "config.updated", targetType: "setting", targetId: "retry_config", before: { maxAttempts: 3 }, after: { maxAttempts: 9 }, reason: "more retries" });
    await audit("2091-01-11T10:00:00Z", alice, { action: "refund.requested", targetType: "refund", after: { reason: "goodwill" } });
    await audit("2091-02-01T10:00:00Z", bob, { action: "refund.requested", targetType: "refund" });
    await audit("2091-02-02T10:00:00Z", bob, { action: "refund.requested", targetType: "refund" });
    await audit("2091-02-03T10:00:00Z", carol, { action: "tax.rate_updated", targetType: "tax_rate", targetId: "US-CA" });
    await audit("2091-02-04T10:00:00Z", dave, { action: "invoice.voided", targetType: "invoice", targetId: "inv_sox_noreason", reason: "" });
    await audit("2091-03-05T10:00:00Z", eve, { action: "invoice.voided", targetType: "invoice", targetId: "inv_sox_dup", reason: "duplicate" });
    await audit("2091-03-31T23:59:59Z", actor("system:billing", "system"), { action: "payment.processed", targetType: "payment" });
    await audit("2091-04-01T00:00:00Z", alice, { action: "refund.requested", targetType: "refund" }); // Q2: outside

    await insertInvoice({ status: "void", voidedAt: t("2091-02-04T10:00:00Z"), voidReason: null, at: t("2091-01-01T00:00:00Z") });
    const inv = await insertInvoice({ status: "paid", at: t("2091-01-01T00:00:00Z") });
    const p = await insertPayment({ invoiceId: inv, amount: 1000, refunded: 600, at: t("2091-01-02T00:00:00Z") });
    await insertRefund({ paymentId: p, amount: 600, status: "succeeded", reason: "goodwill", at: t("2091-02-01T10:00:00Z") });
    await insertRefund({ paymentId: p, amount: 500, status: "pending", reason: "again", at: t("2091-02-02T10:00:00Z") });

    // Q3-2091: clean.
    await audit("2091-07-02T10:00:00Z", carol, { action: "config.updated", targetType: "setting", targetId: "billing" });
    await audit("2091-07-03T10:00:00Z", eve, { action: "refund.requested", targetType: "refund" });
    await audit("2091-07-04T10:00:00Z", eve, { action: "invoice.voided", targetType: "invoice", targetId: "inv_sox_q3", reason: "customer left" });
    await insertInvoice({ status: "void", voidedAt: t("2091-07-04T10:00:00Z"), voidReason: "customer left", at: t("2091-07-01T00:00:00Z") });
    const inv3 = await insertInvoice({ status: "paid", at: t("2091-07-01T00:00:00Z") });
    const p3 = await insertPayment({ invoiceId: inv3, amount: 1000, refunded: 400, at: t("2091-07-01T00:00:00Z") });
    await insertRefund({ paymentId: p3, amount: 400, status: "succeeded", reason: "partial", at: t("2091-07-03T10:00:00Z") });
    await insertRefund({ paymentId: p3, amount: 900, status: "failed", reason: "declined", at: t("2091-07-03T11:00:00Z") });
  })();

  it("counts state changes by action and role, and finds who both changed configuration and moved money", async () => {
    await seeded;
    const r = await sox({ quarter: "Q1-2091", includeControls: false });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ quarter: "Q1-2091", from: "2091-01-01T00:00:00.000Z", to: "2091-04-01T00:00:00.000Z", complete: false, generatedBy: "test-finance" });
    expect(r.body.controls).toBeUndefined();
    expect(r.body.auditChain).toMatchObject({ valid: true, firstBrokenRow: null });
    expect(r.body.stateChanges.total).toBe(8);
    expect(r.body.stateChanges.byAction).toEqual([
      { action: "refund.requested", count: 3 },
      { action: "invoice.voided", count: 2 },
      { action: "config.updated", count: 1 },
      { action: "payment.processed", count: 1 },
      { action: "tax.rate_updated", count: 1 },
    ]);
    expect(r.body.stateChanges.byActorRole).toEqual([
      { role: "admin", count: 3 },
      { role: "finance", count: 3 },
      { role: "support", count: 1 },
      { role: "system", count: 1 },
    ]);
    expect(r.body.segregationOfDuties.findings).toEqual([
      { actor: "sox-alice", actorRole: "admin", configurationChanges: 1, moneyMovements: 1, configurationActions: ["config.updated"], moneyActions: ["refund.requested"] },
    ]);
    expect(r.body.voids.items).toEqual([
      { invoiceId: "inv_sox_noreason", at: "2091-02-04T10:00:00.000Z", actor: "sox-dave", actorRole: "support", reason: "" },
      { invoiceId: "inv_sox_dup", at: "2091-03-05T10:00:00.000Z", actor: "sox-eve", actorRole: "finance", reason: "duplicate" },
    ]);
    expect(r.body.refunds.items.map((x: any) => [x.amountMinor, x.status, x.reason])).toEqual([
      [600, "succeeded", "goodwill"],
      [500, "pending", "again"],
    ]);
    expect(r.body.configurationChanges.items.map((x: any) => [x.action, x.actor, x.targetId])).toEqual([
      ["config.updated", "sox-alice", "retry_config"],
      ["tax.rate_updated", "sox-carol", "US-CA"],
    ]);
    expect(r.body.configurationChanges.items[0]).toMatchObject({ before: { maxAttempts: 3 }, after: { maxAttempts: 9 }, reason: "more retries" });
  });

  it("controls: each fails on the quarter's problems with its evidence, and passes on a clean quarter", async () => {
    await seeded;
    const bad = controlsOf(await sox({ quarter: "Q1-2091", includeControls: true }));
    expect(bad["audit chain intact"]!.status).toBe("pass");
    expect(bad["every void has a reason"]).toMatchObject({ status: "fail", evidence: "1 invoices voided, 1 without a reason; 2 invoice.voided audit rows, 1 without a reason" });
    expect(bad["refunds never exceed captured"]!.status).toBe("fail");
    expect(bad["refunds never exceed captured"]!.evidence).toContain("captured 1000, refunded 1100");
    expect(bad["money moved only by authorised roles"]).toMatchObject({ status: "fail", evidence: "1 × invoice.voided by role support" });
    expect(bad["segregation of duties"]!.status).toBe("fail");
    expect(bad["segregation of duties"]!.evidence).toContain("sox-alice");
    expect(bad["idempotency keys on money-moving requests"]).toMatchObject({ status: "pass" });
    expect(bad["idempotency keys on money-moving requests"]!.evidence).toContain("1 payment attempts and 2 refunds, 0 without a key");

    const good = await sox({ quarter: "Q3-2091", includeControls: true });
    expect(good.body.controls.filter((c: any) => c.status === "fail")).toEqual([]);
    expect(good.body.controls).toHaveLength(7);
    expect(controlsOf(good)["refunds never exceed captured"]!.evidence).toMatch(/^1 refunded payments checked, 0 over/);
  });

  it("stores the report in R2, audits it, and takes the runbook's curl -d body", async () => {
    await seeded;
    const r = await api("POST", "/api/v1/compliance/sox-report", {
      rawBody: JSON.stringify({ quarter: "Q3-2091", includeControls: true }),
      headers: { "content-type": "application/x-www-form-urlencoded" },
      as: "admin",
    });
    expect(r.status).toBe(200);
    expect(r.body.reportKey).toBe("reports/compliance/sox-Q3-2091.json");
    const stored = await env.ARCHIVE.get(r.body.reportKey);
    expect(await stored!.json()).toEqual(r.body);
    const a = await api("GET", `/api/v1/audit/search?action=compliance.sox_report_generated&target=${encodeURIComponent(r.body.reportKey)}`);
    expect(a.body.data[0]).toMatchObject({ actor: "test-admin", after: { quarter: "Q3-2091", chainValid: true, failedControls: [] } });
  });

  it("validates the quarter and allows admin and finance only", async () => {
    expect((await sox({ quarter: "2024-Q2" })).status).toBe(400);
    expect((await sox({ quarter: "Q5-2024" })).status).toBe(400);
    expect((await sox({})).status).toBe(400);
    expect((await sox({ quarter: "Q1-2091" }, "support")).status).toBe(403);
    expect((await sox({ quarter: "Q1-2091" }, "viewer")).status).toBe(403);
    expect((await sox({ quarter: "Q1-2091" }, "admin")).status).toBe(200);
  });

  it("reports a broken audit chain and fails its control", async () => {
    await seeded;
    const row = await env.DB.prepare("SELECT seq, reason FROM audit_log WHERE actor = 'sox-alice' AND action = 'config.updated'").first<{ seq: number; reason: string }>();
    await env.DB.prepare("UPDATE audit_log SET reason = 'edited later' WHERE seq = ?").bind(row!.seq).run();
    try {
      const r = await sox({ quarter: "Q1-2091", includeControls: true });
      expect(r.body.auditChain).toMatchObject({ valid: false, firstBrokenRow: { seq: row!.seq, problem: expect.stringContaining("does not match its MAC") } });
      expect(controlsOf(r)["audit chain intact"]).toMatchObject({ status: "fail" });
      expect(controlsOf(r)["audit chain intact"]!.evidence).toContain(`broken at seq ${row!.seq}`);
    } finally {
      await env.DB.prepare("UPDATE audit_log SET reason = ? WHERE seq = ?").bind(row!.reason, row!.seq).run();
    }
    expect((await api("GET", "/api/v1/audit/verify-integrity")).body.valid).toBe(true);
  });
});

describe("GET /admin/security/encryption-status", () => {
  it("reports configured secrets without their values, the export key id, JWT algorithm, TLS, and flags non-token payment methods", async () => {
    const sub = await createSubscription({ paymentMethod: "pm_card_visa" });
    const r = await api("GET", "/admin/security/encryption-status");
    expect(r.status).toBe(200);
    expect(r.body.secrets.JWT_SECRET).toEqual({ configured: true, strongEnough: true });
    expect(r.body.secrets.EXPORT_ENCRYPTION_KEY).toEqual({ configured: true, valid: true });
    expect(r.body.secrets.STRIPE_WEBHOOK_SECRET).toEqual({ configured: true });
    expect(r.body.exportEncryption).toMatchObject({ algorithm: "AES-256-GCM", keyId: await keyIdOf(env.EXPORT_ENCRYPTION_KEY) });
    expect(r.body.jwt).toMatchObject({ algorithm: "HS256", issuer: env.JWT_ISSUER, audience: env.JWT_AUDIENCE });
    expect(r.body.transport.tls).toContain("Cloudflare terminates TLS");
    expect(r.body.cardData).toMatchObject({ stored: false, findings: [] });
    expect(r.body.cardData.columns.find((c: any) => c.table === "subscriptions").values).toBeGreaterThanOrEqual(1);
    const text = JSON.stringify(r.body);
    for (const secret of [env.JWT_SECRET, env.EXPORT_ENCRYPTION_KEY, env.STRIPE_WEBHOOK_SECRET]) expect(text).not.toContain(secret);

    // A card number written straight into D1, and a token of the wrong kind.
    const pan = "4111 1111 1111 1111";
    await env.DB.prepare("UPDATE subscriptions SET payment_method = ? WHERE id = ?").bind(pan, sub.id).run();
    const inv = await insertInvoice({ subscriptionId: sub.id, at: Date.now() });
    const pay = await insertPayment({ invoiceId: inv, amount: 100, method: "tok_visa", at: Date.now(), status: "failed" });
    try {
      const flagged = await api("GET", "/admin/security/encryption-status");
      expect(flagged.body.cardData.stored).toBe(true);
      expect(flagged.body.cardData.findings).toEqual(
        expect.arrayContaining([
          { table: "subscriptions", column: "payment_method", id: sub.id, length: 19, looksLikeCardNumber: true, masked: "************1111" },
          { table: "payments", column: "payment_method", id: pay, length: 8, looksLikeCardNumber: false, masked: "****" },
        ]),
      );
      expect(JSON.stringify(flagged.body)).not.toContain("4111 1111");
      expect(JSON.stringify(flagged.body)).not.toContain("tok_visa");
    } finally {
      await env.DB.prepare("UPDATE subscriptions SET payment_method = 'pm_card_visa' WHERE id = ?").bind(sub.id).run();
      await env.DB.prepare("DELETE FROM payments WHERE id = ?").bind(pay).run();
    }
  });

  it("is admin-only", async () => {
    expect((await api("GET", "/admin/security/encryption-status", { as: "finance" })).status).toBe(403);
    expect((await api("GET", "/admin/security/encryption-status", { as: null })).status).toBe(401);
  });

  it("Luhn: test card numbers pass, near misses and timestamps do not", () => {
    for (const n of ["4242424242424242", "5555-5555-5555-4444", "378282246310005", "4222222222222"]) expect(looksLikeCardNumber(n)).toBe(true);
    for (const n of ["4242424242424241", "1719792000000", "42424242", "pm_card_visa"]) expect(looksLikeCardNumber(n)).toBe(false);
  });
});

describe("GET /admin/audit/card-data-access", () => {
  const page = (q = "") => api("GET", `/admin/audit/card-data-access${q}`);

  it("lists payment-method changes, alternate-method charges and gateway tests, not unrelated changes", async () => {
    const start = new Date().toISOString();
    const withMethod = await createSubscription({ paymentMethod: "pm_card_visa" });
    await createSubscription({}); // no payment method: not listed
    const customer = await createCustomer();
    expect((await api("PATCH", `/api/v1/customers/${customer.id}`, { body: { metadata: { alternatePaymentMethod: "pm_card_mastercard" } } })).status).toBe(200);
    expect((await api("PATCH", `/api/v1/customers/${customer.id}`, { body: { name: "Renamed" } })).status).toBe(200); // method unchanged: not listed
    expect((await api("POST", "/api/v1/gateways/test", { body: { gateway: "sandbox" } })).status).toBe(200);
    const inv = await insertInvoice({ subscriptionId: withMethod.id, at: Date.now() });
    const alt = await insertPayment({ invoiceId: inv, amount: 100, method: "pm_card_mastercard", at: Date.now(), status: "failed" });
    const same = await insertPayment({ invoiceId: inv, amount: 100, method: "pm_card_visa", at: Date.now(), status: "failed", attempt: 2 });
    const finance = actor("test-finance", "finance");
    await audit(new Date().toISOString(), finance, { action: "payment.failed", targetType: "payment", targetId: alt });
    await audit(new Date().toISOString(), finance, { action: "payment.failed", targetType: "payment", targetId: same });

    const r = await page(`?from=${encodeURIComponent(start)}`);
    expect(r.status).toBe(200);
    expect(r.body.data.map((e: any) => [e.action, e.targetId, e.paymentMethod, e.actor])).toEqual([
      ["payment.failed", alt, "pm_card_mastercard", "test-finance"],
      ["gateway.tested", "sandbox", "pm_card_visa", "test-admin"],
      ["customer.updated", customer.id, "pm_card_mastercard", "test-admin"],
      ["subscription.created", withMethod.id, "pm_card_visa", "test-admin"],
    ]);
    expect(r.body.data[0].why).toContain("other than the subscription's");
    expect(r.body.data[1].why).toBe("gateway test charge");
    expect(r.body.data[2].why).toContain("alternate payment method");
    expect(r.body.data[3]).toMatchObject({ why: "payment method set or changed", actorRole: "admin", at: expect.any(String) });

    // Paginated newest first.
    const first = await page(`?from=${encodeURIComponent(start)}&limit=3`);
    expect(first.body).toMatchObject({ hasMore: true, nextCursor: first.body.data[2].id });
    const second = await page(`?from=${encodeURIComponent(start)}&limit=3&startingAfter=${first.body.nextCursor}`);
    expect(second.body.data.map((e: any) => e.targetId)).toEqual([withMethod.id]);
    expect(second.body).toMatchObject({ hasMore: false, nextCursor: null });
    expect((await page("?startingAfter=aud_nope")).status).toBe(400);
  });

  it("is admin-only", async () => {
    expect((await page()).status).toBe(200);
    expect((await api("GET", "/admin/audit/card-data-access", { as: "finance" })).status).toBe(403);
    expect((await api("GET", "/admin/audit/card-data-access", { as: "support" })).status).toBe(403);
  });
});
