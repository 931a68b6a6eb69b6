DROP TRIGGER jobs_generation_on_delete;
DROP TRIGGER jobs_generation_on_update;
DROP TRIGGER jobs_generation_on_insert;
DROP TABLE jobs_generation;
