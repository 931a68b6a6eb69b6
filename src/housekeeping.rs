//! Background housekeeping on a Quartz cron schedule: the retention purge of
//! finished fires. Every batch is its own short write, with a pause after it, so the
//! claim loop (which needs the same single SQLite writer) never waits long.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::configuration::RetentionSettings;
use crate::db::{self, Db};
use crate::error::AppError;
use crate::schedule::cron::CronExpr;
use crate::time::now_ms;

/// Pause between two purge batches, letting other writers in.
const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(20);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The running housekeeping task; `stop` ends it between batches.
pub struct Housekeeping {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Housekeeping {
    /// Starts the loop on the current actix system. The schedule was validated
    /// with the settings; an unparsable one here is reported, not ignored.
    pub fn start(db: Db, settings: RetentionSettings) -> Result<Housekeeping, AppError> {
        let schedule = CronExpr::parse(&settings.schedule).map_err(|e| {
            AppError::Internal(format!("retention.schedule {:?}: {e}", settings.schedule))
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let task = actix_rt::spawn(run(db, settings, schedule, stop_rx));
        Ok(Housekeeping { stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    db: Db,
    settings: RetentionSettings,
    schedule: CronExpr,
    mut stop: watch::Receiver<bool>,
) {
    // Even with both settings at 0 the runs go on: a job's own `keep_fires` still applies.
    loop {
        let Some(next) = schedule.next_after(Utc::now(), chrono_tz::UTC) else {
            log::warn!(
                "retention: schedule {:?} never fires again; no more purges",
                settings.schedule
            );
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        match purge(&db, &settings, &stop).await {
            Ok(Purged { by_age, by_count }) if by_age + by_count > 0 => log::info!(
                "retention: removed {by_age} fire(s) finished more than {} day(s) ago and {by_count} beyond {} per job",
                settings.max_age_days,
                settings.max_fires_per_job
            ),
            Ok(_) => log::debug!("retention: nothing to remove"),
            Err(e) => log::warn!("retention: purge failed, trying again at the next run: {e}"),
        }
    }
}

/// What one housekeeping run removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub by_age: usize,
    pub by_count: usize,
}

/// One retention run: by age, then by per-job count, batch by batch, until nothing
/// is left to remove or the node stops.
pub async fn purge(
    db: &Db,
    settings: &RetentionSettings,
    stop: &watch::Receiver<bool>,
) -> Result<Purged, AppError> {
    let batch = settings.batch_size;
    let mut purged = Purged::default();
    if settings.max_age_days > 0 {
        let cutoff = now_ms() - i64::from(settings.max_age_days) * DAY_MS;
        loop {
            let removed = db
                .run(true, move |conn| {
                    db::retention::purge_finished_before(conn, cutoff, batch)
                        .map_err(AppError::from)
                })
                .await?;
            purged.by_age += removed;
            crate::metrics::fires_purged("age", removed);
            if (removed as i64) < batch || *stop.borrow() {
                break;
            }
            tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
        }
    }
    // Per job: its own `keep_fires` where set (0 = no limit), else the setting.
    let global = i64::from(settings.max_fires_per_job);
    let (overrides, over_global) = db
        .run(false, move |conn| -> Result<_, AppError> {
            let overrides: std::collections::HashMap<String, i64> =
                db::retention::keep_fires_overrides(conn)?
                    .into_iter()
                    .map(|(id, keep)| (id, i64::from(keep)))
                    .collect();
            let over_global = if global > 0 {
                db::retention::jobs_over(conn, global)?
            } else {
                Vec::new()
            };
            Ok((overrides, over_global))
        })
        .await?;
    let mut limits: Vec<(String, i64)> = over_global
        .into_iter()
        .filter(|(id, _)| !overrides.contains_key(id))
        .map(|(id, _)| (id, global))
        .collect();
    limits.extend(overrides.into_iter().filter(|(_, keep)| *keep > 0));
    for (job_id, keep) in limits {
        loop {
            let job = job_id.clone();
            let removed = db
                .run(true, move |conn| {
                    db::retention::purge_beyond_newest(conn, &job, keep, batch)
                        .map_err(AppError::from)
                })
                .await?;
            purged.by_count += removed;
            crate::metrics::fires_purged("count", removed);
            if (removed as i64) < batch || *stop.borrow() {
                break;
            }
            tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
        }
        if *stop.borrow() {
            break;
        }
    }
    Ok(purged)
}
