import { formatDecimal, parseDecimal } from "../../domain/decimal";
import type { FieldError } from "../../platform/errors";
import type { IngestEvent } from "./meter-types";

export const MAX_BATCH = 1000;
export const MAX_METADATA_KEYS = 50;
/**
 * An event's metadata as JSON, at most (characters): 50 keys of 500 characters fit with room to spare, and it keeps
 * a stored event small and the meter's chunk of rows (where metadata is escaped once more) far below the 2 MB that
 * Cloudflare allows one SQL value of a Durable Object (local workerd does not enforce it).
 */
export const MAX_METADATA_CHARS = 32 * 1024;
const MAX_ID = 200;

export type RawEvent = Record<string, unknown>;
export type ParsedEvent = IngestEvent & { subscriptionId: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
/** A whole number as formatDecimal writes it: no sign, no leading zeros, at most 16 digits (exact as a double too). */
const CANONICAL_WHOLE = /^(?:0|[1-9]\d{0,15})$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/** An event's time as epoch ms: an ISO-8601 date-time with a zone (what usage and CloudEvents accept), else NaN. */
export const eventTimeMs = (v: unknown): number => (typeof v === "string" && ISO.test(v) ? Date.parse(v) : NaN);

/**
 * A quantity as the meter stores it: the shortest exact decimal (formatDecimal's text), non-negative, at most 12
 * decimals. Whole quantities (most events) are their own text already, so they skip the BigInt round trip.
 */
export function quantityText(raw: number | string): { ok: true; text: string } | { ok: false; error: string; negative: boolean } {
  if (typeof raw === "number" ? Number.isSafeInteger(raw) && raw >= 0 : CANONICAL_WHOLE.test(raw)) return { ok: true, text: String(raw) };
  const d = parseDecimal(raw);
  if (!d.ok) return { ok: false, error: d.error, negative: false };
  if (d.value < 0n) return { ok: false, error: "must not be negative", negative: true };
  return { ok: true, text: formatDecimal(d.value) };
}

/**
 * Validates one event by hand (this is the hot path, and each event of a batch needs its own verdict).
 * The dedup key is the eventId, else the request's Idempotency-Key with the event's index, else random.
 */
export function parseEvent(raw: unknown, index: number, idempotencyKey: string | undefined, now: number, pathPrefix = ""): { ok: true; event: ParsedEvent } | { ok: false; errors: FieldError[] } {
  const at = (f: string) => `${pathPrefix}${f}`;
  if (!isObject(raw)) return { ok: false, errors: [{ path: at("(event)"), message: "must be an object" }] };
  const errors: FieldError[] = [];
  const { subscriptionId, meterId, quantity, timestamp, metadata, eventId } = raw;
  if (typeof subscriptionId !== "string" || subscriptionId.length === 0 || subscriptionId.length > MAX_ID) {
    errors.push({ path: at("subscriptionId"), message: "is required (a subscription id)" });
  }
  if (typeof meterId !== "string" || meterId.length === 0 || meterId.length > 64) errors.push({ path: at("meterId"), message: "is required (a meter id such as api_calls)" });
  let q = "";
  if (typeof quantity !== "number" && typeof quantity !== "string") errors.push({ path: at("quantity"), message: "is required (a non-negative number)" });
  else {
    const t = quantityText(quantity);
    if (t.ok) q = t.text;
    else errors.push({ path: at("quantity"), message: t.error });
  }
  // Without a timestamp the meter stamps the event with its own "now" (a test clock's time, if on one).
  let ts: number | null = null;
  if (timestamp !== undefined) {
    const parsed = eventTimeMs(timestamp);
    if (Number.isNaN(parsed)) errors.push({ path: at("timestamp"), message: "must be an ISO-8601 date-time with a zone, e.g. 2024-06-24T10:00:00Z" });
    else ts = parsed;
  }
  let meta: ParsedEvent["metadata"] = null;
  if (metadata !== undefined && metadata !== null) {
    if (!isObject(metadata)) errors.push({ path: at("metadata"), message: "must be an object" });
    else {
      const keys = Object.keys(metadata);
      if (keys.length > MAX_METADATA_KEYS) errors.push({ path: at("metadata"), message: `at most ${MAX_METADATA_KEYS} keys` });
      for (const k of keys) {
        const v = metadata[k];
        if (typeof v === "number") {
          // JSON reads an overflowing number (1e999) as Infinity, which no stored JSON can hold.
          if (!Number.isFinite(v)) errors.push({ path: at(`metadata.${k}`), message: "must be a finite number" });
        } else if (v !== null && typeof v !== "string" && typeof v !== "boolean") errors.push({ path: at(`metadata.${k}`), message: "must be a string, number, boolean or null" });
      }
      if (JSON.stringify(metadata).length > MAX_METADATA_CHARS) errors.push({ path: at("metadata"), message: `must be at most ${MAX_METADATA_CHARS} characters as JSON` });
      meta = metadata as ParsedEvent["metadata"];
    }
  }
  if (eventId !== undefined && (typeof eventId !== "string" || eventId.length === 0 || eventId.length > MAX_ID)) {
    errors.push({ path: at("eventId"), message: `must be a string of 1-${MAX_ID} characters` });
  }
  if (errors.length) return { ok: false, errors };
  const id = typeof eventId === "string" ? eventId : null;
  const eventKey = id !== null ? `id:${id}` : idempotencyKey ? `idem:${idempotencyKey}:${index}` : `gen:${crypto.randomUUID()}`;
  return {
    ok: true,
    event: { index, eventKey, eventId: id, subscriptionId: subscriptionId as string, meterId: meterId as string, quantity: q, timestamp: ts, metadata: meta },
  };
}
