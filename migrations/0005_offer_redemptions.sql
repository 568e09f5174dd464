CREATE TABLE `offer_redemptions` (
	`offer_code` text PRIMARY KEY NOT NULL,
	`notification_id` text NOT NULL,
	`campaign_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`subscription_id` text NOT NULL,
	`discount_percent` text NOT NULL,
	`redeemed_at` integer NOT NULL
);
