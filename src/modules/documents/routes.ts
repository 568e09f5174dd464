import { createRoute, z } from "@hono/zod-openapi";
import { dbOf } from "../../db/client";
import { access, requireRole } from "../../http/auth";
import { auditCtx, services } from "../../http/context";
import { jsonBody, jsonResponse, router, problems } from "../../http/openapi";
import { problem } from "../../http/problem";
import { conflict, ok, type Outcome } from "../../platform/failure";
import { iso } from "../../lib/time";
import { displayMoney } from "./format";
import { NOT_FOUND_HTML, renderHtml } from "./html";
import { invoiceForToken, issueLink, revokeLinks } from "./links";
import { documentsConfig, invoiceDocument, invoicePdf } from "./store";
import { getInvoice } from "../invoices/service";
import { putSetting } from "../../platform/settings";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "inv_123" }) });
const TokenParam = z.object({ token: z.string().openapi({ param: { name: "token", in: "path" }, description: "The link's secret token (64 hex digits)" }) });
const pdfResponse = (description: string) => ({ description, content: { "application/pdf": { schema: z.string().openapi({ format: "binary" }) } } });
const htmlResponse = (description: string) => ({ description, content: { "text/html": { schema: z.string() } } });

const HostedLink = z
  .object({
    invoiceId: z.string(),
    hostedUrl: z.string().openapi({ description: "The hosted invoice page (no login); absolute when the documents setting has publicBaseUrl" }),
    pdfUrl: z.string().openapi({ description: "The PDF through the same link" }),
    expiresAt: z.string(),
  })
  .openapi("HostedInvoiceLink");

/** The invoice unless it is a draft (409): a draft has no document yet; `why` says what waits for its finalization. */
const finalized = <T extends { id: string; status: string }>(inv: T, why: string): Outcome<T, "conflict"> =>
  inv.status === "draft" ? conflict(`invoice ${inv.id} is a draft: ${why}`, [{ path: "status", message: "is draft" }]) : ok(inv);

const pdfHeaders = (name: string, inline: boolean) => ({
  "content-type": "application/pdf",
  "content-disposition": `${inline ? "inline" : "attachment"}; filename="${name}.pdf"`,
  "cache-control": "private, no-store",
});

/** Invoice documents under /api/v1/invoices (authenticated): the PDF and the hosted link's create/rotate/revoke. */
export const invoiceDocumentRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/pdf",
      operationId: "getInvoicePdf",
      tags: ["Invoices"],
      summary: "Download the invoice PDF",
      description: "Streams the PDF of the invoice's current state (open, paid, void, uncollectible) from R2; rendered once and stored if missing. Drafts have no document (409).",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: pdfResponse("The invoice as a PDF"), ...problems(404, 409) },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const read = await getInvoice(db, c.req.valid("param").id);
      if (!read.ok) return problem(c, read.error);
      const found = finalized(read.value, "its document exists once it is finalized");
      if (!found.ok) return problem(c, found.error);
      const inv = found.value;
      return new Response((await invoicePdf(services(c), inv)) as BodyInit, { status: 200, headers: pdfHeaders(inv.number ?? inv.id, false) });
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/hosted-link",
      operationId: "createInvoiceHostedLink",
      tags: ["Invoices"],
      summary: "Create or rotate the invoice's hosted link",
      description: "Issues a new unguessable link (256-bit token, only its hash is stored) valid `expiresInDays` (default: the documents setting's hostedLinkDays, 90); every earlier link of the invoice is revoked.",
      middleware: [requireRole(access.finance)] as const,
      request: { params: IdParam, body: { required: false, content: { "application/json": { schema: z.object({ expiresInDays: z.number().int().min(1).max(365).optional() }) } } } },
      responses: { 201: jsonResponse(HostedLink, "The new link"), ...problems(404, 409) },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const read = await getInvoice(db, c.req.valid("param").id);
      if (!read.ok) return problem(c, read.error);
      const found = finalized(read.value, "finalize it before sharing it");
      if (!found.ok) return problem(c, found.error);
      const inv = found.value;
      const body = (c.req.header("content-type")?.includes("json") ? c.req.valid("json") : undefined) ?? {};
      const config = await documentsConfig(db);
      const link = await issueLink(services(c), inv.id, body.expiresInDays ?? config.hostedLinkDays, config.publicBaseUrl);
      return c.json({ invoiceId: inv.id, hostedUrl: link.url, pdfUrl: link.pdfUrl, expiresAt: iso(link.expiresAt) }, 201);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}/hosted-link",
      operationId: "revokeInvoiceHostedLink",
      tags: ["Invoices"],
      summary: "Revoke the invoice's hosted link",
      description: "Every live link of the invoice stops working at once (404, like an unknown link).",
      middleware: [requireRole(access.finance)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(z.object({ invoiceId: z.string(), revoked: z.number().int() }), "How many links were revoked"), ...problems(404) },
    }),
    async (c) => {
      const s = services(c);
      const read = await getInvoice(s.db, c.req.valid("param").id);
      if (!read.ok) return problem(c, read.error);
      return c.json({ invoiceId: read.value.id, revoked: await revokeLinks(s, read.value.id) }, 200);
    },
  );

const notFoundPage = () =>
  new Response(NOT_FOUND_HTML, { status: 404, headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "x-robots-tag": "noindex", "referrer-policy": "no-referrer" } });
const pageHeaders = {
  "cache-control": "private, no-store",
  "x-robots-tag": "noindex, nofollow",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/** The hosted invoice page under /i (no login: the token is the credential). */
export const hostedInvoiceRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/{token}",
      operationId: "getHostedInvoicePage",
      tags: ["Hosted invoices"],
      summary: "The hosted invoice page",
      description: "HTML, responsive and printable, with the invoice's status and its PDF. Unknown, expired and revoked tokens all answer the same 404.",
      request: { params: TokenParam },
      responses: { 200: htmlResponse("The invoice page"), 404: htmlResponse("No such link (or expired, or revoked)") },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const inv = await invoiceForToken(db, c.req.valid("param").token, services(c).clock.wall);
      if (!inv || inv.status === "draft") return notFoundPage();
      const { model } = await invoiceDocument(db, inv);
      const html = renderHtml(model, { pdfHref: `/i/${c.req.valid("param").token}/pdf`, amountDue: inv.status === "void" ? null : displayMoney(inv.amountDue, inv.currency) });
      return c.html(html, 200, pageHeaders);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{token}/pdf",
      operationId: "getHostedInvoicePdf",
      tags: ["Hosted invoices"],
      summary: "The invoice PDF through its hosted link",
      description: "The PDF of the invoice behind a hosted link; an unknown, expired or revoked token is a 404 that reveals nothing.",
      request: { params: TokenParam },
      responses: { 200: pdfResponse("The invoice as a PDF"), 404: htmlResponse("No such link (or expired, or revoked)") },
    }),
    async (c) => {
      const db = dbOf(c.env);
      const inv = await invoiceForToken(db, c.req.valid("param").token, services(c).clock.wall);
      if (!inv || inv.status === "draft") return notFoundPage();
      return new Response((await invoicePdf(services(c), inv)) as BodyInit, { status: 200, headers: { ...pdfHeaders(inv.number ?? inv.id, false), "x-robots-tag": "noindex", "referrer-policy": "no-referrer" } });
    },
  );


const DocumentsSettings = z
  .object({
    seller: z
      .object({
        legalName: z.string().min(1).max(200),
        address: z.array(z.string().max(200)).max(6).default([]),
        taxId: z.string().max(64).nullable().default(null),
        email: z.string().max(200).nullable().default(null),
        logoBase64: z.string().max(200_000).nullable().default(null).openapi({ description: "A PNG or JPEG logo, base64 (drawn top right, at most 120×40 pt)" }),
        logoType: z.enum(["png", "jpg"]).nullable().default(null),
      })
      .strict(),
    publicBaseUrl: z.url().nullable().default(null).openapi({ description: "Origin that hosted links and PDF links start with, e.g. https://billing.example.com" }),
    hostedLinkDays: z.number().int().min(1).max(365).default(90),
  })
  .strict()
  .openapi("DocumentsSettings");

/** The seller block and link settings of invoice documents (/admin/config/documents). */
export const documentsAdminRoutes = router()
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "getDocumentsSettings",
      tags: ["Admin"],
      summary: "Read the documents settings (seller block, public base URL, hosted link lifetime)",
      description: "The seller block printed on invoices and credit notes (legal name, address, tax id, logo) and the hosted-link settings.",
      middleware: [requireRole(access.finance)] as const,
      responses: { 200: jsonResponse(DocumentsSettings, "The settings in force"), ...problems(404) },
    }),
    async (c) => {
      const s = await documentsConfig(dbOf(c.env));
      const { logoUrl: _unused, ...seller } = s.seller;
      return c.json({ seller, publicBaseUrl: s.publicBaseUrl, hostedLinkDays: s.hostedLinkDays }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/",
      operationId: "updateDocumentsSettings",
      tags: ["Admin"],
      summary: "Set the documents settings (audited); documents rendered from now on use them",
      description: "Replaces the seller block and hosted-link settings; audited. Documents rendered afterwards use them.",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(DocumentsSettings),
      responses: { 200: jsonResponse(DocumentsSettings, "The stored settings"), ...problems(404) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      await putSetting(dbOf(c.env), "documents", { ...body, seller: { ...body.seller, logoUrl: null } }, auditCtx(c));
      return c.json(body, 200);
    },
  );
