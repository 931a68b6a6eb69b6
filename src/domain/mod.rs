//! Jobs, triggers and fires as the rest of the server sees them, and the
//! validation that turns API input into them.

pub mod calendar;
pub mod fire;
pub mod job;
pub mod trigger;

pub use calendar::{Calendar, CalendarInput};
pub use fire::FireState;
pub use job::{Concurrency, JobInput, JobSpec, JobState, Mode, RetryPolicy, Routing, Target};
pub use trigger::{MisfirePolicy, TriggerInput, TriggerKind, TriggerSpec};
