-- Failure alerts waiting to be delivered: written in the transaction that ends the
-- fire, so an alert is never lost, and sent by any node's sweeper.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY NOT NULL,
    fire_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX alerts_pending ON alerts (next_attempt_at) WHERE delivered_at IS NULL;
