import { and, count, eq } from "drizzle-orm";
import type { Services } from "../../platform/services";
import { z } from "@hono/zod-openapi";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { newestFirstPage, type PageQuery } from "../../platform/pagination";
import { webhookEndpoints } from "../../db/schema";
import type { FieldError } from "../../platform/errors";
import { conflict, invalid, notFound, ok, type Outcome } from "../../platform/failure";
import { bytesToBase64, base64ToBytes, decrypt, encrypt } from "../../lib/crypto";
import { newId } from "../../lib/ids";
import { newWebhookSecret } from "../../lib/standard-webhooks";
import { iso } from "../../lib/time";
import { eventTypes } from "../../platform/events";
import { Metadata } from "../customers/schemas";
import { refuseBuiltin } from "./notifications";

export type EndpointRow = typeof webhookEndpoints.$inferSelect;

/** How long the previous secret keeps signing (as a second signature) after a rotation. */
export const PREVIOUS_SECRET_TTL_MS = 24 * 60 * 60 * 1000;

/** Event types an endpoint may subscribe to (`test.webhook` is sent only on request, to one endpoint). */
export const subscribableTypes = eventTypes.filter((t) => t !== "test.webhook");

export const WebhookEndpoint = z
  .object({
    id: z.string(),
    object: z.literal("webhook_endpoint"),
    url: z.string(),
    description: z.string().nullable(),
    enabledEvents: z.array(z.string()),
    metadata: z.record(z.string(), z.string()),
    disabled: z.boolean(),
    disabledReason: z.string().nullable(),
    previousSecretExpiresAt: z.string().nullable().openapi({ description: "Until then the previous secret signs too (after a rotation)" }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("WebhookEndpoint");

export const WebhookEndpointWithSecret = WebhookEndpoint.extend({
  secret: z.string().openapi({ description: "The signing secret (whsec_…); shown only in this response" }),
}).openapi("WebhookEndpointWithSecret");

const EnabledEvents = z
  .array(z.string().min(1).max(100))
  .min(1)
  .max(60)
  .openapi({ description: 'Event types, `prefix.*` patterns (e.g. "invoice.*"), or ["*"] for every type', example: ["invoice.paid", "customer.subscription.*"] });

export const CreateWebhookEndpoint = z.object({
  url: z.string().max(2048).openapi({ example: "https://example.com/billing-webhooks" }),
  enabledEvents: EnabledEvents,
  description: z.string().max(500).optional(),
  metadata: Metadata.optional(),
  disabled: z.boolean().optional(),
});

export const UpdateWebhookEndpoint = z.object({
  url: z.string().max(2048).optional(),
  enabledEvents: EnabledEvents.optional(),
  description: z.string().max(500).nullable().optional(),
  metadata: Metadata.optional(),
  disabled: z.boolean().optional(),
});

export function toEndpoint(r: EndpointRow): z.infer<typeof WebhookEndpoint> {
  return {
    id: r.id,
    object: "webhook_endpoint",
    url: r.url,
    description: r.description,
    enabledEvents: r.enabledEvents,
    metadata: r.metadata,
    disabled: r.disabled,
    disabledReason: r.disabledReason,
    previousSecretExpiresAt: iso(r.previousSecretExpiresAt),
    createdAt: iso(r.createdAt),
    updatedAt: iso(r.updatedAt),
  };
}

/** True when `type` is named by one of the patterns: an exact type, `prefix.*`, or `*`. */
export function matchesEvent(patterns: readonly string[], type: string): boolean {
  if (type === "test.webhook") return false;
  return patterns.some((p) => p === "*" || p === type || (p.endsWith(".*") && type.startsWith(p.slice(0, -1))));
}

function enabledEventErrors(patterns: readonly string[]): FieldError[] {
  const errors: FieldError[] = [];
  patterns.forEach((p, i) => {
    const known = p === "*" || (subscribableTypes as readonly string[]).includes(p) || (p.endsWith(".*") && subscribableTypes.some((t) => t.startsWith(p.slice(0, -1))));
    if (!known) errors.push({ path: `enabledEvents.${i}`, message: `unknown event type ${p} (see eventTypes; patterns like "invoice.*" or "*" are accepted)` });
  });
  return errors;
}

const PRIVATE_HOST = /^(localhost|127\.|10\.|192\.168\.|169\.254\.|172\.(1[6-9]|2\d|3[01])\.|0\.|\[::1\]|\[f[cd])/i;

/** https only in production (and never a private address there); development also takes http for local receivers. */
function urlErrors(url: string, environment: string): FieldError[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [{ path: "url", message: "is not an absolute URL" }];
  }
  const production = environment === "production";
  if (u.protocol !== "https:" && !(u.protocol === "http:" && !production)) {
    return [{ path: "url", message: production ? "must be https in production" : "must be http or https" }];
  }
  if (u.username || u.password) return [{ path: "url", message: "must not carry credentials" }];
  if (production && PRIVATE_HOST.test(u.hostname)) return [{ path: "url", message: "must be a public host in production" }];
  return [];
}

function validate(input: { url?: string | undefined; enabledEvents?: readonly string[] | undefined }, environment: string): Outcome<void, "unprocessable"> {
  const errors = [...(input.url !== undefined ? urlErrors(input.url, environment) : []), ...(input.enabledEvents ? enabledEventErrors(input.enabledEvents) : [])];
  return errors.length ? invalid(errors) : ok(undefined);
}

/** The stored form of a secret: base64 of an AES-256-GCM envelope under EXPORT_ENCRYPTION_KEY. */
async function sealSecret(env: Env, secret: string): Promise<string> {
  return bytesToBase64(await encrypt(env.EXPORT_ENCRYPTION_KEY, new TextEncoder().encode(secret)));
}

async function openSecret(env: Env, sealed: string): Promise<string> {
  const r = await decrypt(env.EXPORT_ENCRYPTION_KEY, base64ToBytes(sealed));
  if (!r.ok) throw new Error(`webhook signing secret cannot be decrypted (${r.error}): was EXPORT_ENCRYPTION_KEY changed?`);
  return new TextDecoder().decode(r.value);
}

/** The secrets that sign a delivery at `now`: the current one, and the previous one during its 24 h after a rotation. */
export async function signingSecrets(env: Env, row: EndpointRow, now: number): Promise<string[]> {
  const out = [await openSecret(env, row.secretCiphertext)];
  if (row.previousSecretCiphertext && (row.previousSecretExpiresAt ?? 0) > now) out.push(await openSecret(env, row.previousSecretCiphertext));
  return out;
}

export async function getEndpointRow(db: Db, id: string): Promise<Outcome<EndpointRow, "not_found">> {
  const row = await db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)).get();
  return row ? ok(row) : notFound("webhook endpoint", id);
}

/** Webhook endpoints an account may have (Stripe allows 16 per mode); keeps an event's fan-out inside one invocation. */
export const MAX_ENDPOINTS = 50;

export async function createEndpoint(s: Services, input: z.infer<typeof CreateWebhookEndpoint>): Promise<Outcome<z.infer<typeof WebhookEndpointWithSecret>, "unprocessable">> {
  const { env, db, audit: ctx } = s;
  const valid = validate(input, env.ENVIRONMENT);
  if (!valid.ok) return valid;
  // Each event fans out to every endpoint in one queue message's budget (delivery.ts fanOut): the count is bounded.
  const n = (await db.select({ n: count() }).from(webhookEndpoints).get())?.n ?? 0;
  if (n >= MAX_ENDPOINTS) {
    return invalid([{ path: "url", message: `at most ${MAX_ENDPOINTS} webhook endpoints; delete one first` }], `there are already ${n} webhook endpoints (at most ${MAX_ENDPOINTS}, the built-in notifications endpoint included); delete one first`);
  }
  const secret = newWebhookSecret();
  const row: EndpointRow = {
    id: newId("we"),
    url: input.url,
    description: input.description ?? null,
    enabledEvents: [...new Set(input.enabledEvents)],
    metadata: input.metadata ?? {},
    disabled: input.disabled ?? false,
    disabledReason: null,
    secretCiphertext: await sealSecret(env, secret),
    previousSecretCiphertext: null,
    previousSecretExpiresAt: null,
    failingSince: null,
    createdAt: ctx.now,
    updatedAt: ctx.now,
  };
  // The audit row has the endpoint as the API shows it: never the secret, nor its ciphertext.
  await commitWithAudit(db, [db.insert(webhookEndpoints).values(row)], [{ action: "webhook_endpoint.created", targetType: "webhook_endpoint", targetId: row.id, after: toEndpoint(row) }], ctx);
  return ok({ ...toEndpoint(row), secret });
}

export async function listEndpoints(db: Db, q: PageQuery) {
  return newestFirstPage(db, { table: webhookEndpoints, id: webhookEndpoints.id, createdAt: webhookEndpoints.createdAt }, q, [], toEndpoint);
}

export async function updateEndpoint(s: Services, id: string, input: z.infer<typeof UpdateWebhookEndpoint>): Promise<Outcome<z.infer<typeof WebhookEndpoint>, "not_found" | "conflict" | "unprocessable">> {
  const { env, db, audit: ctx } = s;
  const editable = refuseBuiltin(id);
  if (!editable.ok) return editable;
  const valid = validate(input, env.ENVIRONMENT);
  if (!valid.ok) return valid;
  const found = await getEndpointRow(db, id);
  if (!found.ok) return found;
  const before = found.value;
  const patch: Partial<EndpointRow> = { updatedAt: ctx.now };
  if (input.url !== undefined) patch.url = input.url;
  if (input.enabledEvents !== undefined) patch.enabledEvents = [...new Set(input.enabledEvents)];
  if (input.description !== undefined) patch.description = input.description;
  if (input.metadata !== undefined) patch.metadata = { ...before.metadata, ...input.metadata };
  if (input.disabled !== undefined && input.disabled !== before.disabled) {
    patch.disabled = input.disabled;
    patch.disabledReason = null;
    // Re-enabled: its failure streak starts afresh.
    if (!input.disabled) patch.failingSince = null;
  }
  const after: EndpointRow = { ...before, ...patch };
  try {
    await commitWithAudit(
      db,
      [db.update(webhookEndpoints).set(patch).where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.updatedAt, before.updatedAt))), assertChanged(db)],
      [{ action: "webhook_endpoint.updated", targetType: "webhook_endpoint", targetId: id, before: toEndpoint(before), after: toEndpoint(after) }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`webhook endpoint ${id} was changed concurrently; retry`);
    throw e;
  }
  return ok(toEndpoint(after));
}

export async function deleteEndpoint(s: Services, id: string): Promise<Outcome<{ id: string; object: "webhook_endpoint"; deleted: true }, "not_found" | "conflict">> {
  const { db, audit: ctx } = s;
  const editable = refuseBuiltin(id);
  if (!editable.ok) return editable;
  const found = await getEndpointRow(db, id);
  if (!found.ok) return found;
  const before = found.value;
  try {
    await commitWithAudit(
      db,
      [db.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id)), assertChanged(db)],
      [{ action: "webhook_endpoint.deleted", targetType: "webhook_endpoint", targetId: id, before: toEndpoint(before) }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return notFound("webhook endpoint", id); // deleted concurrently
    throw e;
  }
  return ok({ id, object: "webhook_endpoint" as const, deleted: true as const });
}

/** A new secret; the previous one keeps signing (second signature) for 24 h so receivers can switch without a gap. */
export async function rotateSecret(s: Services, id: string): Promise<Outcome<z.infer<typeof WebhookEndpointWithSecret>, "not_found" | "conflict">> {
  const { env, db, audit: ctx } = s;
  const editable = refuseBuiltin(id);
  if (!editable.ok) return editable;
  const found = await getEndpointRow(db, id);
  if (!found.ok) return found;
  const before = found.value;
  const secret = newWebhookSecret();
  const patch = {
    secretCiphertext: await sealSecret(env, secret),
    previousSecretCiphertext: before.secretCiphertext,
    previousSecretExpiresAt: ctx.now + PREVIOUS_SECRET_TTL_MS,
    updatedAt: ctx.now,
  };
  const after: EndpointRow = { ...before, ...patch };
  try {
    await commitWithAudit(
      db,
      [db.update(webhookEndpoints).set(patch).where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.secretCiphertext, before.secretCiphertext))), assertChanged(db)],
      [{ action: "webhook_endpoint.secret_rotated", targetType: "webhook_endpoint", targetId: id, after: { previousSecretExpiresAt: iso(patch.previousSecretExpiresAt) } }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return conflict(`the secret of webhook endpoint ${id} was rotated concurrently`);
    throw e;
  }
  return ok({ ...toEndpoint(after), secret });
}
