//! Coordination across replicas: which replica runs a tick.
//!
//! By default a manager runs every tick itself. Give it a [`Coordinator`] and, before running tick *T*
//! of service *S*, it claims the key (S, T) from the coordinator; only the replica whose claim is
//! granted runs it. Ticks are instants of the schedule, which every replica computes alike (fixed
//! periods are anchored at the Unix epoch in coordinated mode, so that they agree), so a claim per
//! tick — not a lock per name — is what keeps a tick from running twice, however long the job takes.
//! What a claim answers is one rule, [`decide`], that every coordinator applies.
//!
//! ```text
//! replica A ── tick T due ── claim (S,T) ✔ ── run ──────────── finish (S,T) ✔ (claim released)
//! replica B ── tick T due ── claim (S,T) ✘ taken by A: skip, sleep until T+1
//! replica B ── tick T+1 due ─ claim (S,T+1) ✘ A still running T (lease alive): skipped, no overlap
//! ```
//!
//! # Replicas
//! A started manager [heartbeats](Coordinator::heartbeat) every [`HEARTBEAT_EVERY`]: its name, a
//! per-process instance id, its version, when it started, the services whose run it holds and how
//! many runs it has going. [`ServiceManager::replicas`](crate::ServiceManager::replicas) (and the
//! admin API's `GET /api/replicas`, the dashboard's replicas panel) list them; one silent for
//! [`REPLICA_DEAD_AFTER`] is shown dead. A name heartbeat by two live processes at once is
//! detected: the second process is not let in (the row stays the first's), both are told
//! ([`NameUse::Shared`]), log it as an error and show `name_shared`.
//!
//! ```text
//! web-1 (instance p1) ─ beat ─▶ row web-1: p1, last seen now
//! web-1 (instance p2) ─ beat ─▶ row is p1's and alive: refused, marked contested ─▶ Shared(p1)
//! web-1 (instance p1) ─ beat ─▶ contested within 5 s ─▶ Shared(p2)
//! ```
//!
//! # Leases, fencing and the end of a run
//! A granted claim carries a lease that the runner renews every third of it while the job runs; a
//! replica that dies leaves a claim whose lease runs out, and what happens to that tick is the
//! service's [`Delivery`]. Every call about a granted claim ([`renew`](Coordinator::renew),
//! [`finish`](Coordinator::finish), [`release`](Coordinator::release)) carries its [`Ticket`],
//! whose `attempt` is a fencing token: it applies only while the claim is still this replica's
//! attempt. A replica whose lease ran out and whose tick was taken over cannot renew it any more,
//! nor overwrite the record of the replica that took it over.
//!
//! The end of a run is recorded by [`finish`](Coordinator::finish), which also releases the claim
//! at once, so no other replica waits out a lease for a run that has ended:
//!
//! ```text
//! job ends ─ finish ✘ (database down) ─ retry ✘ ─ … ─ finish ✔: recorded, claim released
//!            └─ meanwhile the lease is renewed every third of it, so it stays this replica's
//! ```
//!
//! The runner retries a report until it lands, or until the coordinator answers that the claim is
//! no longer this replica's (taken over), or until its lease is over by this replica's clock and
//! one more lease has passed (then other replicas have long seen it run out). While a report is
//! pending the service does not claim its next tick (its own claim would hold it `Busy`), and
//! [`ServiceStatus::pending_report`](crate::ServiceStatus::pending_report) shows it.
//!
//! # Shared control state
//! Pausing and resuming a service is cluster-wide, and so are disabling and enabling it
//! ([`ServiceManager::disable`](crate::ServiceManager::disable), through
//! [`Coordinator::set_disabled`], the same way): [`ServiceManager::pause`] and
//! [`resume`](crate::ServiceManager::resume) (the admin API and the dashboard call them) write a
//! [`ControlRecord`] through [`Coordinator::set_paused`], and every replica applies the records it
//! reads from [`Coordinator::controls`] to its own services: at once when the coordinator notifies
//! it ([`Coordinator::control_changed`]; LISTEN/NOTIFY on PostgreSQL), and by polling every second
//! whatever the notifications do (a notification lost across a database restart is made up for
//! within a second). The records live in the coordinator, so a pause outlives every replica.
//! The claim itself checks the record too: a tick of a paused service is never granted
//! ([`Claim::Paused`]), even on a replica that has not seen the pause yet.
//!
//! ```text
//! replica A: pause("beat") ─ paused here at once ─ set_paused ✔ ─▶ record v7 + NOTIFY
//! replica B: ─ tick ─ claim ✘ Paused (the record is read by the claim) ─ NOTIFY / poll ─▶ paused
//! ```
//!
//! Without a coordinator the manager keeps the records in an [`InMemoryCoordinator`] of its own:
//! the same code, in one process (and forgotten when it exits).
//!
//! Precedence: a service's record, once one exists, decides on every replica, at start and while
//! running. Until there is one, each replica starts the service as its configuration's `paused`
//! says. A [reload](crate::ServiceManager::reload_config) that changes `paused` (or re-registers a
//! service configured `paused = true`) writes the record, as an operator's pause would. The state
//! file (without a coordinator) remembers only ticks, and has no say. The same holds for the
//! record's `disabled` and the configuration's `enabled`.
//!
//! [`ServiceManager::pause`]: crate::ServiceManager::pause
//!
//! A claim granted too late (the next tick was already due when the answer came) is not run: it is
//! [released](Coordinator::release), recorded as `skipped`, and counted in
//! [`ServiceStatus::skipped_late`](crate::ServiceStatus::skipped_late).

mod history;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod rule;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::status::Outcome;

pub use crate::service::Delivery;

pub use history::{BadCursor, HistoryCursor, HistoryQuery, OUTCOME_NAMES};
pub use memory::InMemoryCoordinator;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCoordinator;
pub use rule::{decide, Decision, RowState, Verdict};

/// Decides, tick by tick, which replica runs a service.
///
/// Implementations must make [`claim`](Coordinator::claim) atomic across replicas: for one
/// (service, tick) key at most one call ever returns [`Claim::Granted`] (a takeover under
/// [`Delivery::AtLeastOnce`] aside).
pub trait Coordinator: Send + Sync + 'static {
    /// This replica's name, as it appears in claims and history.
    fn replica(&self) -> &str;

    /// Called by [`ServiceManager::start`](crate::ServiceManager::start) before any claim, e.g. to
    /// create or migrate a schema. Failing here is not fatal: claims retry until it works.
    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>>;

    /// Tries to claim `tick` of `service` for this replica, with a lease of `policy.lease`.
    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>>;

    /// Extends the lease of a granted claim while its job runs (or its end is not recorded yet).
    ///
    /// `Ok(true)` while the claim is still this replica's `ticket.attempt` and unfinished;
    /// `Ok(false)` once it is not (taken over, marked abandoned, or ended): nothing was changed.
    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>>;

    /// Records the end of a run and releases its claim (other replicas need not wait for the
    /// lease). Idempotent: recording the same run twice changes nothing.
    ///
    /// `Ok(true)` when recorded; `Ok(false)` when the claim is no longer this replica's
    /// `ticket.attempt` (another replica took the tick over): nothing was changed. A claim marked
    /// abandoned by another replica, but not taken over, is still this attempt's, and the report
    /// replaces the mark: the history says how the run really ended.
    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>>;

    /// Gives up a granted claim whose tick will not run (granted too late, or the service was
    /// stopped before its run began): it is recorded as `skipped`, with `reason` as its error, and
    /// its lease is released. `Ok(false)` when the claim was no longer this attempt's or unfinished.
    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>>;

    /// The latest runs of `service` across the cluster, newest first. Each attempt of a tick (a
    /// retry, a takeover) is a run of its own, with its own outcome and error.
    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>>;

    /// One page of `service`'s history, as `query` asks (newest first by tick, attempt and start;
    /// see [`HistoryQuery`]). The default reads the whole [`history`](Self::history) and pages it
    /// in memory; a coordinator backed by a database pages there instead.
    fn history_page<'a>(
        &'a self,
        service: &'a str,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        Box::pin(async move { Ok(query.page(self.history(service, usize::MAX).await?)) })
    }

    /// The latest tick of `service` any replica claimed, as far as the history goes back; `None`
    /// when it has none. At start, the manager catches up the ticks after it for services that ask
    /// for it ([`Service::misfire`](crate::Service::misfire)). The default knows no history.
    fn last_tick<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, CoordinatorError>> {
        let _ = service;
        Box::pin(futures_util::future::ready(Ok(None)))
    }

    /// Writes the cluster-wide paused state of `service` (see [Shared control
    /// state](self#shared-control-state)) and answers the record written, whose
    /// [`version`](ControlRecord::version) is higher than that of every record written before it.
    ///
    /// While a service is paused here, [`claim`](Coordinator::claim) answers [`Claim::Paused`]
    /// for its ticks (a manual run aside: [`ClaimPolicy::manual`]).
    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>>;

    /// Writes whether `service` is disabled cluster-wide (its `paused` stays as it is), as
    /// [`set_paused`](Coordinator::set_paused) does. While it is disabled, every claim of it
    /// answers [`Claim::Disabled`], manual runs included.
    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>>;

    /// The control records written after version `since` (every record for `0`), in version
    /// order.
    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>>;

    /// Resolves when a control record may have changed since the last time it resolved (a
    /// notification from another replica); it may resolve when nothing changed. The manager also
    /// reads [`controls`](Coordinator::controls) every second whatever this does, so a
    /// coordinator that cannot notify keeps the default, which never resolves.
    fn control_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    /// Records that this replica is alive, with what it holds (see [Replicas](self#replicas));
    /// called every [`HEARTBEAT_EVERY`] while the manager is started. The default records
    /// nothing, for a coordinator that does not track replicas.
    fn heartbeat<'a>(
        &'a self,
        beat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<NameUse, CoordinatorError>> {
        let _ = beat;
        Box::pin(futures_util::future::ready(Ok(NameUse::Alone)))
    }

    /// Every replica that heartbeat, alive or dead, by name. The default knows none.
    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaRecord>, CoordinatorError>> {
        Box::pin(futures_util::future::ready(Ok(Vec::new())))
    }
}

/// How often a started manager heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A replica whose last heartbeat is older than this is dead (by the coordinator's clock); its
/// name may then be taken by another process.
pub const REPLICA_DEAD_AFTER: Duration = Duration::from_secs(5);

/// What a replica says of itself in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Tells two processes that use the same replica name apart: unique per manager.
    pub instance: String,
    /// The application's version ([`ServiceManagerBuilder::replica_version`]).
    ///
    /// [`ServiceManagerBuilder::replica_version`]: crate::ServiceManagerBuilder::replica_version
    pub version: String,
    /// When the manager started.
    pub started: DateTime<Utc>,
    /// The services whose run this replica holds now.
    pub services_held: Vec<String>,
    /// How many runs are going on this replica.
    pub runs_in_flight: u32,
}

/// Whether a replica's name is its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameUse {
    /// No other live process heartbeats under this name.
    Alone,
    /// Another live process (the instance named) heartbeats under this name too: the two share
    /// one identity in claims and history, which is a deployment mistake.
    Shared {
        /// The other process's [`Heartbeat::instance`].
        instance: String,
    },
}

/// A replica as the coordinator saw it last.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ReplicaRecord {
    /// Its name.
    pub name: String,
    /// The process that holds the name ([`Heartbeat::instance`]).
    pub instance: String,
    /// The application's version it runs.
    pub version: String,
    /// When its manager started.
    pub started: DateTime<Utc>,
    /// Its last heartbeat, by the coordinator's clock.
    pub last_seen: DateTime<Utc>,
    /// The services whose run it held at its last heartbeat.
    pub services_held: Vec<String>,
    /// How many runs were going on it at its last heartbeat.
    pub runs_in_flight: u32,
    /// Whether its last heartbeat is within [`REPLICA_DEAD_AFTER`].
    pub alive: bool,
    /// Whether another live process tried to heartbeat under its name within
    /// [`REPLICA_DEAD_AFTER`].
    pub name_shared: bool,
}

impl ReplicaRecord {
    /// A record; for [`Coordinator`] implementations.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        instance: String,
        version: String,
        started: DateTime<Utc>,
        last_seen: DateTime<Utc>,
        services_held: Vec<String>,
        runs_in_flight: u32,
        alive: bool,
        name_shared: bool,
    ) -> Self {
        ReplicaRecord {
            name,
            instance,
            version,
            started,
            last_seen,
            services_held,
            runs_in_flight,
            alive,
            name_shared,
        }
    }
}

/// A service's control state as the cluster shares it: one record per service that was ever
/// paused or resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ControlRecord {
    /// The service.
    pub service: String,
    /// Whether it is paused cluster-wide; `None` when it was never paused or resumed (each
    /// replica's configuration decides then).
    pub paused: Option<bool>,
    /// Whether it is disabled cluster-wide; `None` when it was never disabled or enabled.
    pub disabled: Option<bool>,
    /// Orders the writes: a later write has a higher version (the last one wins).
    pub version: u64,
    /// The replica whose manager wrote it.
    pub changed_by: String,
    /// When it was written, by the coordinator's clock.
    pub changed_at: DateTime<Utc>,
}

impl ControlRecord {
    /// A record; for [`Coordinator`] implementations.
    pub fn new(
        service: String,
        paused: Option<bool>,
        disabled: Option<bool>,
        version: u64,
        changed_by: String,
        changed_at: DateTime<Utc>,
    ) -> Self {
        ControlRecord {
            service,
            paused,
            disabled,
            version,
            changed_by,
            changed_at,
        }
    }
}

/// How to claim: the lease, and what to do with abandoned ticks. Built with [`ClaimPolicy::new`]
/// (and [`attempt`](ClaimPolicy::attempt) for a retry), so that a field added later breaks no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimPolicy {
    /// How long a claim holds without renewal.
    pub lease: Duration,
    /// The service's delivery guarantee.
    pub delivery: Delivery,
    /// Which attempt of the tick this claim is for: 1 for its first run, more for a retry of a
    /// failed run ([`Service::retries`](crate::Service::retries)), which may claim its own failed
    /// tick again (see [`decide`]).
    pub attempt: u32,
    /// A manual run ([`ServiceManager::run_now`](crate::ServiceManager::run_now)): granted while
    /// the service is paused cluster-wide, where a tick of the schedule gets [`Claim::Paused`].
    pub manual: bool,
}

impl ClaimPolicy {
    /// A first attempt's claim.
    pub fn new(lease: Duration, delivery: Delivery) -> Self {
        ClaimPolicy {
            lease,
            delivery,
            attempt: 1,
            manual: false,
        }
    }

    /// The same claim for attempt `attempt` of its tick (1: the first run; a retry's is 2 or more).
    ///
    /// ```
    /// # use scheduler::coordinator::{ClaimPolicy, Delivery};
    /// # use std::time::Duration;
    /// let retry = ClaimPolicy::new(Duration::from_secs(30), Delivery::AtMostOnce).attempt(2);
    /// assert_eq!(retry.attempt, 2);
    /// ```
    #[must_use]
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// This replica runs the ticket's tick. Under [`Delivery::AtLeastOnce`] that may be an older,
    /// abandoned tick being taken over; the runner then claims the tick it asked for right after.
    Granted(Ticket),
    /// Another replica claimed this tick.
    Taken {
        /// The replica that has it.
        replica: String,
    },
    /// Another replica is still running an earlier tick of this service (its lease is alive):
    /// running this one would overlap it, so it is skipped.
    Busy {
        /// The replica running it.
        replica: String,
        /// The tick it is running.
        tick: DateTime<Utc>,
    },
    /// The service is paused cluster-wide ([`Coordinator::set_paused`]): the tick is not run.
    Paused,
    /// The service is disabled cluster-wide ([`Coordinator::set_disabled`]): nothing is run.
    Disabled,
}

/// A granted claim; a coordinator of your own makes one with [`Ticket::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ticket {
    /// The service.
    pub service: String,
    /// The tick this replica runs.
    pub tick: DateTime<Utc>,
    /// 1 for a first run, more for a retry of a failed run or a takeover of an abandoned tick.
    /// With the replica's name, the
    /// claim's fencing token: renewals and reports apply only while it is still current.
    pub attempt: u32,
}

impl Ticket {
    /// The claim of `tick` of `service`, granted for `attempt` (1 for a first run).
    pub fn new(service: impl Into<String>, tick: DateTime<Utc>, attempt: u32) -> Self {
        Ticket {
            service: service.into(),
            tick,
            attempt,
        }
    }
}

/// A finished run, as reported to [`Coordinator::finish`]; made with [`FinishedRun::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FinishedRun {
    /// When the job started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its error text, for the history: the error or panic message of a failed run, or why a run
    /// was cut short (`timed out after 30 s`); `None` for a success. When `None` for a failure,
    /// [`FinishedRun::error_text`] falls back to the outcome's own message.
    pub error: Option<String>,
}

impl FinishedRun {
    /// A run that started at `started`, ended at `finished`, with `outcome` (and no error text of
    /// its own: see [`with_error`](Self::with_error)).
    pub fn new(started: DateTime<Utc>, finished: DateTime<Utc>, outcome: Outcome) -> Self {
        FinishedRun {
            started,
            finished,
            outcome,
            error: None,
        }
    }

    /// The same run with the error text to record, e.g. why it was cut short.
    #[must_use]
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// The error text to store: [`error`](Self::error), else the outcome's message.
    pub fn error_text(&self) -> Option<&str> {
        self.error.as_deref().or(outcome_parts(&self.outcome).1)
    }
}

/// One run in the cluster's history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RunRecord {
    /// The service.
    pub service: String,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// The replica that ran (or runs) it.
    pub replica: String,
    /// Which attempt of the tick this is: 1 for its first run, more for a retry
    /// ([`Service::retries`](crate::Service::retries)) or a takeover. Each attempt is a record of
    /// its own, with its own outcome and error.
    pub attempt: u32,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended; `None` while running, or if its runner died.
    pub finished: Option<DateTime<Utc>>,
    /// `ok`, `failed`, `panicked`, `aborted`, `timed_out`, `lease_lost`; `abandoned` when its runner's lease ran
    /// out before it reported (at most once), `skipped` when it was granted but not run (see
    /// [`Coordinator::release`]); `None` while running.
    pub outcome: Option<String>,
    /// The error or panic message of a failed run.
    pub error: Option<String>,
    /// Why the run happened, where it is known (the local history knows it).
    pub trigger: Option<crate::status::Trigger>,
}

impl RunRecord {
    /// A record; for [`Coordinator`] implementations.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: String,
        tick: DateTime<Utc>,
        replica: String,
        attempt: u32,
        started: DateTime<Utc>,
        finished: Option<DateTime<Utc>>,
        outcome: Option<String>,
        error: Option<String>,
    ) -> Self {
        RunRecord {
            service,
            tick,
            replica,
            attempt,
            started,
            finished,
            outcome,
            error,
            trigger: None,
        }
    }
}

/// Why a coordinator could not answer (a database that is down, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorError(String);

impl CoordinatorError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CoordinatorError(message.into())
    }
}

impl fmt::Display for CoordinatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CoordinatorError {}

/// The outcome's name and message, as coordinators store them.
pub fn outcome_parts(outcome: &Outcome) -> (&'static str, Option<&str>) {
    match outcome {
        Outcome::Succeeded => ("ok", None),
        Outcome::Failed(error) => ("failed", Some(error)),
        Outcome::Panicked(message) => ("panicked", Some(message)),
        Outcome::Aborted => ("aborted", None),
        Outcome::TimedOut => ("timed_out", None),
        Outcome::LeaseLost => ("lease_lost", None),
    }
}
