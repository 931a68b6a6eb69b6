-- `GET /api/v1/jobs?q=` finds a substring of a job's group, name or description. A
-- LIKE '%…%' scan grows with the number of jobs; trigram GIN indexes (pg_trgm) answer
-- LIKE '%…%' from the index. pg_trgm ships with PostgreSQL and is a trusted extension
-- (the database owner may create it); where it cannot be created, searching still
-- works by scanning, and the server logs nothing worse than this notice.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX jobs_group_name_trgm ON jobs USING gin (group_name gin_trgm_ops);
    CREATE INDEX jobs_name_trgm ON jobs USING gin (name gin_trgm_ops);
    CREATE INDEX jobs_description_trgm ON jobs USING gin (description gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'job search indexes not created (%); searching scans the jobs table', SQLERRM;
END
$$;
