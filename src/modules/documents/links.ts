import { and, desc, eq, gt, isNull } from "drizzle-orm";
import type { Services } from "../../platform/services";
import type { Db } from "../../db/client";
import { invoiceLinks, invoices } from "../../db/schema";
import { hostedLinkHash } from "../../lib/hosted-link";
import { newHostedLink, revokeHostedLinks } from "../invoices/hosted-link";
import { commitWithAudit } from "../../platform/audit";
import { DAY_MS } from "../../lib/time";

type LinkRow = typeof invoiceLinks.$inferSelect;

export type HostedLink = { id: string; url: string; pdfUrl: string; token: string; expiresAt: number };

/** Absolute when the `documents` setting names a public base URL, else root-relative. */
export const absolute = (base: string | null, path: string) => (base ? `${base.replace(/\/$/, "")}${path}` : path);

const toLink = (row: Pick<LinkRow, "id" | "expiresAt">, token: string, base: string | null): HostedLink => ({ id: row.id, token, url: absolute(base, `/i/${token}`), pdfUrl: absolute(base, `/i/${token}/pdf`), expiresAt: row.expiresAt });

/**
 * The invoice's live link (not revoked, not expired at `now`), or null. The token is the one on the invoice row
 * (HMAC-SHA-256(HOSTED_LINK_SECRET, "invoice-link:" + link id)); a link made before the row carried it has none to
 * show (its token still opens the page until it expires) and counts as absent.
 */
export async function activeLink(db: Db, invoiceId: string, now: number, base: string | null): Promise<HostedLink | null> {
  const [row, inv] = await Promise.all([
    db
      .select()
      .from(invoiceLinks)
      .where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt), gt(invoiceLinks.expiresAt, now)))
      .orderBy(desc(invoiceLinks.createdAt))
      .get(),
    db.select({ token: invoices.hostedToken }).from(invoices).where(eq(invoices.id, invoiceId)).get(),
  ]);
  if (!row || !inv?.token || hostedLinkHash(inv.token) !== row.tokenHash) return null;
  return toLink(row, inv.token, base);
}

/**
 * A new link for the invoice, valid `days`; every earlier live link of the invoice is revoked in the same batch
 * (so create and rotate are one operation), audited.
 */
export async function issueLink(s: Services, invoiceId: string, days: number, base: string | null): Promise<HostedLink> {
  const { env, db, audit: ctx } = s;
  const link = newHostedLink(db, env.HOSTED_LINK_SECRET, invoiceId, ctx.now + days * DAY_MS, ctx.actor.id, ctx.now);
  await commitWithAudit(db, link.statements, [{ action: "invoice.link_issued", targetType: "invoice", targetId: invoiceId, after: { linkId: link.id, expiresAt: new Date(link.expiresAt).toISOString() } }], ctx);
  return toLink(link, link.token, base);
}

/** The live link, or a new one (finalization and notifications call this: every open invoice has a link to pay). */
export async function ensureLink(s: Services, invoiceId: string, days: number, base: string | null): Promise<HostedLink> {
  return (await activeLink(s.db, invoiceId, s.audit.now, base)) ?? issueLink(s, invoiceId, days, base);
}

/** Revokes every live link of the invoice; returns how many. */
export async function revokeLinks(s: Services, invoiceId: string): Promise<number> {
  const { db, audit: ctx } = s;
  const live = await db.select({ id: invoiceLinks.id }).from(invoiceLinks).where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt))).all();
  if (!live.length) return 0;
  await commitWithAudit(db, revokeHostedLinks(db, invoiceId, ctx.now), [{ action: "invoice.link_revoked", targetType: "invoice", targetId: invoiceId, after: { linkIds: live.map((l) => l.id) } }], ctx);
  return live.length;
}

/** The invoice a token opens at `now`, or null for unknown, malformed, revoked or expired tokens alike. */
export async function invoiceForToken(db: Db, token: string, now: number): Promise<typeof invoices.$inferSelect | null> {
  if (!/^[0-9a-f]{64}$/.test(token)) return null;
  const link = await db.select().from(invoiceLinks).where(eq(invoiceLinks.tokenHash, hostedLinkHash(token))).get();
  if (!link || link.revokedAt !== null || link.expiresAt <= now) return null;
  return (await db.select().from(invoices).where(eq(invoices.id, link.invoiceId)).get()) ?? null;
}
