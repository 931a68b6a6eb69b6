-- A token that every change to `jobs` replaces, so claims and write-backs can tell
-- with one row read that the jobs they read before are still current, instead of
-- reading the version of every job of each batch. A random value, not a counter: a
-- change rolled back must not leave a cache holding its rows under a value that the
-- next committed change would produce again.
CREATE TABLE jobs_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO jobs_generation (id, generation) VALUES (1, 0);
CREATE FUNCTION replace_jobs_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs_generation
        SET generation = floor(random() * 9000000000000000000)::bigint WHERE id = 1;
    RETURN NULL;
END
$$;
-- Once per statement: a bulk change of many jobs replaces it once. BEFORE the
-- statement, so a transaction takes the generation row's lock before any job row's:
-- two transactions changing jobs queue on it instead of each holding a job row the
-- other wants (an AFTER trigger could deadlock them).
CREATE TRIGGER jobs_generation BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION replace_jobs_generation();
