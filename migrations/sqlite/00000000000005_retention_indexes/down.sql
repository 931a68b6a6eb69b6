DROP INDEX fires_job_finished_at;
DROP INDEX fires_finished_at;
