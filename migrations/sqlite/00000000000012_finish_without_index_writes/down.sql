DROP INDEX fires_cancelled_finished_at;
CREATE INDEX fires_finished_at ON fires (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX fires_job_finished_at ON fires (job_id, finished_at) WHERE finished_at IS NOT NULL;
