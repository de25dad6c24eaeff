//! Job policies on the paused clock: timeout, retries with backoff, and start jitter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::{Clock, Outcome, Schedule, Service, ServiceManager, TokioClock};
use tokio::time::sleep;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
}

fn every(seconds: u64) -> Schedule {
    Schedule::every(Duration::from_secs(seconds)).unwrap()
}

type Log = Arc<Mutex<Vec<(DateTime<Utc>, u32, DateTime<Utc>)>>>;

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_is_cancelled_then_dropped_and_counts_as_a_failure() {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .abort_grace(Duration::from_secs(1))
        .on_failure(move |failure| sink.lock().unwrap().push(failure.outcome.clone()))
        .build()
        .unwrap();
    let ended = Arc::new(Mutex::new(Vec::new()));
    let (polite_log, clock) = (ended.clone(), TokioClock::starting_at(t0()));
    manager.add_service(
        "polite",
        Service::new(every(60), move |ctx| {
            let log = polite_log.clone();
            async move {
                tokio::select! {
                    () = ctx.cancelled() => {}
                    () = sleep(Duration::from_secs(3600)) => {}
                }
                log.lock().unwrap().push(("polite", clock.now()));
            }
        })
        .timeout(Duration::from_secs(5)),
    );
    manager.add_service(
        "deaf",
        Service::new(every(60), |_ctx| async {
            sleep(Duration::from_secs(3600)).await;
        })
        .timeout(Duration::from_secs(5)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(70)).await;
    assert_eq!(*ended.lock().unwrap(), [("polite", secs(65))]);
    for name in ["polite", "deaf"] {
        let status = manager.service(name).unwrap();
        assert_eq!(status.last_outcome, Some(Outcome::TimedOut), "{name}");
        assert_eq!((status.runs, status.failures), (1, 1), "{name}");
        assert_eq!(status.next_fire, Some(secs(120)), "the schedule goes on");
    }
    assert_eq!(
        manager.service("deaf").unwrap().last_duration,
        Some(Duration::from_secs(6)),
        "dropped after the 1 s grace"
    );
    assert_eq!(
        *failures.lock().unwrap(),
        [Outcome::TimedOut, Outcome::TimedOut]
    );
    // The error text names the real limit; the deaf one also the grace it outlived.
    let errors = |name: &str| {
        let history = manager.history(name).unwrap();
        assert_eq!(history.len(), 1, "{name}");
        assert_eq!(history[0].outcome.as_deref(), Some("timed_out"));
        (
            history[0].error.clone(),
            manager.service(name).unwrap().last_error,
        )
    };
    let polite = Some("timed out after 5 s".to_owned());
    assert_eq!(errors("polite"), (polite.clone(), polite));
    let deaf = Some(
        "timed out after 5 s; it did not return within its 1 s grace and was cut off".to_owned(),
    );
    assert_eq!(errors("deaf"), (deaf.clone(), deaf));
}

#[tokio::test(start_paused = true)]
async fn an_aborted_run_says_which_grace_it_had() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .abort_grace(Duration::from_secs(2))
        .build()
        .unwrap();
    manager.add_service(
        "deaf",
        Service::new(every(60), |_ctx| async {
            sleep(Duration::from_secs(3600)).await;
        }),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(61)).await;
    manager
        .stop_service("deaf", scheduler::StopMode::Abort)
        .await
        .unwrap();
    let history = manager.history("deaf").unwrap();
    assert_eq!(history[0].outcome.as_deref(), Some("aborted"));
    assert_eq!(
        history[0].error.as_deref(),
        Some("aborted by a stop; it did not return within its 2 s grace and was cut off")
    );
}

#[tokio::test(start_paused = true)]
async fn failed_runs_are_retried_as_attempts_of_the_same_tick_with_backoff() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let (sink, clock) = (log.clone(), TokioClock::starting_at(t0()));
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    manager.add_service(
        "flaky",
        Service::new(every(60), move |ctx| {
            sink.lock()
                .unwrap()
                .push((ctx.tick(), ctx.attempt(), clock.now()));
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                // The first tick fails twice, then succeeds; later ticks succeed.
                if n < 2 {
                    Err("not yet")
                } else {
                    Ok(())
                }
            }
        })
        .retries(3)
        .retry_backoff(Duration::from_secs(2), Duration::from_secs(30)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(125)).await;
    let log = log.lock().unwrap().clone();
    let attempts: Vec<_> = log
        .iter()
        .map(|(tick, attempt, _)| (*tick, *attempt))
        .collect();
    assert_eq!(
        attempts,
        [(secs(60), 1), (secs(60), 2), (secs(60), 3), (secs(120), 1)]
    );
    // Backoff: retry 1 within [1 s, 2 s) of the failure, retry 2 within [2 s, 4 s).
    let gap = |a: usize, b: usize| (log[b].2 - log[a].2).to_std().unwrap();
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(2)).contains(&gap(0, 1)),
        "{:?}",
        gap(0, 1)
    );
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(4)).contains(&gap(1, 2)),
        "{:?}",
        gap(1, 2)
    );
    let status = manager.service("flaky").unwrap();
    assert_eq!(
        (status.runs, status.failures, status.retries_dropped),
        (4, 2, 0)
    );
    // Every attempt is in the history with its own number, outcome and error, newest first.
    let history: Vec<_> = manager
        .history("flaky")
        .unwrap()
        .into_iter()
        .map(|run| (run.tick, run.attempt, run.outcome, run.error))
        .collect();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        history,
        [
            (secs(120), 1, some("ok"), None),
            (secs(60), 3, some("ok"), None),
            (secs(60), 2, some("failed"), some("not yet")),
            (secs(60), 1, some("failed"), some("not yet")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_next_tick_wins_over_a_retry_that_would_come_after_it() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let (sink, clock) = (log.clone(), TokioClock::starting_at(t0()));
    manager.add_service(
        "always-failing",
        Service::new(every(2), move |ctx| {
            sink.lock()
                .unwrap()
                .push((ctx.tick(), ctx.attempt(), clock.now()));
            async { Err::<(), _>("down") }
        })
        .retries(5)
        .retry_backoff(Duration::from_secs(10), Duration::from_secs(10)),
    );
    manager.start().unwrap();
    sleep(Duration::from_millis(10_500)).await;
    let attempts: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, a, _)| (*t, *a))
        .collect();
    assert_eq!(
        attempts,
        [
            (secs(2), 1),
            (secs(4), 1),
            (secs(6), 1),
            (secs(8), 1),
            (secs(10), 1)
        ]
    );
    let status = manager.service("always-failing").unwrap();
    assert_eq!((status.failures, status.retries_dropped), (5, 5));
}

async fn jittered_starts(seed: u64) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (sink, clock) = (log.clone(), TokioClock::starting_at(t0()));
    manager.add_service(
        "spread",
        Service::new(every(10), move |ctx| {
            sink.lock().unwrap().push((ctx.tick(), clock.now()));
            async {}
        })
        .jitter(Duration::from_secs(3))
        .jitter_seed(seed),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(104)).await;
    manager.stop().await;
    let log = log.lock().unwrap().clone();
    log
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_start_within_its_bound_and_keeps_ticks_on_the_grid() {
    let starts = jittered_starts(7).await;
    let ticks: Vec<_> = starts.iter().map(|(tick, _)| *tick).collect();
    assert_eq!(ticks, (1..=10).map(|k| secs(10 * k)).collect::<Vec<_>>());
    for (tick, start) in &starts {
        let delay = (*start - *tick).to_std().unwrap();
        assert!(delay < Duration::from_secs(3), "{tick}: {delay:?}");
    }
    assert!(
        starts
            .iter()
            .any(|(tick, start)| *start - *tick > TimeDelta::seconds(1)),
        "the delays are spread, not all zero: {starts:?}"
    );
    assert_eq!(
        starts,
        jittered_starts(7).await,
        "the same seed, the same delays"
    );
    assert_ne!(starts, jittered_starts(8).await);
}
