DROP INDEX fires_owned_waiting;
DROP INDEX fires_running_deadline;
CREATE INDEX fires_running_deadline ON fires (deadline_at) WHERE state = 'running';
CREATE INDEX fires_state_fired_at ON fires (state, fired_at);
