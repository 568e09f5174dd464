// A typed client for the Billing Engine API: openapi-fetch over the types openapi-typescript generates from the
// engine's OpenAPI document (./schema.d.ts, `npm run client:generate`), plus what every caller needs: the base URL,
// the bearer credential, Idempotency-Key, problem+json errors as a typed exception, and pagination.
import createFetchClient, { type Client, type ClientOptions as FetchClientOptions } from "openapi-fetch";
import type { paths } from "./schema";

export type { paths, components, operations } from "./schema";

/** An RFC 9457 problem, as every error of the API is answered (`application/problem+json`). */
export interface Problem {
  /** Stable URI naming the kind of error, e.g. `https://billing-engine.dev/problems/validation-failed`. */
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The path that was requested. */
  instance?: string;
  /** Also in the `X-Request-Id` header: quote it when reporting a problem. */
  requestId?: string;
  /** Field-level problems of a validation failure. */
  errors?: { path: string; message: string }[];
}

/** Thrown by {@link unwrap} for every non-2xx answer. */
export class ApiProblem extends Error {
  readonly status: number;
  readonly problem: Problem;
  readonly response: Response;

  constructor(problem: Problem, response: Response) {
    super(`${response.status} ${problem.title}: ${problem.detail}`);
    this.name = "ApiProblem";
    this.status = response.status;
    this.problem = problem;
    this.response = response;
  }

  /** The last segment of `type`: `validation-failed`, `not-found`, `conflict`… */
  get kind(): string {
    return this.problem.type.slice(this.problem.type.lastIndexOf("/") + 1);
  }

  get requestId(): string | undefined {
    return this.problem.requestId ?? this.response.headers.get("x-request-id") ?? undefined;
  }
}

export interface BillingClientOptions {
  /** Where the engine is served, e.g. `http://localhost:3401`. */
  baseUrl: string;
  /** A role JWT or an API key (`bek_…`), sent as `Authorization: Bearer …`; a function is asked before each request. */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** A fetch to use instead of the global one (tests, service bindings). */
  fetch?: (request: Request) => Promise<Response>;
}

export type BillingClient = Client<paths>;

/** A client for every operation of the document: `client.GET("/api/v1/customers/{id}", { params: { path: { id } } })`. */
export function createBillingClient(options: BillingClientOptions): BillingClient {
  const init: FetchClientOptions = { baseUrl: options.baseUrl.replace(/\/+$/, ""), headers: options.headers };
  if (options.fetch) init.fetch = options.fetch;
  const client = createFetchClient<paths>(init);
  const { token } = options;
  if (token !== undefined) {
    client.use({
      async onRequest({ request }) {
        const credential = typeof token === "function" ? await token() : token;
        if (credential && !request.headers.has("authorization")) request.headers.set("authorization", `Bearer ${credential}`);
        return request;
      },
    });
  }
  return client;
}

/**
 * The `Idempotency-Key` header for a state-changing request. Keep the key to retry safely: the same key and body
 * replay the first answer (with `Idempotent-Replayed: true`) for 24 hours. Without an argument, a fresh random key.
 */
export function idempotencyKey(key: string = crypto.randomUUID()): { "Idempotency-Key": string } {
  return { "Idempotency-Key": key };
}

type Result = { data?: unknown; error?: unknown; response: Response };

/** The body of a 2xx answer; throws {@link ApiProblem} for any other status. */
export async function unwrap<R extends Result>(result: R | Promise<R>): Promise<Exclude<R["data"], undefined>> {
  const { data, error, response } = await result;
  if (!response.ok) throw new ApiProblem(toProblem(error, response), response);
  return data as Exclude<R["data"], undefined>;
}

function toProblem(body: unknown, response: Response): Problem {
  if (body && typeof body === "object" && "status" in body && "title" in body) return body as Problem;
  // Not problem+json (a proxy in between, an empty body): keep what there is.
  return {
    type: "about:blank",
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
    detail: typeof body === "string" ? body : body === undefined ? "" : JSON.stringify(body),
  };
}

/** One page of a list: `{ data, hasMore, nextCursor }`. */
export interface Page<T> {
  data: T[];
  hasMore: boolean;
  nextCursor?: string | null;
}

/**
 * Every item of a paginated list, page after page: `fetchPage` is called with the cursor (`startingAfter`) of the
 * next page, `undefined` for the first. Stops at `hasMore: false`, and refuses a cursor that does not move on.
 */
export async function* paginate<T>(fetchPage: (startingAfter: string | undefined) => Promise<Page<T>>): AsyncGenerator<T> {
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    yield* page.data;
    if (!page.hasMore || !page.nextCursor) return;
    if (page.nextCursor === cursor) throw new Error(`pagination did not advance past ${cursor}`);
    cursor = page.nextCursor;
  }
}

/** Collects {@link paginate} into an array. */
export async function listAll<T>(fetchPage: (startingAfter: string | undefined) => Promise<Page<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of paginate(fetchPage)) out.push(item);
  return out;
}
