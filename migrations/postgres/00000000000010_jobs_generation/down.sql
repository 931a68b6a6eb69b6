DROP TRIGGER jobs_generation ON jobs;
DROP FUNCTION replace_jobs_generation();
DROP TABLE jobs_generation;
