DROP INDEX fires_instant_trigger_attempt_shard;
CREATE UNIQUE INDEX fires_trigger_instant_attempt_shard
    ON fires (trigger_id, scheduled_at, attempt, shard_index);
