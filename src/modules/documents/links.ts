import { and, desc, eq, gt, isNull } from "drizzle-orm";
import type { Db } from "../../db/client";
import { invoiceLinks, invoices } from "../../db/schema";
import { sha256Bytes, toHex } from "../../lib/crypto";
import { newId } from "../../lib/ids";
import { commitWithAudit, type AuditContext } from "../../platform/audit";
import { DAY_MS } from "../../lib/time";

type LinkRow = typeof invoiceLinks.$inferSelect;

/**
 * The link's token: HMAC-SHA-256(JWT_SECRET, "invoice-link:" + link id) in hex (256 bits). D1 keeps only its
 * SHA-256, so a copy of the database cannot open any invoice; the server recomputes the token to show the URL.
 */
async function tokenOf(env: Env, linkId: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(env.JWT_SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return toHex(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`invoice-link:${linkId}`)));
}

const hashOf = (token: string) => sha256Bytes(new TextEncoder().encode(token));

export type HostedLink = { id: string; url: string; pdfUrl: string; token: string; expiresAt: number };

/** Absolute when the `documents` setting names a public base URL, else root-relative. */
export const absolute = (base: string | null, path: string) => (base ? `${base.replace(/\/$/, "")}${path}` : path);

const toLink = async (env: Env, row: LinkRow, base: string | null): Promise<HostedLink> => {
  const token = await tokenOf(env, row.id);
  return { id: row.id, token, url: absolute(base, `/i/${token}`), pdfUrl: absolute(base, `/i/${token}/pdf`), expiresAt: row.expiresAt };
};

/** The invoice's live link (not revoked, not expired at `now`), or null. */
export async function activeLink(env: Env, db: Db, invoiceId: string, now: number, base: string | null): Promise<HostedLink | null> {
  const row = await db
    .select()
    .from(invoiceLinks)
    .where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt), gt(invoiceLinks.expiresAt, now)))
    .orderBy(desc(invoiceLinks.createdAt))
    .get();
  return row ? toLink(env, row, base) : null;
}

/**
 * A new link for the invoice, valid `days`; every earlier live link of the invoice is revoked in the same batch
 * (so create and rotate are one operation), audited.
 */
export async function issueLink(env: Env, db: Db, invoiceId: string, days: number, ctx: AuditContext, base: string | null): Promise<HostedLink> {
  const id = newId("ilk");
  const token = await tokenOf(env, id);
  const row: LinkRow = { id, invoiceId, tokenHash: await hashOf(token), expiresAt: ctx.now + days * DAY_MS, revokedAt: null, createdBy: ctx.actor.id, createdAt: ctx.now };
  await commitWithAudit(
    db,
    [db.update(invoiceLinks).set({ revokedAt: ctx.now }).where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt))), db.insert(invoiceLinks).values(row)],
    [{ action: "invoice.link_issued", targetType: "invoice", targetId: invoiceId, after: { linkId: id, expiresAt: new Date(row.expiresAt).toISOString() } }],
    ctx,
  );
  return toLink(env, row, base);
}

/** The live link, or a new one (finalization and notifications call this: every open invoice has a link to pay). */
export async function ensureLink(env: Env, db: Db, invoiceId: string, days: number, ctx: AuditContext, base: string | null): Promise<HostedLink> {
  return (await activeLink(env, db, invoiceId, ctx.now, base)) ?? issueLink(env, db, invoiceId, days, ctx, base);
}

/** Revokes every live link of the invoice; returns how many. */
export async function revokeLinks(db: Db, invoiceId: string, ctx: AuditContext): Promise<number> {
  const live = await db.select({ id: invoiceLinks.id }).from(invoiceLinks).where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt))).all();
  if (!live.length) return 0;
  await commitWithAudit(
    db,
    [db.update(invoiceLinks).set({ revokedAt: ctx.now }).where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt)))],
    [{ action: "invoice.link_revoked", targetType: "invoice", targetId: invoiceId, after: { linkIds: live.map((l) => l.id) } }],
    ctx,
  );
  return live.length;
}

/** The invoice a token opens at `now`, or null for unknown, malformed, revoked or expired tokens alike. */
export async function invoiceForToken(db: Db, token: string, now: number): Promise<typeof invoices.$inferSelect | null> {
  if (!/^[0-9a-f]{64}$/.test(token)) return null;
  const link = await db.select().from(invoiceLinks).where(eq(invoiceLinks.tokenHash, await hashOf(token))).get();
  if (!link || link.revokedAt !== null || link.expiresAt <= now) return null;
  return (await db.select().from(invoices).where(eq(invoices.id, link.invoiceId)).get()) ?? null;
}
