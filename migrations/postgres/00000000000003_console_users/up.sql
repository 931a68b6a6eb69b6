-- Web console: admin users (argon2 hashes), login sessions kept in the database so
-- they survive restarts and work on every node, and failed logins for rate limiting.
CREATE TABLE console_users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE console_sessions (
    -- SHA-256 of the cookie value: a copy of the table does not log anyone in.
    token_sha256 TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

CREATE TABLE console_login_failures (
    id TEXT PRIMARY KEY NOT NULL,
    -- username and client address: one attacker cannot lock the admin out from elsewhere.
    attempt_key TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX console_login_failures_key ON console_login_failures (attempt_key, failed_at);

-- Executor load over time, for the console's executors page: one sample per executor
-- at most every few seconds, taken from its heartbeats, kept for a day.
CREATE TABLE executor_load_samples (
    executor_id TEXT NOT NULL,
    sampled_at BIGINT NOT NULL,
    running INTEGER NOT NULL,
    queued INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    cpu_percent DOUBLE PRECISION NOT NULL,
    mem_used_bytes BIGINT NOT NULL,
    mem_total_bytes BIGINT NOT NULL,
    PRIMARY KEY (executor_id, sampled_at)
);
