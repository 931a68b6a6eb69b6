//! Background sweeps every node runs: its heartbeat and the takeover of fires that
//! dead nodes held (membership loop); deadlines of running fires, silent executors and
//! failure alerts (sweep loop). Each change is a compare-and-set, so running them on
//! every node at once is safe.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::configuration::SchedulerSettings;
use crate::db::fires::Finish;
use crate::db::nodes::NodeRow;
use crate::db::{self, Db};
use crate::domain::FireState;
use crate::error::AppError;
use crate::time::now_ms;

use super::outcome::end_fire;
use super::SchedulerHandle;

/// How long a silent executor's health probe may take.
const PROBE_TIMEOUT_MS: u64 = 2_000;

/// Fires ended per deadline sweep, so one sweep never holds the writer for long.
const SWEEP_BATCH: i64 = 500;

pub fn register_node(db: &Db, node_id: &str) -> Result<(), AppError> {
    let mut conn = db.write()?;
    let now = now_ms();
    if db.backend.is_sqlite() {
        // SQLite is single-node (a file lock guarantees it), so any other node row
        // is a previous run of this one: it is dead, and its claimed fires are ours.
        use diesel::prelude::*;
        diesel::update(db::schema::nodes::table.filter(db::schema::nodes::stopped_at.is_null()))
            .set(db::schema::nodes::stopped_at.eq(now))
            .execute(&mut *conn)?;
        db::fires::release_orphaned(&mut conn, &[])?;
    }
    let hostname = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    db::nodes::register(
        &mut conn,
        &NodeRow {
            id: node_id.to_string(),
            hostname,
            started_at: now,
            last_heartbeat_at: now,
            stopped_at: None,
        },
    )?;
    Ok(())
}

/// How often a node writes its heartbeat and looks for dead nodes: often enough that
/// a live node is never mistaken for dead, and a dead one is noticed within a small
/// part of the node timeout. Kept apart from the slower sweeps (executor probes wait
/// up to seconds), so they can never delay a heartbeat.
pub fn membership_interval(settings: &SchedulerSettings) -> Duration {
    Duration::from_millis(
        settings
            .sweep_interval_ms
            .min(settings.node_timeout_ms / 6)
            .max(50),
    )
}

pub async fn membership_loop(
    db: Db,
    settings: SchedulerSettings,
    node: Arc<str>,
    handle: SchedulerHandle,
    mut stop: watch::Receiver<bool>,
) {
    let every = membership_interval(&settings);
    let mut last_orphan_sweep: Option<std::time::Instant> = None;
    loop {
        if let Err(e) =
            beat_and_take_over(&db, &settings, &node, &handle, &mut last_orphan_sweep).await
        {
            log::warn!("node heartbeat failed: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}

pub async fn sweep_loop(
    db: Db,
    settings: SchedulerSettings,
    handle: SchedulerHandle,
    secret: Arc<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
) {
    let probe = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
        .finish();
    loop {
        if let Err(e) = end_past_deadline(&db, &settings, &handle).await {
            log::warn!("deadline sweep failed: {e}");
        }
        if let Err(e) = sweep_silent_executors(&db, &settings, &probe, &handle).await {
            log::warn!("executor sweep failed: {e}");
        }
        if let Err(e) = deliver_alerts(&db, &probe, &secret).await {
            log::warn!("alert delivery failed: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(settings.sweep_interval_ms)) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Whether this beat looks for fires owned by stopped or dead nodes. Such fires appear
/// when a node is declared dead (by this beat or, for a claim it committed just after,
/// shortly before), or when a node stopped without handing its fires back. The search
/// reads every waiting fire — on PostgreSQL under load 140–190 ms per call, a large
/// part of the server's time at one call per beat per node — so it runs when this
/// beat declared a node dead, on the first beat, and otherwise once per node timeout
/// (the time a dead node takes to be noticed anyway).
fn orphan_sweep_due(
    declared_dead: bool,
    last_sweep: Option<std::time::Instant>,
    every: Duration,
) -> bool {
    declared_dead || last_sweep.is_none_or(|at| at.elapsed() >= every)
}

/// This node's heartbeat; silent nodes declared dead and their unanswered fires released.
async fn beat_and_take_over(
    db: &Db,
    settings: &SchedulerSettings,
    node: &Arc<str>,
    handle: &SchedulerHandle,
    last_orphan_sweep: &mut Option<std::time::Instant>,
) -> Result<(), AppError> {
    let node_id = node.to_string();
    let node_timeout = settings.node_timeout_ms as i64;
    let last_sweep = *last_orphan_sweep;
    let sweep_every = Duration::from_millis(settings.node_timeout_ms);
    let (released, swept) = db
        .run(true, move |conn| -> Result<(usize, bool), AppError> {
            let now = now_ms();
            if !db::nodes::heartbeat(conn, &node_id, now)? {
                // The dispatch fence already keeps it from sending what it held.
                log::error!("this node ({node_id}) was declared dead by another node (paused or cut off past the node timeout); the fires it held were taken over and will not be sent from here; rejoining");
                db::nodes::rejoin(conn, &node_id, now)?;
            }
            let declared = db::nodes::declare_dead(conn, now - node_timeout, now)?;
            for (dead, last_heartbeat_at) in &declared {
                log::warn!(
                    "node {dead} silent for {} ms: declared dead; its fires are taken over",
                    now - last_heartbeat_at
                );
            }
            if !orphan_sweep_due(!declared.is_empty(), last_sweep, sweep_every) {
                return Ok((0, false));
            }
            let live = db::nodes::live_ids(conn, now - node_timeout)?;
            Ok((db::fires::release_orphaned(conn, &live)?, true))
        })
        .await?;
    if swept {
        *last_orphan_sweep = Some(std::time::Instant::now());
    }
    if released > 0 {
        log::warn!("took over {released} fire(s) claimed by stopped or dead nodes");
        handle.wake();
    }
    Ok(())
}

/// Running fires past their deadline (plus the grace for the executor's own report) end `timed_out`.
async fn end_past_deadline(
    db: &Db,
    settings: &SchedulerSettings,
    handle: &SchedulerHandle,
) -> Result<(), AppError> {
    let deadline_grace = settings.deadline_grace_ms as i64;
    let (timed_out, retries) = db
        .run(true, move |conn| -> Result<(usize, usize), AppError> {
            let now = now_ms();
            let mut timed_out = 0;
            let mut retries = 0;
            for fire in db::fires::past_deadline(conn, now - deadline_grace, SWEEP_BATCH)? {
                let finish = Finish {
                    state: FireState::TimedOut.as_str(),
                    finished_at: now,
                    error: Some("deadline passed without a result".into()),
                    ..Default::default()
                };
                let ended = end_fire(conn, &fire, &["running"], &finish)?;
                if ended.changed {
                    timed_out += 1;
                    log::info!("fire {} job_id {}: timed out", fire.id, fire.job_id);
                }
                retries += usize::from(ended.retry.is_some());
            }
            Ok((timed_out, retries))
        })
        .await?;
    if retries > 0 || timed_out > 0 {
        handle.wake();
    }
    Ok(())
}

/// Executors silent past the timeout are probed (`GET <address>/healthz`); one that
/// does not answer is declared invalid, and its running fires become `lost`, with a new
/// attempt on a valid executor where the job's retry policy allows (origin document 000).
async fn sweep_silent_executors(
    db: &Db,
    settings: &SchedulerSettings,
    probe: &awc::Client,
    handle: &SchedulerHandle,
) -> Result<(), AppError> {
    let cutoff = now_ms() - settings.executor_timeout_ms as i64;
    let silent = db
        .run(false, move |conn| {
            db::executors::silent_since(conn, cutoff).map_err(AppError::from)
        })
        .await?;
    for executor in silent {
        let url = format!(
            "{}{}",
            executor.address,
            cronhook_sdk::protocol::HEALTH_ROUTE
        );
        let reason = match probe.get(&url).send().await {
            Ok(response) if response.status().is_success() => continue,
            Ok(response) => format!("health probe answered {}", response.status()),
            Err(e) => format!("health probe failed: {e}"),
        };
        let label = crate::dispatch::routing::executor_label(&executor.app, &executor.instance_id);
        let lost = db
            .run(true, move |conn| -> Result<(usize, usize), AppError> {
                if !db::executors::mark_invalid(conn, &executor.id)? {
                    return Ok((0, 0));
                }
                let now = now_ms();
                let mut lost = 0;
                let mut retries = 0;
                for fire in db::fires::running_on(conn, &label)? {
                    let finish = Finish {
                        state: FireState::Lost.as_str(),
                        finished_at: now,
                        error: Some(format!("executor {label} stopped answering ({reason})")),
                        ..Default::default()
                    };
                    let ended = end_fire(conn, &fire, &["running"], &finish)?;
                    lost += usize::from(ended.changed);
                    retries += usize::from(ended.retry.is_some());
                }
                log::warn!("executor {label} declared invalid ({reason}); {lost} running fire(s) lost, {retries} retried elsewhere");
                Ok((lost, retries))
            })
            .await?;
        if lost.1 > 0 {
            handle.wake();
        }
    }
    Ok(())
}

/// Alerts sent per sweep.
const ALERT_BATCH: i64 = 20;
/// Delivery attempts before an alert is given up (it stays on record with its error).
const MAX_ALERT_ATTEMPTS: i32 = 6;

/// Sends due failure alerts: a signed JSON POST (the executor signature scheme), with
/// backoff on failure. Failures are logged and never hold up scheduling.
async fn deliver_alerts(db: &Db, client: &awc::Client, secret: &[u8]) -> Result<(), AppError> {
    let now = now_ms();
    let due = db
        .run(false, move |conn| {
            db::alerts::due(conn, now, ALERT_BATCH).map_err(AppError::from)
        })
        .await?;
    for alert in due {
        let taken = {
            let alert = alert.clone();
            db.run(true, move |conn| {
                db::alerts::take(conn, &alert, now_ms() + 60_000).map_err(AppError::from)
            })
            .await?
        };
        if !taken {
            continue;
        }
        let signature = cronhook_sdk::protocol::sign_now(secret, alert.body.as_bytes());
        let sent = client
            .post(&alert.url)
            .insert_header((awc::http::header::CONTENT_TYPE, "application/json"))
            .insert_header((cronhook_sdk::protocol::SIGNATURE_HEADER, signature))
            .send_body(alert.body.clone())
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("answered {}", response.status())),
            Err(e) => Some(e.to_string()),
        };
        let attempts = alert.attempts + 1;
        let (id, fire) = (alert.id.clone(), alert.fire_id.clone());
        match failure {
            None => {
                log::info!("fire {fire}: failure alert delivered");
                db.run(true, move |conn| {
                    db::alerts::mark_delivered(conn, &id, now_ms()).map_err(AppError::from)
                })
                .await?;
            }
            Some(error) => {
                let next = (attempts < MAX_ALERT_ATTEMPTS)
                    .then(|| now_ms() + 1_000 * (1i64 << attempts.min(8)));
                if next.is_some() {
                    log::warn!("fire {fire}: failure alert not delivered ({error}); will retry");
                } else {
                    log::error!("fire {fire}: failure alert not delivered after {attempts} attempts ({error}); giving up");
                }
                db.run(true, move |conn| {
                    db::alerts::mark_failed(conn, &id, &error, next).map_err(AppError::from)
                })
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::orphan_sweep_due;
    use std::time::{Duration, Instant};

    #[test]
    fn orphans_are_looked_for_on_a_death_the_first_beat_and_once_per_node_timeout() {
        let every = Duration::from_secs(15);
        let just_now = Some(Instant::now());
        assert!(
            orphan_sweep_due(false, None, every),
            "the first beat sweeps"
        );
        assert!(
            orphan_sweep_due(true, just_now, every),
            "a node declared dead sweeps at once"
        );
        assert!(
            !orphan_sweep_due(false, just_now, every),
            "a quiet beat right after a sweep does not"
        );
        let long_ago = Instant::now().checked_sub(Duration::from_secs(16));
        assert!(long_ago.is_some());
        assert!(
            orphan_sweep_due(false, long_ago, every),
            "the safety sweep comes once per node timeout"
        );
    }
}
