CREATE TABLE `coupons` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text,
	`percent_off` text,
	`amount_off` integer,
	`currency` text,
	`duration` text NOT NULL,
	`duration_in_months` integer,
	`max_redemptions` integer,
	`times_redeemed` integer DEFAULT 0 NOT NULL,
	`redeem_by` integer,
	`applies_to_plan_ids` text,
	`metadata` text DEFAULT '{}' NOT NULL,
	`deleted_at` integer,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `coupons_created_idx` ON `coupons` (`created_at`,`id`);--> statement-breakpoint
CREATE TABLE `credit_grants` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`currency` text NOT NULL,
	`category` text NOT NULL,
	`source` text NOT NULL,
	`name` text,
	`amount` integer NOT NULL,
	`remaining` integer NOT NULL,
	`priority` integer NOT NULL,
	`expires_at` integer,
	`applies_to_meter_ids` text,
	`status` text NOT NULL,
	`purchase_invoice_id` text,
	`source_id` text,
	`test_clock_id` text,
	`metadata` text DEFAULT '{}' NOT NULL,
	`voided_at` integer,
	`expired_at` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `credit_grants_customer_idx` ON `credit_grants` (`customer_id`,`status`);--> statement-breakpoint
CREATE INDEX `credit_grants_expiry_idx` ON `credit_grants` (`status`,`expires_at`);--> statement-breakpoint
CREATE INDEX `credit_grants_purchase_idx` ON `credit_grants` (`purchase_invoice_id`);--> statement-breakpoint
CREATE TABLE `credit_ledger` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`grant_id` text NOT NULL,
	`type` text NOT NULL,
	`amount` integer NOT NULL,
	`currency` text NOT NULL,
	`invoice_id` text,
	`at` integer NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `credit_ledger_customer_idx` ON `credit_ledger` (`customer_id`,`at`,`id`);--> statement-breakpoint
CREATE INDEX `credit_ledger_invoice_idx` ON `credit_ledger` (`invoice_id`);--> statement-breakpoint
CREATE TABLE `discounts` (
	`id` text PRIMARY KEY NOT NULL,
	`subscription_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`coupon_id` text NOT NULL,
	`promotion_code_id` text,
	`periods` integer,
	`periods_used` integer DEFAULT 0 NOT NULL,
	`ends_at` integer,
	`ended_at` integer,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `discounts_subscription_idx` ON `discounts` (`subscription_id`,`ended_at`);--> statement-breakpoint
CREATE INDEX `discounts_customer_idx` ON `discounts` (`customer_id`);--> statement-breakpoint
CREATE TABLE `invoice_discounts` (
	`invoice_id` text NOT NULL,
	`discount_id` text NOT NULL,
	`coupon_id` text NOT NULL,
	`promotion_code_id` text,
	`amount` integer NOT NULL,
	PRIMARY KEY(`invoice_id`, `discount_id`)
);
--> statement-breakpoint
CREATE TABLE `promotion_codes` (
	`id` text PRIMARY KEY NOT NULL,
	`coupon_id` text NOT NULL,
	`code` text NOT NULL,
	`customer_id` text,
	`expires_at` integer,
	`max_redemptions` integer,
	`times_redeemed` integer DEFAULT 0 NOT NULL,
	`first_time_transaction` integer DEFAULT false NOT NULL,
	`active` integer DEFAULT true NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `promotion_codes_code_idx` ON `promotion_codes` (`code`);--> statement-breakpoint
CREATE INDEX `promotion_codes_created_idx` ON `promotion_codes` (`created_at`,`id`);--> statement-breakpoint
-- data: today's per-subscription discountPercent (set through PUT /discount, at creation, or by a retention offer) becomes a forever coupon per distinct percentage and a discount on the subscription (its discountUntil kept as endsAt).
INSERT OR IGNORE INTO `coupons` (`id`, `name`, `percent_off`, `duration`, `times_redeemed`, `metadata`, `created_at`)
SELECT DISTINCT 'legacy_pct_' || replace(`discount_percent`, '.', '_'), `discount_percent` || '% off (migrated discountPercent)', `discount_percent`, 'forever', 0, '{}', CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM `subscriptions` WHERE `discount_percent` IS NOT NULL;
--> statement-breakpoint
INSERT OR IGNORE INTO `discounts` (`id`, `subscription_id`, `customer_id`, `coupon_id`, `periods`, `periods_used`, `ends_at`, `ended_at`, `created_at`)
SELECT 'di_legacy_' || `id`, `id`, `customer_id`, 'legacy_pct_' || replace(`discount_percent`, '.', '_'), NULL, 0, `discount_until`, NULL, `updated_at`
FROM `subscriptions` WHERE `discount_percent` IS NOT NULL;
--> statement-breakpoint
UPDATE `coupons` SET `times_redeemed` = (SELECT count(*) FROM `discounts` d WHERE d.`coupon_id` = `coupons`.`id`) WHERE `id` LIKE 'legacy_pct_%';
--> statement-breakpoint
-- data: today's customer credit balance becomes a paid grant that never expires, used after every other grant (priority 100).
INSERT OR IGNORE INTO `credit_grants` (`id`, `customer_id`, `currency`, `category`, `source`, `name`, `amount`, `remaining`, `priority`, `status`, `test_clock_id`, `metadata`, `created_at`, `updated_at`)
SELECT 'cgr_legacy_' || `id`, `id`, `currency`, 'paid', 'invoice_balance', 'Customer credit balance (migrated)', `credit_balance`, `credit_balance`, 100, 'active', `test_clock_id`, '{}', CAST(strftime('%s', 'now') AS INTEGER) * 1000, CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM `customers` WHERE `credit_balance` > 0;
--> statement-breakpoint
INSERT OR IGNORE INTO `credit_ledger` (`id`, `customer_id`, `grant_id`, `type`, `amount`, `currency`, `at`, `created_at`)
SELECT 'cbt_legacy_' || `id`, `customer_id`, `id`, 'granted', `amount`, `currency`, `created_at`, `created_at` FROM `credit_grants` WHERE `id` LIKE 'cgr_legacy_%';
