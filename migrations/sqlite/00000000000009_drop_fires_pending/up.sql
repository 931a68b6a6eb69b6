-- Every fire entered this index when recorded and left it when sent: two b-tree
-- writes per fire on the hot path. Only the plan of all jobs read it, and SQLite's
-- planner took `fires_state_fired_at` for that query anyway; claiming uses
-- `fires_unowned_pending`.
DROP INDEX fires_pending;
