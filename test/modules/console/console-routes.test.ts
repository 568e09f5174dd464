import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { app } from "../../../src/app";

// /console is served from the Worker's static assets. The test stands in for the ASSETS binding, so it checks the
// routing (files, SPA fallback, headers) whether or not `npm run build:console` has run in this checkout.

const INDEX = '<!doctype html><html><head><script type="module" src="/console/assets/index-abc.js"></script></head><body><div id="app"></div></body></html>';

function fakeAssets(files: Record<string, string>): Fetcher {
  return {
    async fetch(input: RequestInfo | URL) {
      const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
      const body = files[path];
      if (body === undefined) return new Response("not found", { status: 404 });
      return new Response(body, { headers: { "content-type": path.endsWith(".js") ? "text/javascript" : "text/html; charset=utf-8", etag: '"v1"' } });
    },
    connect() {
      throw new Error("not used");
    },
  } as unknown as Fetcher;
}

const built = fakeAssets({ "/console/": INDEX, "/console/assets/index-abc.js": "console.log('console')" });
const get = (path: string, assets = built) => app.fetch(new Request(`http://localhost${path}`), { ...env, ASSETS: assets }, { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext);

describe("/console", () => {
  it("serves the app's index.html at /console and at every deep link, re-checked on each load, with a CSP naming no other origin", async () => {
    for (const path of ["/console", "/console/", "/console/invoices/inv_123", "/console/operations"]) {
      const r = await get(path);
      expect(r.status, path).toBe(200);
      expect(await r.text()).toBe(INDEX);
      expect(r.headers.get("cache-control")).toBe("no-cache");
      const csp = r.headers.get("content-security-policy")!;
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toMatch(/https?:|\*|unsafe-eval/);
      expect(r.headers.get("x-content-type-options")).toBe("nosniff");
    }
  });

  it("serves hashed bundles cached for a year, and a missing file as 404 rather than the app", async () => {
    const js = await get("/console/assets/index-abc.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript");
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const missing = await get("/console/assets/index-old.js");
    expect(missing.status).toBe(404);
    expect(await missing.text()).not.toContain("<div id=\"app\">");
  });

  it("needs no token (the page signs in itself) and says how to build it when it is not built", async () => {
    const r = await get("/console/customers", fakeAssets({}));
    expect(r.status).toBe(503);
    expect(await r.text()).toContain("npm run build:console");
  });
});
