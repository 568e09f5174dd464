import { and, eq, lt, or } from "drizzle-orm";
import type { Context, Next } from "hono";
import type { HonoEnv } from "../env";
import { dbOf } from "../db/client";
import { idempotencyKeys } from "../db/schema";
import { sha256Hex } from "../lib/hash";
import { ApiError, problemResponse } from "./problem";

export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;
// A request that crashed mid-way releases its key after this long, so a retry can proceed.
const LOCK_MS = 60_000;
export const MAX_KEY_LENGTH = 255;

/**
 * Responses worth replaying: the endpoint ran and decided. Refusals that changed nothing (401, 403, 409, 423, 429)
 * and 5xx are not stored, so a retry with the same key is decided afresh, unless the request's change committed.
 */
function storable(status: number): boolean {
  return (status >= 200 && status < 300) || (status >= 400 && status < 500 && ![401, 403, 409, 423, 429].includes(status));
}

/** What a repeat of a request whose response carried a secret gets instead of it: a 409 naming what was created. */
function secretReplay(c: Context<HonoEnv>, secret: { object: string; id: string }): Response {
  return problemResponse(
    c,
    new ApiError("conflict", `${secret.object} ${secret.id} was created by this request; its secret is shown only once. Create another ${secret.object} if the secret was lost.`),
  );
}

const STATE_CHANGING = ["POST", "PUT", "PATCH", "DELETE"];
/** Ingestion routes (native and drop-in): each event is deduplicated by its meter, so no stored response is needed. */
const METER_DEDUPED_PATHS: ReadonlySet<string> = new Set(["/api/v1/usage", "/openmeter/api/v1/events", "/v1/billing/meter_events", "/v2/billing/meter_event_stream"]);

/**
 * Stripe-style idempotency for state-changing requests: same key and body → the stored response with
 * `Idempotent-Replayed: true`; same key, other body → 422; same key still running → 409. Keys are
 * scoped to the caller and kept 24 h (the daily cron deletes expired ones).
 *
 * Not a middleware of its own: the route guards (`requireRole`, `requireScopeOrRole`) run it once the caller is
 * authorized, so a stored response is only ever replayed to a caller who may call the route now.
 */
export async function idempotent(c: Context<HonoEnv>, next: Next): Promise<Response | void> {
  const key = c.req.header("idempotency-key");
  const actor = c.get("actor");
  if (!key || !actor || !STATE_CHANGING.includes(c.req.method)) return next();
  // Usage ingestion dedupes per event inside its meter (the hot path never touches D1).
  if (METER_DEDUPED_PATHS.has(c.req.path)) return next();
  // Already claimed for this request (a route with two guards).
  if (c.get("idempotencyKey")) return next();
  if (key.length > MAX_KEY_LENGTH) {
    throw new ApiError("bad_request", `Idempotency-Key must be at most ${MAX_KEY_LENGTH} characters`, [
      { path: "Idempotency-Key", message: "too long" },
    ]);
  }
  const db = dbOf(c.env);
  const scopedKey = `${actor.id}:${key}`;
  const body = await c.req.text();
  const requestHash = await sha256Hex(`${c.req.method} ${c.req.path}${new URL(c.req.url).search}\n${body}`);
  const now = Date.now();

  const claimed = await db
    .insert(idempotencyKeys)
    .values({ scopedKey, requestHash, state: "in_flight", lockedUntil: now + LOCK_MS, createdAt: now, expiresAt: now + IDEMPOTENCY_RETENTION_MS })
    .onConflictDoUpdate({
      target: idempotencyKeys.scopedKey,
      // Take over an expired record, or an abandoned in-flight one with the same request.
      set: { requestHash, state: "in_flight", lockedUntil: now + LOCK_MS, createdAt: now, expiresAt: now + IDEMPOTENCY_RETENTION_MS, responseStatus: null, responseBody: null },
      setWhere: or(
        lt(idempotencyKeys.expiresAt, now),
        and(eq(idempotencyKeys.state, "in_flight"), lt(idempotencyKeys.lockedUntil, now), eq(idempotencyKeys.requestHash, requestHash)),
      ),
    })
    .returning({ createdAt: idempotencyKeys.createdAt })
    .get();

  if (!claimed) {
    const row = await db.select().from(idempotencyKeys).where(eq(idempotencyKeys.scopedKey, scopedKey)).get();
    if (!row) throw new ApiError("conflict", "Idempotency-Key is being reused concurrently; retry");
    if (row.requestHash !== requestHash) {
      throw new ApiError("unprocessable", "Idempotency-Key was already used with a different request body or path", [
        { path: "Idempotency-Key", message: "reused with different parameters" },
      ]);
    }
    if (row.state === "committed" && row.lockedUntil < now) {
      // The first request applied its change and then died before its response was stored: never apply it twice.
      throw new ApiError("conflict", "the request with this Idempotency-Key was applied, but its response was lost; fetch the object instead of retrying");
    }
    if (row.state !== "done") {
      throw new ApiError("conflict", "a request with this Idempotency-Key is still being processed", [], { "retry-after": "1" });
    }
    return new Response(row.responseBody, {
      status: row.responseStatus ?? 200,
      headers: {
        "content-type": row.responseContentType ?? "application/json",
        "idempotent-replayed": "true",
        "x-request-id": c.get("requestId"),
      },
    });
  }

  c.set("idempotencyKey", scopedKey);
  let status = 500;
  try {
    await next();
    status = c.res.status;
  } finally {
    const committed = (await db.select({ state: idempotencyKeys.state }).from(idempotencyKeys).where(eq(idempotencyKeys.scopedKey, scopedKey)).get())?.state === "committed";
    // A response is kept when the endpoint decided, or whenever its change was committed (even if a later step failed).
    if ((storable(status) || committed) && c.res) {
      const secret = c.get("secretShownOnce");
      // A response carrying a secret is never written to D1: its repeat is told what was created, not the secret.
      const stored = secret ? secretReplay(c, secret) : c.res.clone();
      await db
        .update(idempotencyKeys)
        .set({ state: "done", responseStatus: stored.status, responseBody: await stored.text(), responseContentType: stored.headers.get("content-type") })
        .where(eq(idempotencyKeys.scopedKey, scopedKey));
    } else {
      await db.delete(idempotencyKeys).where(eq(idempotencyKeys.scopedKey, scopedKey));
    }
  }
}

/** Daily cron: forget keys past their retention. */
export async function purgeExpiredIdempotencyKeys(env: Env, now: number): Promise<number> {
  const res = await dbOf(env).delete(idempotencyKeys).where(lt(idempotencyKeys.expiresAt, now)).run();
  return res.meta.changes ?? 0;
}
