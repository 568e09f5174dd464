import type { Services } from "../../platform/services";
import { z } from "@hono/zod-openapi";
import { and, eq, gte, lt } from "drizzle-orm";
import type { Db } from "../../db/client";
import { isUniqueViolation } from "../../db/assert";
import { notifications, offerRedemptions } from "../../db/schema";
import { conflict, fail, ok, type Outcome } from "../../platform/failure";
import { discountPercentOf, largerDiscount, setDiscount } from "../subscriptions/discount";
import { getSubscriptionRow, toSubscription } from "../subscriptions/service";
import { Subscription } from "../subscriptions/schemas";
import { closedObject } from "../../lib/schema";
import { DAY_MS, iso } from "../../lib/time";
import { discountAt } from "../invoices/invoice-builder";

export const RedeemOfferBody = closedObject({
  offerCode: z.string().min(1).max(64).openapi({ example: "RET-7KQ2M9XW4P" }),
  subscriptionId: z.string().min(1).openapi({ example: "sub_123", description: "A subscription of the customer the offer was sent to" }),
}).openapi("RedeemRetentionOffer");

export const RedeemedOffer = z
  .object({
    offerCode: z.string(),
    campaignId: z.string(),
    discountPercent: z.string(),
    redeemedAt: z.string(),
    subscription: Subscription,
  })
  .openapi("RedeemedRetentionOffer");

const alreadyRedeemed = (code: string) => conflict(`offer ${code} was already redeemed`, [{ path: "offerCode", message: "already redeemed" }]);

type Offer = { notificationId: string; campaignId: string; discountPercent: string; discountDays: number | null; expiresAt: string };

/** The retention offer with this code sent to `customerId` (the dedupe key `retention:<customer>:<campaign>` bounds the lookup). */
async function offerFor(db: Db, customerId: string, code: string): Promise<Offer | null> {
  const rows = await db
    .select({ id: notifications.id, payload: notifications.payload })
    .from(notifications)
    .where(and(gte(notifications.dedupeKey, `retention:${customerId}:`), lt(notifications.dedupeKey, `retention:${customerId};`)))
    .all();
  for (const r of rows) {
    const p = r.payload as { offerCode?: string; campaignId?: string; expiresAt?: string; offer?: { discountPercent?: number; discountDays?: number } };
    if (p.offerCode === code && p.campaignId && p.expiresAt && p.offer?.discountPercent !== undefined) {
      return { notificationId: r.id, campaignId: p.campaignId, discountPercent: discountPercentOf(p.offer.discountPercent), discountDays: p.offer.discountDays ?? null, expiresAt: p.expiresAt };
    }
  }
  return null;
}

/**
 * Takes up a retention offer: the subscription's discount becomes the offer's (for its `discountDays`, if it has
 * them), once per offer code, before the offer expires, and never lower than a discount the subscription already has. The discount and the redemption
 * marker commit in one batch, so a code cannot be used twice even by concurrent requests.
 */
export async function redeemRetentionOffer(s: Services, input: z.infer<typeof RedeemOfferBody>): Promise<Outcome<z.infer<typeof RedeemedOffer>, "not_found" | "conflict" | "unprocessable">> {
  const { db } = s;
  const now = s.clock.wall;
  const found = await getSubscriptionRow(db, input.subscriptionId);
  if (!found.ok) return found;
  const sub = found.value;
  const offer = await offerFor(db, sub.customerId, input.offerCode);
  if (!offer) return fail("not_found", `no retention offer ${input.offerCode} was sent to this subscription's customer`, [{ path: "offerCode", message: "unknown offer for this customer" }]);
  if (Date.parse(offer.expiresAt) <= now) return fail("unprocessable", `offer ${input.offerCode} expired at ${offer.expiresAt}`, [{ path: "offerCode", message: "expired" }]);
  const redeemed = await db.select({ subscriptionId: offerRedemptions.subscriptionId }).from(offerRedemptions).where(eq(offerRedemptions.offerCode, input.offerCode)).get();
  if (redeemed) return alreadyRedeemed(input.offerCode);
  const current = discountAt(sub, now);
  if (!largerDiscount(offer.discountPercent, current)) {
    return conflict(`subscription ${sub.id} already has a ${current}% discount, at least the offer's ${offer.discountPercent}%`, [{ path: "subscriptionId", message: "already discounted as much" }]);
  }
  const until = offer.discountDays ? now + offer.discountDays * DAY_MS : null;
  // A time-limited offer replaces the discount; when it ends there is none. A standing one must not be lost that way.
  if (current !== null && until !== null && (sub.discountUntil === null || sub.discountUntil > until)) {
    return conflict(
      `subscription ${sub.id} has a ${current}% discount lasting beyond this ${offer.discountDays}-day offer; taking it up would end that discount early`,
      [{ path: "subscriptionId", message: "has a longer-lasting discount" }],
    );
  }
  let after: Awaited<ReturnType<typeof setDiscount>>;
  try {
    after = await setDiscount(s, sub, { discountPercent: offer.discountPercent, until, reason: `retention offer ${input.offerCode}`, coupon: { id: `retention_${offer.campaignId}`, name: `Retention offer: ${offer.discountPercent}% off (campaign ${offer.campaignId})` } }, {
      statements: [
        db.insert(offerRedemptions).values({
          offerCode: input.offerCode,
          notificationId: offer.notificationId,
          campaignId: offer.campaignId,
          customerId: sub.customerId,
          subscriptionId: sub.id,
          discountPercent: offer.discountPercent,
          redeemedAt: now,
        }),
      ],
      audit: [{ action: "campaign.offer_redeemed", targetType: "campaign", targetId: offer.campaignId, after: { offerCode: input.offerCode, customerId: sub.customerId, subscriptionId: sub.id, discountPercent: offer.discountPercent } }],
    });
  } catch (e) {
    if (isUniqueViolation(e, "offer_redemptions.offer_code")) return alreadyRedeemed(input.offerCode);
    throw e;
  }
  if (!after.ok) return after;
  return ok({ offerCode: input.offerCode, campaignId: offer.campaignId, discountPercent: offer.discountPercent, redeemedAt: iso(now), subscription: toSubscription(after.value) });
}
