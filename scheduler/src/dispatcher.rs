//! The dispatcher: one task that sleeps until the timer's earliest deadline, then fires every
//! service due, in one wake-up. See [`crate::engine`] for the whole path of a tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::deadline_heap::Entry;
use crate::engine::{Engine, SUMMARY_EVERY};
use crate::queue::Fire;
use crate::state::Next;
use crate::timer::{self, Due, Wait};

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
        // One read of each clock per wake-up: the wall clock for the deadlines, tokio's for the
        // sleep and the summary.
        let woke = tokio::time::Instant::now();
        if woke >= summary_due {
            summary_due += SUMMARY_EVERY;
            log_summary(&engine);
        }
        let now = engine.clock.now();
        let wait = engine.timer.take_due(now, &mut due, &mut fires);
        let now_key = timer::key(now);
        for Entry { key, value } in due.drain(..) {
            // An entry taken ahead of its deadline (claimed early) fires as of its deadline: the
            // state machine sees its tick on time, the claim goes out now, the run waits for it.
            let at = if key <= now_key {
                now
            } else {
                timer::instant_of(key)
            };
            fire(&engine, value, at, now, &mut fires);
        }
        engine.queue.push_all(&mut fires);
        // A stop that came while this wake-up took its fires (held runs among them) found them
        // neither in the timer nor in the queue: dropped now, which releases their claims.
        if !engine.is_running() {
            engine.queue.clear();
        }
        match wait {
            Wait::Nothing => tokio::task::yield_now().await,
            Wait::For(wait) => {
                timer.as_mut().reset(woke + wait);
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

/// Moves one due service on as of `at` (`Scheduled → Queued`, or held back for its jitter, or to
/// its misfire policy); without a coordinator a queued run joins this wake-up's batch, with one it
/// is claimed first. `at` is `now`, or the entry's deadline when it is claimed ahead of it.
fn fire(
    engine: &Arc<Engine>,
    due: Due,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    out: &mut Vec<Fire>,
) {
    let Due {
        generation, slot, ..
    } = due;
    let (next, tallies) = {
        let mut state = slot.lock();
        if state.fires_quietly(&slot.name, at) {
            (state.fire(generation, &slot.name, at), None)
        } else {
            let before = state.tally();
            let next = state.fire(generation, &slot.name, at);
            (next, Some((before, state.tally())))
        }
    };
    if let Some((before, after)) = tallies.filter(|(before, after)| after != before) {
        // Misfired ticks.
        engine.skipped(&slot, before, after);
    }
    match next {
        Next::Fire { generation, .. } if engine.coordinator.is_none() => out.push(Fire {
            slot,
            generation,
            ticket: None,
        }),
        Next::Fire { tick, generation } if at > now => {
            engine.claim_early(&slot, generation, tick, at);
        }
        next => engine.apply(&slot, next),
    }
}
