import fontkit from "@pdf-lib/fontkit";
import { degrees, PDFDocument, rgb, type PDFFont, type PDFImage, type PDFPage } from "pdf-lib";
import { base64ToBytes } from "../../lib/crypto";
import { INTER_BOLD, INTER_REGULAR } from "./fonts";
import type { DocModel } from "./model";

// A4 in points, and the layout's fixed columns.
const W = 595.28;
const H = 841.89;
const M = 48;
const COL = { qty: 330, unit: 420, amount: W - M };
const INK = rgb(0.11, 0.13, 0.17);
const MUTED = rgb(0.42, 0.45, 0.5);
const RULE = rgb(0.86, 0.88, 0.91);
const ACCENT = rgb(0.16, 0.31, 0.62);

let fontBytes: { regular: Uint8Array; bold: Uint8Array } | null = null;

type Fonts = { regular: PDFFont; bold: PDFFont; chars: Set<number> };

/** Text the embedded (Latin) font can draw: anything else becomes "?" rather than failing the render. */
const drawable = (fonts: Fonts, s: string) => [...s].map((ch) => (fonts.chars.has(ch.codePointAt(0)!) ? ch : "?")).join("");

/** Words of `text` in lines no wider than `width` at `size`. */
function wrap(text: string, font: PDFFont, size: number, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    const next = line ? `${line} ${word}` : word;
    if (font.widthOfTextAtSize(next, size) <= width || !line) line = next;
    else {
      out.push(line);
      line = word;
    }
  }
  if (line) out.push(line);
  return out;
}

/**
 * The document as a PDF (A4, Inter embedded, so it looks the same in every viewer): header with the
 * seller, facts and the buyer, the lines table (continued over pages with its header), totals, notes, a status
 * stamp for paid and void documents, and page numbers.
 */
export async function renderPdf(doc: DocModel, opts: { logo?: { bytes: Uint8Array; type: "png" | "jpg" } | null; now?: number } = {}): Promise<Uint8Array> {
  fontBytes ??= { regular: base64ToBytes(INTER_REGULAR), bold: base64ToBytes(INTER_BOLD) };
  const pdf = await PDFDocument.create();
  pdf.registerFontkit(fontkit);
  pdf.setTitle(`${doc.title} ${doc.number}`);
  pdf.setAuthor(doc.seller.name);
  pdf.setProducer("billing-engine");
  pdf.setCreator("billing-engine");
  if (opts.now !== undefined) {
    pdf.setCreationDate(new Date(opts.now));
    pdf.setModificationDate(new Date(opts.now));
  }
  // Embedded whole, never subset: the fonts are already a 33 KB Latin subset each (scripts/build-fonts.mjs), and
  // fontkit's subsetter defers its work through a bundled process.nextTick shim whose queue is module state drained by
  // one setTimeout. In an isolate serving concurrent requests, a drain timer dropped with its ended request leaves
  // that queue stuck, and every later render in the isolate hangs (test/unit/documents-pdf-isolate.test.ts).
  const regular = await pdf.embedFont(fontBytes.regular, { subset: false });
  const bold = await pdf.embedFont(fontBytes.bold, { subset: false });
  const fonts: Fonts = { regular, bold, chars: new Set(regular.getCharacterSet()) };
  const logo: PDFImage | null = opts.logo ? await (opts.logo.type === "png" ? pdf.embedPng(opts.logo.bytes) : pdf.embedJpg(opts.logo.bytes)) : null;

  const pages: PDFPage[] = [];
  let page!: PDFPage;
  let y = 0;
  const text = (s: string, x: number, yy: number, o: { size?: number; font?: PDFFont; color?: ReturnType<typeof rgb>; align?: "left" | "right" } = {}) => {
    const size = o.size ?? 9.5;
    const font = o.font ?? regular;
    const t = drawable(fonts, s);
    const dx = o.align === "right" ? font.widthOfTextAtSize(t, size) : 0;
    page.drawText(t, { x: x - dx, y: yy, size, font, color: o.color ?? INK });
  };
  const tableHeader = () => {
    text("Description", M, y, { size: 8, font: bold, color: MUTED });
    text("Qty", COL.qty, y, { size: 8, font: bold, color: MUTED, align: "right" });
    text("Unit price", COL.unit, y, { size: 8, font: bold, color: MUTED, align: "right" });
    text("Amount", COL.amount, y, { size: 8, font: bold, color: MUTED, align: "right" });
    y -= 8;
    page.drawLine({ start: { x: M, y }, end: { x: W - M, y }, thickness: 0.8, color: INK });
    y -= 16;
  };
  const newPage = (continued: boolean) => {
    page = pdf.addPage([W, H]);
    pages.push(page);
    y = H - M;
    if (continued) {
      text(`${doc.title} ${doc.number} (continued)`, M, y, { size: 10, font: bold });
      y -= 28;
      tableHeader();
    }
  };
  const ensure = (needed: number, inTable: boolean) => {
    if (y - needed < M + 30) newPage(inTable);
  };

  newPage(false);
  // Header: title and number left, seller (with logo) right.
  text(doc.title, M, y - 22, { size: 26, font: bold, color: ACCENT });
  text(doc.number, M, y - 40, { size: 11, color: MUTED });
  let ry = y;
  if (logo) {
    const scale = Math.min(120 / logo.width, 40 / logo.height, 1);
    page.drawImage(logo, { x: W - M - logo.width * scale, y: ry - logo.height * scale, width: logo.width * scale, height: logo.height * scale });
    ry -= logo.height * scale + 8;
  }
  text(doc.seller.name, W - M, ry - 10, { size: 11, font: bold, align: "right" });
  ry -= 24;
  for (const l of doc.seller.lines) {
    text(l, W - M, ry, { size: 8.5, color: MUTED, align: "right" });
    ry -= 12;
  }
  y = Math.min(y - 64, ry - 12);

  // Facts (left) and bill-to (right).
  const top = y;
  for (const [k, v] of doc.facts) {
    text(k, M, y, { size: 8.5, color: MUTED });
    text(v, M + 95, y, { size: 8.5, font: bold });
    y -= 13;
  }
  let by = top;
  text("Bill to", 330, by, { size: 8.5, color: MUTED });
  by -= 13;
  text(doc.buyer.name, 330, by, { size: 9.5, font: bold });
  by -= 13;
  for (const l of doc.buyer.lines) {
    text(l, 330, by, { size: 8.5 });
    by -= 12;
  }
  y = Math.min(y, by) - 24;

  tableHeader();
  for (const line of doc.lines) {
    const desc = wrap(drawable(fonts, line.description), regular, 9.5, COL.qty - M - 60);
    const details = line.details.flatMap((d) => wrap(drawable(fonts, d), regular, 7.5, COL.unit - M - 70));
    ensure(desc.length * 12 + details.length * 10 + 10, true);
    text(line.quantity, COL.qty, y, { align: "right" });
    text(line.unitPrice, COL.unit, y, { align: "right" });
    text(line.amount, COL.amount, y, { align: "right" });
    for (const d of desc) {
      text(d, M, y);
      y -= 12;
    }
    for (const d of details) {
      text(d, M + 8, y, { size: 7.5, color: MUTED });
      y -= 10;
    }
    y -= 4;
    page.drawLine({ start: { x: M, y: y + 6 }, end: { x: W - M, y: y + 6 }, thickness: 0.5, color: RULE });
    y -= 6;
  }

  // Totals, right-aligned under the table.
  ensure(doc.totals.length * 16 + 20, false);
  y -= 6;
  for (const t of doc.totals) {
    if (t.strong) {
      page.drawLine({ start: { x: 330, y: y + 11 }, end: { x: W - M, y: y + 11 }, thickness: 0.5, color: RULE });
    }
    text(t.label, 330, y, { size: t.strong ? 10 : 9, font: t.strong ? bold : regular, color: t.strong ? INK : MUTED });
    text(t.value, COL.amount, y, { size: t.strong ? 10 : 9, font: t.strong ? bold : regular, align: "right" });
    y -= t.strong ? 18 : 15;
  }
  if (doc.notes.length) {
    y -= 12;
    for (const n of doc.notes.flatMap((n) => wrap(drawable(fonts, n), regular, 8.5, W - 2 * M))) {
      ensure(12, false);
      text(n, M, y, { size: 8.5, color: MUTED });
      y -= 12;
    }
  }

  // The status stamp on the first page, and page numbers on every page.
  if (doc.mark) {
    const color = doc.mark === "PAID" ? rgb(0.13, 0.55, 0.3) : rgb(0.75, 0.16, 0.16);
    const first = pages[0]!;
    const size = 96;
    const wdt = bold.widthOfTextAtSize(doc.mark, size);
    first.drawText(doc.mark, { x: W / 2 - (wdt / 2) * Math.cos(Math.PI / 6) + 10, y: H / 2 - (wdt / 2) * Math.sin(Math.PI / 6), size, font: bold, color, opacity: 0.18, rotate: degrees(30) });
    // A badge beside the title as well, where the eye lands first.
    const bx = M + bold.widthOfTextAtSize(doc.title, 26) + 14;
    first.drawRectangle({ x: bx, y: H - M - 24, width: 54, height: 18, borderColor: color, borderWidth: 1.2 });
    first.drawText(doc.mark, { x: bx + 27 - bold.widthOfTextAtSize(doc.mark, 9.5) / 2, y: H - M - 18.5, size: 9.5, font: bold, color });
  }
  pages.forEach((p, i) => {
    page = p;
    text(`${doc.title} ${doc.number}`, M, M - 20, { size: 7.5, color: MUTED });
    text(`Page ${i + 1} of ${pages.length}`, W - M, M - 20, { size: 7.5, color: MUTED, align: "right" });
  });
  return pdf.save({ useObjectStreams: true });
}
