//! The engine: what the dispatcher, the workers and the manager share, and the dispatcher itself.
//!
//! How a tick flows, top to bottom:
//!
//! 1. [`Timer`] holds each scheduled service as one `(deadline, generation, slot)` entry.
//! 2. [`dispatch`] (one task) sleeps until the earliest deadline, takes every entry due, and moves
//!    each service `Scheduled → Queued` ([`SlotState::fire`]), or, for a tick already late beyond
//!    its grace, does what its misfire policy says (see [`crate::state`]); with a coordinator it
//!    first claims the tick ([`crate::cluster`]). With
//!    [`claim_ahead`](crate::ServiceManagerBuilder::claim_ahead) the dispatcher takes each entry
//!    that long before its deadline and fires it as of the deadline: the claim goes out at once,
//!    and the granted run is held in the timer until its tick, then queued with the others due.
//! 3. The queued services go to the [`RunQueue`]; a fixed set of worker tasks
//!    ([`crate::worker`]) takes them one at a time (`Queued → Running`), runs the job, records the
//!    outcome, computes the next tick and puts the service back in the timer (`Running →
//!    Scheduled`).
//!
//! The manager (on top) only changes slot states and calls [`Engine::apply`] with what the state
//! machine says to do next.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::control::Controls;
use crate::coordinator::{ClaimPolicy, Coordinator};
use crate::event::{RunEvent, Tally};
use crate::health::{Health, Watched};
use crate::pool::Pool;
use crate::queue::{Fire, RunQueue};
use crate::state::{Next, Phase, Slot};
use crate::state_file::StateFile;
use crate::status::{Failure, Trigger};
use crate::timer::Timer;

pub(crate) type FailureHook = dyn Fn(&Failure) + Send + Sync;
pub(crate) type EventHook = dyn Fn(&RunEvent) + Send + Sync;

pub(crate) struct Engine {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_failure: Option<Arc<FailureHook>>,
    pub(crate) on_event: Option<Arc<EventHook>>,
    /// `None`: every tick runs here, with no claim (and no cost for one).
    pub(crate) coordinator: Option<Arc<dyn Coordinator>>,
    /// The shared pause and resume state ([`crate::control`]), kept by the coordinator, or without
    /// one by an [`InMemoryCoordinator`](crate::InMemoryCoordinator) of this manager's own.
    pub(crate) controls: Arc<Controls>,
    /// What the calls to the coordinator found ([`crate::health`]); `None` without one.
    pub(crate) health: Option<Arc<Health>>,
    pub(crate) lease: Duration,
    /// How long a cancelled run may take to return before it is dropped (or, if blocking, abandoned).
    pub(crate) abort_grace: Duration,
    /// How many finished runs each service keeps in its local history.
    pub(crate) history_len: usize,
    /// Where the last tick of each catch-up service is remembered without a coordinator.
    pub(crate) state_file: Option<Arc<StateFile>>,
    pub(crate) timer: Timer,
    pub(crate) queue: RunQueue,
    pub(crate) pool: Pool,
    /// Whether the manager is started: workers and the dispatcher exit when it is not.
    pub(crate) running: AtomicBool,
    /// Bumped by every start, so a dispatcher of an earlier start knows to exit.
    pub(crate) epoch: AtomicU64,
    /// Woken when a run ends or is abandoned, for callers of a stop waiting for runs; notified only
    /// while someone waits.
    run_ended: Notify,
    stop_waiters: AtomicUsize,
    /// Runs since the last summary line, by whether they succeeded.
    pub(crate) summary: RunSummary,
}

/// The application's hooks.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    pub(crate) on_failure: Option<Arc<FailureHook>>,
    pub(crate) on_event: Option<Arc<EventHook>>,
}

/// What the dispatcher's periodic INFO line reports: runs that succeeded and runs that did not,
/// since the last line.
#[derive(Default)]
pub(crate) struct RunSummary {
    pub(crate) succeeded: AtomicU64,
    pub(crate) other: AtomicU64,
}

/// How often the summary line is logged (when anything ran).
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        hooks: Hooks,
        coordinator: Option<Arc<dyn Coordinator>>,
        lease: Duration,
        abort_grace: Duration,
        history_len: usize,
        workers: usize,
    ) -> Self {
        // Every call to a real coordinator is watched; the in-memory store of a manager without
        // one cannot fail, and has no health to show.
        let (coordinator, health) = match coordinator {
            Some(inner) => {
                let health = Arc::new(Health::new(clock.clone(), inner.replica()));
                let watched = Arc::new(Watched::new(inner, health.clone())) as Arc<dyn Coordinator>;
                (Some(watched), Some(health))
            }
            None => (None, None),
        };
        let shared = coordinator.is_some();
        let store = coordinator.clone().unwrap_or_else(|| {
            Arc::new(crate::coordinator::InMemoryCoordinator::new().replica("local"))
                as Arc<dyn Coordinator>
        });
        Engine {
            clock,
            on_failure: hooks.on_failure,
            on_event: hooks.on_event,
            coordinator,
            health,
            controls: Arc::new(Controls::new(store, shared)),
            lease,
            abort_grace,
            history_len,
            state_file: None,
            timer: Timer::new(Duration::ZERO),
            queue: RunQueue::new(),
            pool: Pool::new(workers),
            running: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            run_ended: Notify::new(),
            stop_waiters: AtomicUsize::new(0),
            summary: RunSummary::default(),
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Where an unanchored fixed period counts from: the start, or the Unix epoch for replicas, which
    /// must all compute the same ticks.
    pub(crate) fn anchor(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.coordinator.is_some() {
            DateTime::UNIX_EPOCH
        } else {
            now
        }
    }

    /// Marks the engine started; returns the epoch the new dispatcher belongs to.
    pub(crate) fn begin_epoch(&self) -> u64 {
        self.timer.open();
        self.running.store(true, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Ends the dispatcher and lets idle workers exit; busy ones exit when their run ends.
    pub(crate) fn shut_down(&self) {
        self.running.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.timer.clear();
        self.queue.clear();
        self.timer.wake.notify_one();
        self.queue.wake_all();
    }

    /// Carries out what a transition of `slot` asked for.
    pub(crate) fn apply(self: &Arc<Self>, slot: &Arc<Slot>, next: Next) {
        match next {
            Next::Nothing => {}
            Next::Timer { at, generation } => self.timer.insert(slot.clone(), at, generation),
            Next::Queue { generation } => self.queue.push(Fire {
                slot: slot.clone(),
                generation,
                ticket: None,
            }),
            Next::Fire { tick, generation } => match &self.coordinator {
                None => self.queue.push(Fire {
                    slot: slot.clone(),
                    generation,
                    ticket: None,
                }),
                Some(coordinator) => {
                    // Claims wait on the network, so they do not hold the dispatcher or a worker.
                    // `Fire` comes from the dispatcher, a worker, a claim or the catch-up task
                    // (never from a manager call, which may come from outside the runtime).
                    tokio::spawn(self.claim_task(coordinator, slot, generation, tick, None));
                }
            },
        }
    }

    /// The claim of `tick` for `slot` queued under `generation`, then its run (see
    /// [`claim_then_queue`]), as a task to spawn.
    fn claim_task(
        self: &Arc<Self>,
        coordinator: &Arc<dyn Coordinator>,
        slot: &Arc<Slot>,
        generation: u32,
        tick: DateTime<Utc>,
        early: Option<DateTime<Utc>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        claim_then_queue(
            self.clone(),
            coordinator.clone(),
            slot.clone(),
            generation,
            tick,
            early,
        )
    }

    /// The dispatcher queued `tick` of `slot` ahead of its start `start` (within
    /// [`claim_ahead`](crate::ServiceManagerBuilder::claim_ahead)): its claim goes out now, and
    /// its run is queued at `start`. Called from the dispatcher only, with a coordinator.
    pub(crate) fn claim_early(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        generation: u32,
        tick: DateTime<Utc>,
        start: DateTime<Utc>,
    ) {
        // Fired again before its tick (paused and resumed, or reloaded, meanwhile): the claim held
        // for it is still this replica's, and claimed again the tick would answer taken.
        if let Some(mut fire) = self.timer.adopt_held(slot, tick) {
            if let Some(held) = &fire.ticket {
                slot.lock()
                    .retarget(generation, held.ticket.tick, held.ticket.attempt);
            }
            fire.generation = generation;
            self.hold_or_queue(Some(start), fire);
            return;
        }
        if let Some(coordinator) = &self.coordinator {
            tokio::spawn(self.claim_task(coordinator, slot, generation, tick, Some(start)));
        }
    }

    /// Holds a granted run until `start` (a claim made ahead), or queues it if there is none or it
    /// has come; drops it (which releases its claim) when the manager has stopped.
    fn hold_or_queue(&self, start: Option<DateTime<Utc>>, fire: Fire) {
        if let Some(start) = start.filter(|start| *start > self.clock.now()) {
            // Refused after a stop: dropped here, which releases the claim.
            let _ = self.timer.hold(start, fire);
        } else {
            self.queue.push(fire);
            // Granted after a stop (whose clearing of the queue came first): nothing will run it,
            // so it is dropped now, which releases the claim rather than leave its lease to run out.
            if !self.is_running() {
                self.queue.clear();
            }
        }
    }

    /// A manual run (`run_now`) queued under `generation`: with a coordinator it is claimed first,
    /// like a tick of its own (the instant it was asked for), so that no replica starts a run of the
    /// service while it goes, and it runs on no other. The claim is spawned on `handle`, since a
    /// manager call may come from outside the runtime.
    pub(crate) fn run_manual(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        slot: &Arc<Slot>,
        generation: u32,
        tick: DateTime<Utc>,
    ) {
        match &self.coordinator {
            None => self.apply(slot, Next::Queue { generation }),
            Some(coordinator) => {
                handle.spawn(self.claim_task(coordinator, slot, generation, tick, None));
            }
        }
    }

    /// Remembers that `service` started `tick`, for a catch-up after a restart (with a state file).
    pub(crate) fn remember(&self, service: &str, tick: DateTime<Utc>) {
        if let Some(file) = &self.state_file {
            file.record(service, tick);
        }
    }

    /// Hands an event to the application's hook, if it has one; `event` is only built then.
    pub(crate) fn emit(&self, event: impl FnOnce() -> RunEvent) {
        if let Some(hook) = &self.on_event {
            let event = event();
            // A panicking hook must not take the scheduler down with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&event))).is_err() {
                tracing::error!(service = event.service(), "the event hook panicked");
            }
        }
    }

    /// Reports the ticks `slot` skipped between two tallies: metrics, then the event hook. Called
    /// outside the slot's lock, so a hook may call back into the manager.
    pub(crate) fn skipped(&self, slot: &Slot, before: Tally, after: Tally) {
        for (reason, ticks) in after.since(before) {
            slot.meter.skipped(&slot.name, reason, ticks);
            self.emit(|| RunEvent::Skipped {
                service: slot.name.clone(),
                reason,
                ticks,
            });
        }
    }

    /// Called by a worker after a run ended or was abandoned.
    pub(crate) fn run_ended(&self) {
        if self.stop_waiters.load(Ordering::SeqCst) > 0 {
            self.run_ended.notify_waiters();
        }
    }

    /// Waits until `done()` holds, re-checking it after each run that ends.
    pub(crate) async fn wait_for_runs(&self, mut done: impl FnMut() -> bool) {
        self.stop_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = StopWaiter(self);
        loop {
            let notified = self.run_ended.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a run that ends in between still wakes us.
            notified.as_mut().enable();
            if done() {
                return;
            }
            notified.await;
        }
    }
}

/// Claims `tick` for the queued service in `slot`, then queues its run, or puts the service back on
/// its schedule when this replica does not run the tick.
///
/// `early`: the claim is made ahead of the run's start (this instant); a granted claim is held in
/// the timer until then, and given back if the manager stops first:
///
/// ```text
/// start − claim_ahead ── claim ✔ ── held in the timer ── start: the dispatcher queues it ── run
///                           │          └─ stop ──▶ given back ("the replica stopped"): not run
///                           └─ Busy (an earlier run still going) ── start: claimed again, as if not early
/// ```
#[allow(clippy::single_match_else)] // granted or not: two cases, read as a table
async fn claim_then_queue(
    engine: Arc<Engine>,
    coordinator: Arc<dyn Coordinator>,
    slot: Arc<Slot>,
    generation: u32,
    tick: DateTime<Utc>,
    early: Option<DateTime<Utc>>,
) {
    let (deadline, delivery, attempt, manual, before) = {
        let state = slot.lock();
        let (attempt, manual) = match state.phase {
            Phase::Queued {
                attempt, trigger, ..
            } => (attempt, trigger == Trigger::Manual),
            _ => (1, false),
        };
        (
            state.claim_deadline(tick),
            state.service.delivery,
            attempt,
            manual,
            state.tally(),
        )
    };
    // A retry claims its own failed tick again, rather than find it taken (by itself); a manual
    // run is granted while the service is paused cluster-wide.
    let policy = ClaimPolicy {
        attempt,
        manual,
        ..ClaimPolicy::new(engine.lease, delivery)
    };
    let claimed = crate::cluster::claim(
        &*engine.clock,
        &coordinator,
        &engine.controls.wake,
        &slot,
        deadline,
        tick,
        policy,
        early.map(|start| (start, generation)),
    )
    .await;
    match claimed {
        Some(held) => {
            slot.lock()
                .retarget(generation, held.ticket.tick, held.ticket.attempt);
            let fire = Fire {
                slot,
                generation,
                ticket: Some(Box::new(held)),
            };
            engine.hold_or_queue(early, fire);
        }
        None => {
            let (next, after) = {
                let mut state = slot.lock();
                let next = state.unqueue(&slot.name, generation, engine.clock.now());
                (next, state.tally())
            };
            engine.apply(&slot, next);
            engine.skipped(&slot, before, after);
        }
    }
}

struct StopWaiter<'a>(&'a Engine);

impl Drop for StopWaiter<'_> {
    fn drop(&mut self) {
        self.0.stop_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
