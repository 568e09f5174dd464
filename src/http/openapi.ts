import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { HonoEnv } from "../env";
import { ApiError, zodFieldErrors } from "./problem";

/** Every router is built with this, so a zod failure anywhere becomes the same problem+json 400. */
export function router() {
  return new OpenAPIHono<HonoEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const errors = zodFieldErrors(result.error.issues);
        const where = result.target === "json" ? "body" : result.target;
        throw new ApiError("validation_failed", `invalid ${where}: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`, errors);
      }
    },
  });
}

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string(),
    requestId: z.string(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi("Problem");

const problem = (description: string) => ({ description, content: { "application/problem+json": { schema: ProblemSchema } } });

/** Standard error responses, so the document lists them for every route. */
export const errorResponses = {
  400: problem("Malformed request or validation failure"),
  401: problem("Missing or invalid credentials"),
  403: problem("Role may not call this route"),
  404: problem("Not found"),
  409: problem("Conflict"),
  422: problem("Unprocessable"),
} as const;

export const jsonBody = <T extends z.ZodType>(schema: T, description = "Request body") => ({
  body: { required: true, description, content: { "application/json": { schema } } },
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
