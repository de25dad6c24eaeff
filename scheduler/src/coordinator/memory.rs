//! A coordinator whose "database" is shared memory: managers in one process acting as replicas. For
//! tests of cluster behaviour, and as the reference for what a real coordinator must do.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{self, BoxFuture};
use tokio::time::Instant;

use super::{
    decide, outcome_parts, Claim, ClaimPolicy, Coordinator, CoordinatorError, Decision,
    FinishedRun, RowState, RunRecord, Ticket, Verdict,
};

/// Replicas that share claims in memory. Leases follow tokio's clock, so they work under paused time.
///
/// ```
/// use scheduler::{coordinator::InMemoryCoordinator, ServiceManager};
///
/// let cluster = InMemoryCoordinator::new();
/// let a = ServiceManager::builder().coordinator(cluster.replica("a")).build()?;
/// let b = ServiceManager::builder().coordinator(cluster.replica("b")).build()?;
/// // Services added to both run each tick on exactly one of them.
/// # Ok::<(), scheduler::Error>(())
/// ```
#[derive(Clone)]
pub struct InMemoryCoordinator {
    replica: Arc<str>,
    shared: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<(String, DateTime<Utc>), Row>,
    unavailable: bool,
    crashed: HashSet<String>,
}

struct Row {
    replica: String,
    attempt: u32,
    started: DateTime<Utc>,
    lease: Duration,
    lease_until: Instant,
    finished: Option<DateTime<Utc>>,
    outcome: Option<String>,
    error: Option<String>,
}

impl Default for InMemoryCoordinator {
    fn default() -> Self {
        InMemoryCoordinator::new()
    }
}

impl InMemoryCoordinator {
    /// A new, empty cluster; this handle is replica `"replica-0"`.
    pub fn new() -> Self {
        InMemoryCoordinator {
            replica: "replica-0".into(),
            shared: Arc::default(),
        }
    }

    /// A handle on the same cluster for the replica `name`.
    #[must_use]
    pub fn replica(&self, name: &str) -> Self {
        InMemoryCoordinator {
            replica: name.into(),
            shared: self.shared.clone(),
        }
    }

    /// Simulates an outage: while unavailable, every call fails.
    pub fn set_available(&self, available: bool) {
        self.state().unavailable = !available;
    }

    /// Simulates this replica's death: from now on its renewals, reports and releases never
    /// answer, so its claims run out as a dead process's would.
    pub fn crash(&self) {
        self.state().crashed.insert(self.replica.to_string());
    }

    /// Every (service, tick, replica) run recorded so far, in key order.
    pub fn runs(&self) -> Vec<(String, DateTime<Utc>, String)> {
        self.state()
            .runs
            .iter()
            .map(|((service, tick), row)| (service.clone(), *tick, row.replica.clone()))
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn available(&self) -> Result<MutexGuard<'_, State>, CoordinatorError> {
        let state = self.state();
        if state.unavailable {
            Err(CoordinatorError::new(
                "the in-memory coordinator is unavailable",
            ))
        } else {
            Ok(state)
        }
    }

    fn claim_now(
        &self,
        service: &str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> Result<Claim, CoordinatorError> {
        let mut state = self.available()?;
        let now = Instant::now();
        let range = (service.to_owned(), DateTime::<Utc>::MIN_UTC)
            ..=(service.to_owned(), DateTime::<Utc>::MAX_UTC);
        let rows: Vec<RowState<'_, Instant>> = state
            .runs
            .range(range)
            .map(|((_, tick), row)| RowState {
                tick: *tick,
                replica: &row.replica,
                ended: row.finished.is_some() || row.outcome.is_some(),
                failed: matches!(
                    row.outcome.as_deref(),
                    Some("failed" | "panicked" | "timed_out")
                ),
                lease_until: row.lease_until,
            })
            .collect();
        let Decision { abandon, verdict } = decide(&self.replica, tick, &rows, &now, policy);
        for abandoned in abandon {
            if let Some(row) = state.runs.get_mut(&(service.to_owned(), abandoned)) {
                row.outcome = Some("abandoned".to_owned());
            }
        }
        let claimed = |tick, attempt| {
            Claim::Granted(Ticket {
                service: service.to_owned(),
                tick,
                attempt,
            })
        };
        Ok(match verdict {
            Verdict::Taken { replica } => Claim::Taken { replica },
            Verdict::Busy { replica, tick } => Claim::Busy { replica, tick },
            Verdict::TakeOver { tick } => {
                let row = state
                    .runs
                    .get_mut(&(service.to_owned(), tick))
                    .expect("the rule takes over a row it was given");
                row.replica = self.replica.to_string();
                row.attempt += 1;
                row.lease = policy.lease;
                row.lease_until = now + policy.lease;
                claimed(tick, row.attempt)
            }
            Verdict::Retry => {
                let row = state
                    .runs
                    .get_mut(&(service.to_owned(), tick))
                    .expect("the rule retries a row it was given");
                row.attempt += 1;
                row.lease = policy.lease;
                row.lease_until = now + policy.lease;
                row.finished = None;
                row.outcome = None;
                row.error = None;
                claimed(tick, row.attempt)
            }
            Verdict::Insert => {
                state.runs.insert(
                    (service.to_owned(), tick),
                    Row {
                        replica: self.replica.to_string(),
                        attempt: 1,
                        started: tick,
                        lease: policy.lease,
                        lease_until: now + policy.lease,
                        finished: None,
                        outcome: None,
                        error: None,
                    },
                );
                claimed(tick, 1)
            }
        })
    }

    /// Applies `change` to the ticket's row if it is still this replica's attempt (its fencing
    /// token) and `applies` to it; whether it did. A crashed replica never answers.
    fn fenced<'a>(
        &'a self,
        ticket: &'a Ticket,
        applies: fn(&Row) -> bool,
        change: impl FnOnce(&mut Row) + Send + 'a,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        let result = self.available().map(|mut state| {
            if state.crashed.contains(&*self.replica) {
                return None;
            }
            let row = state
                .runs
                .get_mut(&(ticket.service.clone(), ticket.tick))
                .filter(|row| row.replica == *self.replica && row.attempt == ticket.attempt)
                .filter(|row| applies(row));
            Some(row.map(change).is_some())
        });
        match result {
            Ok(Some(done)) => Box::pin(future::ready(Ok(done))),
            Ok(None) => Box::pin(future::pending()),
            Err(error) => Box::pin(future::ready(Err(error))),
        }
    }
}

impl Row {
    fn unfinished(&self) -> bool {
        self.finished.is_none() && self.outcome.is_none()
    }
}

impl Coordinator for InMemoryCoordinator {
    fn replica(&self) -> &str {
        &self.replica
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        Box::pin(future::ready(self.available().map(drop)))
    }

    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        Box::pin(future::ready(self.claim_now(service, tick, policy)))
    }

    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.fenced(ticket, Row::unfinished, |row| {
            row.lease_until = Instant::now() + row.lease;
        })
    }

    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.fenced(
            ticket,
            |_| true,
            move |row| {
                let (outcome, error) = outcome_parts(&run.outcome);
                row.started = run.started;
                row.finished = Some(run.finished);
                row.outcome = Some(outcome.to_owned());
                row.error = error.map(str::to_owned);
                row.lease_until = row.lease_until.min(Instant::now());
            },
        )
    }

    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.fenced(ticket, Row::unfinished, move |row| {
            row.outcome = Some("skipped".to_owned());
            row.error = Some(reason.to_owned());
            row.lease_until = row.lease_until.min(Instant::now());
        })
    }

    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        let result = self.available().map(|state| {
            state
                .runs
                .iter()
                .rev()
                .filter(|((s, _), _)| s == service)
                .take(limit)
                .map(|((s, tick), row)| {
                    RunRecord::new(
                        s.clone(),
                        *tick,
                        row.replica.clone(),
                        row.attempt,
                        row.started,
                        row.finished,
                        row.outcome.clone(),
                        row.error.clone(),
                    )
                })
                .collect()
        });
        Box::pin(future::ready(result))
    }

    fn last_tick<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, CoordinatorError>> {
        let result = self.available().map(|state| {
            state
                .runs
                .keys()
                .filter(|(s, _)| s == service)
                .map(|(_, tick)| *tick)
                .max()
        });
        Box::pin(future::ready(result))
    }
}
