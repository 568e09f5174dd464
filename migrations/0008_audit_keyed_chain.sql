-- Keyed audit chain (issue 9 item 10): per-row `mac` and sealed `chain` columns; the old unkeyed `prev_hash`/`hash`
-- become nullable (kept on legacy rows, which the AuditAnchor sealer checks and adopts). drizzle-kit generated the
-- table rebuild; its copy selected the new columns from the old table, corrected here to NULL.
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_audit_log` (
	`seq` integer PRIMARY KEY NOT NULL,
	`id` text NOT NULL,
	`at` integer NOT NULL,
	`actor` text NOT NULL,
	`actor_role` text NOT NULL,
	`action` text NOT NULL,
	`target_type` text NOT NULL,
	`target_id` text NOT NULL,
	`request_id` text,
	`before` text,
	`after` text,
	`reason` text,
	`mac` text,
	`chain` text,
	`prev_hash` text,
	`hash` text
);
--> statement-breakpoint
INSERT INTO `__new_audit_log`("seq", "id", "at", "actor", "actor_role", "action", "target_type", "target_id", "request_id", "before", "after", "reason", "mac", "chain", "prev_hash", "hash") SELECT "seq", "id", "at", "actor", "actor_role", "action", "target_type", "target_id", "request_id", "before", "after", "reason", NULL, NULL, "prev_hash", "hash" FROM `audit_log`;--> statement-breakpoint
DROP TABLE `audit_log`;--> statement-breakpoint
ALTER TABLE `__new_audit_log` RENAME TO `audit_log`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `audit_action_idx` ON `audit_log` (`action`,`at`);--> statement-breakpoint
CREATE INDEX `audit_actor_idx` ON `audit_log` (`actor`,`at`);--> statement-breakpoint
CREATE INDEX `audit_target_idx` ON `audit_log` (`target_id`,`at`);--> statement-breakpoint
CREATE INDEX `audit_at_idx` ON `audit_log` (`at`);