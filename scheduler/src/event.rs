//! What happens to a service, as one event type: the run hook
//! ([`on_event`](crate::ServiceManagerBuilder::on_event)) receives it, and the metrics are the same
//! facts counted.
//!
//! ```text
//! tick ──(lag)── Started ──(duration)── Finished { outcome }      one run (each retry is one more)
//! tick ── Skipped { reason }                                        a tick that did not run here
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::status::{Outcome, Trigger};

/// One thing that happened to a service: a run started, a run finished, or ticks were skipped.
///
/// ```
/// use scheduler::{RunEvent, ServiceManager};
///
/// let manager = ServiceManager::builder()
///     .on_event(|event| match event {
///         RunEvent::Started { service, attempt, .. } if *attempt > 1 => {
///             eprintln!("{service}: retry {attempt}");
///         }
///         RunEvent::Skipped { service, reason, ticks } => {
///             eprintln!("{service}: {ticks} tick(s) skipped ({reason})");
///         }
///         _ => {}
///     })
///     .build()?;
/// # Ok::<(), scheduler::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(tag = "event", rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum RunEvent {
    /// A run began on this replica.
    Started {
        /// The service's name.
        service: Arc<str>,
        /// The tick the run belongs to (for a manual or start run: when it was asked for).
        tick: DateTime<Utc>,
        /// Why it runs.
        trigger: Trigger,
        /// 1 for a tick's first run, more for its retries.
        attempt: u32,
        /// How long after its tick the run began: jitter, a wait for a slot, a claim, a retry's
        /// backoff (zero when it began on time, or before its tick).
        lag: Duration,
    },
    /// A run ended.
    Finished {
        /// The service's name.
        service: Arc<str>,
        /// The tick the run belongs to.
        tick: DateTime<Utc>,
        /// Why it ran.
        trigger: Trigger,
        /// 1 for a tick's first run, more for its retries.
        attempt: u32,
        /// How it ended.
        outcome: Outcome,
        /// How long it ran.
        duration: Duration,
    },
    /// Ticks of the service that did not run here.
    Skipped {
        /// The service's name.
        service: Arc<str>,
        /// Why.
        reason: SkipReason,
        /// How many ticks (a run that outlasts several periods skips several at once).
        ticks: u64,
    },
}

impl RunEvent {
    /// The service the event is about.
    pub fn service(&self) -> &str {
        match self {
            RunEvent::Started { service, .. }
            | RunEvent::Finished { service, .. }
            | RunEvent::Skipped { service, .. } => service,
        }
    }
}

/// Why a tick did not run on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum SkipReason {
    /// The service's previous run was still going (here, or with a coordinator on another
    /// replica): runs never overlap.
    Overlap,
    /// The service was paused.
    Paused,
    /// The tick could not start on time, and the [`Misfire`](crate::Misfire) policy did not run it.
    Misfire,
    /// With a coordinator: another replica claimed it and runs it.
    ClaimedElsewhere,
    /// With a coordinator: its claim could not be granted before the next tick was due (the
    /// coordinator was slow or unreachable), so it was not run late.
    Late,
    /// A failed run's retry that would have come at or after the next tick: the next tick won.
    RetryDropped,
}

impl SkipReason {
    /// The reason as a metric label: `overlap`, `paused`, `misfire`, `claimed_elsewhere`, `late`,
    /// `retry_dropped`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Paused => "paused",
            SkipReason::Misfire => "misfire",
            SkipReason::ClaimedElsewhere => "claimed_elsewhere",
            SkipReason::Late => "late",
            SkipReason::RetryDropped => "retry_dropped",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::Overlap => "the previous run was still going",
            SkipReason::Paused => "paused",
            SkipReason::Misfire => "misfired",
            SkipReason::ClaimedElsewhere => "claimed by another replica",
            SkipReason::Late => "too late to claim",
            SkipReason::RetryDropped => "a retry dropped for the next tick",
        })
    }
}

/// The skip counters of one service at one moment; two of them, before and after a transition, say
/// what it skipped, without the state machine having to report each skip as it counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) overlap: u64,
    pub(crate) paused: u64,
    pub(crate) misfire: u64,
    pub(crate) claimed_elsewhere: u64,
    pub(crate) late: u64,
    pub(crate) retry_dropped: u64,
}

impl Tally {
    /// What was skipped between `before` and `self`, by reason.
    pub(crate) fn since(self, before: Tally) -> impl Iterator<Item = (SkipReason, u64)> {
        [
            (SkipReason::Overlap, self.overlap, before.overlap),
            (SkipReason::Paused, self.paused, before.paused),
            (SkipReason::Misfire, self.misfire, before.misfire),
            (
                SkipReason::ClaimedElsewhere,
                self.claimed_elsewhere,
                before.claimed_elsewhere,
            ),
            (SkipReason::Late, self.late, before.late),
            (
                SkipReason::RetryDropped,
                self.retry_dropped,
                before.retry_dropped,
            ),
        ]
        .into_iter()
        .filter_map(|(reason, now, then)| {
            let ticks = now.saturating_sub(then);
            (ticks > 0).then_some((reason, ticks))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_difference_names_each_reason_once() {
        let before = Tally {
            overlap: 2,
            paused: 1,
            ..Tally::default()
        };
        let after = Tally {
            overlap: 5,
            paused: 1,
            claimed_elsewhere: 1,
            ..Tally::default()
        };
        let skipped: Vec<_> = after.since(before).collect();
        assert_eq!(
            skipped,
            [(SkipReason::Overlap, 3), (SkipReason::ClaimedElsewhere, 1)]
        );
        assert_eq!(after.since(after).count(), 0);
    }
}
