ALTER TABLE executors DROP COLUMN features;
