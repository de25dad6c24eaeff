//! Where the runtime reads "now": the system clock, or one you control in tests.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

/// The wall clock the manager reads to place ticks on the timeline.
///
/// The manager sleeps with tokio's timer and asks the clock for the wall-clock time only to compute
/// the next tick and to stamp runs, so a clock that follows tokio's (possibly paused) time makes the
/// whole manager deterministic; see [`TokioClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock, [`Utc::now`]. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock driven by tokio's time: it reads `start` at the moment it was created and moves
/// exactly as [`tokio::time::Instant`] does, including under `tokio::time::pause` and `advance`.
///
/// This is how to test your own services deterministically:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use scheduler::clock::TokioClock;
/// use scheduler::{Schedule, Service, ServiceManager};
///
/// #[tokio::main(flavor = "current_thread", start_paused = true)]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let clock = TokioClock::starting_at(Utc.with_ymd_and_hms(2024, 1, 1, 8, 59, 0).unwrap());
///     let manager = ServiceManager::builder().clock(clock).build()?;
///     let runs = Arc::new(AtomicUsize::new(0));
///     let counter = runs.clone();
///     manager.add_service("hourly", Service::new("0 * * * *".parse::<Schedule>()?, move |_ctx| {
///         let counter = counter.clone();
///         async move { counter.fetch_add(1, Ordering::SeqCst); }
///     }));
///     manager.start()?;
///     tokio::time::sleep(Duration::from_secs(3 * 3600)).await; // paused: returns at once
///     assert_eq!(runs.load(Ordering::SeqCst), 3); // 09:00, 10:00, 11:00
///     manager.stop().await;
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    origin: Instant,
}

impl TokioClock {
    /// A clock that reads `start` now and follows tokio's time from here on.
    ///
    /// Call it inside the tokio runtime whose time it should follow.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        TokioClock {
            start,
            origin: Instant::now(),
        }
    }
}

impl fmt::Debug for TokioClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioClock")
            .field("now", &self.now())
            .finish()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = TimeDelta::from_std(self.origin.elapsed()).unwrap_or(TimeDelta::MAX);
        self.start
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
