// Writes the document GET /openapi.json serves to artifacts/openapi.json, without a running server: the app is
// bundled with esbuild (cloudflare:workers stubbed: building the document touches no binding) and asked in-process.
// Usage: node scripts/openapi-dump.mjs [outfile]
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { build } from "esbuild";

const stub = "export const env = {}; export const waitUntil = () => {}; export class DurableObject { constructor(ctx, env) { this.ctx = ctx; this.env = env; } }";

export async function openApiDocument() {
  const out = await build({
    entryPoints: ["src/app.ts"],
    bundle: true,
    write: false,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "import"],
    logLevel: "warning",
    plugins: [
      {
        name: "cloudflare-stub",
        setup(b) {
          b.onResolve({ filter: /^cloudflare:/ }, (a) => ({ path: a.path, namespace: "cloudflare-stub" }));
          b.onLoad({ filter: /.*/, namespace: "cloudflare-stub" }, () => ({ contents: stub, loader: "js" }));
        },
      },
    ],
  });
  const log = console.log;
  console.log = () => {}; // the app's request log line
  try {
    const { app } = await import(`data:text/javascript;base64,${Buffer.from(out.outputFiles[0].text).toString("base64")}`);
    const res = await app.request("http://localhost/openapi.json");
    if (res.status !== 200) throw new Error(`GET /openapi.json answered ${res.status}`);
    return await res.json();
  } finally {
    console.log = log;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2] ?? "artifacts/openapi.json";
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(await openApiDocument(), null, 2)}\n`);
  console.log(`wrote ${file}`);
}
