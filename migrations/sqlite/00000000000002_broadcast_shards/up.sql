-- Broadcast fires: one row per executor for the same instant, told apart by shard.
ALTER TABLE fires ADD COLUMN shard_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fires ADD COLUMN shard_total INTEGER NOT NULL DEFAULT 1;
DROP INDEX fires_trigger_instant_attempt;
CREATE UNIQUE INDEX fires_trigger_instant_attempt_shard ON fires (trigger_id, scheduled_at, attempt, shard_index);
