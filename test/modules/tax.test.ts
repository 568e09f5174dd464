import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { dbOf } from "../../src/db/client";
import { customers, invoices, type InvoiceStatus } from "../../src/db/schema";
import { rateInForce } from "../../src/domain/tax";
import { customerTaxExemption, taxRatesFor } from "../../src/modules/tax/service";
import { periodBounds } from "../../src/modules/tax/report";
import { api, createCustomer, unique } from "../helpers";

const DAY = 86_400_000;
const t = (s: string) => Date.parse(s);

// Tests share one database: each gets its own jurisdiction ("XA-1K9") so histories never mix.
let jseq = 0;
const jurisdiction = () => `X${"ABCDEFGHIJKLMNOPQRSTUVWXYZ"[jseq++ % 26]}-${Math.random().toString(36).slice(2, 5).toUpperCase()}`;

const putRate = (body: Record<string, unknown>, as: "admin" | "finance" | "support" | "viewer" = "admin") => api("PUT", "/api/v1/tax/rates", { body, as });
const getRates = (j: string, at?: string) => api("GET", `/api/v1/tax/rates?jurisdiction=${j}${at ? `&at=${encodeURIComponent(at)}` : ""}`);

describe("PUT /api/v1/tax/rates", () => {
  it("takes the runbook's body and answers with the history and the rate in force now", async () => {
    const j = jurisdiction();
    const r = await putRate({ jurisdiction: j, rate: 0.08875, effectiveDate: "2024-07-01" });
    expect(r.status).toBe(200);
    const entry = { jurisdiction: j, rate: "0.08875", percent: "8.875", effectiveFrom: "2024-07-01T00:00:00.000Z", createdBy: "test-admin" };
    expect(r.body.history).toEqual([expect.objectContaining(entry)]);
    expect(r.body.inForce).toMatchObject(entry);
    expect(r.body.change).toEqual({ outcome: "created", rate: "0.08875", previousRate: null, effectiveFrom: "2024-07-01T00:00:00.000Z" });
  });

  it("keeps history across a mid-year change: the old rate before, the new one at and after the effective date", async () => {
    const j = jurisdiction();
    expect((await putRate({ jurisdiction: j, rate: "0.08", effectiveDate: "2024-01-01" })).status).toBe(200);
    const r = await putRate({ jurisdiction: j.toLowerCase(), rate: "0.08875", effectiveDate: "2024-07-01T00:00:00Z" });
    expect(r.status).toBe(200);
    expect(r.body.history.map((h: any) => [h.rate, h.effectiveFrom])).toEqual([
      ["0.08875", "2024-07-01T00:00:00.000Z"],
      ["0.08", "2024-01-01T00:00:00.000Z"],
    ]);
    const cases: [string, string | null][] = [
      ["2023-12-31T23:59:59.999Z", null],
      ["2024-01-01", "0.08"],
      ["2024-06-30T23:59:59.999Z", "0.08"],
      ["2024-07-01T00:00:00Z", "0.08875"],
      ["2024-07-01T02:00:00+02:00", "0.08875"],
      ["2024-12-31", "0.08875"],
    ];
    for (const [at, rate] of cases) {
      const g = await getRates(j, at);
      expect(g.status).toBe(200);
      expect([at, g.body.inForce?.rate ?? null]).toEqual([at, rate]);
      expect(g.body.at).toBe(new Date(at).toISOString());
      expect(g.body.history).toHaveLength(2);
    }
    expect((await getRates(j)).body.inForce.rate).toBe("0.08875");
    // What the invoice engine reads.
    const rates = await taxRatesFor(dbOf(env), j);
    expect(rates).toHaveLength(2);
    expect(rateInForce(rates, j, t("2024-03-01T00:00:00Z"))?.rate).toBe("0.08");
    expect(rateInForce(rates, j, t("2024-08-01T00:00:00Z"))?.rate).toBe("0.08875");
  });

  it("replaces the rate of the same effective date, auditing before and after; an identical PUT writes nothing", async () => {
    const j = jurisdiction();
    await putRate({ jurisdiction: j, rate: 0.08, effectiveDate: "2025-07-01" });
    const r = await putRate({ jurisdiction: j, rate: "0.0850", effectiveDate: "2025-07-01" }, "finance");
    expect(r.status).toBe(200);
    expect(r.body.change).toMatchObject({ outcome: "replaced", rate: "0.085", previousRate: "0.08" });
    expect(r.body.history).toHaveLength(1);
    expect(r.body.history[0]).toMatchObject({ rate: "0.085", createdBy: "test-finance" });
    const same = await putRate({ jurisdiction: j, rate: 0.085, effectiveDate: "2025-07-01" });
    expect(same.body.change.outcome).toBe("unchanged");

    const audit = await api("GET", `/api/v1/audit/search?action=tax.rate_updated&target=${j}`);
    expect(audit.body.data).toHaveLength(2);
    const [replaced, created] = audit.body.data;
    expect(created).toMatchObject({ actor: "test-admin", before: null, after: { jurisdiction: j, rate: "0.08", effectiveFrom: "2025-07-01T00:00:00.000Z" } });
    expect(replaced).toMatchObject({
      actor: "test-finance",
      actorRole: "finance",
      before: { jurisdiction: j, rate: "0.08" },
      after: { jurisdiction: j, rate: "0.085", effectiveFrom: "2025-07-01T00:00:00.000Z" },
    });
    expect((await api("GET", "/api/v1/audit/verify-integrity")).body.valid).toBe(true);
  });

  it("accepts 0, eight decimals and exponent numbers, converted exactly", async () => {
    const j = jurisdiction();
    expect((await putRate({ jurisdiction: j, rate: 0, effectiveDate: "2020-01-01" })).body.change.rate).toBe("0");
    expect((await putRate({ jurisdiction: j, rate: "0.12345678", effectiveDate: "2021-01-01" })).body.change.rate).toBe("0.12345678");
    const tiny = await putRate({ jurisdiction: j, rate: 1e-7, effectiveDate: "2022-01-01" });
    expect(tiny.body.change).toMatchObject({ rate: "0.0000001" });
    expect(tiny.body.history[0].percent).toBe("0.00001");
  });

  it("rejects bad rates (422) and malformed fields (400), naming the field", async () => {
    const j = jurisdiction();
    const ok = { jurisdiction: j, rate: 0.05, effectiveDate: "2024-07-01" };
    const rules: [unknown, string][] = [
      [1.5, "below 1"],
      [1, "below 1"],
      ["abc", "decimal"],
      ["0.123456789", "8 decimal"],
      [-0.01, "negative"],
      ["", "decimal"],
    ];
    for (const [rate, message] of rules) {
      const r = await putRate({ ...ok, rate });
      expect([rate, r.status]).toEqual([rate, 422]);
      expect(r.headers.get("content-type")).toContain("application/problem+json");
      expect(r.body.errors).toEqual([{ path: "rate", message: expect.stringContaining(message) }]);
    }
    const shapes: [Record<string, unknown>, string][] = [
      [{ ...ok, rate: true }, "rate"],
      [{ ...ok, jurisdiction: "USA-NY" }, "jurisdiction"],
      [{ ...ok, jurisdiction: "US_NY" }, "jurisdiction"],
      [{ ...ok, jurisdiction: "1" }, "jurisdiction"],
      [{ ...ok, effectiveDate: "2024-13-01" }, "effectiveDate"],
      [{ ...ok, effectiveDate: "2023-02-29" }, "effectiveDate"],
      [{ ...ok, effectiveDate: "July 1st" }, "effectiveDate"],
      [{ ...ok, effectiveDate: "2024-07-01T00:00:00" }, "effectiveDate"],
      [{ jurisdiction: j, rate: 0.05 }, "effectiveDate"],
    ];
    for (const [body, path] of shapes) {
      const r = await putRate(body);
      expect([body, r.status]).toEqual([body, 400]);
      expect(r.body.errors.map((e: any) => e.path)).toEqual([path]);
    }
    expect((await getRates(j)).body.history).toEqual([]);
  });

  it("lets finance and admin write; support and viewer only read; nobody anonymous", async () => {
    const j = jurisdiction();
    const body = { jurisdiction: j, rate: 0.1, effectiveDate: "2024-01-01" };
    expect((await putRate(body, "viewer")).status).toBe(403);
    expect((await putRate(body, "support")).status).toBe(403);
    expect((await api("PUT", "/api/v1/tax/rates", { body, as: null })).status).toBe(401);
    expect((await putRate(body, "finance")).status).toBe(200);
    const read = await api("GET", `/api/v1/tax/rates?jurisdiction=${j}`, { as: "viewer" });
    expect(read.status).toBe(200);
    expect(read.body.inForce.rate).toBe("0.1");
    expect((await api("GET", `/api/v1/tax/rates?jurisdiction=${j}`, { as: null })).status).toBe(401);
  });

  it("answers an unknown jurisdiction with an empty history and a bad query with 400", async () => {
    const r = await getRates("ZZ");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ jurisdiction: "ZZ", inForce: null, history: [] });
    expect((await api("GET", "/api/v1/tax/rates")).body.errors[0].path).toBe("jurisdiction");
    expect((await getRates("US-NY", "yesterday")).body.errors[0].path).toBe("at");
  });
});

describe("customerTaxExemption", () => {
  const base: typeof customers.$inferSelect = {
    id: "cus_x",
    email: "x@example.com",
    name: null,
    currency: "USD",
    country: "US",
    region: "NY",
    taxExempt: true, creditBalance: 0,
    taxCertificateId: "CERT-1",
    taxCertificateExpiresAt: t("2027-01-01T00:00:00Z"),
    metadata: {},
    testClockId: null,
    createdAt: 0,
    updatedAt: 0,
    deletedAt: null,
  };
  const at = t("2026-06-01T00:00:00Z");
  const cases: [string, Partial<typeof base>, number, { exempt: boolean; reason: string }][] = [
    ["valid certificate", {}, at, { exempt: true, reason: "certificate CERT-1 valid until 2027-01-01" }],
    ["no expiry", { taxCertificateExpiresAt: null }, at, { exempt: true, reason: "certificate CERT-1 valid, no expiry" }],
    ["not exempt", { taxExempt: false }, at, { exempt: false, reason: "no exemption" }],
    ["not exempt even with a certificate", { taxExempt: false, taxCertificateId: "CERT-9" }, at, { exempt: false, reason: "no exemption" }],
    ["flag without certificate", { taxCertificateId: null }, at, { exempt: false, reason: "tax-exempt flag without a certificate" }],
    ["expired", { taxCertificateExpiresAt: t("2026-01-01T00:00:00Z") }, at, { exempt: false, reason: "certificate CERT-1 expired 2026-01-01" }],
    ["expires exactly now", {}, t("2027-01-01T00:00:00Z"), { exempt: false, reason: "certificate CERT-1 expired 2027-01-01" }],
    ["one millisecond before expiry", {}, t("2027-01-01T00:00:00Z") - 1, { exempt: true, reason: "certificate CERT-1 valid until 2027-01-01" }],
    [
      "expiry with a time of day",
      { taxCertificateExpiresAt: t("2027-01-01T12:30:00Z") },
      at,
      { exempt: true, reason: "certificate CERT-1 valid until 2027-01-01T12:30:00.000Z" },
    ],
  ];
  it.each(cases)("%s", (_name, patch, when, expected) => {
    expect(customerTaxExemption({ ...base, ...patch }, when)).toEqual(expected);
  });
});

describe("GET /api/v1/tax/exemptions/validate", () => {
  it("lists only exempt customers whose certificate is missing, expired or expiring within the window", async () => {
    const now = Date.now();
    const cert = (id: string, ms: number | null) => ({ id, expiresAt: ms === null ? null : new Date(ms).toISOString() });
    const expired = await createCustomer({ taxExempt: true, taxCertificate: cert("CERT-EXP", now - 5 * DAY) });
    const soon = await createCustomer({ taxExempt: true, taxCertificate: cert("CERT-SOON", now + 10 * DAY) });
    const missing = await createCustomer({ taxExempt: true });
    const valid = await createCustomer({ taxExempt: true, taxCertificate: cert("CERT-YEAR", now + 365 * DAY) });
    const forever = await createCustomer({ taxExempt: true, taxCertificate: cert("CERT-FOREVER", null) });
    const notExempt = await createCustomer({ taxCertificate: cert("CERT-OLD", now - 100 * DAY) });
    const mine = new Set([expired.id, soon.id, missing.id, valid.id, forever.id, notExempt.id]);

    const r = await api("GET", "/api/v1/tax/exemptions/validate?days=30", { as: "viewer" });
    expect(r.status).toBe(200);
    const found = r.body.data.filter((d: any) => mine.has(d.customerId));
    const byId = Object.fromEntries(found.map((d: any) => [d.customerId, d]));
    expect(Object.keys(byId).sort()).toEqual([expired.id, soon.id, missing.id].sort());
    expect(byId[expired.id]).toEqual({ customerId: expired.id, email: expired.email, certificate: expired.taxCertificate, problem: "expired", daysLeft: -5 });
    expect(byId[soon.id]).toEqual({ customerId: soon.id, email: soon.email, certificate: soon.taxCertificate, problem: "expiring_soon", daysLeft: 10 });
    expect(byId[missing.id]).toEqual({ customerId: missing.id, email: missing.email, certificate: null, problem: "missing_certificate", daysLeft: null });
    const c = r.body.counts;
    expect(c.expired).toBeGreaterThanOrEqual(1);
    expect(c.expiringSoon).toBeGreaterThanOrEqual(1);
    expect(c.missingCertificate).toBeGreaterThanOrEqual(1);
    expect(c.valid).toBeGreaterThanOrEqual(2);
    expect(c.taxExempt).toBe(c.valid + c.expired + c.expiringSoon + c.missingCertificate);
    expect(r.body.days).toBe(30);

    // A narrower window drops the certificate that still has ten days.
    const narrow = await api("GET", "/api/v1/tax/exemptions/validate?days=5");
    expect(narrow.body.data.filter((d: any) => mine.has(d.customerId)).map((d: any) => d.problem).sort()).toEqual(["expired", "missing_certificate"]);
    // The default window is 30 days.
    expect((await api("GET", "/api/v1/tax/exemptions/validate")).body.days).toBe(30);
    expect((await api("GET", "/api/v1/tax/exemptions/validate?days=-1")).body.errors[0].path).toBe("days");
  });
});

type Seed = { status: InvoiceStatus; currency?: string; jurisdiction?: string | null; periodEnd: string; subtotal: number; discount?: number; tax: number; taxRate?: string; testClock?: boolean };

async function seedInvoices(seeds: Seed[]) {
  const db = dbOf(env);
  const now = Date.now();
  for (const s of seeds) {
    const id = unique("inv");
    const periodEnd = t(s.periodEnd);
    const discount = s.discount ?? 0;
    await db.insert(invoices).values({
      id,
      customerId: "cus_tax_report",
      status: s.status,
      billingReason: "subscription_cycle",
      currency: s.currency ?? "USD",
      periodStart: periodEnd - 30 * DAY,
      periodEnd,
      subtotal: s.subtotal,
      discount,
      tax: s.tax,
      total: s.subtotal - discount + s.tax,
      amountDue: s.subtotal - discount + s.tax,
      taxJurisdiction: s.jurisdiction === undefined ? null : s.jurisdiction,
      taxRate: s.taxRate ?? null,
      finalizedAt: s.status === "draft" ? null : periodEnd,
      generationKey: id,
      testClockId: s.testClock ? "clock_sim" : null,
      createdAt: now,
      updatedAt: now,
    });
  }
}

/** Q2 of `year` for jurisdiction a, seen from every side: statuses, currencies, both period edges, another jurisdiction. */
async function seedQuarter(year: number, a: string, b: string) {
  await seedInvoices([
    { status: "paid", jurisdiction: a, periodEnd: `${year}-05-01T00:00:00Z`, subtotal: 10_000, discount: 1_000, tax: 799, taxRate: "0.08875" },
    // A June invoice ends at 07-01T00:00 (periods are half-open): it is Q2.
    { status: "open", jurisdiction: a, periodEnd: `${year}-07-01T00:00:00Z`, subtotal: 5_000, tax: 400, taxRate: "0.08" },
    { status: "uncollectible", jurisdiction: a, currency: "EUR", periodEnd: `${year}-06-15T00:00:00Z`, subtotal: 2_000, discount: 500, tax: 285, taxRate: "0.19" },
    { status: "draft", jurisdiction: a, periodEnd: `${year}-05-15T00:00:00Z`, subtotal: 99_999, tax: 9_999 },
    { status: "void", jurisdiction: a, periodEnd: `${year}-05-15T00:00:00Z`, subtotal: 88_888, tax: 8_888 },
    // A March invoice ends at 04-01T00:00: it is Q1.
    { status: "paid", jurisdiction: a, periodEnd: `${year}-04-01T00:00:00Z`, subtotal: 77_777, tax: 7_777 },
    { status: "paid", jurisdiction: a, periodEnd: `${year}-07-01T00:00:00.001Z`, subtotal: 66_666, tax: 6_666 },
    { status: "paid", jurisdiction: a, periodEnd: `${year}-05-20T00:00:00Z`, subtotal: 55_555, tax: 5_555, testClock: true },
    { status: "paid", jurisdiction: b, periodEnd: `${year}-06-01T00:00:00Z`, subtotal: 300, tax: 0, taxRate: "0" },
  ]);
}

describe("POST /api/v1/tax/report", () => {
  it("sums finalized invoices of a quarter per currency and stores the JSON in R2", async () => {
    const [a, b] = [jurisdiction(), jurisdiction()];
    await seedQuarter(2097, a, b);
    const r = await api("POST", "/api/v1/tax/report", { body: { period: "Q2-2097", jurisdiction: a, format: "json" }, as: "finance" });
    expect(r.status).toBe(200);
    const key = `reports/tax/Q2-2097-${a}.json`;
    expect(r.body).toMatchObject({ period: "Q2-2097", from: "2097-04-01T00:00:00.000Z", to: "2097-07-01T00:00:00.000Z", jurisdiction: a, reportKey: key });
    expect(r.headers.get("x-report-key")).toBe(key);
    expect(r.body.rows).toEqual([
      { jurisdiction: a, currency: "EUR", invoiceCount: 1, taxableAmount: { amount: "15.00", amountMinor: 1_500 }, tax: { amount: "2.85", amountMinor: 285 }, taxRates: ["0.19"] },
      {
        jurisdiction: a,
        currency: "USD",
        invoiceCount: 2,
        taxableAmount: { amount: "140.00", amountMinor: 14_000 },
        tax: { amount: "11.99", amountMinor: 1_199 },
        taxRates: ["0.08", "0.08875"],
      },
    ]);
    const stored = await env.ARCHIVE.get(key);
    expect(stored?.httpMetadata?.contentType).toBe("application/json");
    expect(JSON.parse(await stored!.text())).toEqual(r.body);

    const audit = await api("GET", `/api/v1/audit/search?action=tax.report_generated&target=${encodeURIComponent(key)}`);
    expect(audit.body.data).toHaveLength(1);
    expect(audit.body.data[0]).toMatchObject({ actor: "test-finance", after: { period: "Q2-2097", jurisdiction: a, format: "json", rows: 2, invoiceCount: 3 } });
  });

  it("writes CSV across all jurisdictions, with the R2 key in X-Report-Key", async () => {
    const [a, b] = [jurisdiction(), jurisdiction()].sort();
    await seedQuarter(2098, a!, b!);
    const r = await api("POST", "/api/v1/tax/report", { body: { period: "q2-2098", format: "csv" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/csv");
    expect(r.headers.get("x-report-key")).toBe("reports/tax/Q2-2098-ALL.csv");
    expect(r.headers.get("content-disposition")).toBe('attachment; filename="Q2-2098-ALL.csv"');
    expect(r.body).toBe(
      [
        "period,jurisdiction,currency,invoice_count,taxable_amount,taxable_amount_minor,tax,tax_minor,tax_rates",
        `Q2-2098,${a},EUR,1,15.00,1500,2.85,285,0.19`,
        `Q2-2098,${a},USD,2,140.00,14000,11.99,1199,0.08;0.08875`,
        `Q2-2098,${b},USD,1,3.00,300,0.00,0,0`,
        "",
      ].join("\r\n"),
    );
    const stored = await env.ARCHIVE.get("reports/tax/Q2-2098-ALL.csv");
    expect(await stored!.text()).toBe(r.body);
    expect(stored!.httpMetadata?.contentType).toContain("text/csv");
  });

  it("covers months and years too, and an empty period is an empty report", async () => {
    const a = jurisdiction();
    await seedInvoices([
      { status: "paid", jurisdiction: a, periodEnd: "2096-06-10T00:00:00Z", subtotal: 1_000, tax: 100 },
      { status: "paid", jurisdiction: a, periodEnd: "2096-12-31T23:59:59Z", subtotal: 1_000, tax: 100 },
      { status: "paid", jurisdiction: a, periodEnd: "2096-01-01T00:00:00Z", subtotal: 1_000, tax: 100 }, // 2095's December
      { status: "paid", jurisdiction: a, currency: "JPY", periodEnd: "2096-06-30T00:00:00Z", subtotal: 1_000, tax: 100 },
    ]);
    const report = async (period: string) => (await api("POST", "/api/v1/tax/report", { body: { period, jurisdiction: a } })).body;
    const june = await report("2096-06");
    expect([june.from, june.to]).toEqual(["2096-06-01T00:00:00.000Z", "2096-07-01T00:00:00.000Z"]);
    expect(june.rows.map((x: any) => [x.currency, x.invoiceCount, x.tax.amount])).toEqual([
      ["JPY", 1, "100"],
      ["USD", 1, "1.00"],
    ]);
    const year = await report("2096");
    expect([year.from, year.to]).toEqual(["2096-01-01T00:00:00.000Z", "2097-01-01T00:00:00.000Z"]);
    expect(year.rows.find((x: any) => x.currency === "USD").invoiceCount).toBe(2);
    expect((await report("2095-12")).rows.map((x: any) => x.invoiceCount)).toEqual([1]);
    const empty = await report("Q3-2096");
    expect(empty.rows).toEqual([]);
    expect(empty.reportKey).toBe(`reports/tax/Q3-2096-${a}.json`);
  });

  it("validates the body and needs a finance role", async () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ period: "Q5-2024", format: "csv" }, "period"],
      [{ period: "2024-13", format: "csv" }, "period"],
      [{ period: "last quarter", format: "csv" }, "period"],
      [{ period: "Q2-2024", format: "xml" }, "format"],
      [{ period: "Q2-2024", jurisdiction: "California", format: "csv" }, "jurisdiction"],
    ];
    for (const [body, path] of bad) {
      const r = await api("POST", "/api/v1/tax/report", { body });
      expect([body, r.status]).toEqual([body, 400]);
      expect(r.body.errors.map((e: any) => e.path)).toEqual([path]);
    }
    expect((await api("POST", "/api/v1/tax/report", { body: { period: "Q2-2024" }, as: "viewer" })).status).toBe(403);
    expect((await api("POST", "/api/v1/tax/report", { body: { period: "Q2-2024" }, as: "support" })).status).toBe(403);
  });

  it("computes period bounds in UTC, including leap years and small years", () => {
    expect(periodBounds("Q1-2024")).toEqual({ from: t("2024-01-01T00:00:00Z"), to: t("2024-04-01T00:00:00Z") });
    expect(periodBounds("Q4-2024")).toEqual({ from: t("2024-10-01T00:00:00Z"), to: t("2025-01-01T00:00:00Z") });
    expect(periodBounds("2024-02")).toEqual({ from: t("2024-02-01T00:00:00Z"), to: t("2024-03-01T00:00:00Z") });
    expect(periodBounds("2024-12")).toEqual({ from: t("2024-12-01T00:00:00Z"), to: t("2025-01-01T00:00:00Z") });
    expect(new Date(periodBounds("0024").from).toISOString()).toBe("0024-01-01T00:00:00.000Z");
  });
});

describe("OpenAPI", () => {
  it("documents the tax routes", async () => {
    const doc = await api("GET", "/openapi.json", { as: null });
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(["/api/v1/tax/rates", "/api/v1/tax/exemptions/validate", "/api/v1/tax/report"]));
  });
});
