//! The diesel schema, in one place. Both backends share it: instants are BIGINT
//! epoch milliseconds and ids are UUID text (see the migrations).

diesel::table! {
    jobs (id) {
        id -> Text,
        group_name -> Text,
        name -> Text,
        description -> Text,
        state -> Text,
        version -> Integer,
        spec -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    triggers (id) {
        id -> Text,
        job_id -> Text,
        position -> Integer,
        kind -> Text,
        spec -> Text,
        next_fire_at -> Nullable<BigInt>,
        fire_count -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    fires (id) {
        id -> Text,
        job_id -> Text,
        trigger_id -> Nullable<Text>,
        job_version -> Integer,
        attempt -> Integer,
        state -> Text,
        scheduled_at -> BigInt,
        due_at -> BigInt,
        fired_at -> BigInt,
        dispatched_at -> Nullable<BigInt>,
        acked_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        deadline_at -> Nullable<BigInt>,
        owner_node -> Nullable<Text>,
        executor -> Nullable<Text>,
        http_status -> Nullable<Integer>,
        payload -> Nullable<Text>,
        output -> Nullable<Text>,
        output_truncated -> Bool,
        error -> Nullable<Text>,
        reported_started_at -> Nullable<BigInt>,
        reported_finished_at -> Nullable<BigInt>,
        late_result -> Nullable<Text>,
        shard_index -> Integer,
        shard_total -> Integer,
    }
}

diesel::table! {
    executors (id) {
        id -> Text,
        app -> Text,
        instance_id -> Text,
        address -> Text,
        handlers -> Text,
        capacity -> Integer,
        running -> Integer,
        queued -> Integer,
        cpu_percent -> Double,
        mem_used_bytes -> BigInt,
        mem_total_bytes -> BigInt,
        load1 -> Double,
        sdk_version -> Text,
        last_heartbeat_at -> BigInt,
        failures -> Integer,
        valid -> Bool,
        features -> Text,
    }
}

diesel::table! {
    nodes (id) {
        id -> Text,
        hostname -> Text,
        started_at -> BigInt,
        last_heartbeat_at -> BigInt,
        stopped_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    calendars (name) {
        name -> Text,
        spec -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        label -> Text,
        token_sha256 -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    alerts (id) {
        id -> Text,
        fire_id -> Text,
        url -> Text,
        body -> Text,
        created_at -> BigInt,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(triggers -> jobs (job_id));
diesel::allow_tables_to_appear_in_same_query!(
    jobs, triggers, fires, executors, nodes, calendars, api_tokens, settings, alerts
);

diesel::table! {
    console_users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    console_sessions (token_sha256) {
        token_sha256 -> Text,
        user_id -> Text,
        csrf_token -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    console_login_failures (id) {
        id -> Text,
        attempt_key -> Text,
        failed_at -> BigInt,
    }
}

diesel::joinable!(console_sessions -> console_users (user_id));
diesel::allow_tables_to_appear_in_same_query!(console_users, console_sessions);

diesel::table! {
    executor_load_samples (executor_id, sampled_at) {
        executor_id -> Text,
        sampled_at -> BigInt,
        running -> Integer,
        queued -> Integer,
        capacity -> Integer,
        cpu_percent -> Double,
        mem_used_bytes -> BigInt,
        mem_total_bytes -> BigInt,
    }
}

diesel::table! {
    /// One row; a database trigger replaces `generation` on every change to `jobs`.
    jobs_generation (id) {
        id -> Integer,
        generation -> BigInt,
    }
}
