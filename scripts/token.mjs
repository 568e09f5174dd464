#!/usr/bin/env node
// `npm run token -- <role> [subject] [ttlSeconds]`: prints a JWT signed with the local JWT_SECRET.
import { readFileSync, existsSync } from "node:fs";
import { SignJWT } from "jose";
import { parseDotenv } from "./wrangler-env.mjs";

const roles = ["admin", "finance", "support", "viewer"];
const [role = "admin", sub = `local-${role}`, ttl = "86400"] = process.argv.slice(2);
if (!roles.includes(role)) {
  console.error(`usage: npm run token -- <${roles.join("|")}> [subject] [ttlSeconds]`);
  process.exit(2);
}
const file = existsSync(".dev.vars") ? ".dev.vars" : ".dev.vars.example";
const secret = process.env.JWT_SECRET ?? parseDotenv(readFileSync(file, "utf8")).JWT_SECRET;
if (!secret) {
  console.error(`JWT_SECRET is not set in the environment or ${file}`);
  process.exit(1);
}
const config = readFileSync("wrangler.toml", "utf8");
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
