//! The slot each fire holds while it is dispatched: a send slot (one of
//! `scheduler.dispatch_concurrency`) until its target has answered, then a recording
//! slot while the answer is recorded.
//!
//! Recording waits for the writer's commit and fsync, which under load is most of a
//! dispatch's time; with the send slot held over it, `dispatch_concurrency` bounded
//! the fires per second a node reached (512 slots / ~60 ms) rather than the requests
//! open at the targets. With no recording slot free a fire keeps its send slot, so a
//! backlog of answers waiting to be recorded slows sending instead of growing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct DispatchSlots {
    held: RefCell<HashMap<String, OwnedSemaphorePermit>>,
    recording: Arc<Semaphore>,
}

impl DispatchSlots {
    pub fn new(recording: Arc<Semaphore>) -> DispatchSlots {
        DispatchSlots {
            held: RefCell::new(HashMap::new()),
            recording,
        }
    }

    /// The fire starts its dispatch holding `send_slot`.
    pub fn hold(&self, fire_id: &str, send_slot: OwnedSemaphorePermit) {
        self.held
            .borrow_mut()
            .insert(fire_id.to_string(), send_slot);
    }

    /// The fire's target has answered (or the fire ends without a request): its send
    /// slot goes to the next fire if a recording slot is free. Unknown ids (a
    /// broadcast's shard fires, recorded under their own ids) are left alone.
    pub fn answered(&self, fire_id: &str) {
        let mut held = self.held.borrow_mut();
        let Some(slot) = held.get_mut(fire_id) else {
            return;
        };
        if let Ok(recording) = self.recording.clone().try_acquire_owned() {
            // Replacing the send slot drops, and so frees, it.
            *slot = recording;
        }
    }

    /// The fire's dispatch is over (its outcome recorded): whichever slot it holds is freed.
    pub fn release(&self, fire_id: &str) {
        self.held.borrow_mut().remove(fire_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_fire_frees_its_send_slot_for_a_recording_slot() {
        let sends = Arc::new(Semaphore::new(1));
        let recording = Arc::new(Semaphore::new(2));
        let slots = DispatchSlots::new(recording.clone());
        slots.hold(
            "a",
            sends.clone().try_acquire_owned().expect("a free send slot"),
        );
        assert_eq!(sends.available_permits(), 0);

        slots.answered("a");
        assert_eq!(sends.available_permits(), 1, "the send slot is free again");
        assert_eq!(recording.available_permits(), 1);

        // Answered twice (it cannot be sent twice): still one recording slot.
        slots.answered("a");
        assert_eq!(recording.available_permits(), 1);

        slots.release("a");
        assert_eq!(recording.available_permits(), 2);
        assert_eq!(sends.available_permits(), 1);
    }

    #[test]
    fn with_no_recording_slot_free_the_send_slot_is_kept_until_recorded() {
        let sends = Arc::new(Semaphore::new(1));
        let recording = Arc::new(Semaphore::new(0));
        let slots = DispatchSlots::new(recording);
        slots.hold(
            "a",
            sends.clone().try_acquire_owned().expect("a free send slot"),
        );
        slots.answered("a");
        assert_eq!(
            sends.available_permits(),
            0,
            "backpressure: the send slot stays taken"
        );
        slots.release("a");
        assert_eq!(sends.available_permits(), 1);
    }

    #[test]
    fn unknown_fires_are_ignored() {
        let recording = Arc::new(Semaphore::new(1));
        let slots = DispatchSlots::new(recording.clone());
        slots.answered("shard-of-a-broadcast");
        slots.release("shard-of-a-broadcast");
        assert_eq!(recording.available_permits(), 1);
    }
}
