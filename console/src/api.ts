// The console's only way to the engine: the public API through the typed client of clients/typescript
// (`@billing-engine/client`, openapi-fetch over the types generated from the API's own OpenAPI document). Every call
// names a literal path template of the contract, so a wrong path, parameter or field is a compile error
// (`npm run typecheck` checks the console too), and the answers' types are the contract's.
import { createBillingClient, type components, type paths } from "@billing-engine/client";

/** The contract's named schemas: `Schema["Invoice"]`, `Schema["CreditNote"]`… */
export type Schema = components["schemas"];

type JsonOf<R> = R extends { content: { "application/json": infer J } } ? J : never;
type Op<P extends keyof paths, M extends "get" | "post" | "put" | "patch" | "delete"> = NonNullable<paths[P][M]>;
/** The 2xx JSON body of an operation: `Answer<"/api/v1/payments/retry-queue">`. */
export type Answer<P extends keyof paths, M extends "get" | "post" | "put" | "patch" | "delete" = "get"> =
  Op<P, M> extends { responses: infer R } ? (R extends { 200: infer A } ? JsonOf<A> : R extends { 201: infer B } ? JsonOf<B> : never) : never;
/** The query parameters of a GET: `Query<"/api/v1/invoices">["status"]`. */
export type Query<P extends keyof paths> = Op<P, "get"> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

export type Problem = { type?: string; title?: string; status: number; detail?: string; errors?: { path: string; message: string }[]; requestId?: string };

/** A refused or failed call: `detail` is the API's own explanation (problem+json). */
export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
  }
}

const TOKEN_KEY = "billing-console-token";
let token: string | null = sessionStorage.getItem(TOKEN_KEY);

export function setToken(t: string | null): void {
  token = t;
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}
export const currentToken = () => token;

/** The typed client: `api.GET("/api/v1/invoices/{id}", { params: { path: { id } } })`, answered through {@link call}. */
export const api = createBillingClient({ baseUrl: location.origin, token: () => token ?? undefined });
// Each state-changing call carries a fresh Idempotency-Key, so a network retry can never apply it twice.
api.use({
  onRequest({ request }) {
    if (request.method !== "GET" && !request.headers.has("idempotency-key")) request.headers.set("idempotency-key", crypto.randomUUID());
    return request;
  },
});

type Result = { data?: unknown; error?: unknown; response: Response };

/** The body of a 2xx answer, typed by the contract; any other answer throws an {@link ApiProblem} with the API's problem. */
export async function call<R extends Result>(p: Promise<R>): Promise<Exclude<R["data"], undefined>> {
  let r: R;
  try {
    r = await p;
  } catch (e) {
    throw new ApiProblem({ status: 0, title: "network error", detail: `the API could not be reached: ${String(e)}` });
  }
  if (r.response.ok) return r.data as Exclude<R["data"], undefined>;
  const body = r.error;
  if (body && typeof body === "object") throw new ApiProblem({ status: r.response.status, ...(body as object) } as Problem);
  throw new ApiProblem({ status: r.response.status, title: r.response.statusText, detail: typeof body === "string" && body ? body : `HTTP ${r.response.status}` });
}

/** A form's filter: "" means no filter (the API would refuse an empty enum value). */
export const opt = <T extends string>(v: T | ""): T | undefined => (v === "" ? undefined : v);

export type Page<T> = { data: T[]; hasMore: boolean; nextCursor: string | null };
