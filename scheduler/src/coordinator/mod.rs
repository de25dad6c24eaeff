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
//! A claim granted too late (the next tick was already due when the answer came) is not run: it is
//! [released](Coordinator::release), recorded as `skipped`, and counted in
//! [`ServiceStatus::skipped_late`](crate::ServiceStatus::skipped_late).

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

    /// The latest runs of `service` across the cluster, newest first.
    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>>;

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
}

/// How to claim: the lease, and what to do with abandoned ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// How long a claim holds without renewal.
    pub lease: Duration,
    /// The service's delivery guarantee.
    pub delivery: Delivery,
    /// Which attempt of the tick this claim is for: 1 for its first run, more for a retry of a
    /// failed run ([`Service::retries`](crate::Service::retries)), which may claim its own failed
    /// tick again (see [`decide`]).
    pub attempt: u32,
}

impl ClaimPolicy {
    /// A first attempt's claim.
    pub fn new(lease: Duration, delivery: Delivery) -> Self {
        ClaimPolicy {
            lease,
            delivery,
            attempt: 1,
        }
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
}

/// A granted claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The service.
    pub service: String,
    /// The tick this replica runs.
    pub tick: DateTime<Utc>,
    /// 1 for a first run, more for a takeover of an abandoned tick. With the replica's name, the
    /// claim's fencing token: renewals and reports apply only while it is still current.
    pub attempt: u32,
}

/// A finished run, as reported to [`Coordinator::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    /// When the job started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
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
    /// Which attempt this is (more than 1 after a takeover).
    pub attempt: u32,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended; `None` while running, or if its runner died.
    pub finished: Option<DateTime<Utc>>,
    /// `ok`, `failed`, `panicked`, `aborted`, `timed_out`; `abandoned` when its runner's lease ran
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
    }
}
