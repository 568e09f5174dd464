import { describe, expect, it } from "vitest";
import { bytesToBase64, decrypt, encrypt, keyIdOf, parseEnvelope, sha256Bytes } from "../../../src/lib/crypto";

const newKey = () => bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
const text = (s: string) => new TextEncoder().encode(s);

describe("AES-256-GCM envelopes", () => {
  const key = newKey();

  it("round-trips, with a readable header naming the algorithm, IV and key id", async () => {
    const plain = text("audit rows, 42 of them ✓");
    const sealed = await encrypt(key, plain);
    const env = parseEnvelope(sealed)!;
    expect(env.header).toMatchObject({ v: 1, alg: "AES-256-GCM", keyId: await keyIdOf(key) });
    expect(atob(env.header.iv)).toHaveLength(12);
    expect(env.ciphertext.length).toBe(plain.length + 16);
    const opened = await decrypt(key, sealed);
    expect(opened.ok && new TextDecoder().decode(opened.value)).toBe("audit rows, 42 of them ✓");
  });

  it("round-trips empty and large payloads; every encryption uses a fresh IV", async () => {
    for (const size of [0, 1, 100_000, 3_000_000]) {
      const plain = new Uint8Array(size).map((_, i) => i % 251);
      const opened = await decrypt(key, await encrypt(key, plain));
      expect(opened.ok && (await sha256Bytes(opened.value))).toBe(await sha256Bytes(plain));
    }
    const a = parseEnvelope(await encrypt(key, text("same")))!;
    const b = parseEnvelope(await encrypt(key, text("same")))!;
    expect(a.header.iv).not.toBe(b.header.iv);
  });

  it("detects a flipped bit in the ciphertext, the tag, the IV or the header", async () => {
    const sealed = await encrypt(key, text("refund re_123 approved"));
    const headerEnd = sealed.indexOf(0x0a);
    const positions = [headerEnd + 1, headerEnd + 5, sealed.length - 1, sealed.length - 16];
    for (const pos of positions) {
      const t = sealed.slice();
      t[pos]! ^= 0x01;
      expect(await decrypt(key, t)).toEqual({ ok: false, error: "authentication_failed" });
    }
    // Another IV in the header (still valid base64 of 12 bytes): authentication fails.
    const h = parseEnvelope(sealed)!.header;
    const otherIv = bytesToBase64(crypto.getRandomValues(new Uint8Array(12)));
    const swapped = new Uint8Array([...text(JSON.stringify({ ...h, iv: otherIv })), 0x0a, ...parseEnvelope(sealed)!.ciphertext]);
    expect(await decrypt(key, swapped)).toEqual({ ok: false, error: "authentication_failed" });
    // The header is authenticated too: re-serialising it (same fields, other spacing) fails.
    const respaced = new Uint8Array([...text(JSON.stringify(h, null, 1).replaceAll("\n", "")), 0x0a, ...parseEnvelope(sealed)!.ciphertext]);
    expect(await decrypt(key, respaced)).toEqual({ ok: false, error: "authentication_failed" });
    // Truncation.
    expect((await decrypt(key, sealed.slice(0, sealed.length - 1))).ok).toBe(false);
  });

  it("a wrong key fails, whether or not the header's key id is forged to match", async () => {
    const sealed = await encrypt(key, text("secret"));
    const other = newKey();
    expect(await decrypt(other, sealed)).toEqual({ ok: false, error: "wrong_key" });
    const h = parseEnvelope(sealed)!;
    const forged = new Uint8Array([...text(JSON.stringify({ ...h.header, keyId: await keyIdOf(other) })), 0x0a, ...h.ciphertext]);
    expect(await decrypt(other, forged)).toEqual({ ok: false, error: "authentication_failed" });
  });

  it("refuses what is not an envelope, and keys that are not 32 bytes of base64", async () => {
    expect(await decrypt(key, text('{"table":"customers","rows":[]}'))).toEqual({ ok: false, error: "not_an_envelope" });
    expect(await decrypt(key, new Uint8Array(0))).toEqual({ ok: false, error: "not_an_envelope" });
    const sealed = await encrypt(key, text("x"));
    const h = parseEnvelope(sealed)!;
    const otherAlg = new Uint8Array([...text(JSON.stringify({ ...h.header, alg: "AES-128-CBC" })), 0x0a, ...h.ciphertext]);
    expect(await decrypt(key, otherAlg)).toEqual({ ok: false, error: "unsupported_algorithm" });
    await expect(encrypt(bytesToBase64(new Uint8Array(16)), text("x"))).rejects.toThrow(/32 bytes/);
    await expect(keyIdOf("not base64!!")).rejects.toThrow(/base64/);
  });

  it("key id is the first 8 hex digits of SHA-256 of the raw key", async () => {
    const raw = new Uint8Array(32).fill(7);
    expect(await keyIdOf(bytesToBase64(raw))).toBe((await sha256Bytes(raw)).slice(0, 8));
    expect(await keyIdOf(bytesToBase64(raw))).toMatch(/^[0-9a-f]{8}$/);
  });
});
