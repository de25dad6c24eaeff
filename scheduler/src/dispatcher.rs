//! The dispatcher: one task that sleeps until the timer's earliest deadline, then fires every
//! service due, in one wake-up. See [`crate::engine`] for the whole path of a tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::coordinator::{ClaimPolicy, Coordinator};
use crate::engine::{Engine, SUMMARY_EVERY};
use crate::queue::Fire;
use crate::state::{Fired, Phase, Slot};
use crate::timer::{Due, Wait};

/// Starts the dispatcher of this start (`epoch`) on `handle`.
pub(crate) fn spawn(engine: &Arc<Engine>, epoch: u64, handle: &tokio::runtime::Handle) {
    handle.spawn(dispatch(engine.clone(), epoch));
}

/// The dispatcher: sleeps until the earliest deadline (or [`crate::timer::RECHECK`]), then fires
/// every due service.
async fn dispatch(engine: Arc<Engine>, epoch: u64) {
    let mut due = Vec::new();
    let mut fires = Vec::new();
    // One timer for the dispatcher's whole life, moved to each new deadline.
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    let mut summary_due = tokio::time::Instant::now() + SUMMARY_EVERY;
    loop {
        if engine.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if tokio::time::Instant::now() >= summary_due {
            summary_due += SUMMARY_EVERY;
            log_summary(&engine);
        }
        let now = engine.clock.now();
        let wait = engine.timer.take_due(now, &mut due);
        for entry in due.drain(..) {
            fire(&engine, entry, &mut fires);
        }
        engine.queue.push_all(&mut fires);
        match wait {
            Wait::Nothing => tokio::task::yield_now().await,
            Wait::Until(until) => {
                let wait = (until - now).to_std().unwrap_or(Duration::ZERO);
                let deadline = tokio::time::Instant::now() + wait;
                timer.as_mut().reset(deadline);
                tokio::select! {
                    biased;
                    () = engine.timer.wake.notified() => {}
                    () = timer.as_mut() => {}
                }
            }
        }
    }
}

/// One INFO line a minute with the runs since the last one, so that a production log at INFO shows
/// the services are alive without a line per run (those are at DEBUG; failures at ERROR).
fn log_summary(engine: &Engine) {
    let succeeded = engine.summary.succeeded.swap(0, Ordering::Relaxed);
    let other = engine.summary.other.swap(0, Ordering::Relaxed);
    if succeeded + other > 0 {
        tracing::info!(
            runs = succeeded + other,
            succeeded,
            failed_or_aborted = other,
            "runs in the last minute"
        );
    }
}

/// Moves one due service to the run queue (`Scheduled → Queued`), or, with a coordinator, to a claim.
fn fire(engine: &Arc<Engine>, due: Due, out: &mut Vec<Fire>) {
    let Due {
        generation, slot, ..
    } = due;
    let fired = slot.lock().fire(generation, &slot.name);
    let (tick, generation) = match fired {
        Fired::Stale => return,
        Fired::Later { at, generation } => {
            engine.timer.insert(slot, at, generation);
            return;
        }
        Fired::Now { tick, generation } => (tick, generation),
    };
    match &engine.coordinator {
        None => out.push(Fire {
            slot,
            generation,
            ticket: None,
        }),
        Some(coordinator) => {
            // Claims wait on the network, so they do not hold the dispatcher or a worker.
            tokio::spawn(claim_then_queue(
                engine.clone(),
                coordinator.clone(),
                slot,
                generation,
                tick,
            ));
        }
    }
}

/// Claims `tick` for the queued service in `slot`, then queues its run, or puts the service back on
/// its schedule when this replica does not run the tick.
#[allow(clippy::single_match_else)] // granted or not: two cases, read as a table
async fn claim_then_queue(
    engine: Arc<Engine>,
    coordinator: Arc<dyn Coordinator>,
    slot: Arc<Slot>,
    generation: u32,
    tick: DateTime<Utc>,
) {
    let (schedule, delivery, attempt, before) = {
        let state = slot.lock();
        let attempt = match state.phase {
            Phase::Queued { attempt, .. } => attempt,
            _ => 1,
        };
        (
            state.service.schedule.clone(),
            state.service.delivery,
            attempt,
            state.tally(),
        )
    };
    // A retry claims its own failed tick again, rather than find it taken (by itself).
    let policy = ClaimPolicy {
        attempt,
        ..ClaimPolicy::new(engine.lease, delivery)
    };
    let claimed =
        crate::cluster::claim(&*engine.clock, &coordinator, &slot, &schedule, tick, policy).await;
    match claimed {
        Some(held) => {
            slot.lock().retarget(generation, held.ticket.tick);
            engine.queue.push(Fire {
                slot,
                generation,
                ticket: Some(Box::new(held)),
            });
            // Granted after a stop (whose clearing of the queue came first): nothing will run it,
            // so it is dropped now, which releases the claim rather than leave its lease to run out.
            if !engine.is_running() {
                engine.queue.clear();
            }
        }
        None => {
            let (next, after) = {
                let mut state = slot.lock();
                let next = state.unqueue(generation, engine.clock.now(), 0);
                (next, state.tally())
            };
            engine.apply(&slot, next);
            engine.skipped(&slot, before, after);
        }
    }
}
