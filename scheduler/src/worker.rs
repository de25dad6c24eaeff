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
use crate::state::{slot_id, Begin, Next, RunFacts, Slot, Started};
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
    // The worker's cancel token, handed to each run and reused by the next when the run left no
    // clone of it behind (see `CancelToken::recycle`): no allocation per run for it.
    let mut cancel = CancelToken::default();
    while let Some(fire) = next_fire(&engine).await {
        cancel = run(&engine, fire, cancel.recycle()).await;
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

/// Runs one queued item with `token` as its cancel token, if it begins; gives the token back.
async fn run(engine: &Arc<Engine>, fire: Fire, token: CancelToken) -> CancelToken {
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
                let next = state.unqueue(&slot.name, generation, engine.clock.now());
                (before, next, state.tally())
            };
            engine.apply(&slot, next);
            engine.skipped(&slot, before, after);
            return token;
        }
    }
    let now = engine.clock.now();
    let Some((begun, job, timeout)) = take(
        engine,
        &slot,
        generation,
        now,
        ticket.is_some(),
        token.clone(),
    ) else {
        return token;
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
    let ending = Ending::default();
    let limits = Limits {
        cancel: &cancel,
        timeout,
        began: monotonic_start,
        started_at: now,
        attempt,
        ending: &ending,
    };
    let execute = execute(engine, &slot, job, ctx, &limits, span.clone());
    let outcome = match &ticket {
        // Boxed: coordination is the rare path, and would otherwise widen every run's future.
        Some(held) => Box::pin(crate::cluster::renewing(execute, held, &cancel)).await,
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
        attempt,
        detail: ending.detail(&outcome, timeout, engine.abort_grace),
        keep: engine.history_len,
    };
    conclude(engine, &slot, ticket, &facts, attempt, outcome);
    token
}

/// A worker takes a queued item at `now`: the run that begins, with its job and time limit; `None`
/// when none does (a stale item, or a tick its misfire policy does not run now).
fn take(
    engine: &Arc<Engine>,
    slot: &Arc<Slot>,
    generation: u32,
    now: DateTime<Utc>,
    claimed: bool,
    cancel: CancelToken,
) -> Option<(Started, Job, Option<Duration>)> {
    let mut state = slot.lock();
    let before = state.tally();
    let begun = state.begin(generation, &slot.name, now, claimed, cancel);
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
        let error = facts.error_of(&outcome);
        tokio::spawn(crate::cluster::finish(*held, now, end, outcome, error));
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

/// What bounds a run: its token, its time limit, and when it began (monotonic and wall clock);
/// its attempt, and where the way it ended is noted.
#[derive(Clone, Copy)]
struct Limits<'a> {
    cancel: &'a CancelToken,
    timeout: Option<Duration>,
    began: tokio::time::Instant,
    started_at: DateTime<Utc>,
    attempt: u32,
    ending: &'a Ending,
}

/// How a cancelled run ended, for its error text: it returned within its abort grace, the grace
/// ran out, or a stop's deadline cut it off first.
#[derive(Default)]
struct Ending(std::sync::atomic::AtomicU8);

impl Ending {
    const RETURNED: u8 = 0;
    const GRACE_RAN_OUT: u8 = 1;
    const FORCED: u8 = 2;

    /// Waits out a cancelled run's grace (or a stop's forcing, whichever comes first), and notes
    /// which ended it: for the caller to cut the run off.
    async fn grace(&self, grace: Duration, cancel: &CancelToken) {
        tokio::select! {
            () = tokio::time::sleep(grace) => self.cut_off(false),
            () = cancel.forced() => self.cut_off(true),
        }
    }

    fn cut_off(&self, forced: bool) {
        let how = if forced {
            Self::FORCED
        } else {
            Self::GRACE_RAN_OUT
        };
        self.0.store(how, std::sync::atomic::Ordering::Relaxed);
    }

    /// Why a timed-out or aborted run ended, in words; `None` for the other outcomes.
    fn detail(
        &self,
        outcome: &Outcome,
        timeout: Option<Duration>,
        grace: Duration,
    ) -> Option<String> {
        // Only a run cut short has words to say: the common outcomes allocate nothing here.
        if !matches!(outcome, Outcome::TimedOut | Outcome::Aborted) {
            return None;
        }
        let grace = Spoken(grace);
        let after = match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            Self::GRACE_RAN_OUT => {
                format!("it did not return within its {grace} grace and was cut off")
            }
            Self::FORCED => "the stop's deadline cut it off before its grace ran out".to_owned(),
            _ => format!("it returned within its {grace} grace"),
        };
        let returned = self.0.load(std::sync::atomic::Ordering::Relaxed) == Self::RETURNED;
        match outcome {
            Outcome::TimedOut => {
                let limit = timeout.map_or_else(String::new, |l| format!(" after {}", Spoken(l)));
                Some(if returned {
                    format!("timed out{limit}")
                } else {
                    format!("timed out{limit}; {after}")
                })
            }
            Outcome::Aborted => Some(format!("aborted by a stop; {after}")),
            _ => None,
        }
    }
}

/// A duration as an operator reads it: `30 s`, `1.5 s`, `250 ms`.
pub(crate) struct Spoken(pub(crate) Duration);

impl std::fmt::Display for Spoken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        if d < Duration::from_secs(1) {
            write!(f, "{} ms", d.as_millis())
        } else if d.subsec_millis() == 0 {
            write!(f, "{} s", d.as_secs())
        } else {
            let secs = format!("{:.3}", d.as_secs_f64());
            write!(f, "{} s", secs.trim_end_matches('0'))
        }
    }
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
        attempt,
        ending,
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
                        () = ending.grace(engine.abort_grace, cancel) => cut_short(cancel),
                    }
                }
            }
        }
        // The manager binds every job before scheduling it; fail the run rather than panic.
        JobKind::Unbound(_) => Outcome::Failed(crate::job::UNBOUND.to_owned()),
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
                // The runtime shut down before a blocking thread took the job: it never ran, and
                // nothing panicked. (Panics are caught inside the thread, so this is the only
                // join error there is in practice.)
                Err(error) if error.is_cancelled() => Outcome::Aborted,
                Err(error) => Outcome::Panicked(error.to_string()),
            };
            tokio::select! {
                biased;
                result = thread.as_mut() => joined(result),
                () = stop_asked => {
                    let returned = tokio::select! {
                        biased;
                        result = thread.as_mut() => Some(joined(result)),
                        () = ending.grace(engine.abort_grace, cancel) => None,
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
                            attempt,
                            detail: ending.detail(&outcome, timeout, engine.abort_grace),
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
    // A lost claim first: the run must not go on whatever else cut it short.
    if cancel.is_lease_lost() {
        Outcome::LeaseLost
    } else if cancel.is_timed_out() {
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
        Outcome::LeaseLost => {
            tracing::error!(%duration, "run cancelled: its claim was lost (another replica may run the tick)");
        }
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
    fn durations_are_spoken_in_the_unit_an_operator_reads() {
        assert_eq!(Spoken(Duration::from_secs(30)).to_string(), "30 s");
        assert_eq!(Spoken(Duration::from_millis(1500)).to_string(), "1.5 s");
        assert_eq!(Spoken(Duration::from_millis(250)).to_string(), "250 ms");
        assert_eq!(Spoken(Duration::from_millis(2005)).to_string(), "2.005 s");
    }

    #[test]
    fn a_cut_short_run_says_why() {
        let limit = Some(Duration::from_secs(30));
        let grace = Duration::from_secs(5);
        let returned = Ending::default();
        assert_eq!(
            returned.detail(&Outcome::TimedOut, limit, grace).as_deref(),
            Some("timed out after 30 s")
        );
        assert_eq!(returned.detail(&Outcome::Succeeded, limit, grace), None);
        let cut = Ending::default();
        cut.cut_off(false);
        assert_eq!(
            cut.detail(&Outcome::Aborted, None, grace).as_deref(),
            Some("aborted by a stop; it did not return within its 5 s grace and was cut off")
        );
        let forced = Ending::default();
        forced.cut_off(true);
        assert!(forced
            .detail(&Outcome::Aborted, None, grace)
            .unwrap()
            .contains("deadline"));
    }

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
