//! cronhook: a Quartz-style scheduler that fires jobs by calling HTTP endpoints.
//!
//! Where things live:
//! - [`configuration`]: settings from file, environment and flags.
//! - [`domain`]: jobs, triggers and fires as the rest of the code sees them, with validation.
//! - [`schedule`]: when things fire (Quartz cron, at, interval, immediate).
//! - [`db`]: the diesel schema and the queries, next to the tables they touch.
//! - [`scheduler`]: the loop that claims due triggers and creates fires, and the sweepers.
//! - [`dispatch`]: the signed HTTP call to a fire's target.
//! - [`routes`]: the HTTP API; [`auth`]: admin tokens, console passwords and executor signatures.
//! - [`lifecycle`]: the rules of job changes; [`plan`]: the upcoming fires.
//! - [`jobfile`]: `cronhook jobs` (export, apply, import-crontab) over the REST API.
//! - [`metrics`]: Prometheus counters the hot paths bump, and the `/metrics` text.
//! - [`housekeeping`]: the retention purge of old finished fires.
//! - [`ui`]: the web console (pages, login sessions, CSRF), assets embedded.
//! - [`startup`]: wires it all into a running [`startup::Application`].

pub mod auth;
pub mod backup;
pub mod cli;
pub mod configuration;
pub mod db;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod housekeeping;
pub mod jobfile;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod routes;
pub mod schedule;
pub mod scheduler;
pub mod startup;
pub mod state;
pub mod time;
pub mod ui;
