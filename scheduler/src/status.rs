//! What [`ServiceManager::services`](crate::ServiceManager::services) reports, and what a failure
//! hook receives.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ServiceState {
    /// Added, but the manager has not been started.
    NotStarted,
    /// Scheduled, sleeping until its next tick.
    Idle,
    /// Its tick has come, and it waits for a slot in the worker pool (`max_concurrent_jobs`).
    WaitingForSlot,
    /// Its job is running.
    Running,
    /// Stopped, but the run that was in progress has not finished yet.
    Stopping,
    /// Stopped: it will not run again unless added or restarted.
    Stopped,
    /// Its schedule has no tick left: a one-shot service that ran, or a cron expression such as
    /// `0 0 30 2 *`.
    Finished,
    /// Turned off by configuration (`enabled = false`): it never runs.
    Disabled,
    /// Paused by [`ServiceManager::pause`](crate::ServiceManager::pause): its ticks are skipped until
    /// [`resume`](crate::ServiceManager::resume).
    Paused,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceState::NotStarted => "not started",
            ServiceState::Idle => "idle",
            ServiceState::WaitingForSlot => "waiting for a slot",
            ServiceState::Running => "running",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Finished => "finished",
            ServiceState::Disabled => "disabled",
            ServiceState::Paused => "paused",
        })
    }
}

/// Where a service's schedule came from, as [`ServiceStatus::origin`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Origin {
    /// The `#[background_service]` attribute.
    Attribute,
    /// [`ServiceManager::add_service`](crate::ServiceManager::add_service), at run time.
    Code,
    /// The configuration file.
    File,
    /// An environment variable.
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Attribute => "attribute",
            Origin::Code => "code",
            Origin::File => "file",
            Origin::Env => "env",
        })
    }
}

/// Why a run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Trigger {
    /// A tick of its schedule.
    Schedule,
    /// `on_start`: the manager started.
    Start,
    /// An operator asked for it with [`ServiceManager::run_now`](crate::ServiceManager::run_now).
    Manual,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Schedule => "schedule",
            Trigger::Start => "start",
            Trigger::Manual => "manual",
        })
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Outcome {
    /// The job returned `()` or `Ok(())`.
    Succeeded,
    /// The job returned `Err`; the error's text.
    Failed(String),
    /// The job panicked; the panic message.
    Panicked(String),
    /// The run was cancelled by [`StopMode::Abort`](crate::StopMode::Abort) or a stop deadline.
    Aborted,
    /// The run exceeded its [`timeout`](crate::Service::timeout) and was cancelled.
    TimedOut,
    /// In cluster mode, the run's claim was lost while it ran (its lease could not be renewed in
    /// time, or another replica took the tick over), so it was cancelled as a timeout is: its
    /// [`JobContext`](crate::JobContext) is cancelled and it has the
    /// [`abort_grace`](crate::ServiceManagerBuilder::abort_grace) to return. Not a failure (it
    /// is not retried: the tick may be running elsewhere), but logged as an error.
    LeaseLost,
}

impl Outcome {
    /// Whether the run failed (returned `Err`, panicked or timed out).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Panicked(_) | Outcome::TimedOut
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("ok"),
            Outcome::Failed(error) => write!(f, "failed: {error}"),
            Outcome::Panicked(message) => write!(f, "panicked: {message}"),
            Outcome::Aborted => f.write_str("aborted"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::LeaseLost => f.write_str("lease lost"),
        }
    }
}

/// A snapshot of one service, as [`ServiceManager::services`](crate::ServiceManager::services)
/// returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Its effective schedule, e.g. `*/5 * * * *` or `every 30s`.
    pub schedule: String,
    /// Where that schedule came from: the attribute, code, the config file or the environment.
    pub origin: Origin,
    /// When it fires next, while it is scheduled.
    pub next_fire: Option<DateTime<Utc>>,
    /// Where it is in its life.
    pub state: ServiceState,
    /// When the last run started.
    pub last_start: Option<DateTime<Utc>>,
    /// How long the last finished run took.
    pub last_duration: Option<Duration>,
    /// How the last finished run ended.
    pub last_outcome: Option<Outcome>,
    /// The last finished run's error text: the job's error or panic message, or, for a run that
    /// was cut short, why (`timed out after 30 s`, or for an abort the grace it was given).
    pub last_error: Option<String>,
    /// Finished runs, whatever their outcome.
    pub runs: u64,
    /// Runs that returned `Err` or panicked.
    pub failures: u64,
    /// Ticks skipped because the previous run was still going (or waiting for a slot) when they came
    /// — on this replica or, with a coordinator, on another.
    pub skipped: u64,
    /// With a coordinator: ticks another replica claimed, so this one did not run them.
    pub claimed_elsewhere: u64,
    /// With a coordinator: why it is unreachable, while it is (coordinated runs are paused). Set by
    /// the latest failed call for this service (a claim, a renewal, an end-of-run report), cleared
    /// by the next claim or report that gets through.
    pub coordinator_error: Option<String>,
    /// With a coordinator: the claim of another replica that the latest claim of this service
    /// found (the replica and its tick), until this replica is granted a tick again. With
    /// [`HeldElsewhere::running_earlier`], the service is blocked across the cluster until that run
    /// ends (or its lease runs out).
    pub held_elsewhere: Option<HeldElsewhere>,
    /// With a coordinator: the tick whose end-of-run report has not reached the coordinator yet
    /// (it is retried, and the lease renewed, until it lands). While it is pending, this replica
    /// does not claim the service's next ticks.
    pub pending_report: Option<DateTime<Utc>>,
    /// With a coordinator: ticks not run because no claim could be granted before the next tick
    /// was due (the coordinator was unreachable or slow, or the previous report still pending), or
    /// because this replica had given its claim back (a stop and a start between a claim made
    /// [ahead](crate::ServiceManagerBuilder::claim_ahead) and its tick). A claim granted too late is
    /// released and recorded as `skipped` in the cluster's history.
    pub skipped_late: u64,
    /// Ticks skipped because the service was paused when they came.
    pub skipped_paused: u64,
    /// Misfired ticks that did not run: ticks that could not start within the service's
    /// [`misfire_grace`](crate::Service::misfire_grace) (a suspend, a clock jump, a saturated pool,
    /// an unreachable coordinator, or the process being down) and that its
    /// [`Misfire`](crate::Misfire) policy did not run.
    pub skipped_misfire: u64,
    /// Retries not made because the next tick came first.
    pub retries_dropped: u64,
    /// Why the running (or last) run was started.
    pub last_trigger: Option<Trigger>,
}

/// Another replica's claim, as [`ServiceStatus::held_elsewhere`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HeldElsewhere {
    /// The replica that holds the claim.
    pub replica: String,
    /// The tick it holds.
    pub tick: DateTime<Utc>,
    /// `true`: an earlier tick, still running there (its lease is alive), kept this replica from
    /// running its tick; `false`: the other replica claimed the very tick this one asked for.
    pub running_earlier: bool,
}

/// A failed run, as the failure hook receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Failure {
    /// The service's name.
    pub service: String,
    /// The tick the run belonged to.
    pub tick: DateTime<Utc>,
    /// How it failed: [`Outcome::Failed`], [`Outcome::Panicked`] or [`Outcome::TimedOut`].
    pub outcome: Outcome,
    /// How long it ran.
    pub duration: Duration,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service '{}' {} (tick {}, after {:?})",
            self.service, self.outcome, self.tick, self.duration
        )
    }
}
