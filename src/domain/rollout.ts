/** A feature flag as stored: on/off, an optional percentage rollout and optional targeting criteria. */
export type FeatureFlag = {
  name: string;
  enabled: boolean;
  /** Integer 0-100; absent means everyone who matches the criteria. */
  percentage?: number | undefined;
  /** Every key must equal the subject's attribute of the same name. */
  criteria?: Readonly<Record<string, string>> | undefined;
};

export type Subject = { id: string; attributes?: Readonly<Record<string, string>> | undefined };

export type FlagDecision =
  | { enabled: true; reason: "enabled" | "in_rollout"; detail: string; bucket?: number }
  | { enabled: false; reason: "disabled" | "criteria_mismatch" | "out_of_rollout"; detail: string; bucket?: number };

const encoder = new TextEncoder();

/**
 * FNV-1a (32 bit) over the UTF-8 bytes, then the murmur3 finalizer. FNV-1a alone keeps its low bits as a plain
 * parity of the input's low bits (multiplying by an odd prime preserves bit 0), which `mod 100` would expose;
 * the finalizer spreads every input bit over the whole word.
 */
export function stableHash32(input: string): number {
  let h = 0x811c9dc5;
  for (const byte of encoder.encode(input)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The subject's bucket (0-99) for flag `name`: hash of `${name}:${subjectId}` mod 100. The flag name is part of
 * the input, so the first 10 % of one flag are not the first 10 % of every flag.
 */
export function rolloutBucket(name: string, subjectId: string): number {
  return stableHash32(`${name}:${subjectId}`) % 100;
}

/**
 * True when the subject falls inside the flag's percentage (bucket < percentage). Stable per subject and monotonic:
 * raising the percentage only adds subjects. No percentage means everyone.
 */
export function inRollout(flag: Pick<FeatureFlag, "name" | "percentage">, subjectId: string): boolean {
  if (flag.percentage === undefined) return true;
  return rolloutBucket(flag.name, subjectId) < flag.percentage;
}

/** The first criterion the attributes fail (a missing attribute fails), or null when all match. */
export function criteriaMismatch(criteria: Readonly<Record<string, string>> | undefined, attributes: Readonly<Record<string, string>> = {}): { key: string; expected: string; actual: string | null } | null {
  for (const [key, expected] of Object.entries(criteria ?? {})) {
    const actual = Object.hasOwn(attributes, key) ? attributes[key]! : null;
    if (actual !== expected) return { key, expected, actual };
  }
  return null;
}

/** The flag's answer for one subject: off when disabled, then criteria (all must match), then the percentage. */
export function evaluateFlag(flag: FeatureFlag, subject: Subject): FlagDecision {
  if (!flag.enabled) return { enabled: false, reason: "disabled", detail: `${flag.name} is disabled` };
  const miss = criteriaMismatch(flag.criteria, subject.attributes);
  if (miss) {
    const actual = miss.actual === null ? "missing" : JSON.stringify(miss.actual);
    return { enabled: false, reason: "criteria_mismatch", detail: `${miss.key} must be ${JSON.stringify(miss.expected)} (subject: ${actual})` };
  }
  if (flag.percentage === undefined) return { enabled: true, reason: "enabled", detail: `${flag.name} is enabled for every matching subject` };
  const bucket = rolloutBucket(flag.name, subject.id);
  return bucket < flag.percentage
    ? { enabled: true, reason: "in_rollout", detail: `bucket ${bucket} < ${flag.percentage} %`, bucket }
    : { enabled: false, reason: "out_of_rollout", detail: `bucket ${bucket} ≥ ${flag.percentage} %`, bucket };
}
