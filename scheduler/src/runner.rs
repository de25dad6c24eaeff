//! One service's loop: sleep until the tick, take a pool slot, run the job, record, repeat.
//!
//! Each service is one tokio task that sleeps until its next deadline; nothing polls. The job runs
//! inside that task (async jobs) or on the blocking pool (blocking jobs), so firing costs no extra
//! spawn, and a tick that comes while the job runs is noticed — and skipped — when it returns:
//!
//! ```text
//! ticks     |0        |1        |2        |3        |4
//! job        [=====run 0=========]         [run 3]   [run 4]
//!                                ^ ends after 1 and 2 passed: both counted as skipped,
//!                                  next run at tick 3 (ticks stay on the grid, no drift)
//! ```

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::FutureExt;
use tokio::time::Sleep;
use tracing::Instrument;

use crate::clock::Clock;
use crate::cluster;
use crate::coordinator::{Coordinator, Ticket};
use crate::entry::{Entry, RunGuard};
use crate::job::{Job, JobContext};
use crate::pool::Pool;
use crate::status::{Failure, Outcome};
use crate::Schedule;

pub(crate) type FailureHook = dyn Fn(&Failure) + Send + Sync;

/// What every runner shares: the clock, the worker pool, the failure hook and the coordinator.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) pool: Pool,
    pub(crate) on_failure: Option<Arc<FailureHook>>,
    /// `None`: every tick runs here, with no claim (and no cost for one).
    pub(crate) coordinator: Option<Arc<dyn Coordinator>>,
    pub(crate) lease: Duration,
}

pub(crate) async fn run(entry: Arc<Entry>, shared: Arc<Shared>) {
    let clock = &*shared.clock;
    let started = clock.now();
    // Fixed periods count from the start, so every tick is `start + k × period`; replicas that
    // coordinate count from the Unix epoch instead, so that they all compute the same ticks.
    let anchor = match (&shared.coordinator, entry.service.schedule.period()) {
        (Some(_), Some(_)) => DateTime::UNIX_EPOCH,
        _ => started,
    };
    let schedule = entry.service.schedule.clone().anchored_at(anchor);
    let mut due = if entry.service.on_start {
        Some(started)
    } else {
        schedule.first_tick(started)
    };
    // `on_start` belongs to this replica's start, so that run is never coordinated.
    let mut on_start_tick = entry.service.on_start.then_some(started);
    if !entry.schedule_next(due) {
        return;
    }
    // The latest clock reading: each pass reads the clock once on waking and derives the rest.
    let mut now = started;
    // One timer for the task's whole life, moved to each new deadline: cheaper than a new `Sleep`
    // (and a runtime-handle lookup) per tick.
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    // Stopping this service aborts this task while it sleeps or waits, and lets a run in progress
    // finish first (see `Entry`): so there is no cancellation to race against here.
    while let Some(tick) = due {
        now = sleep_until(clock, tick, now, timer.as_mut()).await;
        let coordinator = shared
            .coordinator
            .as_ref()
            .filter(|_| on_start_tick.take() != Some(tick));
        let ticket = match coordinator {
            None => None,
            Some(coordinator) => {
                // Boxed: coordination is the rare path, and its future would otherwise widen every
                // idle runner task.
                let claimed = Box::pin(cluster::claim(
                    &**coordinator,
                    &entry,
                    &shared,
                    &schedule,
                    tick,
                ))
                .await;
                if claimed.is_none() {
                    now = clock.now();
                    let (skipped, next) = next_tick(&schedule, tick, now);
                    if !entry.schedule_next_after_skipping(skipped, next) {
                        return;
                    }
                    due = next;
                    continue;
                }
                claimed
            }
        };
        // A takeover (at-least-once delivery) runs an older, abandoned tick first.
        let run_tick = ticket.as_ref().map_or(tick, |t| t.tick);
        let permit = if let Some(slot) = shared.pool.try_acquire() {
            slot
        } else {
            entry.wait_for_slot();
            let slot = shared.pool.acquire().await;
            now = clock.now();
            slot
        };
        let outcome = if let Some(guard) = RunGuard::claim(&entry) {
            if !entry.begin_run(now) {
                return;
            }
            // Boxed: a run's future is several times the size of a sleeping runner, and most
            // services spend most of their life asleep. One allocation per run buys that back.
            Some(Box::pin(run_once(&entry, &shared, run_tick, guard, ticket.as_ref())).await)
        } else {
            // The previous definition of this service (before a reload) is still running.
            None
        };
        drop(permit);
        if let Some((_, took)) = &outcome {
            now = TimeDelta::from_std(*took)
                .ok()
                .and_then(|took| now.checked_add_signed(took))
                .unwrap_or(now);
        }
        let (skipped, next) = if run_tick == tick {
            next_tick(&schedule, tick, now)
        } else {
            (0, Some(tick))
        };
        let still_scheduled = match outcome {
            Some((outcome, duration)) => entry.finish_run(outcome, duration, skipped, next),
            None => entry.schedule_next_after_skipping(skipped + 1, next),
        };
        if !still_scheduled {
            return;
        }
        due = next;
    }
    tracing::info!(service = %entry.name, "schedule has no further ticks");
}

/// Sleeps until the clock reads `tick` (given its reading `now`), and returns its reading then.
async fn sleep_until(
    clock: &dyn Clock,
    tick: DateTime<Utc>,
    mut now: DateTime<Utc>,
    mut timer: Pin<&mut Sleep>,
) -> DateTime<Utc> {
    loop {
        if now >= tick {
            return now;
        }
        let wait = (tick - now).to_std().unwrap_or(Duration::ZERO);
        // `Instant + Duration` panics on overflow; a tick centuries away just waits "forever".
        let deadline = tokio::time::Instant::now()
            .checked_add(wait)
            .unwrap_or_else(|| {
                tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
            });
        timer.as_mut().reset(deadline);
        timer.as_mut().await;
        // Re-checking the clock after each sleep keeps a tick from firing early if the wall clock was
        // set back while we slept.
        now = clock.now();
    }
}

async fn run_once(
    entry: &Arc<Entry>,
    shared: &Shared,
    tick: DateTime<Utc>,
    guard: RunGuard,
    ticket: Option<&Ticket>,
) -> (Outcome, Duration) {
    let ctx = JobContext::new(entry.clone(), tick);
    let span = tracing::info_span!("service_run", service = %entry.name, %tick);
    let began = tokio::time::Instant::now();
    let started = ticket.map(|_| shared.clock.now());
    let execute = async {
        match &entry.service.job {
            Job::Async(job) => {
                let _running = guard;
                let run = AssertUnwindSafe(async { job(ctx).await }).catch_unwind();
                outcome_of(run.instrument(span.clone()).await)
            }
            Job::Blocking(job) => {
                let job = job.clone();
                let blocking_span = span.clone();
                let run = tokio::task::spawn_blocking(move || {
                    let _running = guard;
                    blocking_span
                        .in_scope(|| std::panic::catch_unwind(AssertUnwindSafe(|| job(ctx))))
                });
                match run.await {
                    Ok(result) => outcome_of(result),
                    Err(join_error) => Outcome::Panicked(join_error.to_string()),
                }
            }
        }
    };
    let outcome = match (ticket, &shared.coordinator) {
        (Some(ticket), Some(coordinator)) => {
            Box::pin(cluster::renewing(
                execute,
                &**coordinator,
                ticket,
                shared.lease,
            ))
            .await
        }
        _ => execute.await,
    };
    let duration = began.elapsed();
    span.in_scope(|| report(entry, shared, tick, &outcome, duration));
    if let (Some(ticket), Some(coordinator), Some(started)) = (ticket, &shared.coordinator, started)
    {
        Box::pin(cluster::finish(
            coordinator,
            ticket,
            started,
            shared.clock.now(),
            &outcome,
        ))
        .await;
    }
    (outcome, duration)
}

fn outcome_of(result: Result<Result<(), String>, Box<dyn Any + Send>>) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Succeeded,
        Ok(Err(error)) => Outcome::Failed(error),
        Err(panic) => Outcome::Panicked(panic_message(&*panic)),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

fn report(entry: &Entry, shared: &Shared, tick: DateTime<Utc>, outcome: &Outcome, took: Duration) {
    let duration_ms = took.as_secs_f64() * 1e3;
    match outcome {
        Outcome::Succeeded => tracing::debug!(duration_ms, "run succeeded"),
        Outcome::Failed(error) => tracing::error!(duration_ms, error = %error, "run failed"),
        Outcome::Panicked(message) => {
            tracing::error!(duration_ms, panic = %message, "run panicked");
        }
        Outcome::Aborted => tracing::warn!(duration_ms, "run aborted"),
    }
    if let (true, Some(hook)) = (outcome.is_failure(), &shared.on_failure) {
        let failure = Failure {
            service: entry.name.to_string(),
            tick,
            outcome: outcome.clone(),
            duration: took,
        };
        // A failing alert hook must not take the service down with it.
        if std::panic::catch_unwind(AssertUnwindSafe(|| hook(&failure))).is_err() {
            tracing::error!("the failure hook panicked");
        }
    }
}

/// The first tick at or after `now` that follows `tick`, and how many ticks came in between: those
/// were missed while the run (or its wait for a slot) went on, and count as skipped.
fn next_tick(
    schedule: &Schedule,
    tick: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (u64, Option<DateTime<Utc>>) {
    let Some(first) = schedule.next_after(tick) else {
        return (0, None);
    };
    if first >= now {
        return (0, Some(first));
    }
    let next = schedule.next_after(now - TimeDelta::nanoseconds(1));
    let skipped = match (schedule.period(), next) {
        (Some(period), Some(next)) => {
            let span = (next - first).to_std().unwrap_or(Duration::ZERO);
            (span.as_nanos() / period.as_nanos().max(1)) as u64
        }
        _ => count_ticks(schedule, first, now),
    };
    (skipped, next)
}

/// Ticks of a cron schedule in `[from, until)`, counted one by one: cron ticks are whole seconds, so a
/// run would have to last days for this to take noticeable time; past a cap it stops counting.
fn count_ticks(schedule: &Schedule, from: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    const CAP: u64 = 1_000_000;
    let mut count = 0;
    let mut at = Some(from);
    while let Some(t) = at.filter(|t| *t < until && count < CAP) {
        count += 1;
        at = schedule.next_after(t);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::Origin;
    use crate::service::Service;

    /// Every idle service is one parked task whose size is this future's: keep it small (issue 5's
    /// memory target is about 1 KiB per service above a bare tokio task, all costs included).
    #[test]
    fn an_idle_runner_task_stays_small() {
        let service = Service::new("* * * * *".parse().unwrap(), |_ctx| async {});
        let entry = Arc::new(Entry::new(
            "sized".into(),
            service,
            Origin::Code,
            false,
            None,
        ));
        let shared = Arc::new(Shared {
            clock: Arc::new(SystemClock),
            pool: Pool::new(1),
            on_failure: None,
            coordinator: None,
            lease: Duration::from_secs(30),
        });
        let size = std::mem::size_of_val(&run(entry, shared));
        println!("runner future: {size} bytes");
        assert!(size <= 448, "the runner future grew to {size} bytes");
    }
}
