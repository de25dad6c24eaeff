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

    pub(crate) fn is_timed_out(&self) -> bool {
        self.0.level.load(Ordering::Acquire) & TIMED_OUT != 0
    }

    /// Ends the grace period at once (a stop deadline that ran out).
    pub(crate) fn force(&self) {
        self.raise(CANCELLED | ABORTED | FORCED);
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
}
