CREATE INDEX fires_pending ON fires (due_at) WHERE state = 'fired' AND dispatched_at IS NULL;
