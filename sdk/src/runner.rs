//! Runs one handler call: deadline, cancellation and panics all end as a result.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use chrono::Utc;
use futures_util::FutureExt;

use crate::context::FireContext;
use crate::executor::Inner;
use crate::protocol::{ResultStatus, WriteBack, MAX_OUTPUT_BYTES};
use crate::state::Accepted;

/// Error reported for a fire cancelled by the scheduler.
pub(crate) const CANCELLED: &str = "cancelled";

pub(crate) async fn execute(inner: &Inner, fire: Accepted) -> WriteBack {
    let started_at = Utc::now();
    let id = fire.request.fire_id;
    let deadline = fire.request.deadline;
    let Ok(remaining) = (deadline - started_at).to_std() else {
        fire.token.cancel();
        return failed(
            format!("timeout: the fire's deadline {deadline} passed before the handler started"),
            None,
        );
    };
    let token = fire.token.clone();
    let ctx = FireContext::new(fire.request, fire.handler_name, fire.token);
    // AssertUnwindSafe: after a panic the future is dropped, never polled again, so no
    // broken state it held is observed.
    let run = AssertUnwindSafe(fire.handler.call(ctx)).catch_unwind();
    let outcome = tokio::select! {
        // A handler that finishes in the same instant as a cancel keeps its result.
        biased;
        result = run => match result {
            Ok(Ok(output)) => Ok(output.into_string()),
            Ok(Err(e)) => Err(e.message().to_owned()),
            Err(panic) => Err(format!("handler panicked: {}", panic_message(panic.as_ref()))),
        },
        _ = token.cancelled() => Err(inner.table().cancel_reason(id).unwrap_or_else(|| CANCELLED.to_owned())),
        _ = tokio::time::sleep(remaining) => {
            // Dropping the future stops it here; the token tells anything it spawned.
            token.cancel();
            Err(format!("timeout: the handler did not finish by the fire's deadline {deadline}"))
        }
    };
    let finished_at = Some(Utc::now());
    let mut result = match outcome {
        Ok(output) => WriteBack {
            fire_id: None,
            status: ResultStatus::Succeeded,
            output,
            error: None,
            started_at: Some(started_at),
            finished_at,
        },
        Err(error) => failed(error, Some(started_at)),
    };
    if let Some(output) = result.output.as_mut() {
        cap(output);
    }
    result
}

/// A failed result for `error`; `started_at` is `None` for a fire that never ran.
pub(crate) fn failed(mut error: String, started_at: Option<chrono::DateTime<Utc>>) -> WriteBack {
    cap(&mut error);
    WriteBack {
        fire_id: None,
        status: ResultStatus::Failed,
        output: None,
        error: Some(error),
        started_at,
        finished_at: Some(Utc::now()),
    }
}

/// Cuts text far beyond what the scheduler stores, but keeps it just over
/// [`MAX_OUTPUT_BYTES`], so the scheduler still sees (and marks) that it was cut.
fn cap(text: &mut String) {
    if text.len() <= MAX_OUTPUT_BYTES + 4 {
        return;
    }
    let mut end = MAX_OUTPUT_BYTES + 1;
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text.truncate(end);
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic payload is not a string)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_text_just_over_the_stored_limit() {
        let mut long = "é".repeat(MAX_OUTPUT_BYTES);
        cap(&mut long);
        assert!(long.len() > MAX_OUTPUT_BYTES && long.len() <= MAX_OUTPUT_BYTES + 4);
        let mut short = "x".repeat(MAX_OUTPUT_BYTES);
        cap(&mut short);
        assert_eq!(short.len(), MAX_OUTPUT_BYTES);
    }

    #[test]
    fn panic_messages_are_extracted() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert!(panic_message(&42u8).contains("not a string"));
    }
}
