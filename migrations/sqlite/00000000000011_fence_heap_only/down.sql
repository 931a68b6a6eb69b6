DROP INDEX fires_unowned_pending;
CREATE INDEX fires_unowned_pending ON fires (due_at)
    WHERE state = 'fired' AND dispatched_at IS NULL AND owner_node IS NULL;
