import type { Context, TypedResponse } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { JSONParsed, JSONValue } from "hono/utils/types";
import type { z } from "@hono/zod-openapi";
import type { HonoEnv } from "../env";
import { ApiError, errorKinds, type ErrorKind, type FieldError } from "../platform/errors";
import type { Failure, Outcome } from "../platform/failure";
import type { ProblemSchema } from "./openapi";

export { ApiError, errorKinds, type ErrorKind, type FieldError } from "../platform/errors";

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

/** A use case's failure as the ApiError the problem renderer takes (one mapping, here). */
export function failureError(f: Failure): ApiError {
  return new ApiError(f.kind, f.detail, [...(f.errors ?? [])], { ...(f.headers ?? {}) });
}

/** The HTTP status of each failure kind. */
export type StatusOf<K extends ErrorKind> = (typeof errorKinds)[K]["status"];
type ProblemBody = z.infer<typeof ProblemSchema>;

/**
 * The problem+json response for a failure of a use case (or a failed outcome, e.g. `problem(c, invalid([...]))`).
 * Typed with the kind's status, so a route that returns it must declare that status among its responses.
 */
export function problem<K extends ErrorKind>(c: Context<HonoEnv>, f: Failure<K> | { ok: false; error: Failure<K> }) {
  return problemResponse(c, failureError("ok" in f ? f.error : f)) as Response & TypedResponse<ProblemBody, StatusOf<K>, "json">;
}

/** A use case's outcome as the route's answer: its value as JSON with `status`, or its failure as problem+json. */
export function respond<T, K extends ErrorKind, S extends ContentfulStatusCode>(c: Context<HonoEnv>, r: Outcome<T, K>, status: S) {
  if (!r.ok) return problem(c, r.error);
  return c.json(r.value as JSONValue, status) as unknown as Response & TypedResponse<JSONParsed<T>, S, "json">;
}
