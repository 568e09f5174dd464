const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz";

/** A prefixed random id (`cus_…`), 20 characters of ~5.7 bits each: collisions are not a practical concern. */
export function newId(prefix: string, length = 20): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return `${prefix}_${out}`;
}

/** Crockford base32 (no I, L, O, U): its characters are in ASCII order, so ids compare as their numbers do. */
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_CHARS = 10; // 50 bits: epoch ms up to the year 10889
const RANDOM_CHARS = 16; // 80 bits
const RANDOM_SPACE = 1n << 80n;
/** The last random part used per millisecond in this isolate (a few recent ones: events of a frozen test clock interleave with live ones). */
const lastRandom = new Map<number, bigint>();
const REMEMBERED_MS = 64;

const base32 = (n: bigint, chars: number) => {
  let out = "";
  for (let i = 0; i < chars; i++) {
    out = CROCKFORD[Number(n & 31n)] + out;
    n >>= 5n;
  }
  return out;
};

function randomPart(): bigint {
  let n = 0n;
  for (const b of crypto.getRandomValues(new Uint8Array(10))) n = (n << 8n) | BigInt(b);
  return n;
}

/**
 * A prefixed id that sorts by `at` (ULID layout: 10 characters of epoch ms, then 16 of randomness). Ids made in one
 * isolate for the same millisecond increase (the random part of the previous one plus a random step), so ids sort in
 * creation order; across isolates, ids of the same millisecond sort in no particular order.
 */
export function sortableId(prefix: string, at: number): string {
  const ms = Math.max(0, Math.floor(at));
  const prev = lastRandom.get(ms);
  // A step of at most 2^32 keeps ~2^48 ids per millisecond before the (practically unreachable) wrap.
  let rand = prev === undefined ? randomPart() >> 1n : prev + 1n + (randomPart() & 0xffffffffn);
  if (rand >= RANDOM_SPACE) rand = RANDOM_SPACE - 1n;
  lastRandom.delete(ms);
  lastRandom.set(ms, rand);
  if (lastRandom.size > REMEMBERED_MS) lastRandom.delete(lastRandom.keys().next().value!);
  return `${prefix}_${base32(BigInt(ms), TIME_CHARS)}${base32(rand, RANDOM_CHARS)}`;
}

/** The millisecond a `sortableId` was made for; null for other ids (the random ids made before sortable ones). */
export function sortableIdTime(id: string): number | null {
  const body = id.slice(id.indexOf("_") + 1);
  if (body.length !== TIME_CHARS + RANDOM_CHARS || !/^[0-9A-HJKMNP-TV-Z]+$/.test(body)) return null;
  let n = 0;
  for (const ch of body.slice(0, TIME_CHARS)) n = n * 32 + CROCKFORD.indexOf(ch);
  return n;
}

/**
 * A `sortableId` for `at` whose random part is taken from `seed` (at least 10 bytes, e.g. a digest): the same
 * inputs give the same id, so a retried write of the same thing is a no-op on the primary key.
 */
export function sortableIdFrom(prefix: string, at: number, seed: Uint8Array): string {
  let n = 0n;
  for (const b of seed.slice(0, 10)) n = (n << 8n) | BigInt(b);
  return `${prefix}_${base32(BigInt(Math.max(0, Math.floor(at))), TIME_CHARS)}${base32(n, RANDOM_CHARS)}`;
}
