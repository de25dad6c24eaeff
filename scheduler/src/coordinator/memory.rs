//! A coordinator whose "database" is shared memory: managers in one process acting as replicas. For
//! tests of cluster behaviour, and as the reference for what a real coordinator must do.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::{self, BoxFuture};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    decide, outcome_parts, Claim, ClaimPolicy, ControlRecord, Coordinator, CoordinatorError,
    Decision, FinishedRun, Heartbeat, NameUse, ReplicaRecord, RowState, RunRecord, Ticket, Verdict,
    REPLICA_DEAD_AFTER,
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
    /// Woken by every control write, for [`Coordinator::control_changed`] of every handle.
    control_written: Arc<Notify>,
    /// The control version this handle's [`Coordinator::control_changed`] last answered for.
    control_seen: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<(String, DateTime<Utc>), Row>,
    controls: BTreeMap<String, ControlRecord>,
    replicas: BTreeMap<String, ReplicaRow>,
    /// The version of the latest control write.
    control_version: u64,
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
    /// The tick's earlier attempts (a retry's failed runs, a taken-over run), oldest first: each
    /// stays in the history as a run of its own.
    earlier: Vec<RunRecord>,
}

impl Row {
    fn record(&self, service: &str, tick: DateTime<Utc>) -> RunRecord {
        RunRecord::new(
            service.to_owned(),
            tick,
            self.replica.clone(),
            self.attempt,
            self.started,
            self.finished,
            self.outcome.clone(),
            self.error.clone(),
        )
    }

    /// Keeps the current attempt as an earlier one, before a new attempt replaces it; an
    /// attempt without an outcome (its runner's lease ran out) is kept as `abandoned`.
    fn archive(&mut self, service: &str, tick: DateTime<Utc>) {
        let mut record = self.record(service, tick);
        if record.outcome.is_none() {
            record.outcome = Some("abandoned".to_owned());
            record.error = Some("its runner's lease ran out before it reported".to_owned());
        }
        self.earlier.push(record);
    }
}

/// A replica's heartbeat row.
struct ReplicaRow {
    beat: Heartbeat,
    last_seen: DateTime<Utc>,
    /// `last_seen` on tokio's clock, which decides whether it is alive.
    seen: Instant,
    /// The last time another live process heartbeat under this name, and its instance.
    contested: Option<(Instant, String)>,
}

impl ReplicaRow {
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.seen) < REPLICA_DEAD_AFTER
    }

    fn contested_by(&self, now: Instant) -> Option<&str> {
        self.contested
            .as_ref()
            .filter(|(at, _)| now.duration_since(*at) < REPLICA_DEAD_AFTER)
            .map(|(_, instance)| instance.as_str())
    }
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
            control_written: Arc::default(),
            control_seen: Arc::default(),
        }
    }

    /// A handle on the same cluster for the replica `name`.
    #[must_use]
    pub fn replica(&self, name: &str) -> Self {
        InMemoryCoordinator {
            replica: name.into(),
            shared: self.shared.clone(),
            control_written: self.control_written.clone(),
            control_seen: Arc::default(),
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
        match state.controls.get(service) {
            Some(control) if control.disabled == Some(true) => return Ok(Claim::Disabled),
            Some(control) if control.paused == Some(true) && !policy.manual => {
                return Ok(Claim::Paused)
            }
            _ => {}
        }
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
                row.archive(service, tick);
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
                row.archive(service, tick);
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
                        earlier: Vec::new(),
                    },
                );
                claimed(tick, 1)
            }
        })
    }

    /// Writes the control record of `service`: the switches given, the others as they were.
    fn set_control(
        &self,
        service: &str,
        paused: Option<bool>,
        disabled: Option<bool>,
    ) -> Result<ControlRecord, CoordinatorError> {
        let record = self.available().map(|mut state| {
            state.control_version += 1;
            let old = state.controls.get(service);
            let record = ControlRecord::new(
                service.to_owned(),
                paused.or(old.and_then(|c| c.paused)),
                disabled.or(old.and_then(|c| c.disabled)),
                state.control_version,
                self.replica.to_string(),
                Utc::now(),
            );
            state.controls.insert(service.to_owned(), record.clone());
            record
        })?;
        self.control_written.notify_waiters();
        Ok(record)
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
                let (outcome, error) = (outcome_parts(&run.outcome).0, run.error_text());
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
            // Newest tick first; within a tick, the latest attempt first.
            state
                .runs
                .iter()
                .rev()
                .filter(|((s, _), _)| s == service)
                .flat_map(|((s, tick), row)| {
                    std::iter::once(row.record(s, *tick)).chain(row.earlier.iter().rev().cloned())
                })
                .take(limit)
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

    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        Box::pin(future::ready(self.set_control(service, Some(paused), None)))
    }

    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        Box::pin(future::ready(self.set_control(
            service,
            None,
            Some(disabled),
        )))
    }

    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>> {
        let result = self.available().map(|state| {
            let mut records: Vec<ControlRecord> = state
                .controls
                .values()
                .filter(|record| record.version > since)
                .cloned()
                .collect();
            records.sort_by_key(|record| record.version);
            records
        });
        Box::pin(future::ready(result))
    }

    fn heartbeat<'a>(
        &'a self,
        beat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<NameUse, CoordinatorError>> {
        let result = self.available().map(|mut state| {
            let now = Instant::now();
            let name = self.replica.to_string();
            if let Some(row) = state.replicas.get_mut(&name) {
                if row.beat.instance != beat.instance && row.alive(now) {
                    // Another live process holds the name: it keeps it, and both are told.
                    row.contested = Some((now, beat.instance.clone()));
                    return NameUse::Shared {
                        instance: row.beat.instance.clone(),
                    };
                }
            }
            let contested = state
                .replicas
                .remove(&name)
                .filter(|row| row.beat.instance == beat.instance)
                .and_then(|row| row.contested);
            let row = ReplicaRow {
                beat: beat.clone(),
                last_seen: Utc::now(),
                seen: now,
                contested,
            };
            let answer = match row.contested_by(now) {
                Some(other) if other != beat.instance => NameUse::Shared {
                    instance: other.to_owned(),
                },
                _ => NameUse::Alone,
            };
            state.replicas.insert(name, row);
            answer
        });
        Box::pin(future::ready(result))
    }

    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaRecord>, CoordinatorError>> {
        let result = self.available().map(|state| {
            let now = Instant::now();
            state
                .replicas
                .iter()
                .map(|(name, row)| {
                    ReplicaRecord::new(
                        name.clone(),
                        row.beat.instance.clone(),
                        row.beat.version.clone(),
                        row.beat.started,
                        row.last_seen,
                        row.beat.services_held.clone(),
                        row.beat.runs_in_flight,
                        row.alive(now),
                        row.contested_by(now).is_some(),
                    )
                })
                .collect()
        });
        Box::pin(future::ready(result))
    }

    fn control_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                // Registered before the version is read, so a write in between is not missed.
                let written = self.control_written.notified();
                tokio::pin!(written);
                written.as_mut().enable();
                let version = self.state().control_version;
                if self.control_seen.swap(version, Ordering::AcqRel) < version {
                    return;
                }
                written.await;
            }
        })
    }
}
