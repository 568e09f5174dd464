CREATE TABLE `discrepancies` (
	`id` text PRIMARY KEY NOT NULL,
	`date` text NOT NULL,
	`gateway` text NOT NULL,
	`kind` text NOT NULL,
	`object_type` text NOT NULL,
	`local_id` text,
	`gateway_id` text,
	`local_amount` integer,
	`gateway_amount` integer,
	`currency` text,
	`detail` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`resolved_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `discrepancies_unique_idx` ON `discrepancies` (`date`,`gateway`,`kind`,`local_id`,`gateway_id`);--> statement-breakpoint
CREATE INDEX `discrepancies_status_idx` ON `discrepancies` (`status`,`date`);--> statement-breakpoint
CREATE TABLE `metric_counters` (
	`name` text NOT NULL,
	`labels` text NOT NULL,
	`value` integer NOT NULL,
	PRIMARY KEY(`name`, `labels`)
);
--> statement-breakpoint
CREATE TABLE `payments` (
	`id` text PRIMARY KEY NOT NULL,
	`invoice_id` text NOT NULL,
	`customer_id` text NOT NULL,
	`attempt` integer NOT NULL,
	`amount` integer NOT NULL,
	`currency` text NOT NULL,
	`status` text NOT NULL,
	`gateway` text,
	`gateway_payment_id` text,
	`payment_method` text,
	`idempotency_key` text NOT NULL,
	`failure_code` text,
	`failure_message` text,
	`amount_refunded` integer DEFAULT 0 NOT NULL,
	`next_retry_at` integer,
	`latency_ms` integer,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `payments_invoice_attempt_idx` ON `payments` (`invoice_id`,`attempt`);--> statement-breakpoint
CREATE UNIQUE INDEX `payments_idempotency_idx` ON `payments` (`idempotency_key`);--> statement-breakpoint
CREATE INDEX `payments_status_idx` ON `payments` (`status`,`created_at`);--> statement-breakpoint
CREATE INDEX `payments_gateway_ref_idx` ON `payments` (`gateway_payment_id`);--> statement-breakpoint
CREATE INDEX `payments_created_idx` ON `payments` (`created_at`,`id`);--> statement-breakpoint
CREATE TABLE `refunds` (
	`id` text PRIMARY KEY NOT NULL,
	`payment_id` text NOT NULL,
	`amount` integer NOT NULL,
	`currency` text NOT NULL,
	`reason` text NOT NULL,
	`status` text NOT NULL,
	`gateway` text,
	`gateway_refund_id` text,
	`idempotency_key` text NOT NULL,
	`failure_message` text,
	`notify` integer DEFAULT false NOT NULL,
	`bulk_id` text,
	`created_by` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `refunds_idempotency_idx` ON `refunds` (`idempotency_key`);--> statement-breakpoint
CREATE INDEX `refunds_payment_idx` ON `refunds` (`payment_id`);--> statement-breakpoint
CREATE INDEX `refunds_created_idx` ON `refunds` (`created_at`);--> statement-breakpoint
CREATE INDEX `refunds_gateway_ref_idx` ON `refunds` (`gateway_refund_id`);--> statement-breakpoint
CREATE TABLE `sandbox_ledger` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`idempotency_key` text NOT NULL,
	`charge_id` text,
	`amount` integer NOT NULL,
	`currency` text NOT NULL,
	`status` text NOT NULL,
	`failure_code` text,
	`payment_method` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `sandbox_ledger_idempotency_idx` ON `sandbox_ledger` (`idempotency_key`);--> statement-breakpoint
CREATE INDEX `sandbox_ledger_created_idx` ON `sandbox_ledger` (`created_at`);--> statement-breakpoint
CREATE TABLE `settings` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL,
	`updated_by` text NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `webhook_events` (
	`id` text PRIMARY KEY NOT NULL,
	`source` text NOT NULL,
	`type` text NOT NULL,
	`payload` text NOT NULL,
	`status` text NOT NULL,
	`error` text,
	`received_at` integer NOT NULL,
	`processed_at` integer
);
--> statement-breakpoint
CREATE INDEX `webhook_events_status_idx` ON `webhook_events` (`status`,`received_at`);