//! The worker side: a queue of due services and a fixed set of worker tasks that run them.
//!
//! The pool *is* the set of workers: `max_concurrent_jobs` tasks, each taking one queued service at a
//! time, so at most that many runs exist at once and firing costs no task spawn. An async job runs
//! inside the worker task; a blocking job runs on tokio's blocking pool while its worker waits for it,
//! so its slot stays taken until its thread returns — even after an abort has given up on it.
//!
//! A run, on its worker:
//!
//! ```text
//! Queued ──begin──▶ Running ── job returns / panics ──────────────────────────▶ end: record, next tick
//!                      │
//!                      └─ cancelled (stop, deadline,  ── grace ── returns ──────▶ end (aborted / timed out)
//!                         or its timeout)                 └── still running: async → dropped, end
//!                                                                           blocking → abandoned: recorded
//!                                                                           now (aborted / timed out), end
//!                                                                           when its thread returns
//! ```

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::FutureExt;
use tracing::Instrument;

use crate::cancel::CancelToken;
use crate::engine::Engine;
use crate::event::RunEvent;
use crate::job::{Job, JobContext, JobKind};
use crate::queue::Fire;
use crate::state::{Begin, Next, RunFacts, Slot, Started};
use crate::status::{Failure, Outcome, Trigger};

/// Spawns workers until there are as many as the pool's target.
pub(crate) fn spawn_missing(engine: &Arc<Engine>, handle: &tokio::runtime::Handle) {
    while engine.pool.reserve() {
        handle.spawn(work(engine.clone()));
    }
}

/// One worker: takes a due service, runs it, repeats; exits when the manager stops or the pool
/// shrinks.
async fn work(engine: Arc<Engine>) {
    while let Some(fire) = next_fire(&engine).await {
        run(&engine, fire).await;
    }
}

async fn next_fire(engine: &Engine) -> Option<Fire> {
    loop {
        // The busy path first: while the queue has work, no waiter is registered at all.
        if engine.pool.leave_if_surplus() {
            return None;
        }
        if !engine.is_running() {
            engine.pool.leave();
            return None;
        }
        if let Some(fire) = engine.queue.items().pop_front() {
            return Some(fire);
        }
        let notified = engine.queue.ready.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before looking again, so a push (or a stop) in between still wakes us.
        notified.as_mut().enable();
        if engine.queue.items().is_empty() && engine.is_running() && !engine.pool.is_surplus() {
            notified.await;
        }
    }
}

thread_local! {
    /// The slot whose job this thread is running right now (while a job is polled, or a blocking
    /// job runs), so that a job which stops its own service is not made to wait for itself.
    static CURRENT_RUN: Cell<usize> = const { Cell::new(0) };
}

/// The slot whose job the caller is part of, if it is one.
pub(crate) fn current_run() -> usize {
    CURRENT_RUN.with(Cell::get)
}

pub(crate) fn slot_id(slot: &Arc<Slot>) -> usize {
    Arc::as_ptr(slot) as usize
}

struct RunScope(usize);

impl RunScope {
    fn enter(id: usize) -> Self {
        RunScope(CURRENT_RUN.with(|current| current.replace(id)))
    }
}

impl Drop for RunScope {
    fn drop(&mut self) {
        CURRENT_RUN.with(|current| current.set(self.0));
    }
}

/// A job's future, marked as the run of its slot while it is polled.
struct InRun<F> {
    id: usize,
    job: F,
}

impl<F: Future + Unpin> Future for InRun<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = RunScope::enter(self.id);
        Pin::new(&mut self.job).poll(cx)
    }
}

async fn run(engine: &Arc<Engine>, fire: Fire) {
    let Fire {
        slot,
        generation,
        ticket,
    } = fire;
    if let Some(held) = &ticket {
        if slot.is_current(generation) && !held.still_held().await {
            // The claim is dropped on return, which releases it (or finds it lost): skipped.
            let (before, next, after) = {
                let mut state = slot.lock();
                let before = state.tally();
                if state.generation == generation {
                    state.stats_mut().skipped_late += 1;
                }
                let next = state.unqueue(generation, engine.clock.now(), 0);
                (before, next, state.tally())
            };
            engine.apply(&slot, next);
            engine.skipped(&slot, before, after);
            return;
        }
    }
    let now = engine.clock.now();
    let Some((begun, job, timeout)) = take(engine, &slot, generation, now, ticket.is_some()) else {
        return;
    };
    let Started {
        tick,
        trigger,
        attempt,
        cancel,
        remember,
    } = begun;
    if remember {
        engine.remember(&slot.name, tick);
    }
    started(engine, &slot, tick, trigger, attempt, now);
    let ctx = JobContext::new(slot.name.clone(), tick, trigger, attempt, cancel.clone());
    let span = tracing::info_span!("service_run", service = %slot.name, tick = %LogTime(tick),
        %trigger, attempt);
    let monotonic_start = tokio::time::Instant::now();
    let limits = Limits {
        cancel: &cancel,
        timeout,
        began: monotonic_start,
        started_at: now,
    };
    let execute = execute(engine, &slot, job, ctx, &limits, span.clone());
    let outcome = match &ticket {
        // Boxed: coordination is the rare path, and would otherwise widen every run's future.
        Some(held) => Box::pin(crate::cluster::renewing(execute, held)).await,
        None => execute.await,
    };
    let duration = monotonic_start.elapsed();
    // An abandoned run was reported when it was abandoned.
    if !slot.lock().was_abandoned() {
        span.in_scope(|| report(engine, &slot.name, tick, &outcome, duration));
    }
    let facts = RunFacts {
        name: slot.name.clone(),
        tick,
        trigger,
        started: now,
        duration,
        keep: engine.history_len,
    };
    conclude(engine, &slot, ticket, &facts, attempt, outcome);
}

/// A worker takes a queued item at `now`: the run that begins, with its job and time limit; `None`
/// when none does (a stale item, or a tick its misfire policy does not run now).
fn take(
    engine: &Arc<Engine>,
    slot: &Arc<Slot>,
    generation: u32,
    now: DateTime<Utc>,
    claimed: bool,
) -> Option<(Started, Job, Option<Duration>)> {
    let mut state = slot.lock();
    let before = state.tally();
    let begun = state.begin(generation, &slot.name, now, claimed);
    let after = state.tally();
    match begun {
        Begin::Run(begun) => {
            let timeout = state.service.policies().and_then(|p| p.timeout);
            let job = state.service.job.clone();
            drop(state);
            if after != before {
                // Ticks a misfire while waiting for this worker skipped.
                engine.skipped(slot, before, after);
            }
            Some((begun, job, timeout))
        }
        Begin::Not(next) => {
            drop(state);
            engine.apply(slot, next);
            engine.skipped(slot, before, after);
            None
        }
    }
}

/// A run ended with `outcome`: records it, moves the service on, and reports it (metrics, events,
/// the coordinator).
fn conclude(
    engine: &Arc<Engine>,
    slot: &Arc<Slot>,
    ticket: Option<Box<crate::cluster::Held>>,
    facts: &RunFacts,
    attempt: u32,
    outcome: Outcome,
) {
    let RunFacts {
        tick,
        trigger,
        started: now,
        duration,
        ..
    } = *facts;
    let end = TimeDelta::from_std(duration)
        .ok()
        .and_then(|took| now.checked_add_signed(took))
        .unwrap_or(now);
    let (before, next, after) = {
        let mut state = slot.lock();
        if let Some(held) = &ticket {
            crate::cluster::report_pending(state.stats_mut(), &held.ticket);
        }
        let before = state.tally();
        let next = state.end(outcome.clone(), facts, end);
        (before, next, state.tally())
    };
    let next_tick = match next {
        Next::Timer { at, .. } => Some(at),
        // The next run of a catch-up, at once.
        Next::Fire { .. } => Some(end),
        Next::Queue { .. } | Next::Nothing => None,
    };
    slot.meter
        .finished(&slot.name, &outcome, duration, end, next_tick);
    // Reported before the next run can be queued (a catch-up's next run, a retry without backoff),
    // so that the hook never hears of a run's successor before its end.
    engine.emit(|| RunEvent::Finished {
        service: slot.name.clone(),
        tick,
        trigger,
        attempt,
        outcome: outcome.clone(),
        duration,
    });
    engine.skipped(slot, before, after);
    // With a coordinator, the next claim of the service (a catch-up's next run is claimed at once)
    // waits for this run's report, which is pending until `finish` lands.
    engine.apply(slot, next);
    engine.run_ended();
    if let Some(held) = ticket {
        tokio::spawn(crate::cluster::finish(*held, now, end, outcome));
    }
}

/// A run began at `now`: metrics and the event hook.
fn started(
    engine: &Engine,
    slot: &Arc<Slot>,
    tick: DateTime<Utc>,
    trigger: Trigger,
    attempt: u32,
    now: DateTime<Utc>,
) {
    let lag = (now - tick).to_std().unwrap_or(Duration::ZERO);
    slot.meter
        .started(&slot.name, (trigger == Trigger::Schedule).then_some(lag));
    engine.emit(|| RunEvent::Started {
        service: slot.name.clone(),
        tick,
        trigger,
        attempt,
        lag,
    });
}

/// What bounds a run: its token, its time limit, and when it began (monotonic and wall clock).
#[derive(Clone, Copy)]
struct Limits<'a> {
    cancel: &'a CancelToken,
    timeout: Option<Duration>,
    began: tokio::time::Instant,
    started_at: DateTime<Utc>,
}

/// Runs the job to its outcome, honouring cancellation and the grace period.
async fn execute(
    engine: &Engine,
    slot: &Arc<Slot>,
    job: Job,
    ctx: JobContext,
    limits: &Limits<'_>,
    span: tracing::Span,
) -> Outcome {
    let Limits {
        cancel,
        timeout,
        began,
        started_at,
    } = *limits;
    // A stop's cancellation, or the run's time limit running out (which cancels it too).
    let stop_asked = async {
        match timeout {
            Some(limit) => tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(limit) => cancel.time_out(),
            },
            None => cancel.cancelled().await,
        }
    };
    let id = slot_id(slot);
    let (ctx_tick, ctx_trigger) = (ctx.tick(), ctx.trigger());
    match job.kind() {
        JobKind::Async(async_job) => {
            let run = InRun {
                id,
                job: AssertUnwindSafe(async_job(ctx)).catch_unwind(),
            };
            let mut run = std::pin::pin!(run.instrument(span));
            // Most jobs finish on their first poll: they need no cancellation future at all.
            if let Poll::Ready(result) = poll_once(run.as_mut()).await {
                return outcome_of(result, cancel);
            }
            tokio::select! {
                biased;
                result = run.as_mut() => outcome_of(result, cancel),
                () = stop_asked => {
                    tokio::select! {
                        biased;
                        result = run.as_mut() => outcome_of(result, cancel),
                        () = tokio::time::sleep(engine.abort_grace) => cut_short(cancel),
                        () = cancel.forced() => cut_short(cancel),
                    }
                }
            }
        }
        JobKind::Blocking(_) => {
            let job = job.clone();
            let run_span = span.clone();
            let thread = tokio::task::spawn_blocking(move || {
                let _scope = RunScope::enter(id);
                span.in_scope(|| {
                    std::panic::catch_unwind(AssertUnwindSafe(|| job.run_blocking(ctx)))
                })
            });
            let mut thread = std::pin::pin!(thread);
            let joined = |joined: Result<_, tokio::task::JoinError>| match joined {
                Ok(result) => outcome_of(result, cancel),
                Err(error) => Outcome::Panicked(error.to_string()),
            };
            tokio::select! {
                biased;
                result = thread.as_mut() => joined(result),
                () = stop_asked => {
                    let returned = tokio::select! {
                        biased;
                        result = thread.as_mut() => Some(joined(result)),
                        () = tokio::time::sleep(engine.abort_grace) => None,
                        () = cancel.forced() => None,
                    };
                    if let Some(outcome) = returned {
                        outcome
                    } else {
                        // Given up on: the stop no longer waits, but the thread keeps its slot.
                        // The run ends now for the record, the counters and the failure hook, as
                        // it will when the thread returns: timed out or aborted.
                        let outcome = cut_short(cancel);
                        let duration = began.elapsed();
                        slot.lock().abandon(outcome.clone(), &RunFacts {
                            name: slot.name.clone(),
                            tick: ctx_tick,
                            trigger: ctx_trigger,
                            started: started_at,
                            duration,
                            keep: engine.history_len,
                        });
                        engine.run_ended();
                        run_span.in_scope(|| {
                            report(engine, &slot.name, ctx_tick, &outcome, duration);
                            tracing::warn!("blocking job still running after its abort grace; \
                                its slot stays taken until it returns");
                        });
                        let _ = thread.as_mut().await;
                        outcome
                    }
                }
            }
        }
    }
}

async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

fn outcome_of(
    result: Result<Result<(), String>, Box<dyn Any + Send>>,
    cancel: &CancelToken,
) -> Outcome {
    if cancel.is_aborted() {
        return cut_short(cancel);
    }
    match result {
        Ok(Ok(())) => Outcome::Succeeded,
        Ok(Err(error)) => Outcome::Failed(error),
        Err(panic) => Outcome::Panicked(panic_message(&*panic)),
    }
}

/// The outcome of a run that was stopped from outside: timed out, or aborted.
fn cut_short(cancel: &CancelToken) -> Outcome {
    if cancel.is_timed_out() {
        Outcome::TimedOut
    } else {
        Outcome::Aborted
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

fn report(engine: &Engine, name: &str, tick: DateTime<Utc>, outcome: &Outcome, took: Duration) {
    let duration = DisplayDuration(took);
    let counter = if *outcome == Outcome::Succeeded {
        &engine.summary.succeeded
    } else {
        &engine.summary.other
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if outcome.is_failure() && !tracing::dispatcher::has_been_set() {
        // No subscriber: a failure would vanish, so it goes to stderr instead.
        eprintln!(
            "scheduler: service '{name}' {outcome} (tick {})",
            LogTime(tick)
        );
    }
    match outcome {
        Outcome::Succeeded => tracing::debug!(%duration, "run succeeded"),
        Outcome::Failed(error) => tracing::error!(%duration, error = %error, "run failed"),
        Outcome::Panicked(message) => {
            tracing::error!(%duration, panic = %message, "run panicked");
        }
        Outcome::Aborted => tracing::warn!(%duration, "run aborted"),
        Outcome::TimedOut => tracing::error!(%duration, "run timed out"),
    }
    if let (true, Some(hook)) = (outcome.is_failure(), &engine.on_failure) {
        let failure = Failure {
            service: name.to_owned(),
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

/// A duration for log lines: milliseconds with at most three decimals (`12.345ms`), or seconds
/// past ten of them.
pub(crate) struct DisplayDuration(pub(crate) Duration);

impl std::fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_secs_f64() * 1e3;
        if ms < 10_000.0 {
            write!(f, "{ms:.3}ms")
        } else {
            write!(f, "{:.3}s", self.0.as_secs_f64())
        }
    }
}

/// An instant for log lines: RFC 3339 in UTC, to the millisecond (`2024-01-01T09:00:00.000Z`).
pub(crate) struct LogTime(pub(crate) DateTime<Utc>);

impl std::fmt::Display for LogTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn log_values_are_short_and_exact_enough() {
        assert_eq!(
            DisplayDuration(Duration::from_nanos(70_013_999)).to_string(),
            "70.014ms"
        );
        assert_eq!(
            DisplayDuration(Duration::from_secs(12)).to_string(),
            "12.000s"
        );
        let t =
            Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).unwrap() + TimeDelta::nanoseconds(1_234_567);
        assert_eq!(LogTime(t).to_string(), "2024-01-01T09:00:00.001Z");
    }
}
