ALTER TABLE `task_continuations` ADD `sent_at` integer;--> statement-breakpoint
-- data: claims taken before sent_at existed were sent (a failed send gave its claim back).
UPDATE `task_continuations` SET `sent_at` = `created_at` WHERE `sent_at` IS NULL;
