#!/usr/bin/env node
// `npm run openapi:dump`: writes the API's OpenAPI document to artifacts/openapi.json without a server. The document
// comes from scripts/openapi-document.mjs (the app bundled for node), the same one the typed client is generated from.
import { mkdirSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { openapiDocument } from "./openapi-document.mjs";

export const openApiDocument = openapiDocument;

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  mkdirSync("artifacts", { recursive: true });
  writeFileSync("artifacts/openapi.json", JSON.stringify(await openapiDocument(), null, 2) + "\n");
  console.log("wrote artifacts/openapi.json");
}
