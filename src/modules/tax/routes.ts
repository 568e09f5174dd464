import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, problems, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { services } from "../../http/context";
import { problem } from "../../http/problem";
import { iso } from "../../lib/time";
import { ExemptionReport, ExemptionsQuery, RatesQuery, TaxRateHistory, TaxRateUpdated, TaxReport, TaxReportRequest, UpsertTaxRate } from "./schemas";
import { taxRateHistory, upsertTaxRate, validateExemptions } from "./service";
import { generateTaxReport } from "./report";

export const taxRoutes = router()
  .openapi(
    createRoute({
      method: "put",
      path: "/rates",
      tags: ["Tax"],
      operationId: "setTaxRate",
      summary: "Set a tax rate",
      description: "Sets a jurisdiction's rate from a date on: a new date adds to the history, the same date replaces it. Audited.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(UpsertTaxRate),
      responses: { 200: jsonResponse(TaxRateUpdated, "The jurisdiction's history and the rate in force now"), ...problems(409, 422) },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const s = services(c);
      const changed = await upsertTaxRate(s, { jurisdiction: input.jurisdiction, rate: input.rate, effectiveFrom: Date.parse(input.effectiveDate) });
      if (!changed.ok) return problem(c, changed.error);
      const change = changed.value;
      const history = await taxRateHistory(s.db, input.jurisdiction, s.audit.now);
      return c.json({ ...history, change: { ...change, effectiveFrom: iso(change.effectiveFrom) } }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/rates",
      tags: ["Tax"],
      operationId: "getTaxRates",
      summary: "Get a jurisdiction's tax rates",
      description: "The rate history, newest first, and the rate in force at an instant.",
      middleware: [requireRole(access.read)] as const,
      request: { query: RatesQuery },
      responses: { 200: jsonResponse(TaxRateHistory, "History, newest first, and the rate in force") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      return c.json(await taxRateHistory(dbOf(c.env), q.jurisdiction, q.at ? Date.parse(q.at) : services(c).clock.wall), 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/exemptions/validate",
      tags: ["Tax"],
      operationId: "validateTaxExemptions",
      summary: "Check tax exemption certificates",
      description: "Tax-exempt customers whose certificate is missing, expired or expiring soon.",
      middleware: [requireRole(access.read)] as const,
      request: { query: ExemptionsQuery },
      responses: { 200: jsonResponse(ExemptionReport, "Exemptions needing attention, with counts") },
    }),
    async (c) => c.json(await validateExemptions(dbOf(c.env), services(c).clock.wall, c.req.valid("query").days), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/report",
      tags: ["Tax"],
      operationId: "createTaxReport",
      summary: "Generate a tax report",
      description: "Tax collected per jurisdiction and currency over a quarter, month or year; stored in R2.",
      middleware: [requireRole(access.finance)] as const,
      request: jsonBody(TaxReportRequest),
      responses: {
        200: {
          description: "The report (JSON), or CSV with the R2 key in X-Report-Key",
          headers: z.object({ "X-Report-Key": z.string().openapi({ example: "reports/tax/Q2-2024-US-CA.csv" }) }),
          content: { "application/json": { schema: TaxReport }, "text/csv": { schema: z.string() } },
        },
      },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const { report, body, contentType } = await generateTaxReport(services(c), input);
      c.header("X-Report-Key", report.reportKey);
      if (input.format === "csv") {
        const filename = report.reportKey.slice(report.reportKey.lastIndexOf("/") + 1);
        return c.body(body, 200, { "content-type": contentType, "content-disposition": `attachment; filename="${filename}"` });
      }
      return c.json(report, 200);
    },
  );
