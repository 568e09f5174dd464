import { z } from "@hono/zod-openapi";
import type { Services } from "../../platform/services";
import { asc, eq, like } from "drizzle-orm";
import type { Db } from "../../db/client";
import { commitWithAudit } from "../../platform/audit";
import { assertChanged, isAssertionFailure } from "../../db/assert";
import { settings } from "../../db/schema";
import { evaluateFlag, type FeatureFlag, type FlagDecision, type Subject } from "../../domain/rollout";
import { notFound, ok, type Outcome } from "../../platform/failure";
import { iso } from "../../lib/time";
import { closedObject } from "../../lib/schema";
import { putSetting } from "../../platform/settings";

/** Flags are settings rows `features.<name>`. */
export const FEATURE_PREFIX = "features.";
export const featureKey = (name: string) => `${FEATURE_PREFIX}${name}`;

export const FlagName = z
  .string()
  .max(64)
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, "lowercase letters and digits separated by single dashes, e.g. usage-billing")
  .openapi({ example: "usage-billing" });

const CRITERIA_KEY = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const MAX_CRITERIA = 20;

// Values are checked in the refinement, not by the record, so every bad entry is reported at once with its path.
const Criteria = z
  .record(z.string(), z.unknown())
  .superRefine((criteria, ctx) => {
    const entries = Object.entries(criteria);
    if (entries.length > MAX_CRITERIA) ctx.addIssue({ code: "custom", message: `at most ${MAX_CRITERIA} criteria` });
    for (const [key, value] of entries) {
      if (!CRITERIA_KEY.test(key)) ctx.addIssue({ code: "custom", path: [key], message: "criterion names start with a letter and use letters, digits, '_', '.', '-' (at most 64)" });
      // The evaluate route reads the subject id from this query parameter; a criterion of that name could never be told apart.
      else if (key === "subjectId") ctx.addIssue({ code: "custom", path: [key], message: "subjectId is the subject, not an attribute" });
      if (typeof value !== "string" || value.length === 0 || value.length > 200) ctx.addIssue({ code: "custom", path: [key], message: "must be a string of 1-200 characters" });
    }
  })
  .transform((criteria) => criteria as Record<string, string>)
  .openapi({
    type: "object",
    additionalProperties: { type: "string" },
    description: "Flat string map; every entry must equal the subject's attribute of the same name",
    example: { segment: "premium" },
  });

export const FlagInput = closedObject({
  enabled: z.boolean(),
  percentage: z.number().int().min(0).max(100).optional().openapi({ description: "Share of matching subjects (0-100) that get the feature, by a stable hash of flag name and subject id" }),
  criteria: Criteria.optional(),
}).openapi("FeatureFlagInput");
export type FlagInput = z.infer<typeof FlagInput>;

/** What a row holds; read leniently so a hand-edited row is reported instead of breaking the list. */
const StoredFlag = z.object({ enabled: z.boolean(), percentage: z.number().int().min(0).max(100).optional(), criteria: z.record(z.string(), z.string()).optional() });
type StoredFlag = z.infer<typeof StoredFlag>;

export const FeatureFlagView = z
  .object({
    name: z.string(),
    enabled: z.boolean(),
    percentage: z.number().int().nullable(),
    criteria: z.record(z.string(), z.string()),
    updatedAt: z.string(),
    updatedBy: z.string(),
    invalid: z.string().optional().openapi({ description: "Set when the stored value is malformed; such a flag evaluates as off" }),
  })
  .openapi("FeatureFlag");
export type FeatureFlagView = z.infer<typeof FeatureFlagView>;

export const FlagEvaluation = z
  .object({
    enabled: z.boolean(),
    reason: z.enum(["enabled", "in_rollout", "disabled", "criteria_mismatch", "out_of_rollout", "invalid_flag"]),
    detail: z.string(),
    bucket: z.number().int().optional().openapi({ description: "The subject's bucket 0-99 when the flag has a percentage" }),
  })
  .openapi("FeatureFlagEvaluation");

type Row = { key: string; value: unknown; updatedAt: number; updatedBy: string };
type Parsed = { flag: FeatureFlag } | { invalid: string };

function parseRow(name: string, value: unknown): Parsed {
  const p = StoredFlag.safeParse(value);
  if (!p.success) return { invalid: `stored value is malformed: ${p.error.issues.map((i) => `${i.path.join(".") || "(value)"}: ${i.message}`).join("; ")}` };
  return { flag: { name, ...p.data } };
}

function toView(row: Row): FeatureFlagView {
  const name = row.key.slice(FEATURE_PREFIX.length);
  const parsed = parseRow(name, row.value);
  const base = { name, updatedAt: iso(row.updatedAt), updatedBy: row.updatedBy };
  if ("invalid" in parsed) return { ...base, enabled: false, percentage: null, criteria: {}, invalid: parsed.invalid };
  return { ...base, enabled: parsed.flag.enabled, percentage: parsed.flag.percentage ?? null, criteria: { ...parsed.flag.criteria } };
}

const rowOf = (db: Db, name: string) => db.select().from(settings).where(eq(settings.key, featureKey(name))).get();

export async function listFlags(db: Db): Promise<FeatureFlagView[]> {
  const rows = await db.select().from(settings).where(like(settings.key, `${FEATURE_PREFIX}%`)).orderBy(asc(settings.key)).all();
  return rows.map(toView);
}

export async function getFlag(db: Db, name: string): Promise<Outcome<FeatureFlagView, "not_found">> {
  const row = await rowOf(db, name);
  return row ? ok(toView(row)) : notFound("feature flag", name);
}

/** Creates or replaces the flag (audited). Other isolates see it within their 30 s cache lifetime. */
export async function putFlag(s: Services, name: string, input: FlagInput): Promise<FeatureFlagView> {
  const { db, audit: ctx } = s;
  const stored: StoredFlag = {
    enabled: input.enabled,
    ...(input.percentage === undefined ? {} : { percentage: input.percentage }),
    ...(input.criteria === undefined || Object.keys(input.criteria).length === 0 ? {} : { criteria: input.criteria }),
  };
  await putSetting(db, featureKey(name), stored, ctx);
  flagCache.delete(name);
  return toView({ key: featureKey(name), value: stored, updatedAt: ctx.now, updatedBy: ctx.actor.id });
}

/** Deletes the flag (audited); a deleted flag is off everywhere within 30 s. */
export async function deleteFlag(s: Services, name: string): Promise<Outcome<void, "not_found">> {
  const { db, audit: ctx } = s;
  const key = featureKey(name);
  const before = await rowOf(db, name);
  if (!before) return notFound("feature flag", name);
  try {
    await commitWithAudit(
      db,
      [db.delete(settings).where(eq(settings.key, key)), assertChanged(db)],
      [{ action: "config.deleted", targetType: "setting", targetId: key, before: before.value, after: null }],
      ctx,
    );
  } catch (e) {
    if (isAssertionFailure(e)) return notFound("feature flag", name); // deleted concurrently
    throw e;
  }
  flagCache.delete(name);
  return ok(undefined);
}

function decide(name: string, parsed: Parsed | null, subject: Subject): FlagDecision | { enabled: false; reason: "invalid_flag"; detail: string } {
  if (parsed === null) return { enabled: false, reason: "disabled", detail: `${name} does not exist` };
  if ("invalid" in parsed) return { enabled: false, reason: "invalid_flag", detail: parsed.invalid };
  return evaluateFlag(parsed.flag, subject);
}

/** The stored flag (read from D1, not the cache) evaluated for one subject; 404 when the flag does not exist. */
export async function evaluateStoredFlag(db: Db, name: string, subject: Subject): Promise<Outcome<ReturnType<typeof decide>, "not_found">> {
  const row = await rowOf(db, name);
  return row ? ok(decide(name, parseRow(name, row.value), subject)) : notFound("feature flag", name);
}

// ── For other modules ───────────────────────────────────────────────────────────────────────────────────

const FLAG_CACHE_MS = 30_000;
// Per isolate; POST /admin/config/reload and this isolate's own writes drop it. Null remembers "no such flag".
const flagCache = new Map<string, { parsed: Parsed | null; at: number }>();

/** Forgets every cached flag of this isolate; answers how many were cached. */
export function dropFeatureCache(): number {
  const n = flagCache.size;
  flagCache.clear();
  return n;
}

/**
 * Whether `name` is on for `subject`: a missing or malformed flag is off. Cached per isolate for at most 30 s,
 * so a change reaches every isolate within 30 s; the percentage answer is stable per subject id.
 */
export async function isFeatureEnabled(db: Db, name: string, subject: Subject): Promise<boolean> {
  const now = Date.now();
  let hit = flagCache.get(name);
  if (!hit || now - hit.at >= FLAG_CACHE_MS) {
    const row = await rowOf(db, name);
    hit = { parsed: row ? parseRow(name, row.value) : null, at: now };
    flagCache.set(name, hit);
  }
  return decide(name, hit.parsed, subject).enabled;
}
