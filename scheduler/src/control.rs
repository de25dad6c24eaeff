//! Shared control state on this replica: the pause and resume requests it still has to write to
//! the coordinator, the control records it has applied, and the task that does both (see
//! [Shared control state](crate::coordinator#shared-control-state) for the cluster's side).
//!
//! A request is applied here at once and queued; the task writes it, then reads the records
//! written since its last read and applies those of other replicas:
//!
//! ```text
//! pause("s") ─ queued {s: paused} ─ applied here ─ wake ─▶ task: set_paused ✔ v7 ─ known[s] = v7
//! task, every wake / notification / second: controls(since cursor) ─ for each record r:
//!     s has a queued request ─▶ ignored (the request is written after it, and wins)
//!     r.version ≤ known[s]   ─▶ ignored (this replica's own write, or older)
//!     else                   ─▶ known[s] = r.version, applied (paused or resumed here)
//! ```
//!
//! A write that fails (the database is down) stays queued and is retried at the next round, at
//! most a second later, until it lands: a pause or resume is never lost, and no older record
//! read meanwhile undoes it here. Versions come from the coordinator and grow with every write
//! (PostgreSQL serializes the writes, so a record is visible before any later one).
//!
//! The task runs while the manager is started, and after a stop until its queue is written.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::coordinator::{ControlRecord, Coordinator, Heartbeat, NameUse, HEARTBEAT_EVERY};

/// How often the records are read whatever the notifications do: the longest a lost notification
/// delays a pause or resume on another replica.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// This replica's side of the shared control state.
pub(crate) struct Controls {
    /// Where the records live: the coordinator, or this manager's own in-memory one.
    pub(crate) store: Arc<dyn Coordinator>,
    /// Wakes the task: a request queued, or a claim that found a service paused cluster-wide.
    pub(crate) wake: Notify,
    book: Mutex<Book>,
    /// Whether a task is running (at most one).
    task: AtomicBool,
    /// When the task last heartbeat, and what the coordinator said of this replica's name.
    beat: Mutex<(Option<tokio::time::Instant>, NameUse)>,
    /// Whether `store` is shared with other replicas. Only then does the task heartbeat every
    /// [`HEARTBEAT_EVERY`]: a heartbeat visits every service, which a manager of its own (the
    /// manager's private in-memory store) would pay every second for nobody to read. Its one
    /// row is written when asked for instead ([`Controls::beat_now`]).
    shared: bool,
}

/// One of a service's two cluster-wide switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Switch {
    Paused,
    Disabled,
}

#[derive(Default)]
struct Book {
    /// Requests not written yet: (service, switch) → on.
    queued: BTreeMap<(String, Switch), bool>,
    /// The latest record applied or written per service: (version, paused, disabled).
    known: BTreeMap<String, (u64, Option<bool>, Option<bool>)>,
    /// The highest version read: the next read asks for the records after it.
    cursor: u64,
    /// The store failed at the last attempt (logged once per outage).
    failing: bool,
}

/// What the task acts on: the manager, reached through a weak handle so the task never keeps it
/// alive.
pub(crate) trait ControlTarget: Send + Sync {
    /// Whether the manager is started (the records are read only then).
    fn started(&self) -> bool;
    /// Applies another replica's record to the service (if this manager has it).
    fn apply(&self, record: &ControlRecord);
    /// What this replica says of itself now.
    fn heartbeat(&self) -> Heartbeat;
}

impl Controls {
    /// Controls over `store`; `shared`: whether other replicas use it too.
    pub(crate) fn new(store: Arc<dyn Coordinator>, shared: bool) -> Self {
        Controls {
            store,
            wake: Notify::new(),
            book: Mutex::default(),
            task: AtomicBool::new(false),
            beat: Mutex::new((None, NameUse::Alone)),
            shared,
        }
    }

    /// Writes this replica's row now, unless the task keeps it current (a shared store): what a
    /// reader of the replicas of an unshared store calls first.
    pub(crate) async fn beat_now<T: ControlTarget>(&self, target: &T) {
        if !self.shared && target.started() {
            // A failure is the store's to report on the read that follows.
            let _ = self.store.heartbeat(&target.heartbeat()).await;
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a request to write; the caller has applied it here already.
    pub(crate) fn request(&self, service: &str, switch: Switch, on: bool) {
        self.book().queued.insert((service.to_owned(), switch), on);
        self.wake.notify_one();
    }

    /// A cluster-wide switch of `service` as this replica knows it (its own queued request
    /// first); `None` when no record of it is known.
    pub(crate) fn switch(&self, service: &str, switch: Switch) -> Option<bool> {
        let book = self.book();
        book.queued
            .get(&(service.to_owned(), switch))
            .copied()
            .or_else(|| {
                book.known
                    .get(service)
                    .and_then(|(_, paused, disabled)| match switch {
                        Switch::Paused => *paused,
                        Switch::Disabled => *disabled,
                    })
            })
    }

    /// Whether requests are waiting to be written.
    pub(crate) fn has_queued(&self) -> bool {
        !self.book().queued.is_empty()
    }

    /// Spawns the task unless one runs; `spawn` is given the future to run.
    pub(crate) fn ensure_task<T, F>(
        self: &Arc<Self>,
        upgrade: impl Fn() -> Option<T> + Send + 'static,
        spawn: F,
    ) where
        T: ControlTarget,
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
    {
        if self.task.swap(true, Ordering::AcqRel) {
            return;
        }
        let controls = self.clone();
        spawn(Box::pin(async move { controls.run(upgrade).await }));
    }

    async fn run<T: ControlTarget>(&self, upgrade: impl Fn() -> Option<T>) {
        let store = self.store.clone();
        let mut changed = store.control_changed();
        loop {
            let Some(target) = upgrade() else {
                self.task.store(false, Ordering::Release);
                return;
            };
            self.write_queued().await;
            let started = target.started();
            if started {
                self.read_and_apply(&target).await;
                if self.shared {
                    self.heartbeat_if_due(&target).await;
                }
            }
            drop(target);
            if !started && !self.has_queued() {
                // Stopped with nothing to write: end, unless a request came in between (then this
                // task goes on, or a task spawned meanwhile does).
                self.task.store(false, Ordering::Release);
                if !self.has_queued() || self.task.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
            tokio::select! {
                () = &mut changed => changed = store.control_changed(),
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Heartbeats, at most once per [`HEARTBEAT_EVERY`], and reports a name shared with another
    /// process (an error in the log when it begins, and when it ends).
    async fn heartbeat_if_due<T: ControlTarget>(&self, target: &T) {
        let now = tokio::time::Instant::now();
        {
            let mut beat = self.beat.lock().unwrap_or_else(PoisonError::into_inner);
            if beat
                .0
                .is_some_and(|last| now.duration_since(last) < HEARTBEAT_EVERY)
            {
                return;
            }
            beat.0 = Some(now);
        }
        let heartbeat = target.heartbeat();
        let Ok(answer) = self.store.heartbeat(&heartbeat).await else {
            // An outage: shown by the claims' `coordinator_error`; the next beat tries again.
            return;
        };
        let mut beat = self.beat.lock().unwrap_or_else(PoisonError::into_inner);
        if beat.1 != answer {
            match &answer {
                NameUse::Shared { instance } => tracing::error!(
                    replica = %self.store.replica(), other = %instance,
                    "another live process uses this replica name: give each replica its own name"),
                NameUse::Alone => tracing::info!(replica = %self.store.replica(),
                    "this replica's name is its own again"),
            }
            beat.1 = answer;
        }
    }

    /// What the coordinator said of this replica's name at the last heartbeat.
    pub(crate) fn name_use(&self) -> NameUse {
        self.beat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// Writes the queued requests, oldest service name first; stops at the first failure (the
    /// rest wait for the next round).
    async fn write_queued(&self) {
        let queued: Vec<((String, Switch), bool)> = self
            .book()
            .queued
            .iter()
            .map(|(key, on)| (key.clone(), *on))
            .collect();
        for ((service, switch), on) in queued {
            let written = match switch {
                Switch::Paused => self.store.set_paused(&service, on).await,
                Switch::Disabled => self.store.set_disabled(&service, on).await,
            };
            match written {
                Ok(record) => {
                    let mut book = self.book();
                    // A newer request for the switch, queued while this one was written, stays.
                    let key = (service.clone(), switch);
                    if book.queued.get(&key) == Some(&on) {
                        book.queued.remove(&key);
                    }
                    let known = book.known.entry(service.clone()).or_insert((0, None, None));
                    if record.version >= known.0 {
                        *known = (record.version, record.paused, record.disabled);
                    }
                    if std::mem::take(&mut book.failing) {
                        tracing::info!("coordinator reachable again: pause and resume written");
                    }
                    tracing::debug!(%service, ?switch, on, version = record.version,
                        "control state written");
                }
                Err(error) => {
                    if !std::mem::replace(&mut self.book().failing, true) {
                        tracing::warn!(%service, %error,
                            "could not write a pause or resume for the cluster yet; retrying every second");
                    }
                    return;
                }
            }
        }
    }

    /// Reads the records written since the last read and applies other replicas' to `target`.
    async fn read_and_apply<T: ControlTarget>(&self, target: &T) {
        let since = self.book().cursor;
        let records = match self.store.controls(since).await {
            Ok(records) => records,
            Err(error) => {
                if !std::mem::replace(&mut self.book().failing, true) {
                    tracing::warn!(%error,
                        "could not read the cluster's pause and resume state; retrying every second");
                }
                return;
            }
        };
        for record in records {
            let apply = {
                let mut book = self.book();
                book.cursor = book.cursor.max(record.version);
                let newer = book
                    .known
                    .get(&record.service)
                    .is_none_or(|(version, _, _)| record.version > *version);
                let queued = book
                    .queued
                    .keys()
                    .any(|(service, _)| *service == record.service);
                let apply = newer && !queued;
                if apply {
                    book.known.insert(
                        record.service.clone(),
                        (record.version, record.paused, record.disabled),
                    );
                }
                apply
            };
            if apply {
                target.apply(&record);
            }
        }
    }
}
