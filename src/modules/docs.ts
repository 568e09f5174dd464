import { Hono } from "hono";
import type { HonoEnv } from "../env";

// The API reference: Scalar's standalone renderer and its fonts are static assets of this Worker (copied into
// public/docs/assets by `npm run build:docs`), so /docs needs no CDN and works offline. The page reads /openapi.json
// and sends try-it requests to the origin that served it. Scalar's network features (telemetry, the request proxy,
// its hosted fonts, the AI agent) are off, and the Content-Security-Policy below holds the page to this origin.
const ASSETS = "/docs/assets";

const config = {
  url: "/openapi.json",
  title: "Billing Engine API reference",
  telemetry: false,
  withDefaultFonts: false,
  agent: { disabled: true },
  showDeveloperTools: "never",
  documentDownloadType: "json",
  orderSchemaPropertiesBy: "preserve",
  defaultHttpClient: { targetKey: "shell", clientKey: "curl" },
  authentication: { preferredSecurityScheme: "bearer" },
  hideDarkModeToggle: false,
};

// Kept in a constant: its hash is what the Content-Security-Policy allows to run.
const init = `(function () {
  var config = JSON.parse(document.getElementById("api-reference-config").textContent);
  // Try-it goes to the server that served this page, whatever servers the document lists.
  config.servers = [{ url: window.location.origin, description: "This server" }];
  Scalar.createApiReference("#app", config);
})();`;

const fontFace = (family: string, file: string, range: string) =>
  `@font-face{font-family:"${family}";font-style:normal;font-weight:100 900;font-display:swap;src:url(${ASSETS}/fonts/${file}) format("woff2");unicode-range:${range}}`;
const LATIN = "U+0000-00FF,U+0131,U+0152-0153,U+02BB-02BC,U+02C6,U+02DA,U+02DC,U+0304,U+0308,U+0329,U+2000-206F,U+20AC,U+2122,U+2191,U+2193,U+2212,U+2215,U+FEFF,U+FFFD";
const LATIN_EXT = "U+0100-02BA,U+02BD-02C5,U+02C7-02CC,U+02CE-02D7,U+02DD-02FF,U+0304,U+0308,U+0329,U+1D00-1DBF,U+1E00-1E9F,U+1EF2-1EFF,U+2020,U+20A0-20AB,U+20AD-20C0,U+2113,U+2C60-2C7F,U+A720-A7FF";
const fonts = [
  fontFace("Inter", "inter-latin-wght-normal.woff2", LATIN),
  fontFace("Inter", "inter-latin-ext-wght-normal.woff2", LATIN_EXT),
  fontFace("JetBrains Mono", "jetbrains-mono-latin-wght-normal.woff2", LATIN),
  fontFace("JetBrains Mono", "jetbrains-mono-latin-ext-wght-normal.woff2", LATIN_EXT),
].join("\n");

const escapeJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c");

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Billing Engine API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="Reference of the Billing Engine HTTP API: customers, plans, subscriptions, usage, invoices, payments and operations.">
<link rel="icon" href="data:,">
<link rel="preload" href="${ASSETS}/fonts/inter-latin-wght-normal.woff2" as="font" type="font/woff2" crossorigin>
<style>
${fonts}
:root{--scalar-font:"Inter",system-ui,sans-serif;--scalar-font-code:"JetBrains Mono",ui-monospace,monospace}
body{margin:0}
</style>
</head>
<body>
<noscript>This reference is rendered with JavaScript. The document it renders is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="app"></div>
<script id="api-reference-config" type="application/json">${escapeJson(config)}</script>
<script src="${ASSETS}/scalar.js"></script>
<script>${init}</script>
</body>
</html>`;

let scriptHash: Promise<string> | undefined;
async function sha256Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** Only this origin: the renderer, fonts, the document and try-it requests; Scalar injects its styles inline. */
async function contentSecurityPolicy(): Promise<string> {
  scriptHash ??= sha256Base64(init);
  return [
    "default-src 'self'",
    `script-src 'self' 'sha256-${await scriptHash}'`,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
  ].join("; ");
}

export const docsRoutes = new Hono<HonoEnv>()
  .get("/", async (c) => {
    c.header("Content-Security-Policy", await contentSecurityPolicy());
    c.header("Cache-Control", "no-cache");
    return c.html(page);
  })
  // The renderer and its fonts, from the Worker's static assets (the Worker runs first: run_worker_first). The asset
  // server's headers are immutable: copied, so the middleware can add the request id.
  .get("/assets/*", async (c) => {
    const asset = await c.env.ASSETS.fetch(c.req.raw);
    return new Response(asset.body, asset);
  });
