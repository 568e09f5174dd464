// Expected failures of use cases, returned rather than thrown. A use case declares the kinds it can fail with in its
// type (`Outcome<Customer, "not_found" | "conflict">`), its caller must look at `ok` before it can reach the value,
// and the HTTP ring renders a failure once as problem+json (src/http/problem.ts `respond`). Throwing stays for bugs
// and for what the caller cannot act on (a lost database, a gateway outage inside a queue consumer).

import { ok, type Result } from "../domain/result";
import type { ErrorKind, FieldError } from "./errors";

/** One expected failure, tagged by its kind (a closed set, each with one HTTP status: src/platform/errors.ts). */
export type Failure<K extends ErrorKind = ErrorKind> = K extends ErrorKind
  ? { readonly kind: K; readonly detail: string; readonly errors?: readonly FieldError[]; readonly headers?: Readonly<Record<string, string>> }
  : never;

/** What a use case returns: its value, or one of the failures it declares. */
export type Outcome<T, K extends ErrorKind = ErrorKind> = Result<T, Failure<K>>;

/** A failure of kind `kind` (for a route answering `problem(c, failure(…))` itself). */
export function failure<K extends ErrorKind>(kind: K, detail: string, errors?: readonly FieldError[], headers?: Record<string, string>): Failure<K> {
  return { kind, detail, ...(errors?.length ? { errors } : {}), ...(headers ? { headers } : {}) } as Failure<K>;
}

/** A failed outcome of kind `kind` (assignable to any `Outcome<T, K>` that declares `kind`). */
export function fail<K extends ErrorKind>(kind: K, detail: string, errors?: readonly FieldError[], headers?: Record<string, string>): Failed<K> {
  return { ok: false, error: failure(kind, detail, errors, headers) };
}

/** The failed side of an Outcome. */
export type Failed<K extends ErrorKind = ErrorKind> = { ok: false; error: Failure<K> };

/** `<what> <id> does not exist` (404). */
export const notFound = (what: string, id: string) => fail("not_found", `${what} ${id} does not exist`);

/** Field errors of a well-formed request the domain refuses (422); the detail lists them unless given. */
export const invalid = (errors: readonly FieldError[], detail?: string) =>
  fail("unprocessable", detail ?? errors.map((e) => `${e.path}: ${e.message}`).join("; "), errors);

/** The object is in a state that refuses the request (409). */
export const conflict = (detail: string, errors?: readonly FieldError[]) => fail("conflict", detail, errors);

export { ok };

/**
 * The failure of `r` re-tagged for the caller, or `r` itself. For a use case that looks up what its input names: the
 * plan a subscription is created on is a field of the request (422), not the resource of the URL (404).
 */
export function asField<T, K extends ErrorKind>(r: Outcome<T, K>, path: string): Outcome<T, Exclude<K, "not_found"> | "unprocessable"> {
  if (r.ok || r.error.kind !== "not_found") return r as Outcome<T, Exclude<K, "not_found">>;
  return invalid([{ path, message: r.error.detail }]);
}

/**
 * The value of an outcome whose failure the caller cannot act on: a queue consumer or cron task that found its object
 * gone or moved on. Throws (a bug or a race to retry), so the message is retried and the failure logged.
 */
export function valueOrThrow<T>(r: Outcome<T>): T {
  if (r.ok) return r.value;
  throw new UnexpectedFailure(r.error);
}

export class UnexpectedFailure extends Error {
  constructor(readonly failure: Failure) {
    super(`${failure.kind}: ${failure.detail}`);
    this.name = "UnexpectedFailure";
  }
}
