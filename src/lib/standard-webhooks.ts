/**
 * Standard Webhooks (standardwebhooks.com) signing, shared by customer notifications and webhook endpoints.
 * A secret is `whsec_` + base64 of the key bytes, as their libraries read it.
 */

/** The key bytes of a secret: base64 after an optional `whsec_`; null when it is not that. */
export function secretKeyBytes(secret: string): Uint8Array<ArrayBuffer> | null {
  const encoded = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret;
  try {
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    return bytes.length ? bytes : null;
  } catch {
    return null;
  }
}

/** A fresh secret: `whsec_` + base64 of 32 random bytes. */
export function newWebhookSecret(): string {
  return `whsec_${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))}`;
}

/**
 * One `v1,` signature: the base64 HMAC-SHA256 of `id.timestamp.body` under the secret's key. Receivers verify it
 * with any Standard Webhooks library.
 */
export async function signatureHeader(secret: string, id: string, timestampSeconds: number, body: string): Promise<string> {
  const bytes = secretKeyBytes(secret);
  if (!bytes) throw new Error("the signing secret is not whsec_ followed by base64");
  const key = await crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${id}.${timestampSeconds}.${body}`));
  return `v1,${btoa(String.fromCharCode(...new Uint8Array(mac)))}`;
}

/** The `webhook-signature` header for several secrets (e.g. during a rotation): space-separated, as the spec allows. */
export async function signaturesHeader(secrets: string[], id: string, timestampSeconds: number, body: string): Promise<string> {
  return (await Promise.all(secrets.map((s) => signatureHeader(s, id, timestampSeconds, body)))).join(" ");
}

/** The headers of one signed POST. */
export async function standardWebhookHeaders(secrets: string[], id: string, timestampSeconds: number, body: string, userAgent: string): Promise<Record<string, string>> {
  return {
    "content-type": "application/json",
    "user-agent": userAgent,
    "webhook-id": id,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": await signaturesHeader(secrets, id, timestampSeconds, body),
  };
}
