import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { HonoEnv } from "../env";
import { ApiError, zodFieldErrors } from "./problem";
import { declaredJsonBody } from "./lenient-json";

type RouteConfig = Parameters<OpenAPIHono<HonoEnv>["openapi"]>[0];

/**
 * Every router is built with this, so a zod failure anywhere becomes the same problem+json 400, and every route
 * declared with `.openapi()` gets, from what it declares, the parts of its contract the shared layers produce:
 * - a declared application/json body is read as JSON whatever its Content-Type (declaredJsonBody), and can be
 *   refused with 413 (body limit) or 415 (a multipart or XML type);
 * - declared input can fail validation (400); an authenticated route (no `security: []`) can answer 401, 403 and
 *   422 (a card number in the request); a state-changing one 409 and 422 from its Idempotency-Key.
 * A route declares only its own errors on top (404, 409, 423, 503…) with `problems()`.
 */
export function router() {
  const r = new OpenAPIHono<HonoEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const errors = zodFieldErrors(result.error.issues);
        const where = result.target === "json" ? "body" : result.target;
        throw new ApiError("validation_failed", `invalid ${where}: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`, errors);
      }
    },
  });
  const openapi = r.openapi;
  r.openapi = ((route: RouteConfig, ...rest: unknown[]) =>
    (openapi as (...a: unknown[]) => unknown)(withSharedContract(route), ...rest)) as typeof r.openapi;
  return r;
}

function withSharedContract(route: RouteConfig): RouteConfig {
  const request = route.request ?? {};
  const isPublic = Array.isArray(route.security) && route.security.length === 0;
  // Only a zod schema is validated (and so read as JSON): a plain JSON Schema documents a body the handler reads raw.
  const declared = (request.body?.content?.["application/json"] as { schema?: unknown } | undefined)?.schema;
  const json = Boolean(declared && typeof declared === "object" && "safeParse" in declared);
  const write = !["get", "head", "options"].includes(route.method);
  const codes: ProblemStatus[] = [];
  if (request.query || request.params || request.headers || request.body) codes.push(400);
  if (!isPublic) codes.push(401, 403, 422);
  if (!isPublic && write) codes.push(409);
  if (request.body) codes.push(413);
  if (json) codes.push(415);
  const shared = problems(...codes.filter((code) => !(code in route.responses)));
  const middleware = route.middleware ? (Array.isArray(route.middleware) ? route.middleware : [route.middleware]) : [];
  return {
    ...route,
    responses: sortedByStatus({ ...route.responses, ...shared }),
    ...(json ? { middleware: [declaredJsonBody, ...middleware] } : {}),
  };
}

const sortedByStatus = <T extends Record<string, unknown>>(responses: T): T =>
  Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b))) as T;

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string(),
    requestId: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    reason: z.string().optional().openapi({ description: "Usage ingestion only: why the event was rejected", example: "unknown_meter" }),
  })
  .openapi("Problem", {
    description: "RFC 9457 problem details. `type` names the error kind; `errors[]` lists field paths for validation failures.",
    example: {
      type: "https://billing-engine.dev/problems/not-found",
      title: "Not found",
      status: 404,
      detail: "customer cus_123 does not exist",
      instance: "/api/v1/customers/cus_123",
      requestId: "req_8NJjHk91s3gT2VNV",
    },
  });

const problem = (description: string) => ({ description, content: { "application/problem+json": { schema: ProblemSchema } } });

export type ProblemStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 423 | 429 | 503;

const problemDescriptions: Record<ProblemStatus, string> = {
  400: "Malformed request or validation failure (`errors[]` names the fields)",
  401: "Missing, malformed, expired or revoked credentials",
  403: "The token's role (or the API key's scopes) may not call this route",
  404: "The object named in the path does not exist",
  409: "Conflict: the object is in another state, or the same Idempotency-Key is still in flight",
  413: "Request body larger than 2 MiB",
  415: "Body sent with a Content-Type other than JSON (none, text/plain and form-urlencoded are read as JSON)",
  422: "Well-formed but refused: a business rule, a card number in the request, or an Idempotency-Key reused with another body",
  423: "Payments are frozen or in queue mode (Retry-After says when to try again)",
  429: "Too many requests (Retry-After says when to try again)",
  503: "A dependency is unavailable; retry later",
};

/** Problem+json responses for these statuses, each with its standard description. */
// Typed with exactly the given codes, so a route answering a use case's failure (src/http/problem.ts `respond`) must
// declare the status of every kind that use case can fail with, or it does not compile.
export const problems = <C extends ProblemStatus>(...codes: C[]) =>
  Object.fromEntries(codes.map((code) => [code, problem(problemDescriptions[code])])) as Record<C, ReturnType<typeof problem>>;

/** A problem+json response with a route-specific description. */
export const problemResponse = problem;

export const jsonBody = <T extends z.ZodType>(schema: T, description = "Request body") => ({
  body: { required: true, description, content: { "application/json": { schema } } },
});

/** A JSON body every field of which is optional: it may be left out (an empty body is read as `{}`). */
export const optionalJsonBody = <T extends z.ZodType>(schema: T, description = "Request body (may be omitted)") => ({
  body: { required: false, description, content: { "application/json": { schema } } },
});

export const jsonResponse = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export const PaginationQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ description: "Page size, 1-100" }),
  startingAfter: z.string().optional().openapi({ description: "Id of the last object of the previous page" }),
});

export const listOf = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), hasMore: z.boolean(), nextCursor: z.string().nullable() });

/** An ISO-8601 date (UTC) or date-time with a zone: how every API date parameter is written. */
export const DateOrInstant = z.union([z.iso.datetime({ offset: true }), z.iso.date()]).openapi({ description: "ISO date (UTC) or date-time", example: "2024-06-01" });
