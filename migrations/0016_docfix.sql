ALTER TABLE `invoices` ADD `hosted_token` text;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `discount` text;--> statement-breakpoint
-- data: every subscription's current discount mirrored onto it, in the API's Discount shape.
UPDATE `subscriptions` SET `discount` = (
  SELECT json_object(
    'id', d.`id`, 'object', 'discount', 'subscriptionId', d.`subscription_id`, 'customerId', d.`customer_id`, 'couponId', d.`coupon_id`,
    'promotionCodeId', d.`promotion_code_id`, 'periods', d.`periods`, 'periodsUsed', d.`periods_used`,
    'periodsRemaining', CASE WHEN d.`periods` IS NULL THEN NULL ELSE max(0, d.`periods` - d.`periods_used`) END,
    'endsAt', CASE WHEN d.`ends_at` IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%S', d.`ends_at` / 1000, 'unixepoch') || '.' || printf('%03d', d.`ends_at` % 1000) || 'Z' END,
    'endedAt', NULL,
    'createdAt', strftime('%Y-%m-%dT%H:%M:%S', d.`created_at` / 1000, 'unixepoch') || '.' || printf('%03d', d.`created_at` % 1000) || 'Z')
  FROM `discounts` d WHERE d.`subscription_id` = `subscriptions`.`id` AND d.`ended_at` IS NULL LIMIT 1
);
