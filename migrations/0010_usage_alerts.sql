CREATE TABLE `usage_alerts` (
	`id` text PRIMARY KEY NOT NULL,
	`subscription_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`meter_id` text NOT NULL,
	`threshold` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `usage_alerts_subscription_idx` ON `usage_alerts` (`subscription_id`,`created_at`);