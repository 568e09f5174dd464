CREATE TABLE `task_continuations` (
	`key` text PRIMARY KEY NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `task_continuations_created_idx` ON `task_continuations` (`created_at`);