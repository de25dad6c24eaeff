//! Metrics through the `metrics` facade (feature `metrics`, on by default): the application installs
//! the recorder (for Prometheus, or any other system), the library only reports.
//!
//! Each service registers its handles once, at its first run, and keeps them: a fire then costs a few
//! calls on handles (with no recorder installed, each is a branch on an empty handle), and a service
//! that never runs costs one empty cell. The flip side, written down in the README: install the
//! recorder before the manager starts.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `scheduler_runs_total` | counter | `service`, `outcome` | finished runs by outcome |
//! | `scheduler_run_duration_seconds` | histogram | `service` | how long runs took |
//! | `scheduler_run_lag_seconds` | histogram | `service` | run start minus tick, for scheduled runs |
//! | `scheduler_skipped_ticks_total` | counter | `service`, `reason` | ticks not run here, by reason |
//! | `scheduler_running_jobs` | gauge | `service` | runs in progress (0 or 1) |
//! | `scheduler_last_success_timestamp_seconds` | gauge | `service` | Unix time of the last successful run's end |
//! | `scheduler_next_run_timestamp_seconds` | gauge | `service` | Unix time of the next tick, set when a run ends (0: none left) |
//! | `scheduler_waiting_for_slot` | gauge | `service` | 1 while a due run waits for a worker (the status `waiting for a slot`), else 0 |
//! | `scheduler_coordinator_up` | gauge | `replica` | 1 while the coordinator answers, 0 while its calls fail (set from the first answer on; see [`crate::health`]) |
//! | `scheduler_coordinator_errors_total` | counter | `replica` | calls to the coordinator that failed |
//! | `scheduler_coordinator_claim_batch_size` | histogram | `replica` | claims sent in one statement (PostgreSQL: the ticks due together share one round trip) |

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::SkipReason;
use crate::status::Outcome;

/// The metric names, in one place (the README's table lists the same).
#[cfg(feature = "metrics")]
pub(crate) mod names {
    pub(crate) const RUNS: &str = "scheduler_runs_total";
    pub(crate) const DURATION: &str = "scheduler_run_duration_seconds";
    pub(crate) const LAG: &str = "scheduler_run_lag_seconds";
    pub(crate) const SKIPPED: &str = "scheduler_skipped_ticks_total";
    pub(crate) const RUNNING: &str = "scheduler_running_jobs";
    pub(crate) const LAST_SUCCESS: &str = "scheduler_last_success_timestamp_seconds";
    pub(crate) const NEXT_RUN: &str = "scheduler_next_run_timestamp_seconds";
    pub(crate) const WAITING: &str = "scheduler_waiting_for_slot";
    pub(crate) const COORDINATOR_UP: &str = "scheduler_coordinator_up";
    pub(crate) const COORDINATOR_ERRORS: &str = "scheduler_coordinator_errors_total";
    pub(crate) const CLAIM_BATCH: &str = "scheduler_coordinator_claim_batch_size";
}

/// Where an outcome's counter is in [`handles::OUTCOMES`] (its label).
#[cfg(feature = "metrics")]
fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Succeeded => 0,
        Outcome::Failed(_) => 1,
        Outcome::Panicked(_) => 2,
        Outcome::TimedOut => 3,
        Outcome::Aborted => 4,
        Outcome::LeaseLost => 5,
    }
}

/// Unix time in seconds, as Prometheus timestamps are.
#[cfg(feature = "metrics")]
fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp() as f64 + f64::from(at.timestamp_subsec_nanos()) / 1e9
}

#[cfg(feature = "metrics")]
mod handles {
    use super::{names, Arc, SkipReason};
    use metrics::{Counter, Gauge, Histogram, SharedString};

    /// One service's metric handles.
    pub(super) struct Handles {
        /// By outcome, in the order of [`OUTCOMES`].
        pub(super) runs: [Counter; 6],
        pub(super) skipped: [Counter; 6],
        pub(super) duration: Histogram,
        pub(super) lag: Histogram,
        pub(super) running: Gauge,
        pub(super) last_success: Gauge,
        pub(super) next_run: Gauge,
        pub(super) waiting: Gauge,
    }

    pub(super) const OUTCOMES: [&str; 6] = [
        "succeeded",
        "failed",
        "panicked",
        "timed_out",
        "aborted",
        "lease_lost",
    ];
    pub(super) const REASONS: [SkipReason; 6] = [
        SkipReason::Overlap,
        SkipReason::Paused,
        SkipReason::Misfire,
        SkipReason::ClaimedElsewhere,
        SkipReason::Late,
        SkipReason::RetryDropped,
    ];

    impl Handles {
        pub(super) fn register(name: &Arc<str>) -> Self {
            let service = || SharedString::from_shared(name.clone());
            Handles {
                runs: OUTCOMES.map(|outcome| {
                    metrics::counter!(names::RUNS, "service" => service(), "outcome" => outcome)
                }),
                skipped: REASONS.map(|reason| {
                    metrics::counter!(names::SKIPPED, "service" => service(), "reason" => reason.as_str())
                }),
                duration: metrics::histogram!(names::DURATION, "service" => service()),
                lag: metrics::histogram!(names::LAG, "service" => service()),
                running: metrics::gauge!(names::RUNNING, "service" => service()),
                last_success: metrics::gauge!(names::LAST_SUCCESS, "service" => service()),
                next_run: metrics::gauge!(names::NEXT_RUN, "service" => service()),
                waiting: metrics::gauge!(names::WAITING, "service" => service()),
            }
        }
    }
}

/// A service's metrics: registered at its first run, then kept.
#[derive(Default)]
pub(crate) struct Meter {
    #[cfg(feature = "metrics")]
    handles: std::sync::OnceLock<Box<handles::Handles>>,
}

#[cfg(feature = "metrics")]
impl Meter {
    fn handles(&self, name: &Arc<str>) -> &handles::Handles {
        self.handles
            .get_or_init(|| Box::new(handles::Handles::register(name)))
    }

    /// A run began, `lag` after its tick (`None` for runs off the schedule).
    pub(crate) fn started(&self, name: &Arc<str>, lag: Option<Duration>) {
        let handles = self.handles(name);
        handles.running.increment(1.0);
        if let Some(lag) = lag {
            handles.lag.record(lag.as_secs_f64());
        }
    }

    /// A run ended at `end`; `next` is the service's next tick, if it has one.
    pub(crate) fn finished(
        &self,
        name: &Arc<str>,
        outcome: &Outcome,
        duration: Duration,
        end: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) {
        let handles = self.handles(name);
        handles.running.decrement(1.0);
        handles.runs[outcome_index(outcome)].increment(1);
        handles.duration.record(duration.as_secs_f64());
        if *outcome == Outcome::Succeeded {
            handles.last_success.set(unix_seconds(end));
        }
        handles.next_run.set(next.map_or(0.0, unix_seconds));
    }

    /// The service began (`true`) or ended (`false`) waiting for a worker.
    pub(crate) fn waiting(&self, name: &Arc<str>, waiting: bool) {
        self.handles(name)
            .waiting
            .set(if waiting { 1.0 } else { 0.0 });
    }

    /// `ticks` ticks were skipped for `reason`.
    pub(crate) fn skipped(&self, name: &Arc<str>, reason: SkipReason, ticks: u64) {
        let handles = self.handles(name);
        if let Some(at) = handles::REASONS.iter().position(|r| *r == reason) {
            handles.skipped[at].increment(ticks);
        }
    }
}

#[cfg(not(feature = "metrics"))]
impl Meter {
    pub(crate) fn started(&self, _: &Arc<str>, _: Option<Duration>) {}
    pub(crate) fn finished(
        &self,
        _: &Arc<str>,
        _: &Outcome,
        _: Duration,
        _: DateTime<Utc>,
        _: Option<DateTime<Utc>>,
    ) {
    }
    pub(crate) fn skipped(&self, _: &Arc<str>, _: SkipReason, _: u64) {}
    pub(crate) fn waiting(&self, _: &Arc<str>, _: bool) {}
}
