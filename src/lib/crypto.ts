import { err, ok, type Result } from "../domain/result";

/**
 * AES-256-GCM envelopes for exports and backups (Web Crypto only, so the same code runs in workerd and Node).
 *
 * Layout: one line of JSON header, `\n`, then the ciphertext with its 16-byte GCM tag appended:
 *   {"v":1,"alg":"AES-256-GCM","iv":"<12 bytes base64>","keyId":"<8 hex>"}\n<ciphertext‖tag>
 * The header bytes are the GCM additional data, so editing the header fails authentication like editing the
 * ciphertext does. `keyId` is the first 8 hex digits of SHA-256(raw key): it names the key without revealing it.
 * scripts/restore-backup.mjs reads the same layout; change both together.
 */
export const ENVELOPE_ALG = "AES-256-GCM";
export type EnvelopeHeader = { v: 1; alg: typeof ENVELOPE_ALG; iv: string; keyId: string };
export type DecryptError = "not_an_envelope" | "unsupported_algorithm" | "wrong_key" | "authentication_failed";

const NEWLINE = 0x0a;
const MAX_HEADER_BYTES = 512;

export function base64ToBytes(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64.trim());
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function bytesToBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The same bytes over a plain ArrayBuffer (what Web Crypto takes); copies only a shared buffer. */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

export async function sha256Bytes(bytes: Uint8Array): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", own(bytes)));
}

/** The raw key; a key that is not 32 bytes of base64 is a deployment mistake, so it throws. */
function rawKey(keyB64: string): Uint8Array<ArrayBuffer> {
  let raw: Uint8Array<ArrayBuffer>;
  try {
    raw = base64ToBytes(keyB64);
  } catch {
    throw new Error("EXPORT_ENCRYPTION_KEY is not valid base64");
  }
  if (raw.length !== 32) throw new Error(`EXPORT_ENCRYPTION_KEY must be 32 bytes (AES-256), got ${raw.length}`);
  return raw;
}

/** First 8 hex digits of SHA-256 of the raw key. */
export async function keyIdOf(keyB64: string): Promise<string> {
  return (await sha256Bytes(rawKey(keyB64))).slice(0, 8);
}

const importKey = (keyB64: string) => crypto.subtle.importKey("raw", rawKey(keyB64), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);

/** Encrypts `plaintext` under a fresh random 96-bit IV and returns the envelope bytes. */
export async function encrypt(keyB64: string, plaintext: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const header: EnvelopeHeader = { v: 1, alg: ENVELOPE_ALG, iv: bytesToBase64(iv), keyId: await keyIdOf(keyB64) };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: headerBytes }, await importKey(keyB64), own(plaintext)));
  const out = new Uint8Array(headerBytes.length + 1 + ciphertext.length);
  out.set(headerBytes, 0);
  out[headerBytes.length] = NEWLINE;
  out.set(ciphertext, headerBytes.length + 1);
  return out;
}

/** Splits an envelope into its header (as bytes and parsed) and ciphertext; null when it is not one. */
export function parseEnvelope(bytes: Uint8Array): { header: EnvelopeHeader; headerBytes: Uint8Array<ArrayBuffer>; ciphertext: Uint8Array<ArrayBuffer> } | null {
  const nl = bytes.subarray(0, MAX_HEADER_BYTES).indexOf(NEWLINE);
  if (nl <= 0) return null;
  const headerBytes = own(bytes.slice(0, nl));
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch {
    return null;
  }
  const h = header as Partial<EnvelopeHeader> | null;
  if (!h || typeof h !== "object" || h.v !== 1 || typeof h.alg !== "string" || typeof h.iv !== "string" || typeof h.keyId !== "string") return null;
  return { header: h as EnvelopeHeader, headerBytes, ciphertext: own(bytes.slice(nl + 1)) };
}

/** Opens an envelope; a flipped bit anywhere (header, IV, ciphertext, tag) or another key is an error value. */
export async function decrypt(keyB64: string, envelope: Uint8Array): Promise<Result<Uint8Array<ArrayBuffer>, DecryptError>> {
  const parsed = parseEnvelope(envelope);
  if (!parsed) return err("not_an_envelope");
  if (parsed.header.alg !== ENVELOPE_ALG) return err("unsupported_algorithm");
  if (parsed.header.keyId !== (await keyIdOf(keyB64))) return err("wrong_key");
  let iv: Uint8Array<ArrayBuffer>;
  try {
    iv = base64ToBytes(parsed.header.iv);
  } catch {
    return err("not_an_envelope");
  }
  try {
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: parsed.headerBytes }, await importKey(keyB64), parsed.ciphertext);
    return ok(new Uint8Array(plain));
  } catch {
    return err("authentication_failed");
  }
}
