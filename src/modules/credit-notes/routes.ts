import { createRoute, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { dbOf } from "../../db/client";
import { creditNotes, creditNoteStatuses } from "../../db/schema";
import { access, requireRole } from "../../http/auth";
import { services } from "../../http/context";
import { problem } from "../../http/problem";
import { valueOrThrow } from "../../platform/failure";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { newestFirstPage } from "../../platform/pagination";
import { creditNotePdf } from "../documents/store";
import { CreditNote, creditNoteReasons, toCreditNote } from "./serialize";
import { createCreditNote, creditNoteWithLines, voidCreditNote } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "cn_123" }) });
const Amount = z.union([z.string(), z.number()]).openapi({ description: "Decimal major units of the invoice's currency (\"12.50\", 1000 JPY, \"1.234\" BHD)", example: "12.50" });

const CreateCreditNote = z
  .object({
    invoiceId: z.string(),
    lines: z
      .array(
        z
          .object({
            invoiceLineId: z.string(),
            amount: Amount.optional().openapi({ description: "Pre-tax amount to credit on the line (or give quantity)" }),
            quantity: Amount.optional().openapi({ description: "Quantity to credit: the line's net amount × quantity / line quantity (or give amount)" }),
          })
          .strict(),
      )
      .min(1)
      .max(100),
    reason: z.enum(creditNoteReasons),
    memo: z.string().max(1000).nullable().optional(),
    refund: z.object({ amount: Amount }).strict().optional().openapi({ description: "Paid invoices: the part refunded to the payment method" }),
    creditBalance: z.object({ amount: Amount }).strict().optional().openapi({ description: "Paid invoices: the part added to the customer's credit balance (default: whatever is not refunded)" }),
  })
  .strict()
  .openapi("CreateCreditNote");

export const creditNoteRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      operationId: "createCreditNote",
      tags: ["Credit notes"],
      summary: "Issue a credit note against an open or paid invoice",
      description:
        "Stripe's semantics. Each line credits a pre-tax amount of an invoice line (by amount or quantity); tax is credited in the line's proportion. The total (amount + tax) may not exceed what is left to credit on the invoice. On an open invoice the total comes off the amount due (nothing left: the invoice is paid). On a paid invoice the total is split between `refund` (through the payment's gateway; 423 while payments are frozen) and `creditBalance` (the rest, by default). Numbered CN-<year>-NNNNNN without gaps; emits credit_note.created.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(CreateCreditNote),
      responses: { 201: jsonResponse(CreditNote, "The issued credit note with its lines"), ...problems(404, 409, 422, 423) },
    }),
    async (c) => {
      const created = await createCreditNote(services(c), c.req.valid("json"));
      if (!created.ok) return problem(c, created.error);
      const { note, lines } = created.value;
      return c.json(toCreditNote(note, lines), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      operationId: "listCreditNotes",
      tags: ["Credit notes"],
      summary: "List credit notes, newest first",
      description: "Newest first, cursor-paginated, filtered by `invoiceId`, `customerId` and `status`.",
      middleware: [requireRole(access.read)] as const,
      request: { query: PaginationQuery.extend({ invoiceId: z.string().optional(), customerId: z.string().optional(), status: z.enum(creditNoteStatuses).optional() }) },
      responses: { 200: jsonResponse(listOf(CreditNote), "A page of credit notes"), ...problems(404, 409) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const page = await newestFirstPage(
        dbOf(c.env),
        { table: creditNotes, id: creditNotes.id, createdAt: creditNotes.createdAt },
        q,
        [q.invoiceId ? eq(creditNotes.invoiceId, q.invoiceId) : undefined, q.customerId ? eq(creditNotes.customerId, q.customerId) : undefined, q.status ? eq(creditNotes.status, q.status) : undefined],
        (r) => toCreditNote(r),
      );
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      operationId: "getCreditNote",
      tags: ["Credit notes"],
      summary: "Get a credit note with its lines",
      description: "The credit note with its lines, and how its total was split (amount due, refund, customer credit).",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(CreditNote, "The credit note"), ...problems(404, 409) },
    }),
    async (c) => {
      const found = await creditNoteWithLines(dbOf(c.env), c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { note, lines } = found.value;
      return c.json(toCreditNote(note, lines), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/void",
      operationId: "voidCreditNote",
      tags: ["Credit notes"],
      summary: "Void a credit note that has not been applied",
      description: "Undoes the note: the amount due goes back on a still-open invoice, the credit granted is taken back. A note that refunded money, whose invoice was paid or voided since, or whose credit was spent, is applied: 409. Emits credit_note.voided.",
      middleware: [requireRole(access.finance)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(CreditNote, "The voided credit note"), ...problems(404, 409) },
    }),
    async (c) => {
      const s = services(c);
      const db = s.db;
      const voided = await voidCreditNote(s, c.req.valid("param").id);
      if (!voided.ok) return problem(c, voided.error);
      const { lines } = valueOrThrow(await creditNoteWithLines(db, voided.value.id));
      return c.json(toCreditNote(voided.value, lines), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/pdf",
      operationId: "getCreditNotePdf",
      tags: ["Credit notes"],
      summary: "Download the credit note PDF",
      description: "Rendered once and stored in R2, like invoice PDFs.",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: { description: "The credit note as a PDF", content: { "application/pdf": { schema: z.string().openapi({ format: "binary" }) } } }, ...problems(404, 409) },
    }),
    async (c) => {
      const found = await creditNoteWithLines(dbOf(c.env), c.req.valid("param").id);
      if (!found.ok) return problem(c, found.error);
      const { note } = found.value;
      const body = await creditNotePdf(services(c), note.id);
      return new Response(body as BodyInit, { status: 200, headers: { "content-type": "application/pdf", "content-disposition": `attachment; filename="${note.number}.pdf"`, "cache-control": "private, no-store" } });
    },
  );
