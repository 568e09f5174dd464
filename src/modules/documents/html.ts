import type { DocModel } from "./model";

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const STATUS_LABEL: Record<string, string> = { open: "Open", paid: "Paid", void: "Void", uncollectible: "Uncollectible", draft: "Draft", issued: "Issued" };

const CSS = `
*{box-sizing:border-box}
body{margin:0;background:#f3f5f8;color:#1c2130;font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Inter,Roboto,Helvetica,Arial,sans-serif}
main{max-width:860px;margin:32px auto;padding:0 16px}
.sheet{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(16,24,40,.08),0 8px 24px rgba(16,24,40,.06);padding:40px;position:relative;overflow:hidden}
header{display:flex;justify-content:space-between;gap:24px;flex-wrap:wrap;align-items:flex-start}
h1{margin:0;font-size:30px;color:#284f9e;letter-spacing:-.01em}
.number{color:#6b7380;margin-top:2px}
.seller{text-align:right;color:#6b7380;font-size:13px}
.seller strong{display:block;color:#1c2130;font-size:15px}
.badge{display:inline-block;margin-top:10px;padding:3px 10px;border-radius:999px;font-size:12px;font-weight:600;letter-spacing:.04em;text-transform:uppercase}
.badge.open{background:#e8effc;color:#284f9e}.badge.paid{background:#e3f4ea;color:#1d7a44}.badge.void,.badge.uncollectible{background:#fbe7e7;color:#b42525}
.summary{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;flex-wrap:wrap;margin:32px 0 8px}
dl{display:grid;grid-template-columns:max-content auto;align-content:start;gap:4px 18px;margin:0;font-size:13px}
dt{color:#6b7380}dd{margin:0;font-weight:600}
.buyer{font-size:13px;min-width:220px}.buyer .label{color:#6b7380}.buyer strong{display:block;font-size:15px}
.due{background:#f7f9fc;border:1px solid #e3e7ee;border-radius:10px;padding:16px 20px;margin:24px 0;display:flex;justify-content:space-between;align-items:center;gap:16px;flex-wrap:wrap}
.due .amount{font-size:26px;font-weight:700}
.due .label{color:#6b7380;font-size:13px}
a.button{display:inline-block;background:#284f9e;color:#fff;text-decoration:none;padding:10px 18px;border-radius:8px;font-weight:600}
a.button:hover{background:#1f3f80}
table{width:100%;border-collapse:collapse;margin-top:8px;font-size:14px}
th{text-align:left;color:#6b7380;font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;border-bottom:1.5px solid #1c2130;padding:8px 6px}
td{border-bottom:1px solid #e3e7ee;padding:10px 6px;vertical-align:top}
.num{text-align:right;white-space:nowrap}
.detail{color:#6b7380;font-size:12px}
.totals{margin-left:auto;width:100%;max-width:360px;margin-top:16px;font-size:14px}
.totals div{display:flex;justify-content:space-between;padding:4px 0;color:#6b7380}
.totals div.strong{color:#1c2130;font-weight:700;border-top:1px solid #e3e7ee;padding-top:8px;font-size:15px}
.notes{color:#6b7380;font-size:13px;margin-top:24px}
.stamp{position:absolute;top:520px;left:50%;transform:translateX(-50%) rotate(-20deg);font-size:120px;font-weight:800;opacity:.07;pointer-events:none;letter-spacing:.08em}
.stamp.PAID{color:#1d7a44}.stamp.VOID{color:#b42525}
footer{color:#6b7380;font-size:12px;text-align:center;margin:16px 0 32px}
@media (max-width:640px){.sheet{padding:22px}.seller{text-align:left}th.unit,td.unit{display:none}h1{font-size:24px}}
@media print{body{background:#fff}main{margin:0;max-width:none}.sheet{box-shadow:none;padding:0}.no-print{display:none}}
`;

/** The hosted page: the same model as the PDF, as responsive and printable HTML with the status and the PDF download. */
export function renderHtml(doc: DocModel, o: { pdfHref: string; amountDue: string | null }): string {
  const status = STATUS_LABEL[doc.status] ?? doc.status;
  const lines = doc.lines
    .map(
      (l) => `<tr><td>${esc(l.description)}${l.details.map((d) => `<div class="detail">${esc(d)}</div>`).join("")}</td><td class="num">${esc(l.quantity)}</td><td class="num unit">${esc(l.unitPrice)}</td><td class="num">${esc(l.amount)}</td></tr>`,
    )
    .join("");
  const totals = doc.totals.map((t) => `<div${t.strong ? ' class="strong"' : ""}><span>${esc(t.label)}</span><span>${esc(t.value)}</span></div>`).join("");
  const due =
    o.amountDue !== null
      ? `<section class="due"><div><div class="label">${doc.status === "open" ? "Amount due" : "Amount due (nothing left to pay)"}</div><div class="amount">${esc(o.amountDue)}</div></div><a class="button no-print" href="${esc(o.pdfHref)}" download>Download PDF</a></section>`
      : `<p class="no-print"><a class="button" href="${esc(o.pdfHref)}" download>Download PDF</a></p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex,nofollow">
<title>${esc(doc.title)} ${esc(doc.number)} — ${esc(doc.seller.name)}</title><style>${CSS}</style></head>
<body><main><article class="sheet">
${doc.mark ? `<div class="stamp ${doc.mark}" aria-hidden="true">${doc.mark}</div>` : ""}
<header><div><h1>${esc(doc.title)}</h1><div class="number">${esc(doc.number)}</div><span class="badge ${esc(doc.status)}">${esc(status)}</span></div>
<div class="seller"><strong>${esc(doc.seller.name)}</strong>${doc.seller.lines.map((l) => `<div>${esc(l)}</div>`).join("")}</div></header>
<section class="summary"><dl>${doc.facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>
<div class="buyer"><div class="label">Bill to</div><strong>${esc(doc.buyer.name)}</strong>${doc.buyer.lines.map((l) => `<div>${esc(l)}</div>`).join("")}</div></section>
${due}
<table><thead><tr><th>Description</th><th class="num">Qty</th><th class="num unit">Unit price</th><th class="num">Amount</th></tr></thead><tbody>${lines}</tbody></table>
<section class="totals">${totals}</section>
${doc.notes.length ? `<section class="notes">${doc.notes.map((n) => `<p>${esc(n)}</p>`).join("")}</section>` : ""}
</article><footer>${esc(doc.seller.name)} · ${esc(doc.title)} ${esc(doc.number)} · amounts in ${esc(doc.currency)}</footer></main></body></html>`;
}

/** The one answer for an unknown, malformed, expired or revoked token: nothing about which it was. */
export const NOT_FOUND_HTML = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex"><title>Not found</title></head><body style="font:16px/1.5 system-ui,sans-serif;color:#1c2130;text-align:center;padding:80px 16px"><h1 style="font-size:22px">Page not found</h1><p>This link is not valid.</p></body></html>`;
