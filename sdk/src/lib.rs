//! Executor SDK for cronhook.
//!
//! A service writes only its business step, a [`Handler`]; the [`Executor`] receives
//! signed dispatches from the scheduler, answers `202` at once, runs the handler with
//! capacity limits, deadline and panic isolation, keeps the result in a durable outbox
//! and writes it back (signed, retried) until the scheduler has it. It also sends
//! heartbeats and shuts down gracefully. See the crate README for a full example.

pub mod protocol;

mod config;
mod context;
mod executor;
mod handler;
mod heartbeat;
mod http;
mod outbox;
mod runner;
mod runtime;
mod state;
mod stats;
mod writeback;

pub use config::{BuildError, ExecutorBuilder};
pub use context::{FireContext, FireLogger};
pub use executor::{Executor, ServeError, ServeHandle, ShutdownReport};
pub use handler::{handler_fn, FnHandler, Handler, JobError, Output};
pub use http::ExecutorService;
pub use outbox::OutboxError;
pub use stats::ExecutorStats;
pub use tokio_util::sync::CancellationToken;

/// Version reported in heartbeats.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

// Compiles the README's examples as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
