import type { Context } from "hono";
import type { HonoEnv } from "../env";

import { ApiError, errorKinds, type FieldError } from "../platform/errors";

export { ApiError, errorKinds, invalid, notFound, type ErrorKind, type FieldError } from "../platform/errors";

/** RFC 9457 problem+json body. */
export function problemResponse(c: Context<HonoEnv>, e: ApiError): Response {
  const { status, title } = errorKinds[e.kind];
  const body = {
    type: `https://billing-engine.dev/problems/${e.kind.replaceAll("_", "-")}`,
    title,
    status,
    detail: e.detail,
    instance: c.req.path,
    requestId: c.get("requestId"),
    ...(e.errors.length ? { errors: e.errors } : {}),
  };
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/problem+json",
      "x-request-id": c.get("requestId") ?? "",
      // RFC 9110 §15.5.2: every 401 carries a challenge, whatever rejected the credential.
      ...(status === 401 ? { "www-authenticate": "Bearer" } : {}),
      ...e.headers,
    },
  });
}

/** zod issue → `a.b.0.c` path for the `errors[]` array. */
export function zodFieldErrors(issues: readonly { path: readonly PropertyKey[]; message: string }[]): FieldError[] {
  return issues.map((i) => ({ path: i.path.map(String).join(".") || "(body)", message: i.message }));
}
