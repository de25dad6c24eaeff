//! The `Send` check of an async `#[background_service]`, placed where the compiler's error quotes it.
//!
//! A job's future must be `Send` because tokio's multi-threaded runtime may resume it on another
//! worker thread after any `.await`. When it is not, rustc reports "future cannot be sent between
//! threads safely", points at the value held across the `.await` and then quotes the bound that
//! required `Send`: the line below, with its reason beside it. (A `#[diagnostic::on_unimplemented]`
//! message is not used for auto traits such as `Send`, so this is the one place a reason can go.)

use std::future::Future;

use crate::job::BoxJobFuture;

/// Boxes the future of an async `#[background_service]`. Not public API.
pub fn job_future<F>(future: F) -> BoxJobFuture
where
    F: Future<Output = Result<(), String>> + 'static,
    F: Send, // a job may resume on another of tokio's worker threads after any `.await`
{
    Box::pin(future)
}
