//! The current version and state of jobs, for claims and batched write-backs, read
//! from the database as rarely as possible. Each thread keeps what it read, valid as
//! long as the jobs generation (a token a database trigger replaces on every change
//! to `jobs`, migration 10) reads the same: then a batch costs one one-row read
//! instead of reading the version of each of its jobs (a query with hundreds of ids
//! per claim round and per write-back batch). A spec is parsed once per job version.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::db::{self, DbConnection};
use crate::domain::JobState;
use crate::error::AppError;
use crate::scheduler::claim::JobForDispatch;

/// A job's state and parsed version, as [`current_jobs`] answers them.
pub type CurrentJob = (JobState, Arc<JobForDispatch>);

/// What one thread knows of the jobs at one generation: `None` for a job that does
/// not exist (or whose spec cannot be read), which a new job would change.
#[derive(Default)]
struct KnownAt {
    generation: Option<i64>,
    jobs: HashMap<String, Option<CurrentJob>>,
}

thread_local! {
    static KNOWN: RefCell<KnownAt> = RefCell::new(KnownAt::default());
    /// Parsed jobs by (id, version): when the generation changes because one job
    /// changed, the others are read again (version and state) but not parsed again.
    static PARSED: RefCell<HashMap<(String, i32), Arc<JobForDispatch>>> =
        RefCell::new(HashMap::new());
}

/// Entries kept at most per thread in each cache; beyond, it starts over.
const MAX_JOBS: usize = 100_000;

/// The current version of the jobs among `ids` and their state, keyed by id (a job
/// gone, or with an unreadable spec, is left out).
pub fn current_jobs(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<HashMap<String, CurrentJob>, AppError> {
    let generation = db::jobs::generation(conn)?;
    let mut jobs = HashMap::with_capacity(ids.len());
    let mut unknown: Vec<String> = Vec::new();
    KNOWN.with(|known| {
        let mut known = known.borrow_mut();
        if known.generation != Some(generation) {
            known.jobs.clear();
            known.generation = Some(generation);
        }
        for id in ids {
            match known.jobs.get(id) {
                Some(Some(job)) => {
                    jobs.insert(id.clone(), job.clone());
                }
                Some(None) => {}
                None => unknown.push(id.clone()),
            }
        }
    });
    if unknown.is_empty() {
        return Ok(jobs);
    }
    unknown.sort();
    unknown.dedup();
    let read = read_current_jobs(conn, &unknown)?;
    KNOWN.with(|known| {
        let mut known = known.borrow_mut();
        if known.jobs.len() + unknown.len() > MAX_JOBS {
            known.jobs.clear();
        }
        // Rows read now may be newer than `generation` (PostgreSQL, another node
        // committing meanwhile), never older; a newer generation clears them anyway.
        for id in unknown {
            let job = read.get(&id).cloned();
            known.jobs.insert(id, job);
        }
    });
    jobs.extend(read);
    Ok(jobs)
}

/// Reads the version and state of `ids` (sorted, distinct) and parses the versions
/// not parsed before.
fn read_current_jobs(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<HashMap<String, CurrentJob>, AppError> {
    let current = db::jobs::versions_of(conn, ids)?;
    let mut jobs = HashMap::with_capacity(current.len());
    let mut unparsed = Vec::new();
    PARSED.with(|parsed| {
        let parsed = parsed.borrow();
        for v in current {
            let state = JobState::parse(&v.state).unwrap_or(JobState::Paused);
            match parsed.get(&(v.id.clone(), v.version)) {
                Some(job) => {
                    jobs.insert(v.id, (state, job.clone()));
                }
                None => unparsed.push((v.id, state)),
            }
        }
    });
    if unparsed.is_empty() {
        return Ok(jobs);
    }
    let unparsed_ids: Vec<String> = unparsed.iter().map(|(id, _)| id.clone()).collect();
    let states: HashMap<String, JobState> = unparsed.into_iter().collect();
    let rows = db::jobs::find_many(conn, &unparsed_ids)?;
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if parsed.len() + rows.len() > MAX_JOBS {
            parsed.clear();
        }
        for row in &rows {
            let job = match JobForDispatch::from_row(row) {
                Ok(job) => Arc::new(job),
                Err(e) => {
                    log::error!("{e}");
                    continue;
                }
            };
            parsed.insert((row.id.clone(), row.version), job.clone());
            // The state read with the version: the row read now may be newer, never older.
            let state = states.get(&row.id).copied().unwrap_or(JobState::Paused);
            jobs.insert(row.id.clone(), (state, job));
        }
    });
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::*;
    use crate::db::jobs::JobRow;
    use crate::domain::JobInput;

    fn job_row(id: &str, version: i32, url: &str) -> JobRow {
        let input: JobInput = serde_json::from_value(serde_json::json!({
            "group": "g", "name": id, "target": { "url": url },
            "triggers": [{ "kind": "cron", "expression": "* * * * * ?" }],
        }))
        .expect("job input");
        let spec = input.validate(60_000).expect("valid job");
        JobRow {
            id: id.to_string(),
            group_name: "g".into(),
            name: id.to_string(),
            description: String::new(),
            state: "active".into(),
            version,
            spec: serde_json::to_string(&spec).expect("spec json"),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// The job's target as stored, to tell its versions apart.
    fn target_of(jobs: &HashMap<String, CurrentJob>, id: &str) -> String {
        jobs.get(id)
            .map(|(_, job)| serde_json::to_string(&job.spec.target).expect("target"))
            .unwrap_or_default()
    }

    /// Every kind of change to a job is seen by the next call on the same thread,
    /// including one rolled back after it was read; reads in between are answered
    /// from what the thread knows.
    #[test]
    fn a_changed_job_is_read_again_and_an_unchanged_one_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::migrated_sqlite(&dir);
        let mut conn = db.write().expect("connection");
        let conn: &mut DbConnection = &mut conn;
        let ids = vec!["a".to_string(), "b".to_string()];
        db::jobs::insert(conn, &job_row("a", 1, "http://127.0.0.1:1/one")).expect("insert");

        let first = current_jobs(conn, &ids).expect("read");
        assert!(
            target_of(&first, "a").contains("/one"),
            "{}",
            target_of(&first, "a")
        );
        assert!(!first.contains_key("b"), "b does not exist");

        // Unchanged generation: answered from memory, so a row changed behind the
        // trigger's back (impossible outside this test) is not seen.
        let generation = db::jobs::generation(conn).expect("generation");
        diesel::sql_query("DROP TRIGGER jobs_generation_on_update")
            .execute(conn)
            .expect("drop");
        db::jobs::update(conn, &job_row("a", 2, "http://127.0.0.1:1/unseen")).expect("update");
        assert_eq!(db::jobs::generation(conn).expect("generation"), generation);
        let cached = current_jobs(conn, &ids).expect("read");
        assert_eq!(
            cached["a"].1.version, 1,
            "answered from what the thread knew"
        );
        diesel::sql_query(
            "CREATE TRIGGER jobs_generation_on_update AFTER UPDATE ON jobs BEGIN \
             UPDATE jobs_generation SET generation = random() WHERE id = 1; END",
        )
        .execute(conn)
        .expect("restore trigger");

        // A change: seen at once.
        db::jobs::update(conn, &job_row("a", 3, "http://127.0.0.1:1/three")).expect("update");
        let changed = current_jobs(conn, &ids).expect("read");
        assert_eq!(changed["a"].1.version, 3);
        assert!(target_of(&changed, "a").contains("/three"));

        // Pausing keeps the version and is seen too.
        db::jobs::set_state(conn, "a", "paused", 1).expect("pause");
        assert_eq!(
            current_jobs(conn, &ids).expect("read")["a"].0,
            JobState::Paused
        );

        // A new job is found although its absence was known.
        db::jobs::insert(conn, &job_row("b", 1, "http://127.0.0.1:1/b")).expect("insert");
        assert!(current_jobs(conn, &ids).expect("read").contains_key("b"));

        // A change read inside a transaction that is then rolled back is forgotten.
        let rolled_back: Result<(), diesel::result::Error> = conn.transaction(|conn| {
            db::jobs::update(conn, &job_row("b", 2, "http://127.0.0.1:1/gone"))?;
            assert_eq!(current_jobs(conn, &ids).expect("read")["b"].1.version, 2);
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(rolled_back.is_err());
        assert_eq!(current_jobs(conn, &ids).expect("read")["b"].1.version, 1);

        // A removed job is gone.
        db::jobs::delete(conn, "a").expect("delete");
        assert!(!current_jobs(conn, &ids).expect("read").contains_key("a"));
    }
}
