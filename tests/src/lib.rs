//! A user's crate: services declared where they live, in more than one module.

// A user's crate: jobs that would await I/O in real life, documented for people rather than lints.
#![allow(clippy::unused_async, clippy::missing_errors_doc)]

/// Services of the "billing" part of the app.
pub mod billing {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// How often [`settle_invoices`] has run.
    pub static SETTLEMENTS: AtomicU64 = AtomicU64::new(0);

    /// Runs every 10 seconds and once at start.
    #[scheduler::background_service(interval = 10, on_start)]
    pub async fn settle_invoices(ctx: scheduler::JobContext) -> anyhow::Result<()> {
        anyhow::ensure!(!ctx.name().is_empty(), "a service always has a name");
        SETTLEMENTS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Services of the "search" part of the app.
pub mod search {
    /// A blocking job, every minute.
    #[scheduler::background_service(interval = "* * * * *", name = "search-reindex")]
    pub fn reindex() {}
}

pub use extra_services::CLEANUPS;

/// The README's examples, compiled (and, where they do not wait for a signal, run) as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
