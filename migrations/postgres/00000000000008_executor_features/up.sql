-- Optional protocol features an executor advertises in its heartbeat (JSON array of
-- names), e.g. "dispatch_batch": several fires in one dispatch request.
ALTER TABLE executors ADD COLUMN features TEXT NOT NULL DEFAULT '[]';
