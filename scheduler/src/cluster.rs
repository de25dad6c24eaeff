//! The runner's side of coordination: claiming a tick (with retries while the coordinator is down),
//! keeping the claim's lease alive while the job runs, and reporting the end of the run.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::coordinator::{Claim, ClaimPolicy, Coordinator, FinishedRun, Ticket};
use crate::state::Slot;
use crate::status::Outcome;
use crate::Schedule;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// Claims `tick`, retrying with backoff while the coordinator is unreachable, until the tick after it
/// is due (or, for a service whose misfire policy is `Skip`, until its `skip_grace` has passed):
/// then this tick is given up (no replica could be sure of running it alone) and counted as
/// misfired. `None` when this replica does not run it: another replica has it, or is still running
/// an earlier tick, or the coordinator stayed unreachable.
///
/// A claim granted late still runs: the claim is recorded, so the tick is this replica's to run.
pub(crate) async fn claim(
    clock: &dyn Clock,
    coordinator: &dyn Coordinator,
    slot: &Slot,
    schedule: &Schedule,
    tick: DateTime<Utc>,
    policy: ClaimPolicy,
    skip_grace: Option<Duration>,
) -> Option<Ticket> {
    let name = &*slot.name;
    let next_tick = schedule.next_after(tick);
    let skip_at = skip_grace
        .and_then(|grace| chrono::TimeDelta::from_std(grace).ok())
        .and_then(|grace| tick.checked_add_signed(grace));
    let give_up_at = match (skip_at, next_tick) {
        (Some(skip), Some(next)) => Some(skip.min(next)),
        (skip, next) => skip.or(next),
    };
    let mut backoff = FIRST_RETRY;
    loop {
        let error = match coordinator.claim(name, tick, policy).await {
            Ok(claim) => {
                if set_coordinator_error(slot, None) {
                    tracing::info!(service = %name, "coordinator reachable again: coordinated runs resume");
                }
                return match claim {
                    Claim::Granted(ticket) => Some(ticket),
                    Claim::Taken { replica } => {
                        tracing::debug!(service = %name, %tick, %replica, "tick claimed by another replica");
                        slot.lock().stats_mut().claimed_elsewhere += 1;
                        None
                    }
                    Claim::Busy {
                        replica,
                        tick: running,
                    } => {
                        tracing::warn!(service = %name, %tick, %replica, %running,
                            "tick skipped: another replica is still running an earlier tick");
                        slot.lock().stats_mut().skipped += 1;
                        None
                    }
                };
            }
            Err(error) => error,
        };
        if !set_coordinator_error(slot, Some(error.to_string())) {
            tracing::warn!(service = %name, %error,
                "coordinator unreachable: coordinated runs paused, retrying with backoff");
        }
        let now = clock.now();
        let retry_at = now + chrono::TimeDelta::from_std(backoff).unwrap_or(chrono::TimeDelta::MAX);
        if give_up_at.is_some_and(|next| retry_at >= next) {
            tracing::warn!(service = %name, %tick, "tick not run: the coordinator stayed unreachable");
            slot.lock().stats_mut().skipped_misfire += 1;
            return None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LONGEST_RETRY);
    }
}

/// Records whether the coordinator is reachable; returns whether it was unreachable before.
fn set_coordinator_error(slot: &Slot, error: Option<String>) -> bool {
    let mut state = slot.lock();
    if error.is_none() && state.status_is_reachable() {
        return false;
    }
    std::mem::replace(&mut state.stats_mut().coordinator_error, error).is_some()
}

/// Runs `job` while renewing the ticket's lease every third of it.
pub(crate) async fn renewing<F: Future>(
    job: F,
    coordinator: &dyn Coordinator,
    ticket: &Ticket,
    lease: Duration,
) -> F::Output {
    let renew = async {
        let mut every = tokio::time::interval(lease / 3);
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(error) = coordinator.renew(ticket).await {
                tracing::warn!(service = %ticket.service, tick = %ticket.tick, %error, "lease not renewed");
            }
        }
    };
    tokio::select! {
        biased;
        output = job => output,
        () = renew => unreachable!("the renewal loop never ends"),
    }
}

/// Reports the end of a run, retrying a few times; a report that never arrives leaves the claim to
/// run out, as if this replica had died.
pub(crate) async fn finish(
    coordinator: Arc<dyn Coordinator>,
    ticket: Ticket,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    outcome: Outcome,
) {
    let ticket = &ticket;
    let run = FinishedRun {
        started,
        finished,
        outcome,
    };
    let mut backoff = FIRST_RETRY;
    for attempt in 1..=4 {
        match coordinator.finish(ticket, &run).await {
            Ok(()) => return,
            Err(error) if attempt == 4 => {
                tracing::error!(service = %ticket.service, tick = %ticket.tick, %error,
                    "could not record the end of the run; its claim will run out");
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}
