//! A coordinator whose "database" is shared memory: managers in one process acting as replicas. For
//! tests of cluster behaviour, and as the reference for what a real coordinator must do.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{self, BoxFuture};
use tokio::time::Instant;

use super::{
    outcome_parts, Claim, ClaimPolicy, Coordinator, CoordinatorError, Delivery, FinishedRun,
    RunRecord, Ticket,
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

    /// Simulates this replica's death: from now on it renews and finishes nothing, so its claims
    /// run out as a dead process's would.
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
        if let Some(row) = state.runs.get(&(service.to_owned(), tick)) {
            return Ok(Claim::Taken {
                replica: row.replica.clone(),
            });
        }
        let unfinished = state.runs.iter_mut().filter(|((s, _), row)| {
            s == service && row.finished.is_none() && row.outcome.is_none()
        });
        for ((_, running_tick), row) in unfinished {
            if row.lease_until > now {
                return Ok(Claim::Busy {
                    replica: row.replica.clone(),
                    tick: *running_tick,
                });
            }
            match policy.delivery {
                Delivery::AtMostOnce => row.outcome = Some("abandoned".to_owned()),
                Delivery::AtLeastOnce => {
                    row.replica = self.replica.to_string();
                    row.attempt += 1;
                    row.lease = policy.lease;
                    row.lease_until = now + policy.lease;
                    return Ok(Claim::Granted(Ticket {
                        service: service.to_owned(),
                        tick: *running_tick,
                        attempt: row.attempt,
                    }));
                }
            }
        }
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
        Ok(Claim::Granted(Ticket {
            service: service.to_owned(),
            tick,
            attempt: 1,
        }))
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

    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), CoordinatorError>> {
        let result = self.available().map(|mut state| {
            if state.crashed.contains(&*self.replica) {
                return;
            }
            if let Some(row) = state.runs.get_mut(&(ticket.service.clone(), ticket.tick)) {
                if row.replica == *self.replica {
                    row.lease_until = Instant::now() + row.lease;
                }
            }
        });
        Box::pin(future::ready(result))
    }

    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<(), CoordinatorError>> {
        let result = self.available().map(|mut state| {
            if state.crashed.contains(&*self.replica) {
                return;
            }
            if let Some(row) = state.runs.get_mut(&(ticket.service.clone(), ticket.tick)) {
                let (outcome, error) = outcome_parts(&run.outcome);
                row.started = run.started;
                row.finished = Some(run.finished);
                row.outcome = Some(outcome.to_owned());
                row.error = error.map(str::to_owned);
            }
        });
        Box::pin(future::ready(result))
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
