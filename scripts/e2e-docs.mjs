#!/usr/bin/env node
// `npm run test:e2e:docs`: the API reference at /docs, rendered by headless Chromium against a fresh `wrangler dev`.
// Builds the renderer into the static assets (npm run build:docs), opens /docs with every request outside the
// server's origin blocked and recorded (the page must work offline), and checks that it rendered the document: the
// introduction's sections, a tag and operation summary of each tag in the navigation, an operation's request and
// response schema, no raw `$ref`, no script error or CSP violation, and try-it configured against the same origin
// (it sends a request with a token and shows the answer). Screenshots go to artifacts/ (gitignored).
// Env: BASE_URL (unset: start a server), PORT (3460), INSPECTOR_PORT (PORT + 100), PERSIST_TO (.wrangler/e2e-docs-state), CHROMIUM (/usr/bin/chromium),
// ARTIFACTS (artifacts).
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { checks } from "./load-common.mjs";
import { localToken, startServer } from "./local-server.mjs";

const PORT = Number(process.env.PORT ?? 3460);
const INSPECTOR_PORT = Number(process.env.INSPECTOR_PORT ?? PORT + 100);
const PERSIST = process.env.PERSIST_TO ?? ".wrangler/e2e-docs-state";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.ARTIFACTS ?? "artifacts";
// The machine may be busy: Scalar parses the whole document before the first paint.
const RENDER_TIMEOUT = Number(process.env.RENDER_TIMEOUT_MS ?? 180_000);

const build = spawnSync(process.execPath, ["scripts/build-docs.mjs"], { stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
mkdirSync(ARTIFACTS, { recursive: true });

// BASE_URL: use a server that is already running (e.g. `npm run dev`) instead of starting one.
const server = process.env.BASE_URL
  ? { base: process.env.BASE_URL.replace(/\/+$/, ""), stop: () => {} }
  : (console.log(`e2e-docs: starting wrangler dev on :${PORT}`), await startServer({ port: PORT, persist: PERSIST, fresh: true, inspectorPort: INSPECTOR_PORT }));
const { check, exitCode } = checks();
let browser;
try {
  const doc = await (await fetch(`${server.base}/openapi.json`)).json();
  const origin = new URL(server.base).origin;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1, colorScheme: "light" });
  const external = [];
  const sameOrigin = [];
  // Offline: nothing outside the server's origin is reachable (data: and blob: URLs never reach the network).
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) {
      sameOrigin.push(`${route.request().method()} ${new URL(url).pathname}`);
      return route.continue();
    }
    external.push(url);
    return route.abort("internetdisconnected");
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });

  const started = Date.now();
  const response = await page.goto(`${server.base}/docs`, { waitUntil: "load", timeout: RENDER_TIMEOUT });
  check("GET /docs answers 200 with a Content-Security-Policy", response.status() === 200 && /default-src 'self'/.test(response.headers()["content-security-policy"] ?? ""), response.status() === 200 ? "" : `status ${response.status()}`);
  // Rendered once the introduction (info.description) is on the page.
  await page.getByRole("heading", { name: "Authentication", exact: true }).first().waitFor({ timeout: RENDER_TIMEOUT });
  await page.evaluate(() => document.fonts.ready);
  console.log(`rendered in ${Date.now() - started} ms`);
  await page.screenshot({ path: join(ARTIFACTS, "docs.png") });

  const intro = await page.locator("body").innerText();
  for (const heading of ["Getting started", "Authentication", "Errors", "Idempotency", "Pagination", "Money", "Time"]) {
    check(`the introduction has "${heading}"`, (await page.getByRole("heading", { name: heading, exact: true }).count()) > 0);
  }
  check("the page names the API", intro.includes(doc.info.title));
  check("the page explains how to get a local token", intro.includes("npm run token"));
  check("try-it is set to this server", intro.includes(origin), intro.includes(origin) ? "" : `no ${origin} on the page`);

  // Every tag of the document is in the navigation (whatever operations are added later).
  const tags = [...new Set(Object.values(doc.paths).flatMap((item) => Object.values(item).flatMap((op) => (op && typeof op === "object" && op.responses ? (op.tags ?? []).slice(0, 1) : []))))];
  const missingTags = [];
  for (const tag of tags) if ((await page.getByText(tag, { exact: true }).count()) === 0) missingTags.push(tag);
  check(`the navigation lists all ${tags.length} tags`, tags.length > 0 && missingTags.length === 0, missingTags.length ? `missing ${missingTags.join(", ")}` : "");

  // One operation, as a reader opens it: its summary, parameters and response schema, then try-it with a token.
  const op = doc.paths["/api/v1/customers"]?.get;
  const tag = op?.tags?.[0];
  check("the document has GET /api/v1/customers with a tag and a summary", Boolean(op?.summary && tag));
  const token = await localToken("viewer");
  await page.getByPlaceholder("Token").first().fill(token);
  await page.getByText(tag, { exact: true }).first().click();
  await page.getByRole("link", { name: op.summary }).or(page.getByText(op.summary, { exact: true })).first().click();
  const heading = page.getByRole("heading", { name: op.summary, exact: true }).first();
  await heading.waitFor({ timeout: 30_000 });
  await heading.scrollIntoViewIfNeeded();
  await page.evaluate(() => window.scrollBy(0, -80));
  const section = page.locator("section", { has: heading }).last();
  const sectionText = await section.innerText();
  check("the operation shows its query parameters", sectionText.includes("limit") && sectionText.includes("startingAfter"));
  check("the operation shows its responses", /\b200\b/.test(sectionText) && /\b401\b/.test(sectionText));
  await page.screenshot({ path: join(ARTIFACTS, "docs-operation.png") });

  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === "/api/v1/customers" && r.request().method() === "GET", { timeout: 60_000 });
  await section.getByRole("button", { name: /Test Request/i }).first().click();
  await page.getByRole("button", { name: /^Send/ }).first().click();
  const sent = await answer;
  check("try-it sends the request to this server with the token", sent.status() === 200 && new URL(sent.url()).origin === origin && sent.request().headers()["authorization"] === `Bearer ${token}`, `${sent.status()} ${sent.url()}`.replace(/^200 .*/, ""));
  await page.getByText("200 OK").first().waitFor({ timeout: 30_000 }).catch(() => {});
  check("try-it shows the answer", (await page.getByText("200 OK").count()) > 0);
  await page.screenshot({ path: join(ARTIFACTS, "docs-try-it.png") });

  const all = await page.locator("body").innerText();
  check("no raw $ref JSON on the page", !all.includes("$ref") && !intro.includes("$ref"));
  check("no request left the server's origin", external.length === 0, external.slice(0, 5).join(", "));
  check("the renderer and its fonts came from the Worker's assets", sameOrigin.some((r) => r.endsWith("/docs/assets/scalar.js")) && sameOrigin.some((r) => r.includes("/docs/assets/fonts/")));
  check("no script error or CSP violation", errors.length === 0, errors.slice(0, 5).join(" | "));
  console.log(`requests: ${sameOrigin.length} same-origin, ${external.length} blocked; screenshots in ${ARTIFACTS}/docs*.png`);
} catch (e) {
  check("e2e-docs ran to the end", false, e.stack ?? String(e));
} finally {
  await browser?.close();
  server.stop();
}
process.exit(exitCode());
