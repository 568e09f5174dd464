import { describe, expect, it } from "vitest";
import { app } from "../../src/app";
import { api } from "../helpers";

// Served on purpose without an entry in the document, each for a reason.
const UNDOCUMENTED: Record<string, string> = {
  "GET /openapi.json": "the document itself",
  "GET /docs": "the HTML reference rendered from the document",
  "GET /docs/assets/*": "the reference's renderer and fonts (static assets)",
};

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/** Hono's `/:id` or `/:id{[0-9]+}` → OpenAPI's `/{id}`. */
const openApiPath = (honoPath: string) => honoPath.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?/g, "{$1}");

/** Every method and path a handler is registered for (middleware is registered as ALL). */
function servedRoutes(): Set<string> {
  return new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${openApiPath(r.path)}`));
}

async function documentedRoutes(): Promise<Set<string>> {
  const doc = (await api("GET", "/openapi.json")).body as { paths: Record<string, Record<string, unknown>> };
  const out = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) for (const m of Object.keys(item)) if (METHODS.includes(m)) out.add(`${m.toUpperCase()} ${path}`);
  return out;
}

describe("/openapi.json matches the routes the app serves", () => {
  it("documents every served route at its real path and method", async () => {
    const documented = await documentedRoutes();
    const missing = [...servedRoutes()].filter((r) => !documented.has(r) && !(r in UNDOCUMENTED)).sort();
    expect(missing).toEqual([]);
  });

  it("serves every documented path and method (a placeholder filled in reaches a handler, not the not-found answer)", async () => {
    const served = servedRoutes();
    const documented = [...(await documentedRoutes())].sort();
    expect(documented.length).toBeGreaterThan(50);
    expect(documented.filter((r) => !served.has(r))).toEqual([]);
    // And through the worker: the router finds a handler for each (the handler then answers whatever it answers).
    const unrouted: string[] = [];
    for (const route of documented) {
      const [method, path] = route.split(" ") as [string, string];
      const r = await api(method, path.replace(/\{[^}]+\}/g, "x_placeholder"));
      if (r.status === 404 && typeof r.body?.detail === "string" && r.body.detail.startsWith("no route for")) unrouted.push(route);
    }
    expect(unrouted).toEqual([]);
  });

  it("documents usage ingestion where it is served", async () => {
    const documented = await documentedRoutes();
    expect(documented.has("POST /api/v1/usage")).toBe(true);
    expect([...documented].filter((r) => r.includes("/api/v1/usage/api/v1/usage"))).toEqual([]);
  });
});
