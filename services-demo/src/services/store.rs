//! What the app shares with its jobs: built once in `main`, given to the manager with
//! `.state(Store::default())`, and taken by the jobs as `State<Store>` (no global).

use std::sync::atomic::AtomicU64;

/// Stands for the app's database pool: the counters the payment and cache jobs keep.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Calls made to the payment provider, failed ones included.
    pub(crate) payment_attempts: AtomicU64,
    /// Entries the price cache holds.
    pub(crate) cache_entries: AtomicU64,
}
