//! [`CancelToken`]: the manager's "please stop" to one run, and its later "stop now".
//!
//! The same shape as tokio-util's `CancellationToken`, reduced to what a run needs and with two
//! levels. It is created when the run begins; the job reads the first level through its
//! [`JobContext`](crate::JobContext):
//!
//! ```text
//!  run begins      cancel()                          force() or grace elapsed
//!  ──────┼────────────┼───── grace period ──────────────────┼─────────────▶
//!        │  job runs   │  ctx.is_cancelled() is true: the   │ an async job still running is
//!        │             │  job should wrap up and return     │ dropped; a blocking one abandoned
//! ```
//!
//! Each run gets its own token, so cancelling one run can never leak into the next.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub(crate) struct CancelToken(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Bits: `CANCELLED`, `ABORTED`, `FORCED`; only ever set, never cleared.
    level: AtomicU8,
    notify: Notify,
}

/// The job is asked to stop.
const CANCELLED: u8 = 1;
/// ... because of an abort: whatever the job returns, the run counts as aborted.
const ABORTED: u8 = 2;
/// The grace period is over.
const FORCED: u8 = 4;
/// ... because the run exceeded its time limit.
const TIMED_OUT: u8 = 8;
/// ... because the run's claim was lost (cluster mode).
const LEASE_LOST: u8 = 16;

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("level", &self.0.level.load(Ordering::Relaxed))
            .finish()
    }
}

impl CancelToken {
    /// Asks the run to wrap up (a stop deadline draws near); what it returns still counts.
    pub(crate) fn cancel(&self) {
        self.raise(CANCELLED);
    }

    /// Aborts the run: it is asked to stop, and counts as aborted however it ends.
    pub(crate) fn abort(&self) {
        self.raise(CANCELLED | ABORTED);
    }

    /// The run exceeded its time limit: cancelled, and counted as timed out however it ends.
    pub(crate) fn time_out(&self) {
        self.raise(CANCELLED | ABORTED | TIMED_OUT);
    }

    /// The run's claim was lost: cancelled, and counted as lease lost however it ends.
    pub(crate) fn lose_lease(&self) {
        self.raise(CANCELLED | ABORTED | LEASE_LOST);
    }

    pub(crate) fn is_lease_lost(&self) -> bool {
        self.0.level.load(Ordering::Acquire) & LEASE_LOST != 0
    }

    pub(crate) fn is_timed_out(&self) -> bool {
        self.0.level.load(Ordering::Acquire) & TIMED_OUT != 0
    }

    /// Ends the grace period at once (a stop deadline that ran out).
    pub(crate) fn force(&self) {
        self.raise(CANCELLED | ABORTED | FORCED);
    }

    /// A token for the next run: this one, reset, when nothing else holds it any more (the run it
    /// served has ended, and neither the manager nor a kept [`JobContext`](crate::JobContext) has a
    /// clone of it); else a new one. A worker reuses its token this way, which saves an allocation
    /// per run. It cannot leak a cancellation into the next run: a token no one else holds cannot
    /// be cancelled by anyone, and no waiter can be registered on it.
    pub(crate) fn recycle(mut self) -> CancelToken {
        match Arc::get_mut(&mut self.0) {
            Some(inner) => {
                *inner.level.get_mut() = 0;
                self
            }
            None => CancelToken::default(),
        }
    }

    fn raise(&self, bits: u8) {
        if self.0.level.fetch_or(bits, Ordering::AcqRel) & bits != bits {
            self.0.notify.notify_waiters();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.level.load(Ordering::Acquire) & CANCELLED != 0
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.0.level.load(Ordering::Acquire) & ABORTED != 0
    }

    /// Completes once the token is cancelled (at once if it already is).
    pub(crate) async fn cancelled(&self) {
        self.reached(CANCELLED).await;
    }

    /// Completes once the token is forced.
    pub(crate) async fn forced(&self) {
        self.reached(FORCED).await;
    }

    async fn reached(&self, level: u8) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a `raise` in between still wakes us.
            notified.as_mut().enable();
            if self.0.level.load(Ordering::Acquire) & level != 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_then_force_wake_their_waiters_and_stick() {
        let token = CancelToken::default();
        assert!(!token.is_cancelled());
        let cancelled = tokio::spawn({
            let token = token.clone();
            async move { token.cancelled().await }
        });
        let forced = tokio::spawn({
            let token = token.clone();
            async move { token.forced().await }
        });
        tokio::task::yield_now().await;
        token.cancel();
        cancelled.await.unwrap();
        assert!(token.is_cancelled());
        assert!(
            !token.is_aborted(),
            "a plain cancel lets the run's own outcome count"
        );
        assert!(!forced.is_finished());
        token.force();
        forced.await.unwrap();
        assert!(token.is_aborted());
        // Already reached: both complete at once.
        token.cancelled().await;
        token.forced().await;
    }

    #[test]
    fn a_recycled_token_starts_afresh_and_a_shared_one_is_not_reused() {
        let token = CancelToken::default();
        token.abort();
        let kept = token.clone();
        let next = token.recycle();
        assert!(
            !Arc::ptr_eq(&next.0, &kept.0),
            "a clone is still held (a kept JobContext): a new token"
        );
        assert!(!next.is_cancelled() && kept.is_aborted());
        drop(kept);
        let first = Arc::as_ptr(&next.0);
        next.force();
        let reused = next.recycle();
        assert_eq!(Arc::as_ptr(&reused.0), first, "held by no one else: reused");
        assert!(!reused.is_cancelled() && !reused.is_aborted() && !reused.is_timed_out());
    }
}
