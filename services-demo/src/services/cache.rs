//! Keeps a price cache warm.

use std::sync::atomic::Ordering;
use std::time::Duration;

use scheduler::{background_service, JobContext, State};

use super::Store;

/// Fills the cache as soon as the app starts, then refreshes it at the top of every hour.
#[background_service(interval = "0 * * * *", on_start, name = "cache-warm-up")]
async fn warm_up(ctx: JobContext, store: State<Store>) -> anyhow::Result<()> {
    // Stand-in for fetching prices from a slow upstream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entries = store.cache_entries.fetch_add(1_000, Ordering::Relaxed) + 1_000;
    tracing::info!(tick = %ctx.tick(), entries, "cache warmed");
    Ok(())
}
