import { jwtVerify, SignJWT, errors as joseErrors } from "jose";
import { eq } from "drizzle-orm";
import { createMiddleware } from "hono/factory";
import type { Context } from "hono";
import type { Actor, HonoEnv } from "../env";
import { ApiError } from "./problem";
import { idempotent } from "./idempotency";
import { dbOf } from "../db/client";
import { apiKeys } from "../db/schema";
import { sha256Hex } from "../lib/hash";

export const roles = ["admin", "finance", "support", "viewer"] as const;
export type Role = (typeof roles)[number];

/** Who may call what; admin may call everything. */
export const access = {
  read: ["admin", "finance", "support", "viewer"],
  customers: ["admin", "finance", "support"],
  subscriptions: ["admin", "support"],
  catalogue: ["admin", "finance"],
  finance: ["admin", "finance"],
  admin: ["admin"],
} as const satisfies Record<string, readonly Role[]>;

export const API_KEY_PREFIX = "bek_";
const API_KEY_CACHE_MS = 30_000;
type CachedKey = { actor: Actor | null; fetchedAt: number };
// Per-isolate cache: a revocation reaches every isolate within API_KEY_CACHE_MS.
const apiKeyCache = new Map<string, CachedKey>();
// Bounded, so random `bek_` strings cannot grow isolate memory: the oldest entry goes first (Map keeps insertion order).
const API_KEY_CACHE_MAX = 10_000;

export function forgetApiKey(keyHash: string): void {
  apiKeyCache.delete(keyHash);
}

/** POST /admin/config/reload: every key is looked up in D1 again. */
export function dropApiKeyCache(): number {
  const n = apiKeyCache.size;
  apiKeyCache.clear();
  return n;
}

function secretKey(env: Env): Uint8Array {
  if (!env.JWT_SECRET || env.JWT_SECRET.length < 32) throw new Error("JWT_SECRET is missing or shorter than 32 characters");
  return new TextEncoder().encode(env.JWT_SECRET);
}

const DEFAULT_MAX_TTL_SECONDS = 24 * 60 * 60;
/** How far a token's `iat` may lie ahead of this clock (issuers' clocks drift a little). */
const CLOCK_SKEW_SECONDS = 60;

/** The longest lifetime (exp − iat) a token may have: JWT_MAX_TTL_SECONDS, else 24 h. */
export function maxTokenLifetime(env: Env): number {
  const n = Number(env.JWT_MAX_TTL_SECONDS);
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_MAX_TTL_SECONDS;
}

const invalidToken = (detail: string) => new ApiError("unauthorized", detail, [], { "www-authenticate": 'Bearer error="invalid_token"' });

/** Signs a token for `role`; used by the tests (`npm run token` mints the same shape). Never beyond the maximum lifetime. */
export async function signToken(env: Env, sub: string, role: Role, ttlSeconds = 3600): Promise<string> {
  const max = maxTokenLifetime(env);
  if (ttlSeconds > max) throw new Error(`token lifetime ${ttlSeconds} s exceeds the maximum of ${max} s (JWT_MAX_TTL_SECONDS)`);
  return new SignJWT({ role })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuer(env.JWT_ISSUER)
    .setAudience(env.JWT_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(secretKey(env));
}

async function actorFromJwt(env: Env, token: string): Promise<Actor> {
  try {
    const { payload } = await jwtVerify(token, secretKey(env), {
      algorithms: ["HS256"],
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE,
      requiredClaims: ["exp", "iat", "sub"],
    });
    // A stolen long-lived token would work for years: every token must say when it was issued and live at most the maximum.
    const max = maxTokenLifetime(env);
    const lifetime = payload.exp! - payload.iat!;
    if (lifetime > max) throw invalidToken(`token lifetime (exp - iat) is ${lifetime} s; the maximum is ${max} s: mint a shorter-lived token`);
    if (payload.iat! > Date.now() / 1000 + CLOCK_SKEW_SECONDS) throw invalidToken('token claim "iat" is in the future');
    const role = payload.role;
    if (typeof role !== "string" || !(roles as readonly string[]).includes(role)) {
      throw new ApiError("unauthorized", "token has no valid role claim");
    }
    return { id: payload.sub!, kind: "user", role: role as Role, scopes: [] };
  } catch (e) {
    if (e instanceof ApiError) throw e;
    const detail =
      e instanceof joseErrors.JWTExpired
        ? "token has expired"
        : e instanceof joseErrors.JWTClaimValidationFailed
          ? `token claim "${e.claim}" is invalid`
          : "token signature or format is invalid";
    throw invalidToken(detail);
  }
}

async function actorFromApiKey(env: Env, key: string): Promise<Actor> {
  const keyHash = await sha256Hex(key);
  const now = Date.now();
  let cached = apiKeyCache.get(keyHash);
  if (!cached || now - cached.fetchedAt > API_KEY_CACHE_MS) {
    const row = await dbOf(env).select().from(apiKeys).where(eq(apiKeys.keyHash, keyHash)).get();
    const actor: Actor | null =
      row && row.revokedAt === null ? { id: row.id, kind: "api_key", role: "api_key", scopes: row.scopes } : null;
    cached = { actor, fetchedAt: now };
    apiKeyCache.delete(keyHash);
    if (apiKeyCache.size >= API_KEY_CACHE_MAX) apiKeyCache.delete(apiKeyCache.keys().next().value!);
    apiKeyCache.set(keyHash, cached);
  }
  if (!cached.actor) throw new ApiError("unauthorized", "API key is unknown or revoked");
  return cached.actor;
}

/** The actor an `Authorization: Bearer …` header names (a JWT or an API key); throws a 401 ApiError otherwise. */
export async function actorFromAuthorization(env: Env, header: string): Promise<Actor> {
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) throw new ApiError("unauthorized", "Authorization header must be 'Bearer <token>'");
  const credential = match[1]!;
  return credential.startsWith(API_KEY_PREFIX) ? actorFromApiKey(env, credential) : actorFromJwt(env, credential);
}

/** Reads credentials when present; a bad credential is a 401 even on routes that would allow anonymity. */
export const authenticate = createMiddleware<HonoEnv>(async (c, next) => {
  const header = c.req.header("authorization");
  if (header) c.set("actor", await actorFromAuthorization(c.env, header));
  await next();
});

/** An API key holding `scope`, or a user token whose role is in `allowed`. */
export function permits(actor: Actor, scope: string, allowed: readonly Role[]): boolean {
  return actor.kind === "api_key" ? actor.scopes.includes(scope) : allowed.includes(actor.role as Role);
}

function requireActor(c: Context<HonoEnv>): Actor {
  const actor = c.get("actor");
  if (!actor) throw new ApiError("unauthorized", "missing bearer token", [], { "www-authenticate": "Bearer" });
  return actor;
}

/**
 * Route guard: a user token whose role is in `allowed`. Once the caller is authorized, the request runs under its
 * Idempotency-Key (if any): authorization always comes first, so a stored response is never replayed to a caller
 * who may not call the route now.
 */
export function requireRole(allowed: readonly Role[]) {
  return createMiddleware<HonoEnv>(async (c, next) => {
    const actor = requireActor(c);
    if (actor.kind !== "user" || !allowed.includes(actor.role as Role)) {
      throw new ApiError("forbidden", `this route needs one of the roles: ${allowed.join(", ")}`);
    }
    return idempotent(c, next);
  });
}

/** Route guard: an API key with `scope`, or a user token whose role is in `roles`; then idempotency, as above. */
export function requireScopeOrRole(scope: string, allowed: readonly Role[]) {
  return createMiddleware<HonoEnv>(async (c, next) => {
    const actor = requireActor(c);
    if (!permits(actor, scope, allowed)) throw new ApiError("forbidden", `this route needs the scope ${scope} or one of the roles: ${allowed.join(", ")}`);
    return idempotent(c, next);
  });
}

/** The authenticated actor; only call behind a guard. */
export function actorOf(c: Context<HonoEnv>): Actor {
  return requireActor(c);
}
