import { createHash, createHmac } from "node:crypto";

// Synchronous (node:crypto under nodejs_compat) so a link can be made inside a transition that builds its batch
// without awaiting: the finalizing batch writes the link with the invoice.

/** A hosted link's token: HMAC-SHA-256(secret, "invoice-link:" + link id), hex (256 bits). */
export function hostedLinkToken(secret: string, linkId: string): string {
  if (!secret) throw new Error("HOSTED_LINK_SECRET is not set: hosted invoice links cannot be issued");
  return createHmac("sha256", secret).update(`invoice-link:${linkId}`).digest("hex");
}

/** What invoice_links stores of a token: its SHA-256, hex. */
export const hostedLinkHash = (token: string): string => createHash("sha256").update(token).digest("hex");
