DROP INDEX fires_unowned_pending;
