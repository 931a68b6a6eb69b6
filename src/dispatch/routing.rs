//! Picking executors for a fire whose target is an app (origin document 000): only
//! valid executors are candidates, ordered by the job's routing strategy; the
//! dispatcher tries them in that order until one accepts.

use std::hash::{Hash, Hasher};
use std::rc::Rc;

use rand::seq::SliceRandom;

use crate::db::executors::ExecutorRow;
use crate::domain::Routing;

/// An executor that may take the fire, with what the strategies weigh.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Shared with the executor pool it was picked from.
    pub row: Rc<ExecutorRow>,
    /// Fires in `fired`/`running` on it, as the scheduler counts them (its task list).
    pub task_list: i64,
    /// Estimated milliseconds to drain its task list plus this fire.
    pub eta_ms: f64,
    /// It takes batch dispatches (`POST {prefix}/fires/batch`).
    pub batches: bool,
}

impl Candidate {
    /// The label stored in `fires.executor` for fires this executor runs.
    pub fn label(&self) -> String {
        executor_label(&self.row.app, &self.row.instance_id)
    }

    /// Where dispatches go: the SDK's fires route under the advertised address.
    pub fn dispatch_url(&self) -> String {
        format!(
            "{}{}",
            self.row.address,
            cronhook_sdk::protocol::FIRES_ROUTE
        )
    }

    /// Where batch dispatches go (only for executors that take them).
    pub fn batch_url(&self) -> String {
        format!(
            "{}{}",
            self.row.address,
            cronhook_sdk::protocol::FIRES_BATCH_ROUTE
        )
    }
}

pub fn executor_label(app: &str, instance_id: &str) -> String {
    format!("{app}/{instance_id}")
}

/// Orders candidates by strategy: the dispatcher tries them first to last.
/// `turn` is the job's round-robin counter; `pinned` the named instance.
pub fn order(
    strategy: Routing,
    mut candidates: Vec<Candidate>,
    job_id: &str,
    turn: usize,
    pinned: Option<&str>,
) -> Vec<Candidate> {
    // A stable base order (registration order: ids are time-ordered uuids).
    candidates.sort_by(|a, b| a.row.id.cmp(&b.row.id));
    match strategy {
        Routing::LeastLoaded => {
            // Ties go to a random one, so equal executors share the work.
            candidates.shuffle(&mut rand::thread_rng());
            candidates.sort_by_key(|c| (c.task_list, c.row.running + c.row.queued));
        }
        Routing::ShortestEta => {
            candidates.shuffle(&mut rand::thread_rng());
            candidates.sort_by(|a, b| a.eta_ms.total_cmp(&b.eta_ms));
        }
        Routing::RoundRobin => {
            if !candidates.is_empty() {
                let start = turn % candidates.len();
                candidates.rotate_left(start);
            }
        }
        Routing::Random => candidates.shuffle(&mut rand::thread_rng()),
        Routing::ConsistentHash => {
            // Rendezvous hashing: a job keeps its executor while that one stays valid,
            // and only the jobs of an executor that leaves move.
            candidates.sort_by_key(|c| std::cmp::Reverse(rendezvous(job_id, &c.row.instance_id)));
        }
        Routing::Pinned => {
            candidates.retain(|c| Some(c.row.instance_id.as_str()) == pinned);
        }
        // Fixed order; broadcast sends to all of them.
        Routing::Failover | Routing::Broadcast => {}
    }
    candidates
}

fn rendezvous(job_id: &str, instance_id: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    job_id.hash(&mut hasher);
    instance_id.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, task_list: i64, eta_ms: f64) -> Candidate {
        Candidate {
            row: Rc::new(ExecutorRow {
                app: "a".into(),
                address: format!("http://127.0.0.1/{id}"),
                capacity: 1,
                sdk_version: String::new(),
                ..ExecutorRow::for_tests(id)
            }),
            task_list,
            eta_ms,
            batches: false,
        }
    }

    fn ids(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.row.id.as_str()).collect()
    }

    #[test]
    fn strategies_order_candidates() {
        let all = || {
            vec![
                candidate("1", 3, 500.0),
                candidate("2", 1, 900.0),
                candidate("3", 2, 100.0),
            ]
        };
        assert_eq!(
            ids(&order(Routing::LeastLoaded, all(), "j", 0, None))[0],
            "2"
        );
        assert_eq!(
            ids(&order(Routing::ShortestEta, all(), "j", 0, None))[0],
            "3"
        );
        assert_eq!(
            ids(&order(Routing::RoundRobin, all(), "j", 4, None)),
            ["2", "3", "1"]
        );
        assert_eq!(
            ids(&order(Routing::Failover, all(), "j", 9, None)),
            ["1", "2", "3"]
        );
        assert_eq!(
            ids(&order(Routing::Pinned, all(), "j", 0, Some("i-3"))),
            ["3"]
        );
        assert!(order(Routing::Pinned, all(), "j", 0, Some("i-9")).is_empty());
        let first = ids(&order(Routing::ConsistentHash, all(), "job-7", 0, None))[0].to_string();
        for _ in 0..5 {
            assert_eq!(
                ids(&order(Routing::ConsistentHash, all(), "job-7", 0, None))[0],
                first
            );
        }
    }
}
