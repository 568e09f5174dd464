import { createRoute, z } from "@hono/zod-openapi";
import { access, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, listOf, PaginationQuery, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { testClocks } from "../../db/schema";
import { newestFirstPage } from "../../platform/pagination";
import { services } from "../../http/context";
import { problem } from "../../http/problem";
import { advanceClock, clocksEnabled, createClock, getClock, parseFrozenTime, toClock } from "./service";

const Clock = z.object({ id: z.string(), name: z.string().nullable(), frozenTime: z.string(), status: z.enum(["ready", "advancing"]), createdAt: z.string() }).openapi("TestClock");
const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" } }) });
const FrozenTime = z.string().openapi({ example: "2024-03-01T00:00:00Z", description: "ISO-8601 date-time between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z" });

export const testClockRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Test clocks"],
      operationId: "createTestClock",
      summary: "Create a test clock",
      description: "A simulated clock for the customers attached to it; disabled (404) when TEST_CLOCKS=off.",
      middleware: [requireRole(access.subscriptions)] as const,
      request: jsonBody(z.object({ frozenTime: FrozenTime, name: z.string().max(100).optional() })),
      responses: { 201: jsonResponse(Clock, "The clock"), ...problems(404, 422) },
    }),
    async (c) => {
      const on = clocksEnabled(c.env);
      if (!on.ok) return problem(c, on.error);
      const body = c.req.valid("json");
      const frozenTime = parseFrozenTime(body.frozenTime);
      if (!frozenTime.ok) return problem(c, frozenTime.error);
      const row = await createClock(services(c), { frozenTime: frozenTime.value, name: body.name });
      return c.json(toClock(row), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Test clocks"],
      operationId: "listTestClocks",
      summary: "List test clocks, newest first",
      description: "Every test clock, newest first, cursor-paginated (`startingAfter` = the last id of the previous page): a console or script finds the clocks it did not create. Disabled (404) when TEST_CLOCKS=off.",
      middleware: [requireRole(access.read)] as const,
      request: { query: PaginationQuery },
      responses: { 200: jsonResponse(listOf(Clock), "A page of test clocks"), ...problems(404) },
    }),
    async (c) => {
      const on = clocksEnabled(c.env);
      if (!on.ok) return problem(c, on.error);
      const page = await newestFirstPage(dbOf(c.env), { table: testClocks, id: testClocks.id, createdAt: testClocks.createdAt }, c.req.valid("query"), [], toClock);
      return c.json(page, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      tags: ["Test clocks"],
      operationId: "getTestClock",
      summary: "Get a test clock",
      description: "The clock's frozen time and status.",
      middleware: [requireRole(access.read)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(Clock, "The clock"), ...problems(404) },
    }),
    async (c) => {
      const on = clocksEnabled(c.env);
      if (!on.ok) return problem(c, on.error);
      const clock = await getClock(dbOf(c.env), c.req.valid("param").id);
      return clock.ok ? c.json(toClock(clock.value), 200) : problem(c, clock.error);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/advance",
      tags: ["Test clocks"],
      operationId: "advanceTestClock",
      summary: "Advance a test clock",
      description:
        "A small advance completes within the call (`status: ready`). A large one does a bounded share of the steps here and returns `status: advancing` with the steps done so far; the clock's `frozenTime` moves only as far as the work completed, and the rest continues through the tasks queue until the clock is `ready` at the requested time (poll GET /api/v1/test-clocks/{id}).",
      middleware: [requireRole(access.subscriptions)] as const,
      request: { params: IdParam, ...jsonBody(z.object({ frozenTime: FrozenTime })) },
      responses: {
        200: jsonResponse(
          Clock.extend({ steps: z.array(z.object({ subscriptionId: z.string(), step: z.string(), at: z.string(), status: z.string(), invoiceId: z.string().optional() })), invoiceIds: z.array(z.string()) }),
          "The clock after this call (ready, or advancing while the rest runs), and the steps this call ran",
        ),
        ...problems(404, 409, 422, 503),
      },
    }),
    async (c) => {
      const on = clocksEnabled(c.env);
      if (!on.ok) return problem(c, on.error);
      const target = parseFrozenTime(c.req.valid("json").frozenTime);
      if (!target.ok) return problem(c, target.error);
      const advanced = await advanceClock(services(c), c.req.valid("param").id, target.value);
      if (!advanced.ok) return problem(c, advanced.error);
      const r = advanced.value;
      return c.json({ ...toClock(r.clock), steps: r.steps.map((s) => ({ ...s, at: new Date(s.at).toISOString() })), invoiceIds: r.invoiceIds }, 200);
    },
  );
