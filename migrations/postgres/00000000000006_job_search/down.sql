DROP INDEX IF EXISTS jobs_description_trgm;
DROP INDEX IF EXISTS jobs_name_trgm;
DROP INDEX IF EXISTS jobs_group_name_trgm;
