//! What a service writes: a [`Handler`] with one async method, its [`Output`] and
//! its [`JobError`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::Serialize;

use crate::context::FireContext;

/// The business step of a job. The SDK does everything around it: signature check,
/// acknowledgement, queueing, deadline, panics, write-back with retries.
///
/// Handlers run on the executor's own single-threaded runtime (a tokio runtime with
/// actix's local task set), so the future need not be `Send` (awc works inside it).
/// Blocking or CPU-heavy work belongs in `tokio::task::spawn_blocking`.
///
/// ```
/// use cronhook_sdk::{FireContext, Handler, JobError, Output};
///
/// struct Greet;
///
/// impl Handler for Greet {
///     async fn run(&self, ctx: FireContext) -> Result<Output, JobError> {
///         let name: String = ctx.payload()?;
///         Ok(Output::text(format!("hello {name}")))
///     }
/// }
/// ```
// The futures are driven on one thread by the SDK, so callers never need a `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, ctx: FireContext) -> Result<Output, JobError>;
}

/// Object-safe form of [`Handler`], so handlers of different types share one registry.
pub(crate) trait ErasedHandler: Send + Sync {
    fn call(self: Arc<Self>, ctx: FireContext)
        -> LocalBoxFuture<'static, Result<Output, JobError>>;
}

impl<H: Handler> ErasedHandler for H {
    fn call(
        self: Arc<Self>,
        ctx: FireContext,
    ) -> LocalBoxFuture<'static, Result<Output, JobError>> {
        Box::pin(async move { self.run(ctx).await })
    }
}

/// A handler made from an async closure; see [`handler_fn`].
pub struct FnHandler<F>(F);

/// Wraps `f(ctx) -> impl Future<Output = Result<Output, JobError>>` as a [`Handler`].
///
/// ```
/// use cronhook_sdk::{handler_fn, JobError, Output};
///
/// let h = handler_fn(|ctx| async move { Ok::<_, JobError>(Output::text(ctx.job())) });
/// # let _ = h;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(FireContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Output, JobError>> + 'static,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(FireContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Output, JobError>> + 'static,
{
    async fn run(&self, ctx: FireContext) -> Result<Output, JobError> {
        (self.0)(ctx).await
    }
}

/// What a successful run reports as the fire's output (a string on the wire; the
/// scheduler keeps up to 64 KiB of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output(Option<String>);

impl Output {
    /// No output.
    pub fn none() -> Output {
        Output(None)
    }

    /// Plain text output.
    pub fn text(text: impl Into<String>) -> Output {
        Output(Some(text.into()))
    }

    /// `value` serialised as JSON text.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, JobError> {
        serde_json::to_string(value)
            .map(|text| Output(Some(text)))
            .map_err(|e| JobError::msg(format!("could not encode the output as JSON: {e}")))
    }

    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub fn into_string(self) -> Option<String> {
        self.0
    }
}

impl From<String> for Output {
    fn from(text: String) -> Output {
        Output(Some(text))
    }
}

impl From<&str> for Output {
    fn from(text: &str) -> Output {
        Output(Some(text.to_owned()))
    }
}

impl From<()> for Output {
    fn from(_: ()) -> Output {
        Output(None)
    }
}

/// JSON text of the value (a JSON string stays quoted).
impl From<serde_json::Value> for Output {
    fn from(value: serde_json::Value) -> Output {
        Output(Some(value.to_string()))
    }
}

/// Why a run failed; becomes the fire's `error`. Any `std::error::Error` converts
/// with `?`, its sources joined with `: `.
///
/// Deliberately not an `std::error::Error` itself: that is what allows the blanket
/// conversion from every error type.
#[derive(Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
}

impl JobError {
    pub fn msg(message: impl fmt::Display) -> JobError {
        JobError {
            message: message.to_string(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobError({:?})", self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> JobError {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        JobError { message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_convert_with_their_sources() {
        let io = std::io::Error::other("disk on fire");
        let e: JobError = io.into();
        assert_eq!(e.message(), "disk on fire");
        let parse: JobError = "x".parse::<u32>().unwrap_err().into();
        assert!(parse.message().contains("invalid digit"));
    }

    #[test]
    fn output_conversions() {
        assert_eq!(
            Output::from(serde_json::json!({"a": 1})).as_str(),
            Some("{\"a\":1}")
        );
        assert_eq!(Output::from(()).as_str(), None);
        assert_eq!(Output::json(&[1, 2]).unwrap().as_str(), Some("[1,2]"));
    }
}
