DROP INDEX fires_trigger_instant_attempt_shard;
CREATE UNIQUE INDEX fires_trigger_instant_attempt ON fires (trigger_id, scheduled_at, attempt);
ALTER TABLE fires DROP COLUMN shard_total;
ALTER TABLE fires DROP COLUMN shard_index;
