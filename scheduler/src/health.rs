//! Whether this replica can reach its coordinator, as every call to it found out: the answer of
//! [`ServiceManager::coordinator_health`](crate::ServiceManager::coordinator_health), the admin
//! API's `GET api/coordinator`, the dashboard's banner, and two metrics.
//!
//! The manager wraps its coordinator in a watcher that notes the result of every call (claims,
//! renewals, reports, control reads and writes, heartbeats, history). The control task calls the
//! coordinator every second while the manager is started, so an outage is seen within about a
//! second even when no tick is due, and the end of one as soon.
//!
//! Calls overlap (claims, renewals and the control poll run side by side, and a slow one may
//! answer after a quicker one made later), so the state is that of the latest *begun* call that
//! answered; an older call's answer arriving late only counts its error:
//!
//! ```text
//! call 7 begins ─────────────── (hangs) ─────────────── ✘ timed out: counted, state unchanged
//!   call 8 begins ─ ✘ refused: unreachable since t8, error "connection refused"
//!     call 9 begins ─ ✔: reachable since t9 (the error text stays, for the operator)
//! ```
//!
//! The states: `unknown` (no call answered yet) ─▶ `reachable` ⇄ `unreachable`; `since` is when the
//! current state was first seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::clock::Clock;
use crate::coordinator::{
    Claim, ClaimPolicy, ControlRecord, Coordinator, CoordinatorError, FinishedRun, Heartbeat,
    HistoryQuery, NameUse, ReplicaRecord, RunRecord, Ticket,
};

/// Whether the coordinator answered the latest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Reachability {
    /// No call has answered yet (the manager has not started, or its first call is under way).
    Unknown,
    /// The latest call answered.
    Reachable,
    /// The latest call failed: the database is down, cut off, refusing the connection or the
    /// credentials, or slower than the coordinator's timeout.
    Unreachable,
}

impl Reachability {
    /// `unknown`, `reachable` or `unreachable`, as the admin API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Reachable => "reachable",
            Reachability::Unreachable => "unreachable",
        }
    }
}

/// This replica's connection to its coordinator, as its calls found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CoordinatorHealth {
    /// Whether the latest call answered.
    pub state: Reachability,
    /// When [`state`](Self::state) was first seen as it is now (by the manager's clock): for
    /// `unreachable`, when the outage was first seen; `None` while `unknown`.
    pub since: Option<DateTime<Utc>>,
    /// The latest call's error, kept after the coordinator answers again so that an operator can
    /// see what the last outage was.
    pub last_error: Option<String>,
    /// When [`last_error`](Self::last_error) happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Every call that failed since the manager was built (the metric
    /// `scheduler_coordinator_errors_total` counts the same).
    pub errors: u64,
}

impl CoordinatorHealth {
    /// Whether the latest call failed.
    pub fn is_unreachable(&self) -> bool {
        self.state == Reachability::Unreachable
    }
}

/// The book of a manager's calls to its coordinator.
pub(crate) struct Health {
    clock: Arc<dyn Clock>,
    /// Numbers calls as they begin: the order that decides which answer sets the state.
    begun: AtomicU64,
    book: Mutex<Book>,
    #[cfg(feature = "metrics")]
    meters: meters::Meters,
}

struct Book {
    health: CoordinatorHealth,
    /// The number of the latest begun call whose answer set the state.
    latest: u64,
}

impl Health {
    pub(crate) fn new(clock: Arc<dyn Clock>, replica: &str) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = replica;
        Health {
            clock,
            begun: AtomicU64::new(0),
            book: Mutex::new(Book {
                health: CoordinatorHealth {
                    state: Reachability::Unknown,
                    since: None,
                    last_error: None,
                    last_error_at: None,
                    errors: 0,
                },
                latest: 0,
            }),
            #[cfg(feature = "metrics")]
            meters: meters::Meters::new(replica),
        }
    }

    /// What the calls found so far.
    pub(crate) fn snapshot(&self) -> CoordinatorHealth {
        self.book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .health
            .clone()
    }

    /// A call begins: its number.
    fn begin(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Call `call` answered, with `error` if it failed; a success of a call that `proves` nothing
    /// (see [`Watched`]) leaves the state as it is.
    fn answered(&self, call: u64, error: Option<&CoordinatorError>, proves: bool) {
        if error.is_none() && !proves {
            return;
        }
        let now = self.clock.now();
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(error) = error {
            book.health.errors += 1;
            book.health.last_error = Some(error.to_string());
            book.health.last_error_at = Some(now);
            #[cfg(feature = "metrics")]
            self.meters.error();
        }
        if call < book.latest {
            return;
        }
        book.latest = call;
        let state = if error.is_some() {
            Reachability::Unreachable
        } else {
            Reachability::Reachable
        };
        if book.health.state != state {
            match state {
                Reachability::Unreachable => tracing::warn!(
                    error = %book.health.last_error.as_deref().unwrap_or_default(),
                    "coordinator unreachable"),
                _ if book.health.state == Reachability::Unreachable => {
                    tracing::info!("coordinator reachable again");
                }
                _ => {}
            }
            book.health.state = state;
            book.health.since = Some(now);
            #[cfg(feature = "metrics")]
            self.meters.up(state == Reachability::Reachable);
        }
    }

    /// Runs `call`, one every coordinator answers by asking its store, noting its result.
    async fn watch<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CoordinatorError>>,
    ) -> Result<T, CoordinatorError> {
        let number = self.begin();
        let result = call.await;
        self.answered(number, result.as_ref().err(), true);
        result
    }

    /// Runs `call`, one the trait answers by default without asking anything: only a failure of
    /// it says something.
    async fn watch_failure<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CoordinatorError>>,
    ) -> Result<T, CoordinatorError> {
        let number = self.begin();
        let result = call.await;
        self.answered(number, result.as_ref().err(), false);
        result
    }
}

#[cfg(feature = "metrics")]
mod meters {
    use metrics::{Counter, Gauge};

    use crate::meter::names;

    /// The two metrics, labelled with the replica's name (a process may run several managers);
    /// registered at the first answer, as a service's are at its first run.
    pub(super) struct Meters {
        replica: String,
        handles: std::sync::OnceLock<(Gauge, Counter)>,
    }

    impl Meters {
        pub(super) fn new(replica: &str) -> Self {
            Meters {
                replica: replica.to_owned(),
                handles: std::sync::OnceLock::new(),
            }
        }

        fn handles(&self) -> &(Gauge, Counter) {
            self.handles.get_or_init(|| {
                let replica = || self.replica.clone();
                (
                    metrics::gauge!(names::COORDINATOR_UP, "replica" => replica()),
                    metrics::counter!(names::COORDINATOR_ERRORS, "replica" => replica()),
                )
            })
        }

        pub(super) fn up(&self, up: bool) {
            self.handles().0.set(if up { 1.0 } else { 0.0 });
        }

        pub(super) fn error(&self) {
            self.handles().1.increment(1);
        }
    }
}

/// A coordinator whose every call is noted in a [`Health`]. Every method of [`Coordinator`] is
/// passed on, defaults included: one left to its default here would hide the wrapped
/// coordinator's own.
///
/// The methods the trait gives a default (`history_page`, `last_tick`, `heartbeat`, `replicas`)
/// may answer without asking anything, in a coordinator that keeps the default; their successes
/// are not taken as proof that the coordinator answers (a claim failing every second beside a
/// default heartbeat succeeding would flap), only their failures are counted. The required ones,
/// `controls` among them, which the manager calls every second, decide.
pub(crate) struct Watched {
    inner: Arc<dyn Coordinator>,
    health: Arc<Health>,
}

impl Watched {
    pub(crate) fn new(inner: Arc<dyn Coordinator>, health: Arc<Health>) -> Self {
        Watched { inner, health }
    }
}

impl Coordinator for Watched {
    fn replica(&self) -> &str {
        self.inner.replica()
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.prepare()))
    }

    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.claim(service, tick, policy)))
    }

    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.renew(ticket)))
    }

    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.finish(ticket, run)))
    }

    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.release(ticket, reason)))
    }

    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.history(service, limit)))
    }

    fn history_page<'a>(
        &'a self,
        service: &'a str,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        Box::pin(
            self.health
                .watch_failure(self.inner.history_page(service, query)),
        )
    }

    fn last_tick<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, CoordinatorError>> {
        Box::pin(self.health.watch_failure(self.inner.last_tick(service)))
    }

    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.set_paused(service, paused)))
    }

    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        Box::pin(
            self.health
                .watch(self.inner.set_disabled(service, disabled)),
        )
    }

    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>> {
        Box::pin(self.health.watch(self.inner.controls(since)))
    }

    fn control_changed(&self) -> BoxFuture<'_, ()> {
        self.inner.control_changed()
    }

    fn heartbeat<'a>(
        &'a self,
        beat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<NameUse, CoordinatorError>> {
        Box::pin(self.health.watch_failure(self.inner.heartbeat(beat)))
    }

    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaRecord>, CoordinatorError>> {
        Box::pin(self.health.watch_failure(self.inner.replicas()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;

    fn health() -> Health {
        Health::new(
            Arc::new(TokioClock::starting_at(DateTime::UNIX_EPOCH)),
            "test",
        )
    }

    #[test]
    fn unknown_until_a_call_answers_then_the_latest_begun_call_decides() {
        let health = health();
        assert_eq!(health.snapshot().state, Reachability::Unknown);
        assert_eq!(health.snapshot().since, None);
        let slow = health.begin();
        let failing = health.begin();
        health.answered(
            failing,
            Some(&CoordinatorError::new("connection refused")),
            true,
        );
        let down = health.snapshot();
        assert_eq!(down.state, Reachability::Unreachable);
        assert_eq!(down.last_error.as_deref(), Some("connection refused"));
        assert_eq!(down.errors, 1);
        // An older call answering late does not say the outage is over.
        health.answered(slow, None, true);
        assert_eq!(health.snapshot().state, Reachability::Unreachable);
        let next = health.begin();
        health.answered(next, None, true);
        let up = health.snapshot();
        assert_eq!(up.state, Reachability::Reachable);
        assert_eq!(up.last_error.as_deref(), Some("connection refused"));
        assert_eq!(up.errors, 1);
    }

    #[test]
    fn a_success_that_proves_nothing_does_not_end_an_outage_but_its_failure_counts() {
        let health = health();
        let claim = health.begin();
        health.answered(claim, Some(&CoordinatorError::new("refused")), true);
        let beat = health.begin();
        health.answered(beat, None, false);
        assert_eq!(health.snapshot().state, Reachability::Unreachable);
        let beat = health.begin();
        health.answered(beat, Some(&CoordinatorError::new("refused again")), false);
        assert_eq!(health.snapshot().errors, 2);
        assert_eq!(
            health.snapshot().last_error.as_deref(),
            Some("refused again")
        );
    }

    #[test]
    fn a_late_error_of_an_older_call_is_counted_but_does_not_mark_an_outage() {
        let health = health();
        let old = health.begin();
        let new = health.begin();
        health.answered(new, None, true);
        health.answered(old, Some(&CoordinatorError::new("timed out")), true);
        let seen = health.snapshot();
        assert_eq!(seen.state, Reachability::Reachable);
        assert_eq!(seen.errors, 1);
        assert_eq!(seen.last_error.as_deref(), Some("timed out"));
    }
}
