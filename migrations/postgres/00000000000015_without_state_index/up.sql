-- `fires_state_fired_at` moved at every state change of every fire (an entry at the
-- INSERT, a move at the acknowledgement and another at the finish; on PostgreSQL a new
-- entry per row version). Nothing on the hot path needs all of it. What used it now
-- reads narrower indexes that a fire enters at most once:
-- * open fires per executor, per job, past their deadline: `fires_running_deadline`,
--   which now holds the executor and the job too, so those counts read no row;
-- * fires claimed by a node and not yet answered (released when the node stops or
--   dies; the plan's waiting fires): `fires_owned_waiting`;
-- * retention and the console's recent fires: the instant-led unique index
--   (`scheduled_at`), and a job's history `fires_job_scheduled`.
DROP INDEX fires_state_fired_at;
DROP INDEX fires_running_deadline;
CREATE INDEX fires_running_deadline ON fires (deadline_at, executor, job_id) WHERE state = 'running';
CREATE INDEX fires_owned_waiting ON fires (due_at, owner_node)
    WHERE state = 'fired' AND owner_node IS NOT NULL;
