//! The in-memory fire table: what is queued, what runs, what finished recently.
//! One mutex guards it; every method is short and never awaits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::handler::ErasedHandler;
use crate::protocol::{DispatchRequest, WriteBack};

/// A fire accepted for running.
pub(crate) struct Accepted {
    pub request: DispatchRequest,
    pub handler_name: String,
    pub handler: Arc<dyn ErasedHandler>,
    pub token: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
}

struct Active {
    phase: Phase,
    token: CancellationToken,
    cancel_reason: Option<String>,
}

struct Finished {
    /// Kept without its output: outputs may be large, and while undelivered the full
    /// result is in the outbox anyway.
    result: WriteBack,
    delivered: bool,
}

/// What happened to a dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Accepted,
    /// The fire id is known already: acknowledged again, not run again.
    Duplicate,
    Busy,
    Draining,
}

/// What the table knows about a fire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Known {
    Queued,
    Running,
    Finished { result: WriteBack, delivered: bool },
}

pub(crate) enum Cancelled {
    Unknown,
    /// It was waiting: removed from the queue, never started.
    Dequeued(Box<Accepted>),
    /// It runs: its token is cancelled, the runner reports it.
    Signalled,
}

pub(crate) struct FireTable {
    capacity: usize,
    queue_len: usize,
    recent: usize,
    queue: VecDeque<Accepted>,
    active: HashMap<Uuid, Active>,
    finished: HashMap<Uuid, Finished>,
    finished_order: VecDeque<Uuid>,
    running: usize,
    draining: bool,
}

impl FireTable {
    pub fn new(capacity: usize, queue_len: usize, recent: usize) -> FireTable {
        FireTable {
            capacity,
            queue_len,
            recent,
            queue: VecDeque::new(),
            active: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            running: 0,
            draining: false,
        }
    }

    pub fn admit(&mut self, fire: Accepted) -> Admission {
        if self.draining {
            return Admission::Draining;
        }
        let id = fire.request.fire_id;
        if self.knows(id) {
            return Admission::Duplicate;
        }
        // Free slots count as queue room: the runner moves fires to slots right away.
        if self.running + self.queue.len() >= self.capacity + self.queue_len {
            return Admission::Busy;
        }
        self.active.insert(
            id,
            Active {
                phase: Phase::Queued,
                token: fire.token.clone(),
                cancel_reason: None,
            },
        );
        self.queue.push_back(fire);
        Admission::Accepted
    }

    pub fn knows(&self, id: Uuid) -> bool {
        self.active.contains_key(&id) || self.finished.contains_key(&id)
    }

    /// The next queued fire, if a slot is free; it counts as running from now on.
    pub fn start_next(&mut self) -> Option<Accepted> {
        if self.running >= self.capacity {
            return None;
        }
        let fire = self.queue.pop_front()?;
        if let Some(active) = self.active.get_mut(&fire.request.fire_id) {
            active.phase = Phase::Running;
        }
        self.running += 1;
        Some(fire)
    }

    /// Records the result of a fire that was queued or running.
    pub fn finish(&mut self, id: Uuid, result: &WriteBack) {
        if let Some(active) = self.active.remove(&id) {
            if active.phase == Phase::Running {
                self.running -= 1;
            }
        }
        let mut result = result.clone();
        result.output = None;
        if self
            .finished
            .insert(
                id,
                Finished {
                    result,
                    delivered: false,
                },
            )
            .is_none()
        {
            self.finished_order.push_back(id);
        }
        while self.finished_order.len() > self.recent {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    pub fn mark_delivered(&mut self, id: Uuid) {
        if let Some(finished) = self.finished.get_mut(&id) {
            finished.delivered = true;
        }
    }

    pub fn cancel(&mut self, id: Uuid, reason: &str) -> Cancelled {
        let Some(active) = self.active.get_mut(&id) else {
            return Cancelled::Unknown;
        };
        match active.phase {
            Phase::Running => {
                if active.cancel_reason.is_none() {
                    active.cancel_reason = Some(reason.to_owned());
                }
                active.token.cancel();
                Cancelled::Signalled
            }
            Phase::Queued => match self.queue.iter().position(|f| f.request.fire_id == id) {
                Some(index) => match self.queue.remove(index) {
                    Some(fire) => {
                        fire.token.cancel();
                        Cancelled::Dequeued(Box::new(fire))
                    }
                    None => Cancelled::Unknown,
                },
                None => Cancelled::Unknown,
            },
        }
    }

    /// Why a running fire's token was cancelled, if the SDK did it.
    pub fn cancel_reason(&self, id: Uuid) -> Option<String> {
        self.active.get(&id).and_then(|a| a.cancel_reason.clone())
    }

    /// Refuses new fires from now on and hands back those still waiting.
    pub fn begin_drain(&mut self) -> Vec<Accepted> {
        self.draining = true;
        self.queue.drain(..).collect()
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    pub fn running_ids(&self) -> Vec<Uuid> {
        self.active
            .iter()
            .filter(|(_, a)| a.phase == Phase::Running)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn status(&self, id: Uuid) -> Option<Known> {
        if let Some(active) = self.active.get(&id) {
            return Some(match active.phase {
                Phase::Queued => Known::Queued,
                Phase::Running => Known::Running,
            });
        }
        self.finished.get(&id).map(|f| Known::Finished {
            result: f.result.clone(),
            delivered: f.delivered,
        })
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::FireContext;
    use crate::handler::{JobError, Output};
    use crate::protocol::ResultStatus;
    use chrono::Utc;

    struct Nop;
    impl crate::Handler for Nop {
        async fn run(&self, _: FireContext) -> Result<Output, JobError> {
            Ok(Output::none())
        }
    }

    fn fire(id: Uuid) -> Accepted {
        Accepted {
            request: DispatchRequest {
                fire_id: id,
                job_id: Uuid::nil(),
                job: "g/n".into(),
                handler: None,
                attempt: 1,
                scheduled_at: Utc::now(),
                fired_at: Utc::now(),
                deadline: Utc::now(),
                payload: serde_json::Value::Null,
                callback_url: String::new(),
                shard: None,
            },
            handler_name: String::new(),
            handler: Arc::new(Nop),
            token: CancellationToken::new(),
        }
    }

    fn done() -> WriteBack {
        WriteBack {
            fire_id: None,
            status: ResultStatus::Succeeded,
            output: Some("big".into()),
            error: None,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn admits_up_to_capacity_plus_queue_then_busy() {
        let mut table = FireTable::new(1, 1, 10);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(table.admit(fire(a)), Admission::Accepted);
        assert!(table.start_next().is_some());
        assert!(table.start_next().is_none());
        assert_eq!(table.admit(fire(b)), Admission::Accepted);
        assert_eq!(table.admit(fire(c)), Admission::Busy);
        assert_eq!(table.admit(fire(a)), Admission::Duplicate);
        table.finish(a, &done());
        assert_eq!(table.running(), 0);
        assert_eq!(table.admit(fire(a)), Admission::Duplicate);
        assert_eq!(
            table.status(a),
            Some(Known::Finished {
                result: WriteBack {
                    output: None,
                    ..done()
                },
                delivered: false
            })
        );
        assert_eq!(table.status(b), Some(Known::Queued));
        assert_eq!(table.begin_drain().len(), 1);
        assert_eq!(table.admit(fire(c)), Admission::Draining);
    }

    #[test]
    fn recent_memory_is_bounded_and_cancel_finds_queued_and_running() {
        let mut table = FireTable::new(1, 5, 2);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            table.finish(*id, &done());
        }
        assert!(!table.knows(ids[0]));
        assert!(table.knows(ids[2]));

        let (run, wait) = (Uuid::new_v4(), Uuid::new_v4());
        table.admit(fire(run));
        table.admit(fire(wait));
        let started = table.start_next().unwrap();
        assert!(matches!(table.cancel(wait, "x"), Cancelled::Dequeued(_)));
        assert!(matches!(table.cancel(run, "why"), Cancelled::Signalled));
        assert!(started.token.is_cancelled());
        assert_eq!(table.cancel_reason(run).as_deref(), Some("why"));
        assert!(matches!(
            table.cancel(Uuid::new_v4(), "x"),
            Cancelled::Unknown
        ));
    }
}
