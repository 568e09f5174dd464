import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { eq } from "drizzle-orm";
import entry from "../../src/index";
import { dbOf } from "../../src/db/client";
import { invoices, payments, settings } from "../../src/db/schema";
import { dropSettingsCache } from "../../src/platform/settings";
import { dropFeatureCache, isFeatureEnabled } from "../../src/modules/admin/features";
import { DEFAULT_RETRY, RETRY_CONFIG_KEY } from "../../src/modules/payments/config";
import { newId } from "../../src/lib/ids";
import type { Role } from "../../src/http/auth";
import { notificationEventCount, api, createCustomer, tokenFor, unique } from "../helpers";

const worker: Required<Pick<ExportedHandler<Env>, "fetch">> = entry;
const db = dbOf(env);
const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

type CallOpts = { as?: Role; body?: unknown; rawBody?: string; curl?: boolean; env?: Record<string, unknown> };

/** Calls the worker with optional env overrides; `curl: true` sends the body as `curl -d` does (form type). */
async function call(method: string, path: string, opts: CallOpts = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${await tokenFor(opts.as ?? "admin")}` };
  const body = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  if (body !== undefined) headers["content-type"] = opts.curl ? "application/x-www-form-urlencoded" : "application/json";
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`http://localhost${path}`, { method, headers, body }), { ...env, ...opts.env } as Env, ctx);
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as any };
}

const auditRows = (action: string, targetId: string) =>
  env.DB.prepare("SELECT * FROM audit_log WHERE action = ? AND target_id = ? ORDER BY seq").bind(action, targetId).all<Record<string, any>>().then((r) => r.results);

const spyQueue = () => {
  const send = vi.fn(async (_m: unknown) => undefined);
  // sendBatch records each message as a send, so assertions see every message however it was sent.
  const sendBatch = async (msgs: { body: unknown }[]) => {
    for (const m of msgs) await send(m.body);
  };
  return { send, queue: { send, sendBatch } as unknown as Queue, sent: () => send.mock.calls.map((c) => c[0]) };
};

async function resetSetting(key: string) {
  await db.delete(settings).where(eq(settings.key, key));
  dropSettingsCache();
  dropFeatureCache();
}

afterEach(async () => {
  vi.unstubAllGlobals();
  await resetSetting(RETRY_CONFIG_KEY);
});

describe("GET /admin/config", () => {
  it("shows the effective configuration with secrets only as configured / not configured", async () => {
    const r = await api("GET", "/admin/config");
    expect(r.status).toBe(200);
    expect(r.body.environment).toEqual({ ENVIRONMENT: "development", TEST_CLOCKS: "on", USAGE_GRACE_SECONDS: "3600", JWT_ISSUER: "billing-engine", JWT_AUDIENCE: "billing-api" });
    expect(r.body.secrets).toEqual({
      JWT_SECRET: "configured",
      STRIPE_SECRET_KEY: "not configured",
      STRIPE_WEBHOOK_SECRET: "configured",
      EXPORT_ENCRYPTION_KEY: "configured",
      EXCHANGE_RATES_URL: "not configured",
    });
    const text = JSON.stringify(r.body);
    for (const secret of [env.JWT_SECRET, env.STRIPE_WEBHOOK_SECRET, env.EXPORT_ENCRYPTION_KEY]) expect(text).not.toContain(secret);
    expect(r.body.billing).toEqual({ retryAttempts: DEFAULT_RETRY.maxAttempts, gracePeriodDays: DEFAULT_RETRY.gracePeriodDays, backoffMultiplier: DEFAULT_RETRY.backoffMultiplier, initialDelay: DEFAULT_RETRY.initialDelay });
    expect(r.body.gateways).toMatchObject({ configured: ["sandbox"], routing: { primary: "sandbox", backup: null, primaryDown: false, activeGateway: "sandbox" } });
    expect(Array.isArray(r.body.settings)).toBe(true);
  });

  it("never shows a provider URL (it may carry an API key)", async () => {
    const r = await call("GET", "/admin/config", { env: { EXCHANGE_RATES_URL: "https://rates.example/latest?access_key=SECRET123" } });
    expect(r.body.secrets.EXCHANGE_RATES_URL).toBe("configured");
    expect(JSON.stringify(r.body)).not.toContain("SECRET123");
  });

  it("is for admins only", async () => {
    for (const role of ["finance", "support", "viewer"] as const) expect((await api("GET", "/admin/config", { as: role })).status).toBe(403);
    expect((await api("GET", "/admin/config", { as: null })).status).toBe(401);
  });
});

describe("PATCH /admin/config", () => {
  it("merges the runbook body into payments.retry (audited) and answers the new effective config", async () => {
    const r = await api("PATCH", "/admin/config", { body: { billing: { retryAttempts: 5, gracePeriodDays: 7 } } });
    expect(r.status).toBe(200);
    expect(r.body.billing).toEqual({ retryAttempts: 5, gracePeriodDays: 7, backoffMultiplier: DEFAULT_RETRY.backoffMultiplier, initialDelay: DEFAULT_RETRY.initialDelay });
    expect(r.body.settings).toContainEqual({ key: RETRY_CONFIG_KEY, updatedAt: expect.any(String), updatedBy: "test-admin" });

    // One source of truth: the payments retry config shows the same.
    expect((await api("GET", "/api/v1/payments/retry-config")).body).toEqual({ ...DEFAULT_RETRY, maxAttempts: 5, gracePeriodDays: 7 });
    const stored = await db.select().from(settings).where(eq(settings.key, RETRY_CONFIG_KEY)).get();
    expect(stored!.value).toEqual({ ...DEFAULT_RETRY, maxAttempts: 5, gracePeriodDays: 7 });

    const audit = await auditRows("config.updated", RETRY_CONFIG_KEY);
    const last = audit[audit.length - 1]!;
    expect(last).toMatchObject({ actor: "test-admin", actor_role: "admin", target_type: "setting", before: "null" });
    expect(JSON.parse(last.after)).toMatchObject({ maxAttempts: 5, gracePeriodDays: 7 });
  });

  it("merges over what D1 holds, not over a stale cached copy", async () => {
    expect((await api("GET", "/admin/config")).body.billing.initialDelay).toBe(DEFAULT_RETRY.initialDelay); // cached now
    // Another isolate changed initialDelay.
    await db.insert(settings).values({ key: RETRY_CONFIG_KEY, value: { ...DEFAULT_RETRY, initialDelay: 120 }, updatedBy: "elsewhere", updatedAt: Date.now() });
    const r = await api("PATCH", "/admin/config", { body: { billing: { gracePeriodDays: 10 } } });
    expect(r.body.billing).toMatchObject({ initialDelay: 120, gracePeriodDays: 10 });
  });

  it("refuses unknown keys at their path and out-of-range values", async () => {
    const typo = await api("PATCH", "/admin/config", { body: { billing: { retryAttemps: 5 }, bililng: {} } });
    expect(typo.status).toBe(400);
    expect(typo.body.errors).toEqual(expect.arrayContaining([{ path: "billing.retryAttemps", message: "unknown field" }, { path: "bililng", message: "unknown field" }]));

    const range = await api("PATCH", "/admin/config", { body: { billing: { retryAttempts: 0, gracePeriodDays: 7.5, backoffMultiplier: "2" } } });
    expect(range.status).toBe(400);
    expect(range.body.errors.map((e: any) => e.path).sort()).toEqual(["billing.backoffMultiplier", "billing.gracePeriodDays", "billing.retryAttempts"]);

    const empty = await api("PATCH", "/admin/config", { body: { billing: {} } });
    expect(empty.status).toBe(400);
    expect(empty.body.detail).toContain("nothing to update");
    expect((await api("PATCH", "/admin/config", { rawBody: "{not json" })).status).toBe(400);
    expect(await db.select().from(settings).where(eq(settings.key, RETRY_CONFIG_KEY)).get()).toBeUndefined();
  });

  it("is for admins only", async () => {
    for (const role of ["finance", "viewer"] as const) {
      expect((await api("PATCH", "/admin/config", { as: role, body: { billing: { retryAttempts: 5 } } })).status).toBe(403);
    }
    expect(await db.select().from(settings).where(eq(settings.key, RETRY_CONFIG_KEY)).get()).toBeUndefined();
  });
});

describe("POST /admin/config/reload", () => {
  it("drops the per-isolate caches so a value changed directly in D1 shows at once", async () => {
    expect((await api("GET", "/admin/config")).body.billing.retryAttempts).toBe(DEFAULT_RETRY.maxAttempts); // cached now
    await db.insert(settings).values({ key: RETRY_CONFIG_KEY, value: { ...DEFAULT_RETRY, maxAttempts: 9 }, updatedBy: "sql", updatedAt: Date.now() });
    expect((await api("GET", "/admin/config")).body.billing.retryAttempts).toBe(DEFAULT_RETRY.maxAttempts); // still the cached copy

    const r = await api("POST", "/admin/config/reload");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ dropped: ["settings", "features", "apiKeys"], scope: "isolate" });
    expect((await api("GET", "/admin/config")).body.billing.retryAttempts).toBe(9);
  });

  it("drops cached feature flags too", async () => {
    const name = `reload-${Date.now().toString(36)}`;
    await api("PUT", `/admin/features/${name}`, { body: { enabled: true } });
    expect(await isFeatureEnabled(db, name, { id: "cus_1" })).toBe(true); // cached now
    await db.update(settings).set({ value: { enabled: false } }).where(eq(settings.key, `features.${name}`));
    expect(await isFeatureEnabled(db, name, { id: "cus_1" })).toBe(true);
    const r = await api("POST", "/admin/config/reload");
    expect(r.body.featureFlagsDropped).toBeGreaterThanOrEqual(1);
    expect(await isFeatureEnabled(db, name, { id: "cus_1" })).toBe(false);
    await resetSetting(`features.${name}`);
  });

  it("is for admins only", async () => {
    for (const role of ["finance", "viewer"] as const) expect((await api("POST", "/admin/config/reload", { as: role })).status).toBe(403);
  });
});

describe("feature flags", () => {
  const flagName = () => `f-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;

  it("PUT with the runbook bodies, then list, get and audit", async () => {
    const simple = flagName();
    const ab = flagName();
    const one = await api("PUT", `/admin/features/${simple}`, { body: { enabled: true } });
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ name: simple, enabled: true, percentage: null, criteria: {}, updatedBy: "test-admin" });
    const two = await api("PUT", `/admin/features/${ab}`, { body: { enabled: true, percentage: 50, criteria: { segment: "premium" } } });
    expect(two.body).toMatchObject({ name: ab, enabled: true, percentage: 50, criteria: { segment: "premium" } });

    const list = await api("GET", "/admin/features");
    expect(list.status).toBe(200);
    const names = list.body.data.map((f: any) => f.name);
    expect(names).toEqual(expect.arrayContaining([simple, ab]));
    expect((await api("GET", `/admin/features/${ab}`)).body).toMatchObject({ percentage: 50, criteria: { segment: "premium" } });
    expect((await api("GET", "/admin/features/no-such-flag")).status).toBe(404);

    const audit = await auditRows("config.updated", `features.${ab}`);
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0]!.after)).toEqual({ enabled: true, percentage: 50, criteria: { segment: "premium" } });

    // Replacing drops the fields not sent (PUT semantics).
    const replaced = await api("PUT", `/admin/features/${ab}`, { body: { enabled: false } });
    expect(replaced.body).toMatchObject({ enabled: false, percentage: null, criteria: {} });
    expect(await auditRows("config.updated", `features.${ab}`)).toHaveLength(2);
  });

  it("evaluate: criteria, a stable percentage answer, and the reason", async () => {
    const name = flagName();
    await api("PUT", `/admin/features/${name}`, { body: { enabled: true, percentage: 50, criteria: { segment: "premium" } } });

    const basic = await api("GET", `/admin/features/${name}/evaluate?subjectId=cus_1&segment=basic`);
    expect(basic.status).toBe(200);
    expect(basic.body).toMatchObject({ enabled: false, reason: "criteria_mismatch" });
    expect((await api("GET", `/admin/features/${name}/evaluate?subjectId=cus_1`)).body).toMatchObject({ enabled: false, reason: "criteria_mismatch" });

    const answers = [];
    for (let i = 0; i < 40; i++) {
      const r = await api("GET", `/admin/features/${name}/evaluate?subjectId=cus_${i}&segment=premium`);
      expect(r.status).toBe(200);
      expect(r.body.reason).toBe(r.body.enabled ? "in_rollout" : "out_of_rollout");
      expect(r.body.bucket < 50).toBe(r.body.enabled);
      answers.push(r.body.enabled);
      // Same subject, same answer, and the same as other modules get.
      expect((await api("GET", `/admin/features/${name}/evaluate?subjectId=cus_${i}&segment=premium`)).body.enabled).toBe(r.body.enabled);
      expect(await isFeatureEnabled(db, name, { id: `cus_${i}`, attributes: { segment: "premium" } })).toBe(r.body.enabled);
    }
    expect(answers).toContain(true);
    expect(answers).toContain(false);

    expect((await api("GET", `/admin/features/${name}/evaluate`)).status).toBe(400); // subjectId is required
    expect((await api("GET", `/admin/features/missing-flag/evaluate?subjectId=cus_1`)).status).toBe(404);
    await api("PUT", `/admin/features/${name}`, { body: { enabled: false } });
    expect((await api("GET", `/admin/features/${name}/evaluate?subjectId=cus_1`)).body).toMatchObject({ enabled: false, reason: "disabled" });
  });

  it("validates the name and the body, with paths", async () => {
    const bad = await api("PUT", "/admin/features/Usage_Billing", { body: { enabled: true } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe("name");

    const name = flagName();
    const r = await api("PUT", `/admin/features/${name}`, { body: { enabld: true, percentage: 50.5, criteria: { segment: { tier: "x" }, subjectId: "y" } } });
    expect(r.status).toBe(400);
    expect(r.body.errors.map((e: any) => e.path).sort()).toEqual(["criteria.segment", "criteria.subjectId", "enabld", "enabled", "percentage"].sort());
    expect((await api("PUT", `/admin/features/${name}`, { body: { enabled: true, percentage: 101 } })).status).toBe(400);
    expect((await api("PUT", `/admin/features/${name}`, { body: { enabled: "yes" } })).status).toBe(400);
    expect((await api("GET", `/admin/features/${name}`)).status).toBe(404);
  });

  it("DELETE removes the flag (audited); a missing flag is off", async () => {
    const name = flagName();
    await api("PUT", `/admin/features/${name}`, { body: { enabled: true } });
    expect(await isFeatureEnabled(db, name, { id: "cus_1" })).toBe(true);
    const del = await api("DELETE", `/admin/features/${name}`);
    expect(del.status).toBe(204);
    expect((await api("GET", `/admin/features/${name}`)).status).toBe(404);
    expect((await api("DELETE", `/admin/features/${name}`)).status).toBe(404);
    expect(await isFeatureEnabled(db, name, { id: "cus_1" })).toBe(false);
    const audit = await auditRows("config.deleted", `features.${name}`);
    expect(audit).toHaveLength(1);
    expect(JSON.parse(audit[0]!.before)).toEqual({ enabled: true });
  });

  it("a malformed stored flag is listed as invalid and evaluates as off", async () => {
    const name = flagName();
    await db.insert(settings).values({ key: `features.${name}`, value: { enabled: "sure" }, updatedBy: "sql", updatedAt: Date.now() });
    const one = await api("GET", `/admin/features/${name}`);
    expect(one.body).toMatchObject({ name, enabled: false, invalid: expect.stringContaining("enabled") });
    expect((await api("GET", `/admin/features/${name}/evaluate?subjectId=cus_1`)).body).toMatchObject({ enabled: false, reason: "invalid_flag" });
    expect(await isFeatureEnabled(db, name, { id: "cus_1" })).toBe(false);
    await resetSetting(`features.${name}`);
  });

  it("writes need the admin role; so do reads", async () => {
    const name = flagName();
    for (const role of ["finance", "viewer"] as const) {
      expect((await api("PUT", `/admin/features/${name}`, { as: role, body: { enabled: true } })).status).toBe(403);
      expect((await api("DELETE", `/admin/features/${name}`, { as: role })).status).toBe(403);
      expect((await api("GET", "/admin/features", { as: role })).status).toBe(403);
    }
    expect((await api("GET", `/admin/features/${name}`)).status).toBe(404);
  });
});

// ── Payment-issue notifications ─────────────────────────────────────────────────────────────────────────

type Attempt = { gateway: string | null; status: (typeof payments.$inferInsert)["status"] };

/** An invoice of `customerId` (open with 12.50 due unless told) with the given attempts, in order. */
async function seedInvoice(customerId: string, attempts: Attempt[], opts: { status?: "open" | "paid"; amountDue?: number; createdAt?: number; testClockId?: string } = {}) {
  const now = opts.createdAt ?? Date.now();
  const id = newId("in");
  const amountDue = opts.amountDue ?? 1250;
  await db.insert(invoices).values({
    id,
    number: unique("INV"),
    customerId,
    status: opts.status ?? "open",
    billingReason: "manual",
    currency: "USD",
    periodStart: now - 86_400_000,
    periodEnd: now,
    subtotal: 1250,
    discount: 0,
    tax: 0,
    total: 1250,
    amountDue,
    generationKey: unique("gen"),
    testClockId: opts.testClockId ?? null,
    createdAt: now,
    updatedAt: now,
  });
  let n = 0;
  for (const a of attempts) {
    n += 1;
    await db.insert(payments).values({ id: newId("pay"), invoiceId: id, customerId, attempt: n, amount: amountDue, currency: "USD", status: a.status, gateway: a.gateway, idempotencyKey: `${id}:attempt:${n}`, createdAt: now + n, updatedAt: now + n });
  }
  return (await db.select().from(invoices).where(eq(invoices.id, id)).get())!;
}

describe("POST /admin/notifications/payment-issue", () => {
  it("notifies each affected customer once a day, sent as the runbook does (curl -d, no JSON type)", async () => {
    const [failed, processing, twoInvoices, movedOn, paid, otherGateway, parkedNull, clock] = await Promise.all(Array.from({ length: 8 }, () => createCustomer()));
    const failedInv = await seedInvoice(failed.id, [{ gateway: "stripe", status: "failed" }]);
    await seedInvoice(processing.id, [{ gateway: "stripe", status: "failed" }, { gateway: "stripe", status: "processing" }]);
    const older = await seedInvoice(twoInvoices.id, [{ gateway: "stripe", status: "failed" }], { createdAt: Date.now() - 10_000 });
    const newer = await seedInvoice(twoInvoices.id, [{ gateway: "stripe", status: "parked" }]);
    await seedInvoice(movedOn.id, [{ gateway: "stripe", status: "failed" }, { gateway: "sandbox", status: "failed" }]); // latest attempt elsewhere
    await seedInvoice(paid.id, [{ gateway: "stripe", status: "failed" }], { status: "paid", amountDue: 0 });
    await seedInvoice(otherGateway.id, [{ gateway: "sandbox", status: "failed" }]);
    await seedInvoice(parkedNull.id, [{ gateway: null, status: "parked" }]); // headed for the primary (sandbox here)
    await seedInvoice(clock.id, [{ gateway: "stripe", status: "failed" }], { testClockId: "clk_x" });

    const q = spyQueue();
    const r = await call("POST", "/admin/notifications/payment-issue", { curl: true, body: { template: "payment-gateway-issue", affectedGateway: "stripe" }, env: { WEBHOOK_QUEUE: q.queue } });
    expect(r.status).toBe(200);
    expect(r.body.customerIds).toEqual(expect.arrayContaining([failed.id, processing.id, twoInvoices.id]));
    for (const c of [movedOn, paid, otherGateway, parkedNull, clock]) expect(r.body.customerIds).not.toContain(c.id);
    expect(r.body.notified).toBe(r.body.customerIds.length);

    const rows = await env.DB.prepare("SELECT * FROM notifications WHERE kind = 'payment.gateway_issue' AND customer_id IN (?, ?, ?)").bind(failed.id, processing.id, twoInvoices.id).all<Record<string, any>>();
    expect(rows.results).toHaveLength(3);
    const forFailed = rows.results.find((n) => n.customer_id === failed.id)!;
    expect(forFailed).toMatchObject({ template: "payment-gateway-issue", status: "queued", invoice_id: failedInv.id, dedupe_key: `gateway_issue:${failed.id}:stripe:${utcDay(Date.now())}` });
    expect(JSON.parse(forFailed.payload)).toMatchObject({ gateway: "stripe", invoiceNumber: failedInv.number, amountDue: "12.50", amountDueMinor: 1250, currency: "USD", customerEmail: failed.email, paymentStatus: "failed" });
    const forTwo = JSON.parse(rows.results.find((n) => n.customer_id === twoInvoices.id)!.payload);
    expect(forTwo).toMatchObject({ invoiceId: newer.id, affectedInvoiceCount: 2 });
    expect(forTwo.invoices.map((i: any) => i.invoiceId)).toEqual([newer.id, older.id]);

    // Each notification was written with its customer.notification event (the built-in endpoint delivers it).
    for (const n of rows.results) expect(await notificationEventCount(n.id)).toBe(1);
    for (const c of [failed, processing, twoInvoices]) {
      const audit = await auditRows("notification.gateway_issue_queued", c.id);
      expect(audit).toHaveLength(1);
      expect(JSON.parse(audit[0]!.after)).toMatchObject({ gateway: "stripe", template: "payment-gateway-issue" });
    }

    // Same day: nobody twice, nothing sent.
    const again = spyQueue();
    const second = await call("POST", "/admin/notifications/payment-issue", { curl: true, body: { template: "payment-gateway-issue", affectedGateway: "stripe" }, env: { WEBHOOK_QUEUE: again.queue } });
    expect(second.status).toBe(200);
    for (const c of [failed, processing, twoInvoices]) expect(second.body.customerIds).not.toContain(c.id);
    expect(second.body.alreadyNotifiedToday).toBeGreaterThanOrEqual(3);
    for (const n of rows.results) expect(await notificationEventCount(n.id)).toBe(1);

    // A parked attempt that never reached a gateway counts for the primary.
    const sandbox = await call("POST", "/admin/notifications/payment-issue", { curl: true, body: { template: "payment-gateway-issue", affectedGateway: "sandbox" }, env: { WEBHOOK_QUEUE: spyQueue().queue } });
    expect(sandbox.body.customerIds).toEqual(expect.arrayContaining([parkedNull.id, movedOn.id, otherGateway.id]));
    expect(sandbox.body.customerIds).not.toContain(failed.id);
  });

  it("validates the body (any content type) and needs the admin role", async () => {
    const unknownGateway = await call("POST", "/admin/notifications/payment-issue", { curl: true, body: { template: "t", affectedGateway: "paypal" } });
    expect(unknownGateway.status).toBe(400);
    expect(unknownGateway.body.errors[0].path).toBe("affectedGateway");
    const extra = await call("POST", "/admin/notifications/payment-issue", { curl: true, body: { template: "t", affectedGateway: "stripe", gateway: "x" } });
    expect(extra.body.errors).toContainEqual({ path: "gateway", message: "unknown field" });
    expect((await call("POST", "/admin/notifications/payment-issue", { curl: true, rawBody: "template=t" })).status).toBe(400);
    expect((await call("POST", "/admin/notifications/payment-issue", { body: { template: "bad template!", affectedGateway: "stripe" } })).status).toBe(400);
    for (const role of ["finance", "viewer"] as const) {
      expect((await call("POST", "/admin/notifications/payment-issue", { as: role, curl: true, body: { template: "t", affectedGateway: "stripe" } })).status).toBe(403);
    }
  });
});

// ── Exchange rates ──────────────────────────────────────────────────────────────────────────────────────

describe("exchange rates", () => {
  afterEach(() => resetSetting("exchange-rates"));
  const URL_WITH_KEY = "https://rates.example.test/latest?access_key=SECRET123";

  it("PUT stores exact decimal strings (audited); GET shows them", async () => {
    expect((await api("GET", "/admin/exchange-rates")).status).toBe(404);
    const r = await api("PUT", "/admin/exchange-rates", { body: { base: "usd", rates: { GBP: "0.790", EUR: "0.92", JPY: "151.123456789012" } } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ base: "USD", rates: { EUR: "0.92", GBP: "0.79", JPY: "151.123456789012" }, source: "manual", updatedBy: "test-admin" });
    expect(Object.keys(r.body.rates)).toEqual(["EUR", "GBP", "JPY"]);
    expect((await api("GET", "/admin/exchange-rates")).body).toEqual(r.body);
    const audit = await auditRows("config.updated", "exchange-rates");
    expect(JSON.parse(audit[audit.length - 1]!.after)).toMatchObject({ base: "USD", rates: { EUR: "0.92" }, source: "manual" });
  });

  it("PUT validates currencies and rates with paths", async () => {
    const r = await api("PUT", "/admin/exchange-rates", { body: { base: "ZZZ", rates: { EUR: "-1", GBP: "0.1234567890123", XXX: "1", eur: "1", JPY: 151 } } });
    expect(r.status).toBe(400);
    expect(r.body.errors.map((e: any) => e.path).sort()).toEqual(["base", "rates.EUR", "rates.GBP", "rates.JPY", "rates.XXX", "rates.eur"].sort());
    const baseInRates = await api("PUT", "/admin/exchange-rates", { body: { base: "USD", rates: { USD: "1", EUR: "0.9" } } });
    expect(baseInRates.body.errors).toEqual([{ path: "rates.USD", message: "is the base currency (always 1)" }]);
    expect((await api("PUT", "/admin/exchange-rates", { body: { base: "USD", rates: {} } })).status).toBe(400);
    expect((await api("PUT", "/admin/exchange-rates", { body: { base: "USD", rates: { EUR: "0.9" }, date: "x" } })).body.errors).toContainEqual({ path: "date", message: "unknown field" });
    for (const role of ["finance", "viewer"] as const) {
      expect((await api("PUT", "/admin/exchange-rates", { as: role, body: { base: "USD", rates: { EUR: "0.9" } } })).status).toBe(403);
    }
    expect((await api("GET", "/admin/exchange-rates")).status).toBe(404);
  });

  it("POST /update without a provider answers 422 and points to PUT", async () => {
    const r = await api("POST", "/admin/exchange-rates/update");
    expect(r.status).toBe(422);
    expect(r.body.detail).toContain("EXCHANGE_RATES_URL");
    expect(r.body.detail).toContain("PUT /admin/exchange-rates");
  });

  it("POST /update fetches the provider's { base, rates }, skips unknown codes, stores exact strings (audited)", async () => {
    const fetchMock = vi.fn(async (_input: RequestInfo | URL, _init?: RequestInit) =>
      Response.json({ base: "USD", rates: { USD: 1, EUR: 0.92, GBP: "0.79", BTC: 0.000016, XAU: 0.0004, JPY: 151.5 }, timestamp: 1 }),
    );
    vi.stubGlobal("fetch", fetchMock);
    const r = await call("POST", "/admin/exchange-rates/update", { env: { EXCHANGE_RATES_URL: URL_WITH_KEY } });
    expect(r.status).toBe(200);
    expect(fetchMock).toHaveBeenCalledTimes(1);
    expect(String(fetchMock.mock.calls[0]![0])).toBe(URL_WITH_KEY);
    expect(r.body).toMatchObject({ base: "USD", rates: { EUR: "0.92", GBP: "0.79", JPY: "151.5" }, source: "provider:rates.example.test" });
    expect(Object.keys(r.body.rates)).toEqual(["EUR", "GBP", "JPY"]);
    expect(r.body.skipped.map((s: any) => s.currency).sort()).toEqual(["BTC", "XAU"]);
    expect(JSON.stringify(r.body)).not.toContain("SECRET123");
    expect((await api("GET", "/admin/exchange-rates")).body.rates).toEqual({ EUR: "0.92", GBP: "0.79", JPY: "151.5" });
    const audit = await auditRows("config.updated", "exchange-rates");
    expect(audit[audit.length - 1]!.reason).toBe("POST /admin/exchange-rates/update");
  });

  it("a failing provider changes nothing (503) and does not leak the URL", async () => {
    await api("PUT", "/admin/exchange-rates", { body: { base: "USD", rates: { EUR: "0.9" } } });
    const cases: [string, () => Promise<Response>][] = [
      ["HTTP 500", async () => new Response("oops", { status: 500 })],
      ["not JSON", async () => new Response("<html>", { status: 200 })],
      ["without { base, rates }", async () => Response.json({ data: [] })],
      ["unknown base", async () => Response.json({ base: "ZZZ", rates: { EUR: 1 } })],
      ["no usable rate", async () => Response.json({ base: "USD", rates: { BTC: 1 } })],
      ["could not be reached", async () => { throw new TypeError("network down"); }],
    ];
    for (const [why, impl] of cases) {
      vi.stubGlobal("fetch", vi.fn(impl));
      const r = await call("POST", "/admin/exchange-rates/update", { env: { EXCHANGE_RATES_URL: URL_WITH_KEY } });
      expect(r.status, why).toBe(503);
      expect(r.body.detail).toContain(why === "HTTP 500" ? "HTTP 500" : why);
      expect(r.body.detail).not.toContain("SECRET123");
    }
    expect((await api("GET", "/admin/exchange-rates")).body).toMatchObject({ rates: { EUR: "0.9" }, source: "manual" });
    expect((await call("POST", "/admin/exchange-rates/update", { as: "finance", env: { EXCHANGE_RATES_URL: URL_WITH_KEY } })).status).toBe(403);
  });
});
