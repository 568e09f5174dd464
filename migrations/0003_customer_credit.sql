ALTER TABLE `customers` ADD `credit_balance` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `invoices` ADD `credit_applied` integer DEFAULT 0 NOT NULL;