-- Instants are UTC epoch milliseconds (BIGINT); ids are UUID text. The same
-- shape is used on PostgreSQL so one diesel schema serves both backends.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    group_name TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (group_name, name)
);

CREATE TABLE triggers (
    id TEXT PRIMARY KEY NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    next_fire_at BIGINT,
    fire_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX triggers_next_fire_at ON triggers (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX triggers_job_id ON triggers (job_id);

CREATE TABLE fires (
    id TEXT PRIMARY KEY NOT NULL,
    job_id TEXT NOT NULL,
    trigger_id TEXT,
    job_version INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    fired_at BIGINT NOT NULL,
    dispatched_at BIGINT,
    acked_at BIGINT,
    finished_at BIGINT,
    deadline_at BIGINT,
    owner_node TEXT,
    executor TEXT,
    http_status INTEGER,
    payload TEXT,
    output TEXT,
    output_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    error TEXT,
    reported_started_at BIGINT,
    reported_finished_at BIGINT,
    late_result TEXT
);
CREATE UNIQUE INDEX fires_trigger_instant_attempt ON fires (trigger_id, scheduled_at, attempt);
CREATE INDEX fires_job_scheduled ON fires (job_id, scheduled_at);
CREATE INDEX fires_pending ON fires (due_at) WHERE state = 'fired' AND dispatched_at IS NULL;
CREATE INDEX fires_running_deadline ON fires (deadline_at) WHERE state IN ('fired', 'running');
CREATE INDEX fires_state_fired_at ON fires (state, fired_at);

CREATE TABLE executors (
    id TEXT PRIMARY KEY NOT NULL,
    app TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    address TEXT NOT NULL,
    handlers TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    running INTEGER NOT NULL,
    queued INTEGER NOT NULL,
    cpu_percent DOUBLE PRECISION NOT NULL,
    mem_used_bytes BIGINT NOT NULL,
    mem_total_bytes BIGINT NOT NULL,
    load1 DOUBLE PRECISION NOT NULL,
    sdk_version TEXT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    valid BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (app, instance_id)
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY NOT NULL,
    hostname TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    stopped_at BIGINT
);

CREATE TABLE calendars (
    name TEXT PRIMARY KEY NOT NULL,
    spec TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    label TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
