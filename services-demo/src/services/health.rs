//! A heartbeat other systems can watch for.

use std::sync::atomic::{AtomicU64, Ordering};

use scheduler::background_service;

static BEATS: AtomicU64 = AtomicU64::new(0);

/// Every two seconds, on a fixed grid that never drifts.
#[background_service(interval = 2, name = "heartbeat")]
async fn heartbeat() {
    let beat = BEATS.fetch_add(1, Ordering::Relaxed) + 1;
    tokio::task::yield_now().await;
    tracing::info!(beat, "alive");
}
