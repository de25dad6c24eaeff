//! The JSON the admin API answers with: plain `Serialize` types, built from the runtime's
//! [`ServiceStatus`] and [`RunRecord`], or by an [`AdminBackend`](super::AdminBackend) of your own.
//!
//! Each type has public fields and a constructor for its required ones (the others start empty), so
//! a backend can fill in what it knows; new fields may be added, so build them with the constructor.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::ConfigReload;
use crate::coordinator::{outcome_parts, RunRecord};
use crate::status::{Outcome, ServiceState, ServiceStatus};

/// Where a service is in its life, as the API spells it (`"idle"`, `"waiting_for_slot"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Added, but the manager has not been started.
    NotStarted,
    /// Scheduled, sleeping until its next tick.
    Idle,
    /// Due, waiting for a slot in the worker pool.
    WaitingForSlot,
    /// Its job is running.
    Running,
    /// Paused by an operator: its ticks are skipped until it is resumed.
    Paused,
    /// Stopped, with a run still finishing.
    Stopping,
    /// Stopped.
    Stopped,
    /// No tick left (a one-shot service that ran, or a cron expression that never fires again).
    Finished,
    /// Turned off by configuration.
    Disabled,
}

impl State {
    /// The name the API uses, e.g. `waiting_for_slot`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotStarted => "not_started",
            State::Idle => "idle",
            State::WaitingForSlot => "waiting_for_slot",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Finished => "finished",
            State::Disabled => "disabled",
        }
    }
}

impl From<ServiceState> for State {
    fn from(state: ServiceState) -> Self {
        // Exhaustive on purpose: a new runtime state must be given its API name here.
        match state {
            ServiceState::NotStarted => State::NotStarted,
            ServiceState::Idle => State::Idle,
            ServiceState::WaitingForSlot => State::WaitingForSlot,
            ServiceState::Running => State::Running,
            ServiceState::Stopping => State::Stopping,
            ServiceState::Stopped => State::Stopped,
            ServiceState::Finished => State::Finished,
            ServiceState::Disabled => State::Disabled,
            ServiceState::Paused => State::Paused,
        }
    }
}

/// How a run ended, as the API spells it (`"succeeded"`, `"failed"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunOutcome {
    /// The job returned `()` or `Ok(())`.
    Succeeded,
    /// The job returned `Err`.
    Failed,
    /// The job panicked.
    Panicked,
    /// The job ran past its time limit.
    TimedOut,
    /// The run was cancelled.
    Aborted,
    /// In cluster mode: its runner's lease ran out before it reported (the replica died or was
    /// cut off); under at-least-once delivery another attempt took the tick over.
    Abandoned,
    /// In cluster mode: the tick was granted but not run (the claim came back too late, or the
    /// service stopped first); the error says why.
    Skipped,
    /// The run's claim was lost while it ran (cluster mode), and it was cancelled.
    LeaseLost,
}

impl RunOutcome {
    /// The kind of `outcome`, and its error or panic message.
    pub fn of(outcome: &Outcome) -> (RunOutcome, Option<String>) {
        let (name, message) = outcome_parts(outcome);
        (
            RunOutcome::from_name(name).unwrap_or(RunOutcome::Failed),
            message.map(str::to_owned),
        )
    }

    /// Reads the outcome names coordinators store (`ok`, `failed`, `panicked`, `aborted`,
    /// `timed_out`, `abandoned`, `skipped`) and the API's own (`succeeded`); `None` for anything
    /// else.
    pub fn from_name(name: &str) -> Option<RunOutcome> {
        Some(match name {
            "ok" | "succeeded" => RunOutcome::Succeeded,
            "failed" => RunOutcome::Failed,
            "panicked" => RunOutcome::Panicked,
            "timed_out" => RunOutcome::TimedOut,
            "aborted" => RunOutcome::Aborted,
            "abandoned" => RunOutcome::Abandoned,
            "skipped" => RunOutcome::Skipped,
            "lease_lost" => RunOutcome::LeaseLost,
            _ => return None,
        })
    }

    /// The name coordinators store for it (`ok` for a success; the API's name otherwise).
    pub fn stored_name(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::Panicked => "panicked",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Aborted => "aborted",
            RunOutcome::Abandoned => "abandoned",
            RunOutcome::Skipped => "skipped",
            RunOutcome::LeaseLost => "lease_lost",
        }
    }
}

/// One service in the list: every field of its [`ServiceStatus`], in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceView {
    /// The service's name.
    pub name: String,
    /// Where it is in its life.
    pub state: State,
    /// Its effective schedule as written: `*/5 * * * *`, `0 9 * * MON-FRI (Europe/Berlin)`,
    /// `every 30s`.
    pub schedule: String,
    /// The time zone of a cron schedule (`UTC` unless one was given); `None` for other schedules.
    pub zone: Option<String>,
    /// Where the schedule came from: `attribute`, `code`, `file` or `env`.
    pub origin: String,
    /// When it fires next, while it is scheduled.
    pub next_fire: Option<DateTime<Utc>>,
    /// When the last run started.
    pub last_start: Option<DateTime<Utc>>,
    /// How long the last finished run took, in seconds.
    pub last_duration_secs: Option<f64>,
    /// How the last finished run ended.
    pub last_outcome: Option<RunOutcome>,
    /// The error or panic message of the last run, if it failed, or why it was cut short
    /// (`timed out after 30 s`).
    pub last_error: Option<String>,
    /// Finished runs, whatever their outcome.
    pub runs: u64,
    /// Runs that returned `Err` or panicked.
    pub failures: u64,
    /// Ticks skipped (overlap, or with a coordinator, a run going on elsewhere).
    pub skipped: u64,
    /// Ticks skipped because the service was paused.
    pub skipped_paused: u64,
    /// Misfired ticks its misfire policy did not run.
    pub skipped_misfire: u64,
    /// Retries not made because the next tick came first.
    pub retries_dropped: u64,
    /// Why the running (or last) run started: `schedule`, `start` (`on_start`) or `manual`.
    pub last_trigger: Option<String>,
    /// With a coordinator: ticks another replica ran.
    pub claimed_elsewhere: u64,
    /// With a coordinator: why it is unreachable, while it is.
    pub coordinator_error: Option<String>,
    /// With a coordinator: the other replica's claim that kept this replica from running its
    /// latest tick (see [`ServiceStatus::held_elsewhere`]).
    pub held_elsewhere: Option<HeldView>,
    /// With a coordinator: the tick whose end-of-run report is not recorded yet.
    pub pending_report: Option<DateTime<Utc>>,
    /// With a coordinator: ticks not run because no claim came back before the next tick.
    pub skipped_late: u64,
    /// The outcomes of the latest runs (up to 20 for a [`ServiceManager`](crate::ServiceManager)),
    /// oldest first: the dashboard's sparkline; empty when the backend keeps no history.
    pub recent: Vec<RunOutcome>,
}

impl ServiceView {
    /// A service with this name and schedule, not started, with no runs; set the other fields as
    /// needed.
    pub fn new(name: impl Into<String>, schedule: impl Into<String>) -> Self {
        ServiceView {
            name: name.into(),
            state: State::NotStarted,
            schedule: schedule.into(),
            zone: None,
            origin: "code".to_owned(),
            next_fire: None,
            last_start: None,
            last_duration_secs: None,
            last_outcome: None,
            last_error: None,
            runs: 0,
            failures: 0,
            skipped: 0,
            skipped_paused: 0,
            skipped_misfire: 0,
            retries_dropped: 0,
            last_trigger: None,
            claimed_elsewhere: 0,
            coordinator_error: None,
            held_elsewhere: None,
            pending_report: None,
            skipped_late: 0,
            recent: Vec::new(),
        }
    }
}

/// Another replica's claim, as [`ServiceView::held_elsewhere`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HeldView {
    /// The replica holding the claim.
    pub replica: String,
    /// The tick it holds.
    pub tick: DateTime<Utc>,
    /// An earlier tick still running there, which blocks the service cluster-wide.
    pub running_earlier: bool,
}

impl From<&ServiceStatus> for ServiceView {
    fn from(status: &ServiceStatus) -> Self {
        let last_outcome = status.last_outcome.as_ref().map(|o| RunOutcome::of(o).0);
        let last_error = status.last_error.clone();
        ServiceView {
            name: status.name.clone(),
            state: status.state.into(),
            schedule: status.schedule.clone(),
            zone: zone_of(&status.schedule),
            origin: status.origin.to_string(),
            next_fire: status.next_fire,
            last_start: status.last_start,
            last_duration_secs: status.last_duration.map(|d| d.as_secs_f64()),
            last_outcome,
            last_error,
            runs: status.runs,
            failures: status.failures,
            skipped: status.skipped,
            skipped_paused: status.skipped_paused,
            skipped_misfire: status.skipped_misfire,
            retries_dropped: status.retries_dropped,
            last_trigger: status.last_trigger.as_ref().map(ToString::to_string),
            claimed_elsewhere: status.claimed_elsewhere,
            coordinator_error: status.coordinator_error.clone(),
            held_elsewhere: status.held_elsewhere.as_ref().map(|held| HeldView {
                replica: held.replica.clone(),
                tick: held.tick,
                running_earlier: held.running_earlier,
            }),
            pending_report: status.pending_report,
            skipped_late: status.skipped_late,
            recent: Vec::new(),
        }
    }
}

/// The zone of a schedule as [`Schedule`](crate::Schedule)'s `Display` writes it: `EXPR (ZONE)` for
/// a zoned cron expression, `EXPR` for a UTC one, `every ...` / `once ...` for the others.
pub(super) fn zone_of(schedule: &str) -> Option<String> {
    if schedule.starts_with("every ") || schedule.starts_with("once ") {
        return None;
    }
    Some(split_zone(schedule).1.unwrap_or("UTC").to_owned())
}

/// `("0 9 * * *", Some("Europe/Berlin"))` from `0 9 * * * (Europe/Berlin)`.
pub(super) fn split_zone(schedule: &str) -> (&str, Option<&str>) {
    schedule
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once(" ("))
        .map_or((schedule, None), |(expr, zone)| (expr, Some(zone)))
}

/// One run in a service's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunView {
    /// The tick the run belongs to.
    pub tick: DateTime<Utc>,
    /// When it started.
    pub started: DateTime<Utc>,
    /// How long it took, in seconds; `None` while it runs (or if its runner died).
    pub duration_secs: Option<f64>,
    /// How it ended; `None` while it runs (or if its runner died).
    pub outcome: Option<RunOutcome>,
    /// The error or panic message of a failed run, or why a run was cut short (`timed out after
    /// 30 s`, or for an abort the grace it was given).
    pub error: Option<String>,
    /// 1 for a tick's first run, more for a retry (each attempt is a run of its own in the
    /// history, with its own outcome and error) or, in cluster mode, a takeover.
    pub attempt: u32,
    /// The replica that ran it, in cluster mode.
    pub replica: Option<String>,
}

impl RunView {
    /// A first attempt of `tick`, started at `started`, still running; set the other fields as needed.
    pub fn new(tick: DateTime<Utc>, started: DateTime<Utc>) -> Self {
        RunView {
            tick,
            started,
            duration_secs: None,
            outcome: None,
            error: None,
            attempt: 1,
            replica: None,
        }
    }
}

impl From<&RunRecord> for RunView {
    fn from(record: &RunRecord) -> Self {
        let outcome = record.outcome.as_deref().map(|name| {
            RunOutcome::from_name(name).ok_or_else(|| format!("unknown outcome '{name}'"))
        });
        let (outcome, unknown) = match outcome {
            Some(Ok(outcome)) => (Some(outcome), None),
            Some(Err(unknown)) => (None, Some(unknown)),
            None => (None, None),
        };
        RunView {
            tick: record.tick,
            started: record.started,
            duration_secs: record
                .finished
                .and_then(|finished| (finished - record.started).to_std().ok())
                .map(|d| d.as_secs_f64()),
            outcome,
            error: record.error.clone().or(unknown),
            attempt: record.attempt,
            replica: Some(record.replica.clone()),
        }
    }
}

/// A service's schedule: as written, in plain English, and its next fire times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ScheduleView {
    /// The schedule as written (see [`ServiceView::schedule`]).
    pub text: String,
    /// Its zone (see [`ServiceView::zone`]).
    pub zone: Option<String>,
    /// A plain-English description, e.g. "At 09:00, Monday through Friday (Europe/Berlin)", when
    /// the backend can give one.
    pub description: Option<String>,
    /// The next fire times, soonest first.
    pub upcoming: Vec<DateTime<Utc>>,
}

/// One service in full: its status, schedule and latest runs (`GET /api/services/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceDetail {
    /// Its status.
    pub service: ServiceView,
    /// Its schedule.
    pub schedule: ScheduleView,
    /// Its latest runs, newest first.
    pub history: Vec<RunView>,
    /// Why the history could not be read, when it could not (the rest is still current).
    pub history_error: Option<String>,
}

/// What a configuration reload changed (`POST /api/reload`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReloadView {
    /// The services re-registered, disabled or enabled, by name.
    pub changed: Vec<String>,
    /// Whether the worker pool was resized.
    pub pool_resized: bool,
    /// The services paused because their `paused` setting turned true.
    pub paused: Vec<String>,
    /// The services resumed because their `paused` setting turned false.
    pub resumed: Vec<String>,
}

impl From<ConfigReload> for ReloadView {
    fn from(reload: ConfigReload) -> Self {
        ReloadView {
            changed: reload.changed,
            pool_resized: reload.pool_resized,
            paused: reload.paused,
            resumed: reload.resumed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_read_from_the_schedule_text() {
        assert_eq!(
            split_zone("0 9 * * MON-FRI (Europe/Berlin)"),
            ("0 9 * * MON-FRI", Some("Europe/Berlin"))
        );
        assert_eq!(split_zone("*/5 * * * *"), ("*/5 * * * *", None));
        assert_eq!(zone_of("*/5 * * * *").as_deref(), Some("UTC"));
        assert_eq!(zone_of("every 30s"), None);
        assert_eq!(zone_of("once after 5s"), None);
    }

    #[test]
    fn outcome_names_of_coordinators_and_of_the_api_are_read() {
        assert_eq!(RunOutcome::from_name("ok"), Some(RunOutcome::Succeeded));
        assert_eq!(
            RunOutcome::from_name("timed_out"),
            Some(RunOutcome::TimedOut)
        );
        assert_eq!(RunOutcome::from_name("exploded"), None);
        assert_eq!(
            RunOutcome::of(&Outcome::Panicked("boom".into())),
            (RunOutcome::Panicked, Some("boom".to_owned()))
        );
    }
}
