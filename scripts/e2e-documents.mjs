#!/usr/bin/env node
// `npm run test:e2e:documents`: invoice documents end to end against a fresh `wrangler dev` (port 3480, state in
// .wrangler/e2e-documents-state).
//  1. Fixture invoices (USD with US-CA tax, a proration credit and charge and graduated usage; JPY; BHD with tax; a
//     paid one; a 50-line one) are written to local D1 before the server starts, with the seller block setting.
//  2. Each PDF is fetched through GET /api/v1/invoices/:id/pdf and read back with `pdftotext` (poppler-utils): the
//     number, every line, the tax with its rate, the totals and the status mark must be there, formatted per
//     currency (JPY no decimals, BHD three). The 50-line invoice's first (rendering) and second (stored) fetch are timed.
//  3. A hosted link per invoice: the page is rendered in headless Chromium (desktop and phone widths, and print
//     media), screenshots go to artifacts/documents/; its PDF link works; a rotated or revoked link answers the same
//     404 as a made-up token (expiry: test/modules/documents.test.ts).
// Env: PORT (3480), PERSIST_TO (.wrangler/e2e-documents-state), CHROMIUM (/usr/bin/chromium).
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { localToken, startServer } from "./local-server.mjs";
import { ensureDevVars, offlineEnv } from "./wrangler-env.mjs";

const PORT = Number(process.env.PORT ?? 3480);
const PERSIST = process.env.PERSIST_TO ?? ".wrangler/e2e-documents-state";
const OUT = "artifacts/documents";
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
};

// ---------- fixtures ----------
const T = Date.UTC(2026, 10, 1); // 1 Nov 2026
const DAY = 86_400_000;
const q = (v) => (v === null ? "NULL" : typeof v === "number" ? String(v) : `'${String(v).replaceAll("'", "''")}'`);
const sql = [];
const insert = (table, row) => sql.push(`INSERT INTO ${table} (${Object.keys(row).join(", ")}) VALUES (${Object.values(row).map(q).join(", ")});`);

insert("settings", {
  key: "documents",
  value: JSON.stringify({ seller: { legalName: "Acme Cloud Services Ltd", address: ["100 Market Street, Suite 300", "San Francisco, CA 94105", "United States"], taxId: "US EIN 12-3456789", email: "billing@acme.example", logoBase64: null, logoType: null }, publicBaseUrl: null, hostedLinkDays: 90 }),
  updated_by: "e2e",
  updated_at: T,
});
const customer = (id, currency, name, country, region, meta) =>
  insert("customers", { id, email: `${id}@example.com`, name, currency, country, region, tax_exempt: 0, credit_balance: 0, metadata: JSON.stringify(meta), created_at: T, updated_at: T });
customer("cus_usd", "USD", "Globex Corporation", "US", "CA", { address_line1: "42 Innovation Way", city: "Palo Alto", postal_code: "94301", tax_id: "US 98-7654321" });
customer("cus_jpy", "JPY", "Kaisha Tanaka KK", "JP", null, { address_line1: "1-2-3 Marunouchi", city: "Tokyo", postal_code: "100-0005" });
customer("cus_bhd", "BHD", "Gulf Trading WLL", "BH", null, { address_line1: "Building 1010, Road 2832", city: "Manama", tax_id: "VAT 200012345600002" });

let n = 0;
function invoice({ id, customerId, currency, status, lines, taxRate, jurisdiction, paid = false }) {
  const subtotal = lines.reduce((a, l) => a + l.amount, 0);
  const tax = lines.reduce((a, l) => a + (l.tax ?? 0), 0);
  const total = subtotal + tax;
  insert("invoices", {
    id,
    number: `INV-2026-${String(++n).padStart(6, "0")}`,
    customer_id: customerId,
    subscription_id: null,
    status,
    billing_reason: "subscription_cycle",
    currency,
    period_start: T,
    period_end: T + 30 * DAY,
    subtotal,
    discount: 0,
    tax,
    total,
    amount_paid: paid ? total : 0,
    credit_applied: 0,
    amount_due: paid ? 0 : total,
    tax_jurisdiction: jurisdiction,
    tax_rate: taxRate,
    due_at: paid ? null : T + 30 * DAY,
    finalized_at: T,
    paid_at: paid ? T + DAY : null,
    voided_at: null,
    void_reason: null,
    attempt_count: 0,
    last_error: null,
    generation_key: `e2e:${id}`,
    archive_key: null,
    archived_at: null,
    test_clock_id: null,
    created_at: T,
    updated_at: T,
  });
  lines.forEach((l, i) =>
    insert("invoice_lines", {
      id: `${id}_l${i}`,
      invoice_id: id,
      position: i,
      kind: l.kind ?? "flat",
      description: l.description,
      price_id: null,
      meter_id: null,
      quantity: l.quantity ?? "1",
      unit_amount: l.unit ?? null,
      amount: l.amount,
      discount_amount: 0,
      tax_amount: l.tax ?? 0,
      period_start: l.start ?? T,
      period_end: l.end ?? T + 30 * DAY,
      computation: l.computation ?? "",
    }),
  );
  return { id, number: `INV-2026-${String(n).padStart(6, "0")}`, subtotal, tax, total };
}
const usd = invoice({
  id: "inv_usd",
  customerId: "cus_usd",
  currency: "USD",
  status: "open",
  jurisdiction: "US-CA",
  taxRate: "0.0725",
  lines: [
    { description: "Business plan (advance, 2026-11-01 – 2026-12-01)", quantity: "3", unit: "1200.00", amount: 360000, tax: 26100 },
    { kind: "proration", description: "Unused time on Starter after 2026-11-16T00:00:00.000Z", amount: -1450, tax: -105, start: T + 15 * DAY, end: T + 30 * DAY },
    { kind: "proration", description: "Remaining time on Business from 2026-11-16T00:00:00.000Z", amount: 60000, tax: 4350, start: T + 15 * DAY, end: T + 30 * DAY },
    { kind: "usage", description: "api_calls usage (2026-10-01 – 2026-11-01)", quantity: "1500", amount: 1250, tax: 91, computation: "graduated: 1500 units: 1000 × 0.001 + 500 × 0.0005" },
  ],
});
const jpy = invoice({
  id: "inv_jpy",
  customerId: "cus_jpy",
  currency: "JPY",
  status: "open",
  jurisdiction: "JP",
  taxRate: "0.1",
  lines: [
    { description: "Team plan (advance, 2026-11-01 – 2026-12-01)", quantity: "2", unit: "4980", amount: 9960, tax: 996 },
    { kind: "usage", description: "storage_gb usage (2026-10-01 – 2026-11-01)", quantity: "120", amount: 1200, tax: 120, computation: "volume: 120 units at tier 2: 120 × 10" },
  ],
});
const bhd = invoice({
  id: "inv_bhd",
  customerId: "cus_bhd",
  currency: "BHD",
  status: "paid",
  paid: true,
  jurisdiction: "BH",
  taxRate: "0.1",
  lines: [
    { description: "Enterprise plan (advance, 2026-11-01 – 2026-12-01)", quantity: "1", unit: "1234.567", amount: 1234567, tax: 123457 },
    { kind: "proration", description: "Remaining time on Enterprise from 2026-11-16T00:00:00.000Z", amount: 617284, tax: 61728, start: T + 15 * DAY, end: T + 30 * DAY },
  ],
});
const big = invoice({
  id: "inv_big",
  customerId: "cus_usd",
  currency: "USD",
  status: "open",
  jurisdiction: "US-CA",
  taxRate: "0.0725",
  lines: Array.from({ length: 50 }, (_, i) => ({ kind: "usage", description: `meter_${String(i + 1).padStart(2, "0")} usage (2026-10-01 – 2026-11-01)`, quantity: String(1000 + i), unit: "0.01", amount: 1000 + i, tax: Math.round((1000 + i) * 0.0725), computation: `per_unit: ${1000 + i} units × 0.01` })),
});

// ---------- server ----------
// A server left on the port (e.g. by a killed run) would answer for a state directory that no longer exists.
if (await fetch(`http://127.0.0.1:${PORT}/health/live`).then(() => true, () => false)) {
  console.error(`port ${PORT} is already serving: stop that server (or set PORT) and run again`);
  process.exit(2);
}
ensureDevVars();
rmSync(PERSIST, { recursive: true, force: true });
const mig = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", PERSIST], { env: offlineEnv, encoding: "utf8" });
if (mig.status !== 0) throw new Error(`migrations failed:\n${mig.stdout}\n${mig.stderr}`);
mkdirSync(OUT, { recursive: true });
writeFileSync(`${OUT}/fixtures.sql`, sql.join("\n"));
const fx = spawnSync("wrangler", ["d1", "execute", "DB", "--local", "--persist-to", PERSIST, "--file", `${OUT}/fixtures.sql`, "--yes"], { env: offlineEnv, encoding: "utf8" });
if (fx.status !== 0) throw new Error(`fixtures failed:\n${fx.stdout}\n${fx.stderr}`);
const server = await startServer({ port: PORT, persist: PERSIST, fresh: false });
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => (server.stop(), process.exit(1)));
const token = await localToken("admin");
const auth = { authorization: `Bearer ${token}` };
const api = async (method, path, body) => {
  const r = await fetch(`${server.base}${path}`, { method, headers: { ...auth, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
};
const pdfText = async (path, name, headers = auth) => {
  const r = await fetch(`${server.base}${path}`, { headers });
  const bytes = Buffer.from(await r.arrayBuffer());
  writeFileSync(`${OUT}/${name}.pdf`, bytes);
  const t = spawnSync("pdftotext", ["-layout", `${OUT}/${name}.pdf`, "-"], { encoding: "utf8" });
  return { status: r.status, type: r.headers.get("content-type"), text: t.stdout ?? "", bytes: bytes.length };
};

let browser;
try {
  // ---------- 2. PDFs ----------
  const u = await pdfText("/api/v1/invoices/inv_usd/pdf", "invoice-usd");
  check(u.status === 200 && u.type === "application/pdf", `USD PDF served (${u.bytes} bytes)`);
  for (const s of [usd.number, "Acme Cloud Services Ltd", "US EIN 12-3456789", "Globex Corporation", "Tax ID: US 98-7654321", "Business plan, billed in advance", "$1,200.00", "$3,600.00", "Unused time on Starter after 16 Nov 2026", "Prorated 16 Nov 2026 – 1 Dec 2026", "−$14.50", "$600.00", "Graduated pricing, 1500 units", "Tier 1: 1000 × $0.001", "Tier 2: 500 × $0.0005", "Tax — US-CA (7.25%)", "$304.36", "$4,502.36", "Amount due"])
    check(u.text.includes(s), `USD PDF shows ${JSON.stringify(s)}`);
  const j = await pdfText("/api/v1/invoices/inv_jpy/pdf", "invoice-jpy");
  for (const s of [jpy.number, "Kaisha Tanaka KK", "¥9,960", "¥4,980", "Volume pricing, 120 units at tier 2", "Tax — JP (10%)", "¥1,116", "¥12,276"]) check(j.text.includes(s), `JPY PDF shows ${JSON.stringify(s)}`);
  check(!/¥[\d,]+\.\d/.test(j.text), "JPY amounts have no decimals");
  const b = await pdfText("/api/v1/invoices/inv_bhd/pdf", "invoice-bhd");
  for (const s of [bhd.number, "Gulf Trading WLL", "BHD 1,234.567", "BHD 617.284", "Tax — BH (10%)", "BHD 185.185", "BHD 2,037.036", "PAID", "Paid on"]) check(b.text.includes(s), `BHD PDF shows ${JSON.stringify(s)}`);
  check(!u.text.includes("PAID") && !u.text.includes("VOID"), "the open invoice carries no status mark");

  const t1 = Date.now();
  const g1 = await pdfText("/api/v1/invoices/inv_big/pdf", "invoice-50-lines");
  const renderMs = Date.now() - t1;
  const t2 = Date.now();
  const g2 = await pdfText("/api/v1/invoices/inv_big/pdf", "invoice-50-lines-stored");
  const storedMs = Date.now() - t2;
  check(g1.status === 200 && g1.text.includes("meter_50 usage") && /Page 1 of [2-9]/.test(g1.text) && g1.text.includes("(continued)"), `50-line PDF: every line, over several pages (${g1.bytes} bytes)`);
  check(g2.bytes === g1.bytes, "the second fetch streams the stored PDF");
  console.log(`     50-line invoice: first fetch (render + R2 put) ${renderMs} ms, second (from R2) ${storedMs} ms`);
  writeFileSync(`${OUT}/timing.json`, JSON.stringify({ lines: 50, renderFetchMs: renderMs, storedFetchMs: storedMs }, null, 2));

  // ---------- 3. hosted pages ----------
  const links = {};
  for (const id of ["inv_usd", "inv_jpy", "inv_bhd"]) {
    const l = await api("POST", `/api/v1/invoices/${id}/hosted-link`, {});
    check(l.status === 201 && /^\/i\/[0-9a-f]{64}$/.test(l.body.hostedUrl), `${id}: hosted link issued`);
    links[id] = l.body;
  }
  const inv = await api("GET", "/api/v1/invoices/inv_usd");
  check(inv.body.hostedUrl === links.inv_usd.hostedUrl && inv.body.pdfUrl === "/api/v1/invoices/inv_usd/pdf", "the invoice object carries hostedUrl and pdfUrl");

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
  for (const [id, name] of [["inv_usd", "usd"], ["inv_jpy", "jpy"], ["inv_bhd", "bhd"]]) {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const res = await page.goto(`${server.base}${links[id].hostedUrl}`);
    check(res?.status() === 200, `${id}: hosted page answers 200 without login`);
    await page.screenshot({ path: `${OUT}/hosted-${name}-desktop.png`, fullPage: true });
    const text = await page.innerText("body");
    if (id === "inv_usd") {
      check(/open/i.test(text) && text.includes("$4,502.36") && text.includes("Download PDF"), "USD hosted page shows status, amount due and the PDF download");
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: `${OUT}/hosted-usd-phone.png`, fullPage: true });
      await page.emulateMedia({ media: "print" });
      await page.screenshot({ path: `${OUT}/hosted-usd-print.png`, fullPage: true });
      const href = await page.getAttribute("a.button", "href");
      const viaLink = await pdfText(href, "hosted-usd", {});
      check(viaLink.status === 200 && viaLink.text.includes(usd.number), "the page's PDF link downloads the invoice without login");
    }
    if (id === "inv_bhd") check(/paid/i.test(text) && text.includes("BHD 2,037.036"), "BHD hosted page shows Paid and three decimals");
    await page.close();
  }

  // Rotation revokes the old link; revocation and expiry look exactly like an unknown token.
  const unknown = await fetch(`${server.base}/i/${"0".repeat(64)}`);
  const unknownBody = await unknown.text();
  const rotated = await api("POST", "/api/v1/invoices/inv_jpy/hosted-link", {});
  const old = await fetch(`${server.base}${links.inv_jpy.hostedUrl}`);
  check(old.status === 404 && (await old.text()) === unknownBody && unknown.status === 404, "a rotated-away link is a 404 identical to an unknown token");
  check((await fetch(`${server.base}${rotated.body.hostedUrl}`)).status === 200, "the rotated link works");
  const revoke = await api("DELETE", "/api/v1/invoices/inv_jpy/hosted-link");
  const revoked = await fetch(`${server.base}${rotated.body.hostedUrl}`);
  check(revoke.body.revoked === 1 && revoked.status === 404 && (await revoked.text()) === unknownBody, "a revoked link is the same 404");
  const revokedPdf = await fetch(`${server.base}${rotated.body.hostedUrl}/pdf`);
  check(revokedPdf.status === 404, "a revoked link's PDF is a 404");
  // Expiry is checked in test/modules/documents.test.ts (it moves a link's expiry into the past in D1).

  // Void: the PDF of the voided state carries the mark.
  const v = await api("POST", "/api/v1/invoices/inv_jpy/void", { reason: "issued in error" });
  const vp = await pdfText("/api/v1/invoices/inv_jpy/pdf", "invoice-jpy-void");
  check(v.status === 200 && vp.text.includes("VOID") && vp.text.includes("Voided: issued in error"), "a voided invoice's PDF carries VOID and the reason");
} finally {
  await browser?.close();
  server.stop();
}
console.log(`documents e2e: ${failures ? `${failures} check(s) failed` : "all checks passed"}; artifacts in ${OUT}/`);
process.exit(failures ? 1 : 0);
