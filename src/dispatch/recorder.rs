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
                db::fires::fill_dispatch_facts(
                    conn,
                    &ack.id,
                    ack.dispatched_at,
                    ack.acked_at,
                    ack.http_status,
                    &ack.executor,
                )?;
            }
            Ok(())
        })
        .collect())
}
