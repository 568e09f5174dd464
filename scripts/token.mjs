#!/usr/bin/env node
// `npm run token -- <role> [subject] [ttlSeconds]`: prints a JWT signed with the local JWT_SECRET, valid for
// ttlSeconds (default and maximum: JWT_MAX_TTL_SECONDS in wrangler.toml; the API refuses longer-lived tokens).
import { readFileSync, existsSync } from "node:fs";
import { SignJWT } from "jose";
import { parseDotenv } from "./wrangler-env.mjs";

const roles = ["admin", "finance", "support", "viewer"];
const config = readFileSync("wrangler.toml", "utf8");
const maxTtl = Number(/JWT_MAX_TTL_SECONDS\s*=\s*"(\d+)"/.exec(config)?.[1] ?? 86400);
const [role = "admin", sub = `local-${role}`, ttl = String(maxTtl)] = process.argv.slice(2);
if (!roles.includes(role)) {
  console.error(`usage: npm run token -- <${roles.join("|")}> [subject] [ttlSeconds ≤ ${maxTtl}]`);
  process.exit(2);
}
if (!/^\d+$/.test(ttl) || Number(ttl) < 1 || Number(ttl) > maxTtl) {
  console.error(`ttlSeconds must be a whole number from 1 to ${maxTtl} (JWT_MAX_TTL_SECONDS): the API refuses longer-lived tokens`);
  process.exit(2);
}
const file = existsSync(".dev.vars") ? ".dev.vars" : ".dev.vars.example";
const secret = process.env.JWT_SECRET ?? parseDotenv(readFileSync(file, "utf8")).JWT_SECRET;
if (!secret) {
  console.error(`JWT_SECRET is not set in the environment or ${file}`);
  process.exit(1);
}
const issuer = /JWT_ISSUER\s*=\s*"([^"]+)"/.exec(config)?.[1] ?? "billing-engine";
const audience = /JWT_AUDIENCE\s*=\s*"([^"]+)"/.exec(config)?.[1] ?? "billing-api";
const token = await new SignJWT({ role })
  .setProtectedHeader({ alg: "HS256" })
  .setSubject(sub)
  .setIssuer(issuer)
  .setAudience(audience)
  .setIssuedAt()
  .setExpirationTime(Math.floor(Date.now() / 1000) + Number(ttl))
  .sign(new TextEncoder().encode(secret));
console.log(token);
