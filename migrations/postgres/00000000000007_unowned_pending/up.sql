-- Claiming pending fires (retries, run-now, handed back) looks for unowned ones only.
-- `fires_pending` also holds every fire a node has claimed and not yet sent, so under
-- load each claim walked thousands of owned rows to find a few unowned ones. Claimed
-- fires are inserted owned, so this index costs nothing on the claim path.
CREATE INDEX fires_unowned_pending ON fires (due_at)
    WHERE state = 'fired' AND dispatched_at IS NULL AND owner_node IS NULL;
