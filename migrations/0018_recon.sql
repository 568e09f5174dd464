CREATE TABLE `reconciliation_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`date` text NOT NULL,
	`gateway` text NOT NULL,
	`status` text NOT NULL,
	`phase` text NOT NULL,
	`step` integer NOT NULL,
	`sent_step` integer NOT NULL,
	`gateway_cursor` text,
	`payment_cursor` text,
	`refund_cursor` text,
	`totals` text NOT NULL,
	`counts` text NOT NULL,
	`credit_notes` text,
	`error` text,
	`actor` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `reconciliation_runs_day_idx` ON `reconciliation_runs` (`date`,`gateway`,`status`);--> statement-breakpoint
CREATE INDEX `reconciliation_runs_created_idx` ON `reconciliation_runs` (`created_at`);--> statement-breakpoint
CREATE TABLE `reconciliation_seen` (
	`run_id` text NOT NULL,
	`item_id` text NOT NULL,
	`matched` integer NOT NULL,
	PRIMARY KEY(`run_id`, `item_id`)
);
