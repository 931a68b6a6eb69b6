-- Same index as on PostgreSQL (where leaving `dispatched_at` out lets the dispatch
-- fence be a heap-only update). An unowned fire is never a dispatched one, so the
-- index holds the same rows; SQLite no longer weighs it when the fence writes.
DROP INDEX fires_unowned_pending;
CREATE INDEX fires_unowned_pending ON fires (due_at) WHERE state = 'fired' AND owner_node IS NULL;
