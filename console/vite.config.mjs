// `npm run build:console`: the operator console (Preact + uPlot) bundled into public/console, served by the Worker
// at /console from its static assets. Hashed file names under assets/ are cached for a year; index.html is not.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/console/",
  plugins: [preact()],
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../public/console", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // The CSP allows no inline script: keep every module a file.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
