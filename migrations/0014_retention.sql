CREATE TABLE `retention_archives` (
	`key` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`manifest_key` text NOT NULL,
	`run_id` text NOT NULL,
	`rows` integer NOT NULL,
	`bytes` integer NOT NULL,
	`sha256` text NOT NULL,
	`from_at` integer NOT NULL,
	`to_at` integer NOT NULL,
	`first_ref` text NOT NULL,
	`last_ref` text NOT NULL,
	`end_seq` integer,
	`end_chain` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `retention_archives_kind_idx` ON `retention_archives` (`kind`,`created_at`,`key`);--> statement-breakpoint
CREATE INDEX `retention_archives_run_idx` ON `retention_archives` (`run_id`);--> statement-breakpoint
CREATE TABLE `retention_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`trigger` text NOT NULL,
	`now` integer NOT NULL,
	`started_at` integer NOT NULL,
	`finished_at` integer,
	`current_kind` text,
	`error` text
);
--> statement-breakpoint
CREATE INDEX `retention_runs_started_idx` ON `retention_runs` (`started_at`);