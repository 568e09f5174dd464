import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { errorResponses, jsonBody, jsonResponse, listOf, PaginationQuery, router } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { auditCtx } from "../../http/context";
import { CreatePlan, CreatePlanVersion, Plan } from "./schemas";
import { createPlan, createPlanVersion, getPlanRow, listPlans, toPlan } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "plan_premium" }) });

export const planRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Plans"],
      summary: "Create a plan (version 1)",
      middleware: [requireRole(access.catalogue)] as const,
      request: jsonBody(CreatePlan),
      responses: { 201: jsonResponse(Plan, "The new plan"), ...errorResponses },
    }),
    async (c) => c.json(await createPlan(dbOf(c.env), c.req.valid("json"), auditCtx(c)), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Plans"],
      summary: "List plans (latest versions), newest first",
      middleware: [requireScopeOrRole("plans:read", access.read)] as const,
      request: { query: PaginationQuery },
      responses: { 200: jsonResponse(listOf(Plan), "A page of plans"), ...errorResponses },
    }),
    async (c) => c.json(await listPlans(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Plans"],
      summary: "Get a plan: its latest version, or ?version=N",
      middleware: [requireScopeOrRole("plans:read", access.read)] as const,
      request: { params: IdParam, query: z.object({ version: z.coerce.number().int().positive().optional() }) },
      responses: { 200: jsonResponse(Plan, "The plan"), ...errorResponses },
    }),
    async (c) => c.json(toPlan(await getPlanRow(dbOf(c.env), c.req.valid("param").id, c.req.valid("query").version)), 200),
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/versions",
      tags: ["Plans"],
      summary: "Publish a new version of a plan; existing subscriptions keep their version",
      middleware: [requireRole(access.catalogue)] as const,
      request: { params: IdParam, ...jsonBody(CreatePlanVersion) },
      responses: { 201: jsonResponse(Plan, "The new version"), ...errorResponses },
    }),
    async (c) => c.json(await createPlanVersion(dbOf(c.env), c.req.valid("param").id, c.req.valid("json"), auditCtx(c)), 201),
  );
