ALTER TABLE `discrepancies` ADD `found_at` integer;--> statement-breakpoint
ALTER TABLE `discrepancies` ADD `resolved_by_run` text;--> statement-breakpoint
-- data: the unique index below needs at most one running run per day and gateway: older duplicates are failed first.
UPDATE `reconciliation_runs` SET `status` = 'failed', `error` = 'another run of the day was running: failed by migration recon_unique', `finished_at` = `updated_at`
  WHERE `status` = 'running' AND EXISTS (SELECT 1 FROM `reconciliation_runs` o WHERE o.`date` = `reconciliation_runs`.`date` AND o.`gateway` = `reconciliation_runs`.`gateway` AND o.`status` = 'running'
    AND (o.`created_at` > `reconciliation_runs`.`created_at` OR (o.`created_at` = `reconciliation_runs`.`created_at` AND o.`id` > `reconciliation_runs`.`id`)));--> statement-breakpoint
CREATE UNIQUE INDEX `reconciliation_runs_running_idx` ON `reconciliation_runs` (`date`,`gateway`) WHERE status = 'running';--> statement-breakpoint
-- data: what existed was last found when it was created (or reopened: unknown, so its creation).
UPDATE `discrepancies` SET `found_at` = `created_at` WHERE `found_at` IS NULL;
