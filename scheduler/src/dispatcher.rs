//! The dispatcher: one task that sleeps until the timer's earliest deadline, then fires every
//! service due, in one wake-up. See [`crate::engine`] for the whole path of a tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::coordinator::{ClaimPolicy, Coordinator};
use crate::engine::Engine;
use crate::queue::Fire;
use crate::state::Slot;
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
    loop {
        if engine.epoch.load(Ordering::Acquire) != epoch {
            return;
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

/// Moves one due service to the run queue (`Scheduled → Queued`), or, with a coordinator, to a claim.
fn fire(engine: &Arc<Engine>, due: Due, out: &mut Vec<Fire>) {
    let Due {
        generation, slot, ..
    } = due;
    let Some((tick, generation)) = slot.lock().fire(generation) else {
        return;
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
    let (schedule, delivery) = {
        let state = slot.lock();
        (state.service.schedule.clone(), state.service.delivery)
    };
    let policy = ClaimPolicy {
        lease: engine.lease,
        delivery,
    };
    let claimed = crate::cluster::claim(
        &*engine.clock,
        &*coordinator,
        &slot,
        &schedule,
        tick,
        policy,
    )
    .await;
    match claimed {
        Some(ticket) => {
            slot.lock().retarget(generation, ticket.tick);
            engine.queue.push(Fire {
                slot,
                generation,
                ticket: Some(Box::new(ticket)),
            });
        }
        None => {
            let next = slot.lock().unqueue(generation, engine.clock.now(), 0);
            engine.apply(&slot, next);
        }
    }
}
