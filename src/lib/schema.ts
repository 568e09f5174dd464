import { z } from "@hono/zod-openapi";

// A catch-all that always fails, so each unknown key is refused at its own path (`billing.retryAttemps`) rather
// than once at its parent; zod's strict() names only the parent.
const unknownField = z.unknown().refine(() => false, { message: "unknown field" });

/** An object schema that refuses unknown keys, each with its full path. */
export function closedObject<T extends z.ZodRawShape>(shape: T) {
  return z.object(shape).catchall(unknownField).openapi({ additionalProperties: false });
}
