//! The executors of each app as dispatch sees them, so picking an executor for a fire
//! costs no query. A pool is loaded from the database (valid executors, their task
//! lists; for `shortest_eta` also the jobs' average durations) every
//! [`POOL_REFRESH_MS`] (longer when loading is slow: [`refresh_after`]), or at once when the registry changed on this node (a heartbeat
//! that changes where work may go, an executor that stopped answering); fires this node hands out in
//! between are counted in, so `least_loaded` spreads a burst instead of sending it
//! all to whichever executor looked idlest at the last load.
//!
//! Before, every fire of an app target ran three queries, one of them reading every
//! open fire of the app's executors: a cost that grew with the load itself.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};

use super::routing::{executor_label, Candidate};
use crate::db::executors::ExecutorRow;
use crate::db::{self, Db, DbConnection};
use crate::error::AppError;
use crate::time::now_ms;

/// Longest time a loaded pool is used before it is loaded again, when loading is quick.
pub const POOL_REFRESH_MS: u64 = 250;
/// A slow load is used for this many times as long as it took before the next, so
/// loading takes at most a twenty-fifth of a connection's time. The open-fire count
/// reads every running fire of the app's executors; on PostgreSQL with each one's
/// heap tuple for visibility (and the entries of finished ones until vacuum): 34 ms a
/// load at 10,000 fires/s in callback mode, 12 % of the server's statement time when
/// loaded every 250 ms. Fires this node hands out in between are counted in anyway.
const REFRESH_PER_LOAD_TIME: u32 = 25;
/// However slow the load, a pool is not used for longer than this: the counts it
/// started from only grow between loads (fires handed out are added, finished ones
/// are not taken off).
const LONGEST_REFRESH_MS: u64 = 2_000;

/// How long a pool that took `took` to load is used before the next load.
fn refresh_after(took: Duration) -> Duration {
    (took * REFRESH_PER_LOAD_TIME).clamp(
        Duration::from_millis(POOL_REFRESH_MS),
        Duration::from_millis(LONGEST_REFRESH_MS),
    )
}
/// Duration assumed for a job with no finished runs yet.
const DEFAULT_DURATION_MS: f64 = 1_000.0;
/// Jobs whose durations a pool keeps for `shortest_eta` beyond those with open fires;
/// past it the set starts over (it only saves a reload when such a job fires again).
const MAX_ETA_JOBS: usize = 10_000;

/// Bumped whenever this node changed the executor registry; a pool loaded before is
/// loaded again on its next use.
#[derive(Clone, Default)]
pub struct RegistryVersion(Arc<AtomicU64>);

impl RegistryVersion {
    pub fn changed(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One valid executor of a pool, with what the strategies weigh.
struct Member {
    row: Rc<ExecutorRow>,
    label: String,
    handlers: Vec<String>,
    /// It takes batch dispatches.
    batches: bool,
    /// Open fires on it: as loaded, plus the ones this node gave it since.
    task_list: Cell<i64>,
    /// Sum of the average durations of those fires' jobs (ms; `shortest_eta` only).
    work_ms: Cell<f64>,
}

/// A pool as loaded at one moment.
struct Snapshot {
    loaded_at: Instant,
    /// How long it is used ([`refresh_after`] its load time).
    fresh_for: Duration,
    version: u64,
    members: Vec<Member>,
    /// Average duration per job; `None` when loaded without (no `shortest_eta` fire yet).
    durations: Option<HashMap<String, f64>>,
}

impl Snapshot {
    fn is_fresh(&self, version: u64) -> bool {
        self.version == version && self.loaded_at.elapsed() < self.fresh_for
    }

    fn duration_of(&self, job_id: &str) -> f64 {
        self.durations
            .as_ref()
            .and_then(|d| d.get(job_id).copied())
            .unwrap_or(DEFAULT_DURATION_MS)
    }
}

type Loading = Shared<LocalBoxFuture<'static, Result<Rc<Snapshot>, String>>>;

#[derive(Default)]
struct PoolState {
    snapshot: Option<Rc<Snapshot>>,
    loading: Option<Loading>,
    /// A fire of this app routed by `shortest_eta` was seen: loads include durations.
    wants_eta: bool,
    /// Jobs of such fires, whose durations the next load includes.
    eta_jobs: HashSet<String>,
}

/// The pools of every app this node dispatches to. Lives on the dispatch thread.
pub struct ExecutorPools {
    db: Db,
    executor_timeout_ms: u64,
    version: RegistryVersion,
    apps: RefCell<HashMap<String, PoolState>>,
}

impl ExecutorPools {
    pub fn new(db: Db, executor_timeout_ms: u64, version: RegistryVersion) -> ExecutorPools {
        ExecutorPools {
            db,
            executor_timeout_ms,
            version,
            apps: RefCell::new(HashMap::new()),
        }
    }

    /// The registry changed here (an executor stopped answering): reload on next use.
    pub fn registry_changed(&self) {
        self.version.changed();
    }

    /// Valid executors of `app` that serve `handler` (any, when the job names none), with
    /// their task lists and ETAs for a fire of `job_id`.
    pub async fn candidates(
        &self,
        app: &str,
        handler: Option<&str>,
        job_id: &str,
        with_eta: bool,
    ) -> Result<Vec<Candidate>, AppError> {
        let snapshot = self.snapshot(app, job_id, with_eta).await?;
        let now = now_ms();
        let this_fire = snapshot.duration_of(job_id);
        Ok(snapshot
            .members
            .iter()
            .filter(|m| m.row.is_valid(now, self.executor_timeout_ms))
            .filter(|m| handler.is_none_or(|name| m.handlers.iter().any(|h| h == name)))
            .map(|m| Candidate {
                row: m.row.clone(),
                task_list: m.task_list.get(),
                eta_ms: (m.work_ms.get() + this_fire) / f64::from(m.row.capacity.max(1)),
                batches: m.batches,
            })
            .collect())
    }

    /// Counts a fire of `job_id` handed to the executor `label` of `app` into its task
    /// list until the pool is next loaded.
    pub fn handed_out(&self, app: &str, label: &str, job_id: &str) {
        let apps = self.apps.borrow();
        let Some(snapshot) = apps.get(app).and_then(|p| p.snapshot.as_ref()) else {
            return;
        };
        if let Some(member) = snapshot.members.iter().find(|m| m.label == label) {
            member.task_list.set(member.task_list.get() + 1);
            member
                .work_ms
                .set(member.work_ms.get() + snapshot.duration_of(job_id));
        }
    }

    /// The app's pool, loaded again if stale; concurrent callers share one load.
    async fn snapshot(
        &self,
        app: &str,
        job_id: &str,
        with_eta: bool,
    ) -> Result<Rc<Snapshot>, AppError> {
        let version = self.version.current();
        let loading = {
            let mut apps = self.apps.borrow_mut();
            let pool = apps.entry(app.to_string()).or_default();
            if with_eta {
                pool.wants_eta = true;
                if pool.eta_jobs.len() >= MAX_ETA_JOBS {
                    pool.eta_jobs.clear();
                }
                pool.eta_jobs.insert(job_id.to_string());
            }
            let usable = pool.snapshot.as_ref().filter(|s| {
                s.is_fresh(version)
                    && (!with_eta || s.durations.as_ref().is_some_and(|d| d.contains_key(job_id)))
            });
            if let Some(snapshot) = usable {
                return Ok(snapshot.clone());
            }
            match &pool.loading {
                Some(loading) => loading.clone(),
                None => {
                    let loading = self.load(app, version, pool).shared();
                    pool.loading = Some(loading.clone());
                    loading
                }
            }
        };
        let loaded = loading.await;
        let mut apps = self.apps.borrow_mut();
        let pool = apps.entry(app.to_string()).or_default();
        // The first waiter to wake stores the load; the others find it done.
        if pool.loading.as_ref().is_some_and(|l| l.peek().is_some()) {
            pool.loading = None;
            if let Ok(snapshot) = &loaded {
                pool.snapshot = Some(snapshot.clone());
            }
        }
        loaded.map_err(AppError::Internal)
    }

    fn load(
        &self,
        app: &str,
        version: u64,
        pool: &PoolState,
    ) -> LocalBoxFuture<'static, Result<Rc<Snapshot>, String>> {
        let db = self.db.clone();
        let app = app.to_string();
        let timeout_ms = self.executor_timeout_ms;
        let eta_jobs: Option<Vec<String>> = pool
            .wants_eta
            .then(|| pool.eta_jobs.iter().cloned().collect());
        async move {
            let started = Instant::now();
            let loaded = db
                .run(false, move |conn| {
                    load_pool(conn, &app, now_ms(), timeout_ms, eta_jobs)
                })
                .await
                .map_err(|e: AppError| e.to_string())?;
            Ok(Rc::new(loaded.into_snapshot(version, started.elapsed())))
        }
        .boxed_local()
    }
}

/// What one load read, before it becomes a [`Snapshot`] on the dispatch thread.
struct LoadedPool {
    rows: Vec<ExecutorRow>,
    /// Open fires per executor label: `(count, summed average durations)`.
    open: HashMap<String, (i64, f64)>,
    durations: Option<HashMap<String, f64>>,
}

impl LoadedPool {
    fn into_snapshot(self, version: u64, took: Duration) -> Snapshot {
        let members = self
            .rows
            .into_iter()
            .map(|row| {
                let label = executor_label(&row.app, &row.instance_id);
                let (count, work) = self.open.get(&label).copied().unwrap_or_default();
                Member {
                    handlers: serde_json::from_str(&row.handlers).unwrap_or_default(),
                    batches: row.has_feature(cronhook_sdk::protocol::FEATURE_DISPATCH_BATCH),
                    label,
                    row: Rc::new(row),
                    task_list: Cell::new(count),
                    work_ms: Cell::new(work),
                }
            })
            .collect();
        Snapshot {
            loaded_at: Instant::now(),
            fresh_for: refresh_after(took),
            version,
            members,
            durations: self.durations,
        }
    }
}

/// Valid executors of `app` with their open fires; with `eta_jobs`, also the average
/// durations of those fires' jobs and of `eta_jobs`.
fn load_pool(
    conn: &mut DbConnection,
    app: &str,
    now: i64,
    timeout_ms: u64,
    eta_jobs: Option<Vec<String>>,
) -> Result<LoadedPool, AppError> {
    let rows: Vec<ExecutorRow> = db::executors::list(conn, Some(app))?
        .into_iter()
        .filter(|row| row.is_valid(now, timeout_ms))
        .collect();
    if rows.is_empty() {
        return Ok(LoadedPool {
            rows,
            open: HashMap::new(),
            durations: eta_jobs.map(|_| HashMap::new()),
        });
    }
    let labels: Vec<String> = rows
        .iter()
        .map(|r| executor_label(&r.app, &r.instance_id))
        .collect();
    let mut open: HashMap<String, (i64, f64)> = HashMap::new();
    let Some(mut jobs) = eta_jobs else {
        for (label, count) in db::fires::open_counts_by_executor(conn, &labels)? {
            open.entry(label).or_default().0 += count;
        }
        return Ok(LoadedPool {
            rows,
            open,
            durations: None,
        });
    };
    // Each open fire weighs its own job's average duration.
    let open_jobs = db::fires::open_jobs_by_executor(conn, &labels)?;
    jobs.extend(open_jobs.iter().map(|(_, job)| job.clone()));
    jobs.sort();
    jobs.dedup();
    let mut durations: HashMap<String, f64> = db::fires::average_durations(conn, &jobs)?
        .into_iter()
        .collect();
    // Jobs without finished runs are known too (at the default), so they do not reload.
    for job in jobs {
        durations.entry(job).or_insert(DEFAULT_DURATION_MS);
    }
    for (label, job) in &open_jobs {
        let entry = open.entry(label.clone()).or_default();
        entry.0 += 1;
        entry.1 += durations.get(job).copied().unwrap_or(DEFAULT_DURATION_MS);
    }
    Ok(LoadedPool {
        rows,
        open,
        durations: Some(durations),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::executors::HeartbeatUpdate;

    #[test]
    fn a_slow_load_is_used_for_longer() {
        let quick = Duration::from_millis(POOL_REFRESH_MS);
        assert_eq!(refresh_after(Duration::from_millis(3)), quick);
        assert_eq!(refresh_after(Duration::from_millis(10)), quick);
        assert_eq!(
            refresh_after(Duration::from_millis(34)),
            Duration::from_millis(850)
        );
        assert_eq!(
            refresh_after(Duration::from_millis(180)),
            Duration::from_millis(LONGEST_REFRESH_MS)
        );
    }

    fn beat(db: &Db, instance: &str, handlers: &str) {
        let mut conn = db.write().expect("a connection");
        let update = HeartbeatUpdate {
            address: "http://127.0.0.1:9",
            handlers,
            capacity: 4,
            running: 0,
            queued: 0,
            cpu_percent: 0.0,
            mem_used_bytes: 0,
            mem_total_bytes: 0,
            load1: 0.0,
            sdk_version: "test",
            last_heartbeat_at: now_ms(),
            failures: 0,
            valid: true,
            features: "[]",
        };
        db::executors::record_heartbeat(&mut conn, "app", instance, &update)
            .expect("heartbeat recorded");
    }

    fn instances(candidates: &[Candidate]) -> Vec<String> {
        let mut ids: Vec<String> = candidates
            .iter()
            .map(|c| c.row.instance_id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[actix_rt::test]
    async fn a_pool_is_reused_until_the_registry_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::migrated_sqlite(&dir);
        beat(&db, "a", r#"["sync"]"#);
        let version = RegistryVersion::default();
        let pools = ExecutorPools::new(db.clone(), 60_000, version.clone());
        let first = pools.candidates("app", None, "job", false).await;
        assert_eq!(instances(&first.expect("loads")), ["a"]);

        // Registered behind the pool's back: not seen while the loaded pool is fresh...
        beat(&db, "b", r#"["scan"]"#);
        let cached = pools.candidates("app", None, "job", false).await;
        assert_eq!(instances(&cached.expect("cached")), ["a"]);
        // ...and seen at once when this node says the registry changed.
        version.changed();
        let reloaded = pools.candidates("app", None, "job", false).await;
        assert_eq!(instances(&reloaded.expect("reloads")), ["a", "b"]);
        let scanners = pools.candidates("app", Some("scan"), "job", false).await;
        assert_eq!(instances(&scanners.expect("filters")), ["b"]);
        let none = pools.candidates("other", None, "job", false).await;
        assert!(none.expect("empty pool loads").is_empty());
    }

    #[actix_rt::test]
    async fn fires_handed_out_count_until_the_next_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::migrated_sqlite(&dir);
        beat(&db, "a", "[]");
        let pools = ExecutorPools::new(db, 60_000, RegistryVersion::default());
        let task_list = |candidates: &[Candidate], id: &str| {
            candidates
                .iter()
                .find(|c| c.row.instance_id == id)
                .map(|c| (c.task_list, c.eta_ms))
        };
        let before = pools
            .candidates("app", None, "job", true)
            .await
            .expect("loads");
        assert_eq!(
            task_list(&before, "a"),
            Some((0, DEFAULT_DURATION_MS / 4.0))
        );
        pools.handed_out("app", "app/a", "job");
        pools.handed_out("app", "app/a", "job");
        let after = pools
            .candidates("app", None, "job", true)
            .await
            .expect("cached");
        // Two fires of a job without history: two default durations more, over capacity 4.
        assert_eq!(
            task_list(&after, "a"),
            Some((2, 3.0 * DEFAULT_DURATION_MS / 4.0))
        );
        pools.registry_changed();
        let reloaded = pools
            .candidates("app", None, "job", true)
            .await
            .expect("reloads");
        assert_eq!(
            task_list(&reloaded, "a"),
            Some((0, DEFAULT_DURATION_MS / 4.0))
        );
    }
}
