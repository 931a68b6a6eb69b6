//! Records what targets answered, in batches (`db::batcher`): a wave's answers arrive
//! together, and are recorded with one UPDATE per 500 acknowledgements and one per 500
//! plain successes; the rest (failures with their retries, jobs with child jobs) one by
//! one, as `outcome::end_fires` decides.

use std::rc::Rc;

use crate::db::batcher::Batcher;
use crate::db::fires::Acknowledged;
use crate::db::{self, Db, DbConnection};
use crate::error::AppError;
use crate::scheduler::outcome::{end_fires, Ended, Ending};

/// What a target's answer (or its absence) means for a fire.
#[derive(Debug, Clone)]
pub enum Answered {
    /// Callback mode, accepted: `fired → running`; the result comes by write-back.
    Acknowledged(Acknowledged),
    /// A terminal state decided by the dispatch (a sync answer, a refusal, no executor…).
    Ended(Ending),
}

/// Records answers in batches (see `db::batcher`).
pub type Recorder = Batcher<Answered, Option<Ended>>;

pub fn start(db: Db) -> Rc<Recorder> {
    // Retried while the database is away: the target has answered, that must not be lost.
    Batcher::new(db, record_answers, true)
}

/// Records a batch of answers, results in the order given.
fn record_answers(
    conn: &mut DbConnection,
    answers: &[Answered],
) -> Result<Vec<Result<Option<Ended>, AppError>>, AppError> {
    let (mut acks, mut endings) = (Vec::new(), Vec::new());
    for answer in answers {
        match answer {
            Answered::Acknowledged(ack) => acks.push(ack.clone()),
            Answered::Ended(ending) => endings.push(ending.clone()),
        }
    }
    let mut ack_results = record_acknowledgements(conn, &acks)?.into_iter();
    let mut end_results = end_fires(conn, &endings)?.into_iter();
    Ok(answers
        .iter()
        .map(|answer| match answer {
            Answered::Acknowledged(_) => ack_results
                .next()
                .unwrap_or_else(|| Err(AppError::Internal("acknowledgement not recorded".into())))
                .map(|()| None),
            Answered::Ended(_) => end_results
                .next()
                .unwrap_or_else(|| Err(AppError::Internal("ending not recorded".into())))
                .map(Some),
        })
        .collect())
}

/// `fired → running` for each acknowledgement; where a write-back overtook it (the
/// fire already ended), the dispatch facts are still filled in.
fn record_acknowledgements(
    conn: &mut DbConnection,
    acks: &[Acknowledged],
) -> Result<Vec<Result<(), AppError>>, AppError> {
    if acks.is_empty() {
        return Ok(Vec::new());
    }
    let running: std::collections::HashSet<String> = db::fires::mark_running_many(conn, acks)?
        .into_iter()
        .collect();
    Ok(acks
        .iter()
        .map(|ack| {
            if !running.contains(&ack.id) {
                db::fires::fill_dispatch_facts(conn, ack)?;
            }
            Ok(())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fires::{self, Finish};
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    /// An executor that answers at once can write its result back before its 202 is
    /// recorded: the fire stays finished, and the acknowledgement still fills in when
    /// it was sent, acknowledged and due back.
    #[test]
    fn an_overtaken_acknowledgement_fills_in_the_dispatch_facts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::db::migrated_sqlite(&dir);
        let mut conn = db.write().expect("a connection");
        let conn: &mut DbConnection = &mut conn;
        conn.batch_execute(
            "INSERT INTO fires (id, job_id, job_version, attempt, state, scheduled_at, \
             due_at, fired_at, owner_node) VALUES \
             ('overtaken', 'j', 1, 1, 'fired', 100, 100, 90, 'node-a'), \
             ('in-order', 'j', 1, 1, 'fired', 100, 100, 90, 'node-a')",
        )
        .expect("fires inserted");
        let written_back = Finish {
            state: "succeeded",
            finished_at: 120,
            ..Default::default()
        };
        assert_eq!(
            fires::finish(conn, "overtaken", &["fired", "running"], &written_back)
                .expect("write-back recorded"),
            1
        );
        let ack = |id: &str| Acknowledged {
            id: id.into(),
            dispatched_at: 101,
            acked_at: 125,
            deadline_at: 30_101,
            http_status: 202,
            executor: "app/e1".into(),
        };
        let results =
            record_acknowledgements(conn, &[ack("overtaken"), ack("in-order")]).expect("recorded");
        assert!(results.iter().all(Result::is_ok), "{results:?}");

        use crate::db::schema::fires as table;
        type Facts = (
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Facts> = table::table
            .select((
                table::id,
                table::state,
                table::dispatched_at,
                table::acked_at,
                table::deadline_at,
                table::executor,
            ))
            .order(table::id)
            .load(conn)
            .expect("fires read");
        let filled = (
            Some(101),
            Some(125),
            Some(30_101),
            Some("app/e1".to_string()),
        );
        for (id, state, dispatched, acked, deadline, executor) in rows {
            let expected_state = if id == "overtaken" {
                "succeeded"
            } else {
                "running"
            };
            assert_eq!(state, expected_state, "{id}");
            assert_eq!((dispatched, acked, deadline, executor), filled, "{id}");
        }
    }
}
