//! A runnable cronhook executor.
//!
//! ```text
//! CRONHOOK_SECRET=... cargo run -p cronhook-sdk --example echo_executor
//! ```
//!
//! Environment: `CRONHOOK_URL` (default `http://127.0.0.1:7070`), `CRONHOOK_SECRET`
//! (required: the app's signing secret), `LISTEN` (default `127.0.0.1:7171`), `APP`
//! (default `example`), `CRONHOOK_OUTBOX` (default `./cronhook-outbox/<app>`),
//! `RUST_LOG` (default `info`).
//!
//! Handlers:
//! - `echo` (also the default for dispatches that name no handler, i.e. plain URL-target
//!   jobs posting to `http://127.0.0.1:7171/cronhook/fires`): waits `sleep_ms` from the
//!   payload if given, then returns the payload as output.
//! - `fail`: always fails, with the payload's `message` if given.

use std::time::Duration;

use cronhook_sdk::{Executor, FireContext, Handler, JobError, Output};
use serde::Deserialize;

struct Echo;

#[derive(Deserialize, Default)]
struct EchoPayload {
    sleep_ms: Option<u64>,
}

impl Handler for Echo {
    async fn run(&self, ctx: FireContext) -> Result<Output, JobError> {
        // Any payload is fine; only an object with `sleep_ms` changes the behaviour.
        let wanted: EchoPayload = ctx.payload().unwrap_or_default();
        if let Some(ms) = wanted.sleep_ms {
            ctx.log().info(format_args!("sleeping {ms} ms"));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = ctx.cancelled() => return Err(JobError::msg("cancelled while sleeping")),
            }
        }
        ctx.log().info("echoing the payload");
        Ok(Output::from(ctx.payload_value().clone()))
    }
}

struct Fail;

impl Handler for Fail {
    async fn run(&self, ctx: FireContext) -> Result<Output, JobError> {
        let message = ctx
            .payload_value()
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("this handler always fails")
            .to_owned();
        ctx.log().warn(&message);
        Err(JobError::msg(message))
    }
}

/// Ctrl-C, or SIGTERM (what service managers and container runtimes send).
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let secret = std::env::var("CRONHOOK_SECRET")
        .map_err(|_| "CRONHOOK_SECRET must be set to the app's signing secret")?;
    let scheduler = env_or("CRONHOOK_URL", "http://127.0.0.1:7070");
    let listen = env_or("LISTEN", "127.0.0.1:7171");
    let app = env_or("APP", "example");

    let mut builder = Executor::builder(scheduler, app, secret)
        .capacity(4)
        .handler("echo", Echo)
        .handler("fail", Fail)
        .default_handler(Echo);
    if let Ok(dir) = std::env::var("CRONHOOK_OUTBOX") {
        builder = builder.outbox_dir(dir);
    }
    let executor = builder.build()?;
    let server = executor.serve(listen.as_str())?;
    log::info!(
        "executor {} of app {} listening on {} (dispatch URL {}/fires)",
        executor.instance_id(),
        executor.app(),
        server.local_addr(),
        server.address()
    );

    stop_signal().await?;
    log::info!("stopping: finishing running fires and flushing results");
    let report = server.stop().await;
    log::info!("stopped: {report:?}");
    Ok(())
}
