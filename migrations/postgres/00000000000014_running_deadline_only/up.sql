-- Only `running` fires have a deadline the sweeper looks for (`past_deadline`); a
-- `fired` one entered this index at its INSERT and left it again at its
-- acknowledgement, two writes per fire for nothing. On SQLite the sweeper names the
-- index (without statistics its planner walked every running fire via the state index).
DROP INDEX fires_running_deadline;
CREATE INDEX fires_running_deadline ON fires (deadline_at) WHERE state = 'running';
