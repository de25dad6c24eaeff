//! Talks to a payment provider that is not always there.

use std::sync::atomic::Ordering;

use anyhow::Context;
use scheduler::{background_service, State};

use super::Store;

/// Every three seconds; every other attempt the "provider" times out, which shows failure alerts —
/// and that a failing job keeps its schedule. A failed attempt is retried once, half a second or so
/// later, as attempt 2 of the same tick (and that one gets through).
#[background_service(interval = 3, retries = 1, retry_backoff = 0.5, name = "payment-sync")]
async fn sync_payments(store: State<Store>) -> anyhow::Result<()> {
    let attempt = store.payment_attempts.fetch_add(1, Ordering::Relaxed) + 1;
    tokio::task::yield_now().await;
    if attempt % 2 == 0 {
        return Err(anyhow::anyhow!("connection timed out after 2s"))
            .context("fetching settlements from the payment provider");
    }
    tracing::info!(attempt, "payments in sync");
    Ok(())
}
