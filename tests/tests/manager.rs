//! The manager's behaviour under tokio's paused clock: every timing here is exact.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduler::{
    Clock, Error, Failure, Outcome, Schedule, Service, ServiceManager, ServiceState, StopMode,
    TokioClock,
};
use tokio::time::{advance, sleep};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn every(seconds: u64) -> Schedule {
    Schedule::every(Duration::from_secs(seconds)).unwrap()
}

fn manager() -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap()
}

type RunLog = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// A service that records the tick and the clock reading at each run start, and works `work` long.
fn recorder(schedule: Schedule, work: Duration) -> (Service, RunLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let clock = TokioClock::starting_at(t0());
    let service = Service::new(schedule, move |ctx| {
        sink.lock().unwrap().push((ctx.tick(), clock.now()));
        async move { sleep(work).await }
    });
    (service, log)
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::seconds(n)
}

#[tokio::test(start_paused = true)]
async fn fixed_period_fires_once_per_period_on_the_grid() {
    let manager = manager();
    let (service, log) = recorder(every(10), Duration::ZERO);
    manager.add_service("tick", service);
    manager.start().unwrap();
    sleep(Duration::from_millis(100_500)).await;
    let runs = log.lock().unwrap().clone();
    let expected: Vec<_> = (1..=10).map(|k| (secs(10 * k), secs(10 * k))).collect();
    assert_eq!(runs, expected);
    let status = manager.service("tick").unwrap();
    assert_eq!(status.runs, 10);
    assert_eq!(status.next_fire, Some(secs(110)));
    assert_eq!(status.state, ServiceState::Idle);
    assert_eq!(status.schedule, "every 10s");
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn on_start_runs_at_once_then_on_the_grid() {
    let manager = manager();
    let (service, log) = recorder(every(60), Duration::ZERO);
    manager.add_service("warm-up", service.on_start(true));
    manager.start().unwrap();
    sleep(Duration::from_secs(130)).await;
    let ticks: Vec<_> = log.lock().unwrap().iter().map(|(tick, _)| *tick).collect();
    assert_eq!(ticks, [secs(0), secs(60), secs(120)]);
}

#[tokio::test(start_paused = true)]
async fn cron_fires_on_wall_clock_instants() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(
            Utc.with_ymd_and_hms(2024, 1, 1, 8, 58, 30).unwrap(),
        ))
        .build()
        .unwrap();
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let sink = ticks.clone();
    let schedule = "*/30 9 * * *".parse().unwrap();
    manager.add_service(
        "report",
        Service::new(schedule, move |ctx| {
            sink.lock().unwrap().push(ctx.tick());
            async {}
        }),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(2 * 3600)).await;
    let at = |h, m| Utc.with_ymd_and_hms(2024, 1, 1, h, m, 0).unwrap();
    assert_eq!(*ticks.lock().unwrap(), [at(9, 0), at(9, 30)]);
}

#[tokio::test(start_paused = true)]
async fn a_long_run_skips_the_ticks_it_overlaps_and_stays_on_the_grid() {
    let manager = manager();
    // Runs take 25 s against a 10 s period: ticks 20 and 30 come while the run of tick 10 goes on.
    let (service, log) = recorder(every(10), Duration::from_secs(25));
    manager.add_service("slow", service);
    manager.start().unwrap();
    sleep(Duration::from_millis(90_500)).await;
    let runs = log.lock().unwrap().clone();
    // 10 runs until 35: 20, 30 skipped; 40 runs until 65: 50, 60 skipped; 70 runs until 95.
    assert_eq!(
        runs,
        [
            (secs(10), secs(10)),
            (secs(40), secs(40)),
            (secs(70), secs(70))
        ]
    );
    let status = manager.service("slow").unwrap();
    assert_eq!(status.skipped, 4);
    assert_eq!(status.runs, 2);
    assert_eq!(status.state, ServiceState::Running);
    assert_eq!(status.last_duration, Some(Duration::from_secs(25)));
}

#[tokio::test(start_paused = true)]
async fn no_drift_over_ten_thousand_periods() {
    let manager = manager();
    let runs = Arc::new(AtomicU64::new(0));
    let misplaced = Arc::new(AtomicU64::new(0));
    let (counter, off_grid) = (runs.clone(), misplaced.clone());
    let clock = TokioClock::starting_at(t0());
    // Each run takes a different time shorter than the period; the next tick must not move.
    manager.add_service(
        "steady",
        Service::new(
            Schedule::every(Duration::from_millis(1500)).unwrap(),
            move |ctx| {
                let k = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let on_grid = ctx.tick() == t0() + chrono::TimeDelta::milliseconds(1500 * k as i64);
                if !on_grid || clock.now() != ctx.tick() {
                    off_grid.fetch_add(1, Ordering::SeqCst);
                }
                async move { sleep(Duration::from_millis(k % 7 * 100)).await }
            },
        ),
    );
    manager.start().unwrap();
    sleep(Duration::from_millis(1500 * 10_000 + 700)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 10_000);
    assert_eq!(misplaced.load(Ordering::SeqCst), 0);
    assert_eq!(manager.service("steady").unwrap().skipped, 0);
}

#[tokio::test(start_paused = true)]
async fn the_pool_bounds_concurrent_runs() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .max_concurrent_jobs(2)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    for i in 0..5 {
        let (running, peak) = (running.clone(), peak.clone());
        manager.add_service(
            format!("worker-{i}"),
            Service::new(every(100), move |_ctx| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    sleep(Duration::from_secs(10)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            }),
        );
    }
    manager.start().unwrap();
    sleep(Duration::from_secs(105)).await;
    let states: Vec<_> = manager.services().into_iter().map(|s| s.state).collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ServiceState::Running)
            .count(),
        2
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ServiceState::WaitingForSlot)
            .count(),
        3
    );
    sleep(Duration::from_secs(30)).await;
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    let runs: u64 = manager.services().iter().map(|s| s.runs).sum();
    assert_eq!(runs, 5, "every waiting service ran once a slot freed up");
}

#[tokio::test(start_paused = true)]
async fn errors_and_panics_are_isolated_reported_and_the_schedule_goes_on() {
    let failures = Arc::new(Mutex::new(Vec::<Failure>::new()));
    let sink = failures.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .on_failure(move |failure| sink.lock().unwrap().push(failure.clone()))
        .build()
        .unwrap();
    manager.add_service(
        "erring",
        Service::new(every(10), |_ctx| async {
            Err::<(), _>(anyhow::anyhow!("disk full").context("writing the export"))
        }),
    );
    manager.add_service(
        "panicking",
        Service::new(every(10), |_ctx| async {
            let values: Vec<u8> = Vec::new();
            let _ = values[3];
        }),
    );
    manager.add_service(
        "blocking-panic",
        Service::blocking(every(10), |_ctx| {
            let words: Vec<&str> = Vec::new();
            let _ = words[0];
        }),
    );
    let (healthy, log) = recorder(every(10), Duration::ZERO);
    manager.add_service("healthy", healthy);
    manager.start().unwrap();
    sleep(Duration::from_millis(30_500)).await;

    for name in ["erring", "panicking", "blocking-panic"] {
        let status = manager.service(name).unwrap();
        assert_eq!((status.runs, status.failures), (3, 3), "{name}");
        assert_eq!(
            status.state,
            ServiceState::Idle,
            "{name} is still scheduled"
        );
    }
    assert_eq!(
        manager.service("erring").unwrap().last_outcome,
        Some(Outcome::Failed("writing the export: disk full".into()))
    );
    assert_eq!(
        manager.service("panicking").unwrap().last_outcome,
        Some(Outcome::Panicked(
            "index out of bounds: the len is 0 but the index is 3".into()
        ))
    );
    assert_eq!(log.lock().unwrap().len(), 3);
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 9);
    assert!(failures.iter().all(|f| f.tick <= secs(30)));
    assert!(failures.iter().any(|f| f.service == "blocking-panic"
        && f.outcome
            == Outcome::Panicked("index out of bounds: the len is 0 but the index is 0".into())));
}

#[tokio::test(start_paused = true)]
async fn stop_wait_lets_the_run_finish() {
    let manager = manager();
    let (service, log) = recorder(every(10), Duration::from_secs(30));
    manager.add_service("long", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(15)).await; // the run of tick 10 is in progress
    assert_eq!(
        manager.service("long").unwrap().state,
        ServiceState::Running
    );
    let before = tokio::time::Instant::now();
    manager.stop_service("long", StopMode::Wait).await.unwrap();
    assert_eq!(
        before.elapsed(),
        Duration::from_secs(25),
        "waited for the run"
    );
    let status = manager.service("long").unwrap();
    assert_eq!(status.state, ServiceState::Stopped);
    assert_eq!(status.last_outcome, Some(Outcome::Succeeded));
    assert_eq!(status.next_fire, None);
    sleep(Duration::from_secs(100)).await;
    assert_eq!(log.lock().unwrap().len(), 1, "nothing runs after stop");
}

#[tokio::test(start_paused = true)]
async fn stop_abort_cancels_the_run() {
    let manager = manager();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (cancel_flag, done_flag) = (saw_cancel.clone(), finished.clone());
    manager.add_service(
        "long",
        Service::new(every(10), move |ctx| {
            let (cancel_flag, done_flag) = (cancel_flag.clone(), done_flag.clone());
            async move {
                tokio::select! {
                    () = ctx.cancelled() => cancel_flag.store(true, Ordering::SeqCst),
                    () = sleep(Duration::from_secs(30)) => done_flag.store(true, Ordering::SeqCst),
                }
            }
        }),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(15)).await;
    let before = tokio::time::Instant::now();
    manager.stop_service("long", StopMode::Abort).await.unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO, "abort does not wait");
    let status = manager.service("long").unwrap();
    assert_eq!(status.state, ServiceState::Stopped);
    assert_eq!(status.last_outcome, Some(Outcome::Aborted));
    sleep(Duration::from_secs(60)).await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "the aborted run never completes"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_with_a_deadline_aborts_what_outlasts_it() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .stop_deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let (slow, _) = recorder(every(10), Duration::from_secs(60));
    let (quick, _) = recorder(every(10), Duration::from_secs(2));
    manager.add_service("slow", slow);
    manager.add_service("quick", quick);
    manager.start().unwrap();
    sleep(Duration::from_millis(10_500)).await;
    let before = tokio::time::Instant::now();
    manager.stop().await;
    assert_eq!(before.elapsed(), Duration::from_secs(5));
    assert_eq!(
        manager.service("quick").unwrap().last_outcome,
        Some(Outcome::Succeeded)
    );
    assert_eq!(
        manager.service("slow").unwrap().last_outcome,
        Some(Outcome::Aborted)
    );
    assert!(manager
        .services()
        .iter()
        .all(|s| s.state == ServiceState::Stopped));
}

#[tokio::test(start_paused = true)]
async fn reload_replaces_the_definition_with_no_stray_tick_and_no_overlap() {
    let manager = manager();
    let log = Arc::new(Mutex::new(
        Vec::<(&str, DateTime<Utc>, DateTime<Utc>)>::new(),
    ));
    let clock = TokioClock::starting_at(t0());
    let version = |label: &'static str, work: u64| {
        let (log, clock) = (log.clone(), clock);
        Service::new(every(10), move |_ctx| {
            let log = log.clone();
            async move {
                let start = clock.now();
                sleep(Duration::from_secs(work)).await;
                log.lock().unwrap().push((label, start, clock.now()));
            }
        })
    };
    manager.add_service("job", version("v1", 15));
    manager.start().unwrap();
    sleep(Duration::from_secs(12)).await; // v1's run of tick 10 is in progress until 25
    manager.add_service("job", version("v2", 1));
    sleep(Duration::from_millis(40_500)).await; // until 52.5
    let log = log.lock().unwrap().clone();
    // v2 is anchored at its own start (12): ticks 22 (v1 still running: skipped), 32, 42, 52.
    // v2's run of tick 52 is still in progress at 52.5, so it has not logged yet.
    assert_eq!(
        log,
        [
            ("v1", secs(10), secs(25)),
            ("v2", secs(32), secs(33)),
            ("v2", secs(42), secs(43)),
        ]
    );
    assert_eq!(manager.service("job").unwrap().skipped, 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_names_are_errors_and_stopped_services_restart() {
    let manager = manager();
    assert!(matches!(
        manager.stop_service("nope", StopMode::Wait).await,
        Err(Error::UnknownService(name)) if name == "nope"
    ));
    assert!(matches!(
        manager.restart_service("nope"),
        Err(Error::UnknownService(_))
    ));
    let (service, log) = recorder(every(10), Duration::ZERO);
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_millis(10_500)).await;
    manager.stop_service("svc", StopMode::Wait).await.unwrap();
    manager.stop_service("svc", StopMode::Abort).await.unwrap(); // idempotent
    sleep(Duration::from_secs(30)).await;
    assert_eq!(log.lock().unwrap().len(), 1);
    manager.restart_service("svc").unwrap(); // at 40.5: ticks at 50.5, 60.5, …
    sleep(Duration::from_secs(11)).await;
    assert_eq!(log.lock().unwrap().len(), 2, "restarted at its first tick");
    assert_eq!(manager.service("svc").unwrap().state, ServiceState::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_never_firing_schedule_finishes() {
    let manager = manager();
    manager.add_service(
        "feb-30",
        Service::new("0 0 30 2 *".parse().unwrap(), |_ctx| async {}),
    );
    assert_eq!(
        manager.service("feb-30").unwrap().state,
        ServiceState::NotStarted
    );
    manager.start().unwrap();
    advance(Duration::from_secs(1)).await;
    let status = manager.service("feb-30").unwrap();
    assert_eq!(status.state, ServiceState::Finished);
    assert_eq!(status.next_fire, None);
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let manager = ServiceManager::new();
    assert!(matches!(manager.start(), Err(Error::NoRuntime)));
    assert!(matches!(
        ServiceManager::builder().max_concurrent_jobs(0).build(),
        Err(Error::InvalidOption {
            option: "max_concurrent_jobs",
            ..
        })
    ));
}
