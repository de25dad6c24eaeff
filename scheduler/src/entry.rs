//! One added service: its definition, its live record, and the handles that stop it.
//!
//! Invariant: the record's `stopped` flag is only set under its lock, and a run only begins under the
//! same lock after checking it. So once [`Entry::stop`] returns, no new run of this entry can
//! begin — which is what makes reloads and stops exact. It also tells whether a run was in flight:
//! if not, the runner task is only sleeping or waiting and can be aborted outright; if so, the
//! runner finds `stopped` set when the run ends and returns by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Origin;
use crate::service::Service;
use crate::status::{Outcome, ServiceState, ServiceStatus};

pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    pub(crate) service: Service,
    pub(crate) origin: Origin,
    record: Mutex<Record>,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
    /// Set while a run of this entry is in progress — including a blocking job that outlived an
    /// aborted runner — see [`RunGuard`].
    running: AtomicBool,
    /// Earlier definitions of this name whose last run may still be going; a run of this entry waits
    /// for none of them, it skips its tick, so that runs of a name never overlap across a reload.
    predecessors: Vec<Arc<Entry>>,
    /// Set by an abort; what `JobContext::is_cancelled` reads.
    cancelled: AtomicBool,
    /// Wakes `JobContext::cancelled` waiters.
    cancel_notify: Notify,
}

/// The flags are independent facts (a stopped service may still have a run in flight), so they stay
/// flags rather than one state enum; `status` derives the state from them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Default)]
struct Record {
    disabled: bool,
    started: bool,
    stopped: bool,
    finished: bool,
    waiting_for_slot: bool,
    in_flight: bool,
    next_fire: Option<DateTime<Utc>>,
    last_start: Option<DateTime<Utc>>,
    last_duration: Option<Duration>,
    last_outcome: Option<Outcome>,
    runs: u64,
    failures: u64,
    skipped: u64,
    claimed_elsewhere: u64,
    coordinator_error: Option<String>,
}

impl Entry {
    pub(crate) fn new(
        name: Arc<str>,
        service: Service,
        origin: Origin,
        disabled: bool,
        replaces: Option<&Arc<Entry>>,
    ) -> Self {
        Entry {
            name,
            service,
            origin,
            record: Mutex::new(Record {
                disabled,
                ..Record::default()
            }),
            task: Mutex::new(None),
            running: AtomicBool::new(false),
            predecessors: replaces.map(Entry::still_running).unwrap_or_default(),
            cancelled: AtomicBool::new(false),
            cancel_notify: Notify::new(),
        }
    }

    /// This entry and its predecessors, those of them whose run may still be going.
    fn still_running(this: &Arc<Entry>) -> Vec<Arc<Entry>> {
        let mut running: Vec<Arc<Entry>> = this
            .predecessors
            .iter()
            .filter(|p| p.running.load(Ordering::Acquire))
            .cloned()
            .collect();
        if this.running.load(Ordering::Acquire) {
            running.push(this.clone());
        }
        running
    }

    /// Cancels what the running job sees through its `JobContext`.
    pub(crate) fn cancel_run(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel_notify.notify_waiters();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.cancel_notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        // A panic while holding this lock can only come from our own bookkeeping, never from a job;
        // the record stays usable either way.
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What `start` does with this entry: start it, replace a stopped one with a fresh copy, or
    /// leave it (already started, or disabled).
    pub(crate) fn start_decision(&self) -> StartDecision {
        let mut record = self.record();
        if record.stopped {
            StartDecision::Renew
        } else if record.started || record.disabled {
            StartDecision::Leave
        } else {
            record.started = true;
            StartDecision::Start
        }
    }

    /// A replacement for this entry with the same definition, ready to start again.
    pub(crate) fn renewed(this: &Arc<Entry>) -> Self {
        let disabled = this.record().disabled;
        Entry::new(
            this.name.clone(),
            this.service.clone(),
            this.origin,
            disabled,
            Some(this),
        )
    }

    pub(crate) fn mark_started(&self) {
        self.record().started = true;
    }

    /// Stops new runs, and aborts the runner unless a run is in progress (which then finishes, and
    /// the runner returns). Returns the runner task, if it was still there, and whether it was
    /// running a job.
    pub(crate) fn stop(&self) -> (Option<JoinHandle<()>>, bool) {
        let in_flight = {
            let mut record = self.record();
            record.stopped = true;
            record.next_fire = None;
            record.waiting_for_slot = false;
            record.in_flight
        };
        let task = self.take_task();
        if let (Some(task), false) = (&task, in_flight) {
            task.abort();
        }
        (task, in_flight)
    }

    /// Records the next tick; `false` when the service was stopped meanwhile.
    pub(crate) fn schedule_next(&self, next: Option<DateTime<Utc>>) -> bool {
        self.schedule_next_after_skipping(0, next)
    }

    /// Counts skipped ticks and records the next one; `false` when the service was stopped.
    pub(crate) fn schedule_next_after_skipping(
        &self,
        skipped: u64,
        next: Option<DateTime<Utc>>,
    ) -> bool {
        Entry::advance(&mut self.record(), skipped, next)
    }

    fn advance(record: &mut Record, skipped: u64, next: Option<DateTime<Utc>>) -> bool {
        record.skipped += skipped;
        record.waiting_for_slot = false;
        if record.stopped {
            return false;
        }
        record.next_fire = next;
        record.finished = next.is_none();
        true
    }

    pub(crate) fn wait_for_slot(&self) {
        let mut record = self.record();
        record.waiting_for_slot = !record.stopped;
    }

    /// Begins a run unless the service was stopped; see the module invariant.
    pub(crate) fn begin_run(&self, start: DateTime<Utc>) -> bool {
        let mut record = self.record();
        record.waiting_for_slot = false;
        if record.stopped {
            return false;
        }
        record.in_flight = true;
        record.last_start = Some(start);
        true
    }

    /// Records a finished run, the ticks skipped meanwhile and the next tick; `false` when the
    /// service was stopped meanwhile.
    pub(crate) fn finish_run(
        &self,
        outcome: Outcome,
        duration: Duration,
        skipped: u64,
        next: Option<DateTime<Utc>>,
    ) -> bool {
        if skipped > 0 {
            tracing::warn!(service = %self.name, skipped, "ticks skipped: the previous run was still in progress");
        }
        let mut record = self.record();
        record.in_flight = false;
        record.runs += 1;
        record.failures += u64::from(outcome.is_failure());
        record.last_duration = Some(duration);
        record.last_outcome = Some(outcome);
        Entry::advance(&mut record, skipped, next)
    }

    /// After an abort: the run that was in progress, if any, will never report back.
    pub(crate) fn record_abort(&self) {
        let mut record = self.record();
        if record.in_flight {
            record.in_flight = false;
            record.runs += 1;
            record.last_outcome = Some(Outcome::Aborted);
        }
    }

    pub(crate) fn add_claimed_elsewhere(&self) {
        self.record().claimed_elsewhere += 1;
    }

    /// Records whether the coordinator is reachable; returns whether it was unreachable before.
    pub(crate) fn set_coordinator_error(&self, error: Option<String>) -> bool {
        std::mem::replace(&mut self.record().coordinator_error, error).is_some()
    }

    pub(crate) fn add_skipped(&self, skipped: u64) {
        self.record().skipped += skipped;
    }

    pub(crate) fn status(&self) -> ServiceStatus {
        let record = self.record();
        let state = match *record {
            Record { disabled: true, .. } => ServiceState::Disabled,
            Record {
                stopped: true,
                in_flight: true,
                ..
            } => ServiceState::Stopping,
            Record { stopped: true, .. } => ServiceState::Stopped,
            Record {
                in_flight: true, ..
            } => ServiceState::Running,
            Record {
                waiting_for_slot: true,
                ..
            } => ServiceState::WaitingForSlot,
            Record { finished: true, .. } => ServiceState::Finished,
            Record { started: false, .. } => ServiceState::NotStarted,
            _ => ServiceState::Idle,
        };
        ServiceStatus {
            name: self.name.to_string(),
            schedule: self.service.schedule.to_string(),
            origin: self.origin,
            next_fire: record.next_fire,
            state,
            last_start: record.last_start,
            last_duration: record.last_duration,
            last_outcome: record.last_outcome.clone(),
            runs: record.runs,
            failures: record.failures,
            skipped: record.skipped,
            claimed_elsewhere: record.claimed_elsewhere,
            coordinator_error: record.coordinator_error.clone(),
        }
    }

    pub(crate) fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(crate) fn set_task(&self, task: JoinHandle<()>) {
        *self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }
}

/// See [`Entry::start_decision`].
pub(crate) enum StartDecision {
    Start,
    Renew,
    Leave,
}

/// Marks an entry as running for the length of one run, wherever the run goes (an aborted task, or a
/// blocking thread that outlives it).
pub(crate) struct RunGuard(Arc<Entry>);

impl RunGuard {
    /// Claims the entry for a run, unless a run of it — or of a definition it replaced — is already
    /// in progress.
    pub(crate) fn claim(entry: &Arc<Entry>) -> Option<Self> {
        if entry
            .predecessors
            .iter()
            .any(|p| p.running.load(Ordering::Acquire))
        {
            return None;
        }
        (!entry.running.swap(true, Ordering::AcqRel)).then(|| RunGuard(entry.clone()))
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}
