-- The exactly-once key of a fire, led by its instant rather than its trigger. Keyed
-- by trigger, every claimed fire landed on its trigger's own leaf page: at 20,000
-- triggers a page per fire to write and commit. Led by the instant, the fires of one
-- claim round share a few pages. Same unique columns, so the same guarantee; the
-- per-trigger lookups equal the instant too, or go through `fires_job_scheduled`.
DROP INDEX fires_trigger_instant_attempt_shard;
CREATE UNIQUE INDEX fires_instant_trigger_attempt_shard
    ON fires (scheduled_at, trigger_id, attempt, shard_index);
