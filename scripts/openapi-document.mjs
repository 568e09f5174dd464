#!/usr/bin/env node
// The API's OpenAPI document without a server: bundles src/app.ts for Node with esbuild (the few `cloudflare:workers`
// imports get an inert stub: building the document touches no binding) and asks the app for GET /openapi.json, so
// the document is exactly what the Worker serves. `node scripts/openapi-document.mjs [out.json]` writes it (stdout
// without an argument); `openapiDocument()` returns it to other scripts (client generation, docs build).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";

const stub = `
export const env = {};
export const waitUntil = () => {};
export class DurableObject { constructor(ctx, env) { this.ctx = ctx; this.env = env; } }
export class WorkerEntrypoint { constructor(ctx, env) { this.ctx = ctx; this.env = env; } }
export const withEnv = (_env, fn) => fn();
`;

export async function openapiDocument() {
  const dir = mkdtempSync(join(tmpdir(), "openapi-doc-"));
  const outfile = join(dir, "app.mjs");
  try {
    await build({
      entryPoints: [resolve("src/app.ts")],
      outfile,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node22",
      logLevel: "error",
      // CommonJS dependencies bundled into an ES module still call require() for Node built-ins.
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      plugins: [
        {
          name: "cloudflare-stub",
          setup(b) {
            b.onResolve({ filter: /^cloudflare:/ }, (args) => ({ path: args.path, namespace: "cloudflare-stub" }));
            b.onLoad({ filter: /.*/, namespace: "cloudflare-stub" }, () => ({ contents: stub, loader: "js" }));
          },
        },
      ],
    });
    // The request log middleware prints one line per request: keep stdout for the document.
    const log = console.log;
    console.log = () => {};
    try {
      const { app } = await import(pathToFileURL(outfile).href);
      const res = await app.request("http://localhost/openapi.json", {}, {});
      if (res.status !== 200) throw new Error(`GET /openapi.json answered ${res.status}: ${await res.text()}`);
      return await res.json();
    } finally {
      console.log = log;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const json = JSON.stringify(await openapiDocument(), null, 2) + "\n";
  if (process.argv[2]) writeFileSync(process.argv[2], json);
  else process.stdout.write(json);
}
