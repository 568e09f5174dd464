#!/usr/bin/env node
// `npm run build:docs`: copies the API reference's renderer into the Worker's static assets, so /docs works offline
// and with no CDN: Scalar's standalone browser bundle (@scalar/api-reference) and the two variable fonts it is
// designed for (Inter, JetBrains Mono; latin and latin-ext), self-hosted from @fontsource-variable. The files are
// generated (public/docs/assets/ is gitignored); `npm run dev`, `npm run deploy` and the browser test run this first.
// The HTML page itself is served by the Worker (src/modules/docs.ts), which references these paths.
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = "public/docs/assets";
// Straight from node_modules: these packages' "exports" do not expose package.json or their browser bundle.
const packageDir = (name) => join("node_modules", name);
const version = (name) => JSON.parse(readFileSync(join(packageDir(name), "package.json"), "utf8")).version;

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "fonts"), { recursive: true });

const scalar = packageDir("@scalar/api-reference");
copyFileSync(join(scalar, "dist/browser/standalone.js"), join(out, "scalar.js"));

const fonts = {
  "@fontsource-variable/inter": ["inter-latin-wght-normal.woff2", "inter-latin-ext-wght-normal.woff2"],
  "@fontsource-variable/jetbrains-mono": ["jetbrains-mono-latin-wght-normal.woff2", "jetbrains-mono-latin-ext-wght-normal.woff2"],
};
for (const [pkg, files] of Object.entries(fonts)) {
  for (const file of files) copyFileSync(join(packageDir(pkg), "files", file), join(out, "fonts", file));
  copyFileSync(join(packageDir(pkg), "LICENSE"), join(out, "fonts", `${pkg.split("/")[1]}-LICENSE.txt`));
}
writeFileSync(
  join(out, "VERSIONS.txt"),
  [`@scalar/api-reference ${version("@scalar/api-reference")} (MIT)`, ...Object.keys(fonts).map((p) => `${p} ${version(p)} (SIL Open Font License 1.1)`)].join("\n") + "\n",
);
const kb = (f) => `${Math.round(statSync(join(out, f)).size / 1024)} KB`;
console.log(`build:docs: ${out}/scalar.js (${kb("scalar.js")}, @scalar/api-reference ${version("@scalar/api-reference")}) and ${Object.values(fonts).flat().length} fonts`);
