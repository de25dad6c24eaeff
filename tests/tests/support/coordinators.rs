//! A coordinator wrapper for cluster tests: it times every claim, and can play dead.
//!
//! Killed ([`Wrapped::kill`]), a replica's coordinator never answers again — no claim, renewal or
//! report — as a process killed with `SIGKILL` would say nothing more; calls already under way
//! complete, as they would have on the server.
//!
//! Shared by `cluster_faults.rs` and `cluster_scale.rs`.

#![allow(
    dead_code,
    reason = "each test crate that includes this file uses a different part of it"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scheduler::coordinator::{
    Claim, ClaimPolicy, ControlRecord, Coordinator, CoordinatorError, FinishedRun, RunRecord,
    Ticket,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A coordinator that records claim latencies and can be killed.
#[derive(Clone)]
pub(crate) struct Wrapped {
    inner: Arc<dyn Coordinator>,
    dead: Arc<AtomicBool>,
    claims: Arc<Mutex<Vec<Duration>>>,
}

impl Wrapped {
    pub(crate) fn new(inner: impl Coordinator) -> Self {
        Wrapped {
            inner: Arc::new(inner),
            dead: Arc::default(),
            claims: Arc::default(),
        }
    }

    /// From now on, no call answers.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    /// How long each claim took, in the order they were answered.
    pub(crate) fn claim_latencies(&self) -> Vec<Duration> {
        self.claims.lock().unwrap().clone()
    }

    fn unless_dead<'a, T: Send + 'a>(&'a self, call: BoxFuture<'a, T>) -> BoxFuture<'a, T> {
        if self.dead.load(Ordering::SeqCst) {
            Box::pin(std::future::pending())
        } else {
            call
        }
    }
}

impl Coordinator for Wrapped {
    fn replica(&self) -> &str {
        self.inner.replica()
    }
    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        self.unless_dead(self.inner.prepare())
    }
    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        self.unless_dead(Box::pin(async move {
            let began = Instant::now();
            let claim = self.inner.claim(service, tick, policy).await;
            if claim.is_ok() {
                self.claims.lock().unwrap().push(began.elapsed());
            }
            claim
        }))
    }
    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.unless_dead(self.inner.renew(ticket))
    }
    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.unless_dead(self.inner.finish(ticket, run))
    }
    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.unless_dead(self.inner.release(ticket, reason))
    }
    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        self.inner.history(service, limit)
    }
    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        self.inner.set_paused(service, paused)
    }
    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        self.inner.set_disabled(service, disabled)
    }
    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>> {
        self.inner.controls(since)
    }
    fn control_changed(&self) -> BoxFuture<'_, ()> {
        self.inner.control_changed()
    }
}

/// The `p`th percentile of `samples` (sorted in place).
pub(crate) fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples
        .get((samples.len() * p / 100).min(samples.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}
