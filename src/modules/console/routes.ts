import { Hono } from "hono";
import type { HonoEnv } from "../../env";

// The operator console: a single-page app built by `npm run build:console` into public/console and served from the
// Worker's static assets. Deep links (/console/invoices/inv_…) get index.html; the app routes in the browser.

/** Nothing from another origin: scripts, styles, images and API calls all come from this Worker. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Console not built</title>
<p>The console has not been built in this checkout: run <code>npm run build:console</code> (npm run dev and npm run deploy do it).</p>`;

/** Hashed bundles never change under their name; index.html must be re-checked so a deploy is picked up at once. */
function cacheControl(path: string): string {
  return path.startsWith("/console/assets/") ? "public, max-age=31536000, immutable" : "no-cache";
}

function withHeaders(res: Response, path: string): Response {
  const out = new Response(res.body, res);
  out.headers.set("content-security-policy", CONSOLE_CSP);
  out.headers.set("cache-control", cacheControl(path));
  out.headers.set("x-content-type-options", "nosniff");
  out.headers.set("referrer-policy", "no-referrer");
  out.headers.set("x-frame-options", "DENY");
  return out;
}

async function serve(env: Env, request: Request): Promise<Response> {
  const url = new URL(request.url);
  const path = url.pathname;
  // A file (it has an extension): the asset or a plain 404, never the app's HTML under a .js name.
  if (/\.[a-z0-9]+$/i.test(path) && !path.endsWith(".html")) {
    const res = await env.ASSETS.fetch(new Request(url, request));
    return res.status === 404 ? withHeaders(new Response("not found", { status: 404 }), path) : withHeaders(res, path);
  }
  // Any route of the app: index.html (fetched under the directory name, which asset html_handling serves directly).
  const index = await env.ASSETS.fetch(new Request(new URL("/console/", url), { method: "GET", headers: request.headers }));
  if (index.status === 304) return withHeaders(index, "/console/");
  if (!index.ok) return withHeaders(new Response(NOT_BUILT, { status: 503, headers: { "content-type": "text/html; charset=utf-8" } }), "/console/");
  return withHeaders(index, "/console/");
}

export const consoleRoutes = new Hono<HonoEnv>()
  .get("/", (c) => serve(c.env, c.req.raw))
  .get("/*", (c) => serve(c.env, c.req.raw));
