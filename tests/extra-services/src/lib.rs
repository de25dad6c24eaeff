//! Services declared in a crate of their own: linking this crate is all it takes to run them.

use std::sync::atomic::{AtomicU64, Ordering};

/// How often [`nightly_cleanup`] has run in this process.
pub static CLEANUPS: AtomicU64 = AtomicU64::new(0);

/// A service from another crate; the integration tests find it through the registry.
#[scheduler::background_service(
    interval = "0 3 * * *",
    tz = "Europe/Berlin",
    name = "extra::nightly-cleanup"
)]
#[allow(clippy::unused_async)] // a real cleanup would await I/O here
pub async fn nightly_cleanup() {
    CLEANUPS.fetch_add(1, Ordering::SeqCst);
}
