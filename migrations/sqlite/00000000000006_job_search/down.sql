DROP TRIGGER job_search_after_delete;
DROP TRIGGER job_search_after_update;
DROP TRIGGER job_search_after_insert;
DROP TABLE job_search;
DROP TABLE job_search_keys;
