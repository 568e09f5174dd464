import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, isNull } from "drizzle-orm";
import { access, actorOf, API_KEY_PREFIX, forgetApiKey, requireRole } from "../../http/auth";
import { jsonBody, jsonResponse, router, problems } from "../../http/openapi";
import { dbOf } from "../../db/client";
import { apiKeys } from "../../db/schema";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { auditCtx } from "../../http/context";
import { respond } from "../../http/problem";
import { conflict, notFound, ok, type Outcome } from "../../platform/failure";
import type { AuditContext } from "../../platform/audit";
import type { Db } from "../../db/client";
import { sha256Hex } from "../../lib/hash";
import { newId } from "../../lib/ids";
import { iso } from "../../lib/time";

/** What an API key may be given: usage ingestion and reads, and read-only access per area (for integrations). */
export const apiKeyScopes = ["usage:write", "usage:read", "customers:read", "plans:read", "subscriptions:read", "invoices:read", "payments:read", "refunds:read"] as const;

const ApiKey = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z.string(),
    scopes: z.array(z.string()),
    createdBy: z.string(),
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
  })
  .openapi("ApiKey");

const CreatedApiKey = ApiKey.extend({ key: z.string().openapi({ description: "The secret; shown only in this response" }) }).openapi("CreatedApiKey");

type Row = typeof apiKeys.$inferSelect;
const toApiKey = (r: Row) => ({ id: r.id, name: r.name, prefix: r.prefix, scopes: r.scopes, createdBy: r.createdBy, createdAt: iso(r.createdAt), revokedAt: iso(r.revokedAt) });

/** 32 random bytes, base64url: `bek_` + 43 characters. */
function generateKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return API_KEY_PREFIX + btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

const IdParam = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" } }) });

export const apiKeyRoutes = router()
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      tags: ["Admin"],
      operationId: "createApiKey",
      summary: "Create an API key",
      description: "An API key (bek_…) for usage ingestion or read-only integrations (per-area read scopes), stored only as a SHA-256 hash. The secret is in this response only: a repeat with the same Idempotency-Key answers 409 naming the key, never the secret.",
      middleware: [requireRole(access.admin)] as const,
      request: jsonBody(
        z.object({
          name: z.string().min(1).max(100),
          scopes: z.array(z.enum(apiKeyScopes)).min(1).default(["usage:write"]),
        }),
      ),
      responses: { 201: jsonResponse(CreatedApiKey, "The key, with its secret") },
    }),
    async (c) => {
      const { name, scopes } = c.req.valid("json");
      const ctx = auditCtx(c);
      const db = dbOf(c.env);
      const key = generateKey();
      const row: Row = {
        id: newId("key"),
        name,
        prefix: key.slice(0, 12),
        keyHash: await sha256Hex(key),
        scopes: [...new Set(scopes)],
        createdBy: actorOf(c).id,
        createdAt: ctx.now,
        revokedAt: null,
      };
      await commitWithAudit(db, [db.insert(apiKeys).values(row)], [{ action: "api_key.created", targetType: "api_key", targetId: row.id, after: toApiKey(row) }], ctx);
      // The plaintext is shown once: never stored for an Idempotency-Key replay (a repeat gets a 409 naming the key).
      c.set("secretShownOnce", { object: "API key", id: row.id });
      return c.json({ ...toApiKey(row), key }, 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      tags: ["Admin"],
      operationId: "listApiKeys",
      summary: "List API keys",
      description: "Never their secrets.",
      middleware: [requireRole(access.admin)] as const,
      request: { query: z.object({ includeRevoked: z.enum(["true", "false"]).default("false") }) },
      responses: { 200: jsonResponse(z.object({ data: z.array(ApiKey) }), "The keys") },
    }),
    async (c) => {
      const all = c.req.valid("query").includeRevoked === "true";
      const rows = await dbOf(c.env).select().from(apiKeys).where(all ? undefined : isNull(apiKeys.revokedAt)).orderBy(desc(apiKeys.createdAt)).all();
      return c.json({ data: rows.map(toApiKey) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}",
      tags: ["Admin"],
      operationId: "revokeApiKey",
      summary: "Revoke an API key",
      description: "Takes effect everywhere within 30 s (the per-isolate key cache).",
      middleware: [requireRole(access.admin)] as const,
      request: { params: IdParam },
      responses: { 200: jsonResponse(ApiKey, "The revoked key"), ...problems(404, 409) },
    }),
    async (c) => {
      const revoked = await revokeApiKey(dbOf(c.env), auditCtx(c), c.req.valid("param").id);
      if (revoked.ok) forgetApiKey(revoked.value.keyHash);
      return respond(c, revoked.ok ? ok(toApiKey(revoked.value)) : revoked, 200);
    },
  );

/** Revokes a live key (its row, revoked); a revoked key is a conflict, as is losing the race to another revoke. */
async function revokeApiKey(db: Db, ctx: AuditContext, id: string): Promise<Outcome<Row, "not_found" | "conflict">> {
  const row = await db.select().from(apiKeys).where(eq(apiKeys.id, id)).get();
  if (!row) return notFound("API key", id);
  if (row.revokedAt !== null) return conflict(`API key ${id} is already revoked`);
  try {
    await commitWithAudit(
      db,
      [db.update(apiKeys).set({ revokedAt: ctx.now }).where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt))), assertChanged(db)],
      [{ action: "api_key.revoked", targetType: "api_key", targetId: id }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`API key ${id} is already revoked`);
    throw e;
  }
  return ok({ ...row, revokedAt: ctx.now });
}
