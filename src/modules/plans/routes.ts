import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole, requireScopeOrRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { services } from "../../http/context";
import { problem, respond } from "../../http/problem";
import { CreatePlan, CreatePlanVersion, Plan } from "./schemas";
import { createPlan, createPlanVersion, getPlanRow, listPlans, toPlan } from "./service";

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, example: "plan_premium" }) });

export const planRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Plans"],
      operationId: "createPlan",
      summary: "Create a plan",
      description: "Creates version 1 of a plan with its flat and metered prices (per unit, graduated, volume or package). Amounts are decimal strings or numbers in the plan's currency.",
      middleware: [requireRole(access.catalogue)] as const,
      request: jsonBody(CreatePlan),
      responses: { 201: jsonResponse(Plan, "The new plan"), ...problems(409, 422) },
    }),
    async (c) => respond(c, await createPlan(services(c), c.req.valid("json")), 201),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Plans"],
      operationId: "listPlans",
      summary: "List plans",
      description: "The latest version of each plan, newest first, cursor-paginated.",
      middleware: [requireScopeOrRole("plans:read", access.read)] as const,
      request: { query: PaginationQuery },
      responses: { 200: jsonResponse(listOf(Plan), "A page of plans") },
    }),
    async (c) => c.json(await listPlans(dbOf(c.env), c.req.valid("query")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Plans"],
      operationId: "getPlan",
      summary: "Get a plan",
      description: "Its latest version, or the version given by `?version=N`.",
      middleware: [requireScopeOrRole("plans:read", access.read)] as const,
      request: { params: IdParam, query: z.object({ version: z.coerce.number().int().positive().optional() }) },
      responses: { 200: jsonResponse(Plan, "The plan"), ...problems(404) },
    }),
    async (c) => {
      const found = await getPlanRow(dbOf(c.env), c.req.valid("param").id, c.req.valid("query").version);
      return found.ok ? c.json(toPlan(found.value), 200) : problem(c, found.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/versions",
      tags: ["Plans"],
      operationId: "createPlanVersion",
      summary: "Publish a new plan version",
      description: "A new version with new prices; existing subscriptions keep the version they are on until their plan is changed.",
      middleware: [requireRole(access.catalogue)] as const,
      request: { params: IdParam, ...jsonBody(CreatePlanVersion) },
      responses: { 201: jsonResponse(Plan, "The new version"), ...problems(404, 409, 422) },
    }),
    async (c) => respond(c, await createPlanVersion(services(c), c.req.valid("param").id, c.req.valid("json")), 201),
  );
