// The API's closed set of error kinds and the error that carries one. Use cases return their expected failures as
// Outcomes (src/platform/failure.ts); ApiError is what the HTTP ring throws (auth, idempotency, validation, body
// limits) and what src/http/problem.ts renders once as RFC 9457 problem+json.

export type FieldError = { path: string; message: string };

/** Closed set of error kinds, each with one HTTP status. */
export const errorKinds = {
  bad_request: { status: 400, title: "Bad request" },
  validation_failed: { status: 400, title: "Validation failed" },
  unauthorized: { status: 401, title: "Unauthorized" },
  forbidden: { status: 403, title: "Forbidden" },
  not_found: { status: 404, title: "Not found" },
  conflict: { status: 409, title: "Conflict" },
  payload_too_large: { status: 413, title: "Payload too large" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  unprocessable: { status: 422, title: "Unprocessable request" },
  locked: { status: 423, title: "Locked" },
  internal: { status: 500, title: "Internal server error" },
  unavailable: { status: 503, title: "Service unavailable" },
} as const;
export type ErrorKind = keyof typeof errorKinds;

export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly detail: string,
    readonly errors: FieldError[] = [],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
  get status(): number {
    return errorKinds[this.kind].status;
  }
}
