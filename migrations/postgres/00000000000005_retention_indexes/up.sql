-- Retention purges finished fires by age and keeps the newest per job; these indexes
-- let each purge batch find its rows without scanning the whole table.
CREATE INDEX fires_finished_at ON fires (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX fires_job_finished_at ON fires (job_id, finished_at) WHERE finished_at IS NOT NULL;
