-- The dispatch fence sets `dispatched_at` on every fire it lets out. While an index
-- named that column (here, in its WHERE clause) PostgreSQL could not make that a
-- heap-only (HOT) update and wrote a new entry into each of the six indexes of `fires`
-- for it. An unowned fire is never a dispatched one (a claim takes ownership before
-- the fence; handing a fire back clears both), so the condition does not need
-- `dispatched_at`; the claiming query still states it.
DROP INDEX fires_unowned_pending;
CREATE INDEX fires_unowned_pending ON fires (due_at) WHERE state = 'fired' AND owner_node IS NULL;
-- A HOT update keeps the new row version on the same page: leave room for it.
ALTER TABLE fires SET (fillfactor = 50);
