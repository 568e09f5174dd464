import { createRoute, z } from "@hono/zod-openapi";
import { and, gte, lt, sql } from "drizzle-orm";
import { commitWithAudit } from "../../platform/audit";
import type { Services } from "../../platform/services";
import { type Db } from "../../db/client";
import { notifications } from "../../db/schema";
import { access, requireRole } from "../../http/auth";
import { services } from "../../http/context";
import { jsonBody, jsonResponse, problems, router } from "../../http/openapi";
import { respond } from "../../http/problem";
import { invalid, ok, type Outcome } from "../../platform/failure";
import { newId } from "../../lib/ids";
import { iso, DAY_MS } from "../../lib/time";
import { notificationInserts, notificationsCommitted } from "../notifications/outbox";
import { closedObject } from "../../lib/schema";
import { customerContacts, scoreAtRiskCustomers } from "./at-risk";
import { RedeemedOffer, RedeemOfferBody, redeemRetentionOffer } from "./redeem-offer";

// Retention campaigns (runbook "High Churn Rate" → "Retention Actions"): offers are sent, never applied here.


/** At-risk customers scoring at least this are targeted: one strong signal (cancel at period end 40, past_due 30) or two weaker ones. */
export const RETENTION_MIN_SCORE = 30;
/** Customers per campaign, highest scores first; run it again to reach the rest (those holding an offer are skipped). */
export const MAX_CAMPAIGN_TARGETS = 1000;

const CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"; // no 0/O, 1/I: read out over the phone

/** A random offer code `RET-XXXXXXXXXX` (10 characters of 5 bits). */
function offerCode(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return `RET-${[...bytes].map((b) => CODE_ALPHABET[b % CODE_ALPHABET.length]).join("")}`;
}

export const RetentionCampaignBody = closedObject({
  targetSegment: z.string().default("at_risk").openapi({ description: 'Only "at_risk" for now' }),
  offerType: z.string().default("discount").openapi({ description: 'Only "discount" for now' }),
  discountPercent: z.number().int().min(1).max(100).openapi({ description: "Whole percent off, 1-100", example: 25 }),
  validityDays: z.number().int().min(1).max(365).openapi({ description: "Days the offer can be accepted, 1-365", example: 30 }),
  discountDays: z.number().int().min(1).max(730).optional().openapi({ description: "Days the discount lasts once taken up (invoices billed in that time); omitted: until removed", example: 90 }),
});
export type RetentionCampaignBody = z.infer<typeof RetentionCampaignBody>;

export const RetentionCampaign = z
  .object({
    campaignId: z.string(),
    targeted: z.number().int().openapi({ description: "Customers sent an offer now (one notification each)" }),
    minScore: z.number().int(),
    offer: z.object({ type: z.literal("discount"), discountPercent: z.number().int(), validityDays: z.number().int(), discountDays: z.number().int().optional(), expiresAt: z.string() }),
    skipped: z.object({
      holdingOffer: z.number().int().openapi({ description: "Eligible customers who still hold an unexpired retention offer from an earlier campaign" }),
      overLimit: z.number().int().openapi({ description: `Eligible customers beyond the ${MAX_CAMPAIGN_TARGETS} of one campaign` }),
    }),
    offers: z.array(z.object({ customerId: z.string(), email: z.string(), score: z.number().int(), notificationId: z.string(), offerCode: z.string(), expiresAt: z.string() })),
  })
  .openapi("RetentionCampaign");
export type RetentionCampaign = z.infer<typeof RetentionCampaign>;

/** Customers holding a retention offer that has not expired at `now` (the dedupe-key index bounds the scan to retention rows). */
async function holdingOffer(db: Db, now: number): Promise<Set<string>> {
  const rows = await db
    .select({ customerId: notifications.customerId })
    .from(notifications)
    .where(and(gte(notifications.dedupeKey, "retention:"), lt(notifications.dedupeKey, "retention;"), sql`json_extract(${notifications.payload}, '$.expiresAt') > ${iso(now)}`))
    .all();
  return new Set(rows.map((r) => r.customerId));
}

/**
 * Sends a retention offer to every at-risk customer scoring at least RETENTION_MIN_SCORE who holds no unexpired
 * offer: one `retention.offer` notification each (deduped per customer and campaign) and one audit row for the
 * campaign, with a `customer.notification` event per notification, in one batch. Nothing is applied to subscriptions.
 */
export async function sendRetentionCampaign(s: Services, input: RetentionCampaignBody): Promise<Outcome<RetentionCampaign, "unprocessable">> {
  const { env, db, audit: ctx } = s;
  if (input.targetSegment !== "at_risk") return invalid([{ path: "targetSegment", message: `"${input.targetSegment}" is not supported; only "at_risk"` }]);
  if (input.offerType !== "discount") return invalid([{ path: "offerType", message: `"${input.offerType}" is not supported; only "discount"` }]);

  const [scored, holding] = await Promise.all([scoreAtRiskCustomers(db, ctx.now), holdingOffer(db, ctx.now)]);
  const eligible = scored.filter((c) => c.score >= RETENTION_MIN_SCORE);
  const fresh = eligible.filter((c) => !holding.has(c.customerId));
  const targets = fresh.slice(0, MAX_CAMPAIGN_TARGETS);
  const contacts = await customerContacts(db, targets.map((t) => t.customerId));

  const campaignId = newId("cmp");
  const expiresAt = iso(ctx.now + input.validityDays * DAY_MS);
  const offer = { type: "discount" as const, discountPercent: input.discountPercent, validityDays: input.validityDays, ...(input.discountDays ? { discountDays: input.discountDays } : {}), expiresAt };
  const rows: (typeof notifications.$inferInsert & { payload: Record<string, unknown> })[] = targets
    .filter((t) => contacts.has(t.customerId))
    .map((t) => {
      const contact = contacts.get(t.customerId)!;
      return {
        id: newId("ntf"),
        kind: "retention.offer",
        customerId: t.customerId,
        invoiceId: null,
        template: "retention_offer",
        payload: {
          campaignId,
          customerEmail: contact.email,
          customerName: contact.name,
          offer: { type: offer.type, discountPercent: offer.discountPercent, validityDays: offer.validityDays, ...(input.discountDays ? { discountDays: input.discountDays } : {}) },
          offerCode: offerCode(),
          expiresAt,
          score: t.score,
          signals: t.signals.map((x) => x.name),
        },
        dedupeKey: `retention:${t.customerId}:${campaignId}`,
        status: "queued" as const,
        createdAt: ctx.now,
      };
    });

  // Each notification with its customer.notification event, in the campaign's batch (multi-row inserts).
  const outbox = notificationInserts(db, rows, ctx);
  await commitWithAudit(
    db,
    outbox.statements,
    [{ action: "campaign.retention_sent", targetType: "campaign", targetId: campaignId, after: { segment: "at_risk", minScore: RETENTION_MIN_SCORE, offer, customerIds: rows.map((r) => r.customerId) } }],
    ctx,
  );

  notificationsCommitted(outbox.eventIds);

  const score = new Map(targets.map((t) => [t.customerId, t.score]));
  return ok({
    campaignId,
    targeted: rows.length,
    minScore: RETENTION_MIN_SCORE,
    offer,
    skipped: { holdingOffer: eligible.length - fresh.length, overLimit: fresh.length - targets.length },
    offers: rows.map((r) => ({
      customerId: r.customerId,
      email: String(r.payload.customerEmail),
      score: score.get(r.customerId)!,
      notificationId: r.id,
      offerCode: String(r.payload.offerCode),
      expiresAt,
    })),
  });
}

const LENIENT = " The runbook sends this with `curl -d` and no Content-Type: the body is read as JSON whatever its type.";

/** Mounted at /api/v1/campaigns. */
export const campaignRoutes = router().openapi(
  createRoute({
    method: "post",
    path: "/retention",
    operationId: "sendRetentionCampaign",
    tags: ["Analytics"],
    summary: "Send a retention offer to at-risk customers",
    description:
      "One notification each; the offer is sent, not applied. " +
      "targetSegment and offerType default to the only values supported now (others are 422). " +
      `Targets the customers of GET /api/v1/analytics/at-risk-customers scoring at least ${RETENTION_MIN_SCORE}, highest first, at most ${MAX_CAMPAIGN_TARGETS} per campaign, ` +
      "skipping those who still hold an unexpired retention offer. Each gets a `retention.offer` notification (template `retention_offer`) with an offer code and expiry, " +
      "delivered as `customer.notification` events by the built-in endpoint `we_notifications` (NOTIFY_WEBHOOK_URL); the campaign is recorded in the audit log (`campaign.retention_sent`). " +
      "Nothing changes on any subscription until the offer is taken up: POST /api/v1/campaigns/retention/redeem with the offer code applies it as the subscription's discount." +
      LENIENT,
    middleware: [requireRole(access.finance)] as const,
    request: jsonBody(RetentionCampaignBody),
    responses: { 200: jsonResponse(RetentionCampaign, "The campaign and the offers sent"), ...problems(422) },
  }),
  async (c) => respond(c, await sendRetentionCampaign(services(c), c.req.valid("json")), 200),
).openapi(
  createRoute({
    method: "post",
    path: "/retention/redeem",
    operationId: "redeemRetentionOffer",
    tags: ["Analytics"],
    summary: "Redeem a retention offer",
    description:
      "Takes up a retention offer: its discount becomes the subscription's, once per offer code (audited). 404 when no such offer was sent to the subscription's customer, 422 when it expired, " +
      "409 when it was already redeemed or the subscription already has at least that discount. The discount applies from the next invoice on, until changed with PUT /api/v1/subscriptions/{id}/discount." +
      LENIENT,
    middleware: [requireRole(access.subscriptions)] as const,
    request: jsonBody(RedeemOfferBody),
    responses: { 200: jsonResponse(RedeemedOffer, "The offer was applied"), ...problems(404, 409, 422) },
  }),
  async (c) => respond(c, await redeemRetentionOffer(services(c), c.req.valid("json")), 200),
);
