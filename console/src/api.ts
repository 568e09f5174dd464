// The console's only way to the engine: the public API through openapi-fetch. When the typed client of
// clients/typescript lands, `createClient<paths>` replaces the untyped one here and every call gets its types.
import createClient from "openapi-fetch";

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

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const client = createClient<any>({ baseUrl: location.origin });
client.use({
  onRequest({ request }) {
    if (token) request.headers.set("authorization", `Bearer ${token}`);
    return request;
  },
});

type Query = Record<string, string | number | boolean | undefined | null>;
type Params = { path?: Record<string, string>; query?: Query };

function clean(q: Query | undefined): Record<string, string | number | boolean> | undefined {
  if (!q) return undefined;
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== "") out[k] = v;
  return out;
}

async function unwrap<T>(p: Promise<{ data?: unknown; error?: unknown; response: Response }>): Promise<T> {
  let r;
  try {
    r = await p;
  } catch (e) {
    throw new ApiProblem({ status: 0, title: "network error", detail: `the API could not be reached: ${String(e)}` });
  }
  if (r.response.ok) return r.data as T;
  const body = r.error;
  if (body && typeof body === "object") throw new ApiProblem({ status: r.response.status, ...(body as object) } as Problem);
  throw new ApiProblem({ status: r.response.status, title: r.response.statusText, detail: typeof body === "string" && body ? body : `HTTP ${r.response.status}` });
}

/** GET a path template (`/api/v1/invoices/{id}`) with path and query parameters. */
export function get<T>(path: string, params: Params = {}): Promise<T> {
  return unwrap<T>(client.GET(path, { params: { path: params.path, query: clean(params.query) } }));
}

/** A state-changing call. Each call carries a fresh Idempotency-Key, so a network retry can never apply it twice. */
export function send<T>(method: "POST" | "PUT" | "PATCH" | "DELETE", path: string, params: Params & { body?: unknown } = {}): Promise<T> {
  const init = {
    params: { path: params.path, query: clean(params.query) },
    body: params.body ?? (method === "DELETE" ? undefined : {}),
    headers: { "idempotency-key": crypto.randomUUID() },
  };
  const call = method === "POST" ? client.POST(path, init) : method === "PUT" ? client.PUT(path, init) : method === "PATCH" ? client.PATCH(path, init) : client.DELETE(path, init);
  return unwrap<T>(call);
}

export type Page<T> = { data: T[]; hasMore: boolean; nextCursor: string | null };
