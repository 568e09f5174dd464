-- data: drop-in ingestion routes events by customer through IngestDirectory objects, filled by meter configuration
-- pushes. Marking every live subscription's meter configuration as behind makes the hourly resync (200 a run) push
-- each one again, meter and directory: the same configuration under the next version.
UPDATE `subscriptions` SET `config_version` = `config_version` + 1 WHERE `status` != 'canceled';
