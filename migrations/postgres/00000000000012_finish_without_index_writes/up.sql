-- A finishing fire wrote an entry into each of these two indexes, one of them keyed
-- per job (a scattered page per write): about a tenth of the single SQLite writer's
-- time at 20,000 fires/s. Retention reads `fires_state_fired_at` instead (a fire
-- finishes after it fires) and `fires_job_scheduled` for the per-job count; only
-- the executors' cancel notices still look fires up by `finished_at`, and only
-- cancelled fires enter the index that serves them.
DROP INDEX fires_finished_at;
DROP INDEX fires_job_finished_at;
CREATE INDEX fires_cancelled_finished_at ON fires (state, finished_at) WHERE state = 'cancelled';
