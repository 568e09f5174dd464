import { and, eq, isNull, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import type { Db } from "../../db/client";
import { builtOnce } from "../../db/prepared";
import { invoiceLinks, invoices } from "../../db/schema";
import { hostedLinkHash, hostedLinkToken } from "../../lib/hosted-link";
import { newId } from "../../lib/ids";

/** How long a hosted link lives unless the `documents` setting says otherwise (its `hostedLinkDays`). */
export const DEFAULT_LINK_DAYS = 90;

export type NewHostedLink = { id: string; token: string; expiresAt: number; statements: BatchItem<"sqlite">[] };

/**
 * A new hosted link for the invoice, as batch statements: every earlier live link revoked, the new row (the token's
 * hash, its expiry), and the token on the invoice row, so the invoice object shows it wherever it is serialized
 * (GET, lists, events) from the batch that made it on.
 */
export function newHostedLink(db: Db, secret: string, invoiceId: string, expiresAt: number, actorId: string, now: number): NewHostedLink {
  const id = newId("ilk");
  const token = hostedLinkToken(secret, id);
  return { id, token, expiresAt, statements: [...linkStatements(db, { id, invoiceId, tokenHash: hostedLinkHash(token), token, expiresAt, createdBy: actorId, now })] };
}

// Built by drizzle once per isolate: every finalization (so every renewal) makes a link.
const linkStatements = builtOnce((db: Db) => {
  const p = sql.placeholder;
  return [
    db.update(invoiceLinks).set({ revokedAt: sql`${p("now")}` }).where(and(eq(invoiceLinks.invoiceId, p("invoiceId")), isNull(invoiceLinks.revokedAt))),
    db.insert(invoiceLinks).values({ id: p("id"), invoiceId: p("invoiceId"), tokenHash: p("tokenHash"), expiresAt: p("expiresAt"), revokedAt: null, createdBy: p("createdBy"), createdAt: p("now") }),
    db.update(invoices).set({ hostedToken: sql`${p("token")}` }).where(eq(invoices.id, p("invoiceId"))),
  ] as const;
});

/** Revokes every live link of the invoice and takes the token off the invoice row. */
export function revokeHostedLinks(db: Db, invoiceId: string, now: number): BatchItem<"sqlite">[] {
  return [
    db.update(invoiceLinks).set({ revokedAt: now }).where(and(eq(invoiceLinks.invoiceId, invoiceId), isNull(invoiceLinks.revokedAt))),
    db.update(invoices).set({ hostedToken: null }).where(eq(invoices.id, invoiceId)),
  ];
}
