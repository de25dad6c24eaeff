//! Job policies: a time limit per run, retries with backoff, and a random start delay (jitter).
//!
//! Plain data and pure math; the state machine of each service and the workers apply them.
//!
//! ```text
//! retries = 2, backoff base 1 s (cap 60 s), a 10 s period:
//! tick 0 ──run (fails)── +~1 s ──attempt 2 (fails)── +~2 s ──attempt 3 (ok)          tick 10 ──run
//!                        └ a retry of tick 0: the same tick, never overlapping a run
//! a retry that would come at or after the next tick is dropped (counted in `retries_dropped`):
//! the next tick wins, so a failing service never falls behind its schedule
//! ```

use std::hash::{Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What a service asks of its runs beyond its schedule. Boxed in a [`Service`](crate::Service), so a
/// service without policies pays one pointer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Policies {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) backoff_base: Option<Duration>,
    pub(crate) backoff_cap: Option<Duration>,
    pub(crate) jitter: Option<Duration>,
    pub(crate) seed: u64,
    /// `None`: the default, [`Misfire::Coalesce`], without catch-up across restarts.
    pub(crate) misfire: Option<Misfire>,
    pub(crate) misfire_grace: Option<Duration>,
}

/// What a service does with ticks that could not start on time: the process was suspended, the
/// wall clock jumped, the pool was saturated, the coordinator was unreachable, or the process was
/// down. A tick is *misfired* when its run could not start within the service's
/// [`misfire_grace`](crate::Service::misfire_grace) (1 s by default) after the tick (after the
/// tick plus its [jitter](crate::Service::jitter), if any). The policy then decides, at once, for
/// every tick due from the misfired one up to now; each tick it does not run is counted in
/// [`ServiceStatus::skipped_misfire`](crate::ServiceStatus::skipped_misfire).
///
/// ```text
/// a 10 s period, the process suspended from t=5 to t=37 (ticks 10, 20, 30 missed), grace 1 s:
/// Skip      ──0──────[suspended]────────────40──  10, 20, 30 counted; the next run is tick 40
/// Coalesce  ──0──────[suspended]──37────────40──  one run at 37 with tick 30 (JobContext::tick);
///                                                 10 and 20 counted
/// All(10)   ──0──────[suspended]──37─┬─┬────40──  ticks 10, 20, 30, one after another, each with
///                                    10 20 30     its own tick, never overlapping; then tick 40
/// ```
///
/// A saturated pool: a due service that waits for a worker longer than its grace is misfired when
/// a worker takes it, with the ticks that came meanwhile:
///
/// ```text
/// max_concurrent_jobs = 1, a 25 s job from 0, a service every 10 s, grace 1 s:
/// 0 ── other job ────────────────────────── 25 ── 30
///           10: due, waits for the worker   └ the worker takes it: tick 10 is 15 s late
/// Coalesce  runs tick 20 at 25 (10 counted), then 30
/// Skip      20 is late too: nothing runs (10, 20 counted), then 30
/// All(10)   runs 10, then 20, at 25, then 30
/// grace 20s not misfired: runs tick 10 at 25; 20 passed during the wait, an ordinary skip
/// ```
///
/// With a coordinator, the policy decides which ticks are claimed; a claim must be granted in time
/// — before the next tick is due; with `Skip`, within the grace; for a tick of a catch-up, before
/// the tick after the catch-up — or its tick is given up (the coordinator unreachable meanwhile)
/// and counted in [`ServiceStatus::skipped_late`](crate::ServiceStatus::skipped_late). A tick
/// claimed in time runs even if it then waits for a worker beyond its grace.
///
/// **After a restart.** Ticks missed while the process was down can only be caught up if the last
/// tick is remembered: with a [`Coordinator`](crate::Coordinator), its history
/// ([`Coordinator::last_tick`](crate::Coordinator::last_tick)); without one, the manager's
/// [state file](crate::ServiceManagerBuilder::state_file). Only a service whose policy is set
/// *explicitly* to `Coalesce` or `All` asks for it, so that restarting an application never runs
/// jobs nobody asked to be caught up. At start, the ticks after the remembered one up to now are
/// misfired ticks, handled as above.
///
/// Paused time is not misfire: after [`resume`](crate::ServiceManager::resume) the service goes
/// on at its next tick, and the ticks of the pause count as paused. Nor are ticks that pass while
/// a run of the service goes on (even a run the process was suspended in): they are skipped as
/// the service was busy, and the next tick to come runs.
///
/// The default is [`Coalesce`](Misfire::Coalesce), as Quartz's "smart policy" does for a repeating
/// trigger: nothing the schedule promised is dropped silently (a periodic job still runs after a
/// suspend, unlike with `APScheduler`'s 1 s grace, which drops it), and a backlog never turns into a
/// burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Misfire {
    /// Count each misfired tick as skipped and run at the next tick on the schedule. (Of the ticks
    /// due, the latest still runs if it is within its own grace, which only happens with a period
    /// shorter than the grace.)
    Skip,
    /// Run once, at once, for all the misfired ticks, as the latest of them; the others are counted
    /// as skipped.
    #[default]
    Coalesce,
    /// Run each misfired tick, one after another (never overlapping), the most recent `limit` of
    /// them, each with its own [`JobContext::tick`](crate::JobContext::tick); older ones are
    /// counted as skipped. Ticks that come while the catch-up runs are skipped as during any run,
    /// so a catch-up is bounded. A failed catch-up run is not retried while more of the catch-up
    /// is due (the next tick wins, as over any retry). `limit: 0` runs none of them.
    All {
        /// How many missed ticks are run at the most.
        limit: u32,
    },
}

impl Misfire {
    /// The `limit` of [`Misfire::All`] when the attribute (`misfire = "all"`) or the configuration
    /// asks for it without a `misfire_limit`: ten runs catch up a short outage of a frequent job,
    /// and stop a long one of a per-minute job from turning into hours of back-to-back runs.
    pub const DEFAULT_LIMIT: u32 = scheduler_core::policy_rules::DEFAULT_MISFIRE_LIMIT;

    /// The policy's name as the attribute and the configuration write it: `skip`, `coalesce` or
    /// `all`.
    ///
    /// ```
    /// assert_eq!(scheduler::Misfire::All { limit: 3 }.name(), "all");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::Coalesce => "coalesce",
            Misfire::All { .. } => "all",
        }
    }
}

/// The policies a service runs with, wherever they were set (the attribute, [`Service`](crate::Service),
/// the configuration file or the environment); from
/// [`ServiceManager::policies`](crate::ServiceManager::policies). Defaults are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServicePolicies {
    /// The time limit of a run; `None` for none.
    pub timeout: Option<Duration>,
    /// How many times a failed run is retried (0: never).
    pub retries: u32,
    /// The backoff before the first retry, doubled for each further one.
    pub retry_backoff: Duration,
    /// The cap of the backoff (never below [`retry_backoff`](Self::retry_backoff)).
    pub retry_backoff_max: Duration,
    /// The bound of the random start delay; `None` for none.
    pub jitter: Option<Duration>,
    /// The seed of the jitter and backoff delays.
    pub jitter_seed: u64,
    /// The misfire policy; `None` for the default ([`Misfire::Coalesce`] without catch-up after a
    /// restart).
    pub misfire: Option<Misfire>,
    /// How late a run may start before its tick counts as misfired.
    pub misfire_grace: Duration,
}

/// How late a run may start before its tick counts as misfired, when the service does not say.
pub(crate) const DEFAULT_MISFIRE_GRACE: Duration =
    Duration::from_secs(scheduler_core::policy_rules::DEFAULT_MISFIRE_GRACE_SECS);

pub(crate) const DEFAULT_BACKOFF_BASE: Duration =
    Duration::from_secs(scheduler_core::policy_rules::DEFAULT_RETRY_BACKOFF_SECS);
pub(crate) const DEFAULT_BACKOFF_CAP: Duration =
    Duration::from_secs(scheduler_core::policy_rules::DEFAULT_RETRY_BACKOFF_MAX_SECS);

impl Policies {
    /// The backoff cap in effect: the one set, or the default, and never below the base.
    fn cap(&self) -> Duration {
        let base = self.backoff_base.unwrap_or(DEFAULT_BACKOFF_BASE);
        self.backoff_cap.unwrap_or(DEFAULT_BACKOFF_CAP).max(base)
    }

    /// What [`ServicePolicies`] shows of `policies` (`None`: a service without any).
    pub(crate) fn summary(policies: Option<&Policies>) -> ServicePolicies {
        let none = Policies::default();
        let policies = policies.unwrap_or(&none);
        ServicePolicies {
            timeout: policies.timeout,
            retries: policies.retries,
            retry_backoff: policies.backoff_base.unwrap_or(DEFAULT_BACKOFF_BASE),
            retry_backoff_max: policies.cap(),
            jitter: policies.jitter,
            jitter_seed: policies.seed,
            misfire: policies.misfire,
            misfire_grace: policies.misfire_grace.unwrap_or(DEFAULT_MISFIRE_GRACE),
        }
    }

    /// The delay before attempt `next_attempt` (2 for the first retry): `base × 2^(n-2)`, capped,
    /// then "equal jitter" (between half and all of it), drawn from `(seed, service, tick, attempt)`.
    pub(crate) fn backoff(
        &self,
        service: &str,
        tick: DateTime<Utc>,
        next_attempt: u32,
    ) -> Duration {
        let base = self.backoff_base.unwrap_or(DEFAULT_BACKOFF_BASE);
        let cap = self.cap();
        let doublings = next_attempt.saturating_sub(2).min(62);
        let full = base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(cap)
            .min(cap);
        let fraction = 0.5 + 0.5 * unit(self.seed, service, tick, next_attempt);
        full.mul_f64(fraction)
    }

    /// The start delay of the run of `tick`, in `[0, jitter)`.
    pub(crate) fn start_delay(&self, service: &str, tick: DateTime<Utc>) -> Duration {
        match self.jitter {
            Some(jitter) if !jitter.is_zero() => jitter.mul_f64(unit(self.seed, service, tick, 0)),
            _ => Duration::ZERO,
        }
    }
}

/// A number in `[0, 1)` that depends only on its inputs: the same seed gives the same delays, so a
/// test (or an incident review) can reproduce them.
fn unit(seed: u64, service: &str, tick: DateTime<Utc>, salt: u32) -> f64 {
    // `DefaultHasher::new()` has fixed keys: stable within a build, which is all this needs.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        seed,
        service,
        tick.timestamp(),
        tick.timestamp_subsec_nanos(),
        salt,
    )
        .hash(&mut hasher);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backoff_doubles_is_capped_and_keeps_at_least_half() {
        let policies = Policies {
            retries: 10,
            backoff_base: Some(Duration::from_secs(2)),
            backoff_cap: Some(Duration::from_secs(10)),
            ..Policies::default()
        };
        let tick = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for (attempt, full) in [(2, 2), (3, 4), (4, 8), (5, 10), (40, 10)] {
            let delay = policies.backoff("svc", tick, attempt);
            let full = Duration::from_secs(full);
            assert!(
                delay >= full / 2 && delay < full,
                "attempt {attempt}: {delay:?}"
            );
            assert_eq!(
                delay,
                policies.backoff("svc", tick, attempt),
                "reproducible"
            );
        }
    }

    #[test]
    fn a_base_above_the_default_cap_raises_the_cap() {
        let policies = Policies {
            retries: 3,
            backoff_base: Some(Duration::from_secs(120)),
            ..Policies::default()
        };
        let tick = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let delay = policies.backoff("svc", tick, 3);
        assert!(
            delay >= Duration::from_secs(60) && delay < Duration::from_secs(120),
            "capped at the base, not at the default 60 s: {delay:?}"
        );
        let summary = Policies::summary(Some(&policies));
        assert_eq!(summary.retry_backoff_max, Duration::from_secs(120));
        assert_eq!(
            Policies::summary(None).retry_backoff_max,
            DEFAULT_BACKOFF_CAP
        );
    }

    #[test]
    fn start_delays_stay_below_the_jitter_and_follow_the_seed() {
        let jitter = |seed| Policies {
            jitter: Some(Duration::from_secs(5)),
            seed,
            ..Policies::default()
        };
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let ticks: Vec<_> = (0..100)
            .map(|k| t + chrono::TimeDelta::seconds(k))
            .collect();
        let a: Vec<_> = ticks
            .iter()
            .map(|&t| jitter(1).start_delay("s", t))
            .collect();
        let b: Vec<_> = ticks
            .iter()
            .map(|&t| jitter(1).start_delay("s", t))
            .collect();
        let c: Vec<_> = ticks
            .iter()
            .map(|&t| jitter(2).start_delay("s", t))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|d| *d < Duration::from_secs(5)));
        assert!(
            a.iter().any(|d| *d > Duration::from_secs(2)),
            "spread over the range"
        );
        assert_eq!(Policies::default().start_delay("s", t), Duration::ZERO);
    }
}
