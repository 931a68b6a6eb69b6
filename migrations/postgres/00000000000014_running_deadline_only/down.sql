DROP INDEX fires_running_deadline;
CREATE INDEX fires_running_deadline ON fires (deadline_at) WHERE state IN ('fired', 'running');
