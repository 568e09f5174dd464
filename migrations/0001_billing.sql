CREATE TABLE `invoice_lines` (
	`id` text PRIMARY KEY NOT NULL,
	`invoice_id` text NOT NULL,
	`position` integer NOT NULL,
	`kind` text NOT NULL,
	`description` text NOT NULL,
	`price_id` text,
	`meter_id` text,
	`quantity` text NOT NULL,
	`unit_amount` text,
	`amount` integer NOT NULL,
	`discount_amount` integer DEFAULT 0 NOT NULL,
	`tax_amount` integer DEFAULT 0 NOT NULL,
	`period_start` integer NOT NULL,
	`period_end` integer NOT NULL,
	`computation` text NOT NULL,
	FOREIGN KEY (`invoice_id`) REFERENCES `invoices`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `invoice_lines_invoice_idx` ON `invoice_lines` (`invoice_id`,`position`);--> statement-breakpoint
CREATE TABLE `invoice_number_sequences` (
	`year` integer PRIMARY KEY NOT NULL,
	`last_number` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `invoices` (
	`id` text PRIMARY KEY NOT NULL,
	`number` text,
	`customer_id` text NOT NULL,
	`subscription_id` text,
	`status` text NOT NULL,
	`billing_reason` text NOT NULL,
	`currency` text NOT NULL,
	`period_start` integer NOT NULL,
	`period_end` integer NOT NULL,
	`subtotal` integer NOT NULL,
	`discount` integer NOT NULL,
	`tax` integer NOT NULL,
	`total` integer NOT NULL,
	`amount_paid` integer DEFAULT 0 NOT NULL,
	`amount_due` integer NOT NULL,
	`tax_jurisdiction` text,
	`tax_rate` text,
	`due_at` integer,
	`finalized_at` integer,
	`paid_at` integer,
	`voided_at` integer,
	`void_reason` text,
	`attempt_count` integer DEFAULT 0 NOT NULL,
	`last_error` text,
	`generation_key` text NOT NULL,
	`archive_key` text,
	`archived_at` integer,
	`test_clock_id` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `invoices_generation_idx` ON `invoices` (`generation_key`);--> statement-breakpoint
CREATE UNIQUE INDEX `invoices_number_idx` ON `invoices` (`number`);--> statement-breakpoint
CREATE INDEX `invoices_customer_idx` ON `invoices` (`customer_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `invoices_subscription_idx` ON `invoices` (`subscription_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `invoices_status_idx` ON `invoices` (`status`,`created_at`);--> statement-breakpoint
CREATE INDEX `invoices_created_idx` ON `invoices` (`created_at`,`id`);--> statement-breakpoint
CREATE TABLE `notifications` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`customer_id` text NOT NULL,
	`invoice_id` text,
	`template` text NOT NULL,
	`payload` text NOT NULL,
	`dedupe_key` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`sent_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `notifications_dedupe_idx` ON `notifications` (`dedupe_key`);--> statement-breakpoint
CREATE INDEX `notifications_invoice_idx` ON `notifications` (`invoice_id`);--> statement-breakpoint
CREATE TABLE `pending_items` (
	`id` text PRIMARY KEY NOT NULL,
	`subscription_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`currency` text NOT NULL,
	`kind` text NOT NULL,
	`description` text NOT NULL,
	`amount` integer NOT NULL,
	`period_start` integer NOT NULL,
	`period_end` integer NOT NULL,
	`computation` text NOT NULL,
	`invoice_id` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `pending_items_subscription_idx` ON `pending_items` (`subscription_id`,`invoice_id`);--> statement-breakpoint
CREATE TABLE `tax_rates` (
	`id` text PRIMARY KEY NOT NULL,
	`jurisdiction` text NOT NULL,
	`rate` text NOT NULL,
	`effective_from` integer NOT NULL,
	`created_by` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `tax_rates_jurisdiction_from_idx` ON `tax_rates` (`jurisdiction`,`effective_from`);--> statement-breakpoint
CREATE TABLE `test_clocks` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text,
	`frozen_time` integer NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `pause_reason` text;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `cancel_reason` text;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `cancel_feedback` text;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `ended_at` integer;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `trial_converted_at` integer;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `pending_plan_id` text;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `pending_plan_version` integer;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `pending_quantity` integer;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `pending_change_at` integer;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `pending_prorate` integer;--> statement-breakpoint
ALTER TABLE `subscriptions` ADD `discount_percent` text;