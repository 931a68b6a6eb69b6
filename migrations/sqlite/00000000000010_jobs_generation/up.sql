-- A token that every change to `jobs` replaces, so claims and write-backs can tell
-- with one row read that the jobs they read before are still current, instead of
-- reading the version of every job of each batch. A random value, not a counter: a
-- change rolled back must not leave a cache holding its rows under a value that the
-- next committed change would produce again.
CREATE TABLE jobs_generation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO jobs_generation (id, generation) VALUES (1, 0);
CREATE TRIGGER jobs_generation_on_insert AFTER INSERT ON jobs
BEGIN
    UPDATE jobs_generation SET generation = random() WHERE id = 1;
END;
CREATE TRIGGER jobs_generation_on_update AFTER UPDATE ON jobs
BEGIN
    UPDATE jobs_generation SET generation = random() WHERE id = 1;
END;
CREATE TRIGGER jobs_generation_on_delete AFTER DELETE ON jobs
BEGIN
    UPDATE jobs_generation SET generation = random() WHERE id = 1;
END;
