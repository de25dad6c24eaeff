//! Misfire and catch-up on the paused clock: each policy after a suspend and on a saturated pool,
//! catch-up after a restart (state file, coordinator history), and how pauses, stops and timeouts
//! interact with them. Every timing is exact.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::coordinator::InMemoryCoordinator;
use scheduler::{
    Clock, Error, Misfire, Outcome, RunEvent, Schedule, Service, ServiceManager, ServiceState,
    ServiceStatus, SkipReason, TokioClock, Trigger,
};
use tokio::time::{sleep, Instant};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
}

fn hms(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, h, m, s).unwrap()
}

fn every(seconds: u64) -> Schedule {
    Schedule::every(Duration::from_secs(seconds)).unwrap()
}

/// A wall clock that follows tokio's time plus an offset the test moves: a suspended machine (the
/// monotonic clock stood still, the wall clock did not) or an NTP step.
#[derive(Clone)]
struct JumpingClock {
    base: TokioClock,
    offset_ms: Arc<AtomicI64>,
}

impl Clock for JumpingClock {
    fn now(&self) -> DateTime<Utc> {
        self.base.now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// (tick, wall-clock start) of each run.
type Starts = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// A service that logs each run's tick and start on `clock`, and works for `work`.
fn logged(
    schedule: Schedule,
    clock: impl Clock + Clone,
    work: Duration,
    policy: Option<Misfire>,
) -> (Service, Starts) {
    let starts: Starts = Arc::default();
    let sink = starts.clone();
    let service = Service::new(schedule, move |ctx| {
        sink.lock().unwrap().push((ctx.tick(), clock.now()));
        async move { sleep(work).await }
    });
    let service = match policy {
        Some(policy) => service.misfire(policy),
        None => service,
    };
    (service, starts)
}

fn taken(starts: &Starts) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    starts.lock().unwrap().clone()
}

/// Every 10 minutes from 00:00; at 00:00:05.5 the machine sleeps for 3 hours. The dispatcher
/// re-reads the clock within a second (03:00:06): ticks 00:10 to 03:00 (18) are misfired.
async fn after_a_suspend(
    policy: Option<Misfire>,
    work: Duration,
) -> (ServiceStatus, Vec<(DateTime<Utc>, DateTime<Utc>)>) {
    let (status, starts, _) = after_a_suspend_with_events(policy, work).await;
    (status, starts)
}

/// As [`after_a_suspend`], with the skip events the hook received.
async fn after_a_suspend_with_events(
    policy: Option<Misfire>,
    work: Duration,
) -> (
    ServiceStatus,
    Vec<(DateTime<Utc>, DateTime<Utc>)>,
    Vec<(SkipReason, u64)>,
) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = JumpingClock {
        base: TokioClock::starting_at(t0()),
        offset_ms: offset.clone(),
    };
    let skips = Arc::new(Mutex::new(Vec::new()));
    let sink = skips.clone();
    let manager = ServiceManager::builder()
        .clock(clock.clone())
        .on_event(move |event| {
            if let RunEvent::Skipped { reason, ticks, .. } = event {
                sink.lock().unwrap().push((*reason, *ticks));
            }
        })
        .build()
        .unwrap();
    let (service, starts) = logged(every(600), clock, work, policy);
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_millis(5_500)).await;
    offset.store(3 * 3600 * 1000, Ordering::SeqCst);
    sleep(Duration::from_secs(11 * 60)).await; // the clock reads 03:11:05.5
    let status = manager.service("svc").unwrap();
    manager.stop().await;
    let skips = skips.lock().unwrap().clone();
    (status, taken(&starts), skips)
}

#[tokio::test(start_paused = true)]
async fn misfired_ticks_reach_the_event_hook_as_skips_with_their_reason() {
    let (_, _, skips) =
        after_a_suspend_with_events(Some(Misfire::All { limit: 5 }), Duration::ZERO).await;
    assert_eq!(skips, [(SkipReason::Misfire, 13)]);
    let (_, _, skips) = after_a_suspend_with_events(Some(Misfire::Skip), Duration::ZERO).await;
    assert_eq!(skips, [(SkipReason::Misfire, 18)]);
}

#[tokio::test(start_paused = true)]
async fn after_a_3_hour_suspend_coalesce_the_default_runs_the_latest_tick_once() {
    for policy in [None, Some(Misfire::Coalesce)] {
        let (status, starts) = after_a_suspend(policy, Duration::from_secs(2)).await;
        assert_eq!(
            starts,
            [(hms(3, 0, 0), hms(3, 0, 6)), (hms(3, 10, 0), hms(3, 10, 0))],
            "{policy:?}"
        );
        assert_eq!(
            (status.runs, status.skipped_misfire, status.skipped),
            (2, 17, 0)
        );
        assert_eq!(status.next_fire, Some(hms(3, 20, 0)), "back on the grid");
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_3_hour_suspend_skip_runs_nothing_until_the_next_tick() {
    let (status, starts) = after_a_suspend(Some(Misfire::Skip), Duration::from_secs(2)).await;
    assert_eq!(starts, [(hms(3, 10, 0), hms(3, 10, 0))]);
    assert_eq!((status.runs, status.skipped_misfire), (1, 18));
}

#[tokio::test(start_paused = true)]
async fn after_a_3_hour_suspend_all_runs_the_latest_ticks_one_after_another() {
    let (status, starts) =
        after_a_suspend(Some(Misfire::All { limit: 5 }), Duration::from_secs(2)).await;
    // The most recent 5 of the 18, each with its own tick, 2 s apart (never overlapping), then
    // the grid again.
    assert_eq!(
        starts,
        [
            (hms(2, 20, 0), hms(3, 0, 6)),
            (hms(2, 30, 0), hms(3, 0, 8)),
            (hms(2, 40, 0), hms(3, 0, 10)),
            (hms(2, 50, 0), hms(3, 0, 12)),
            (hms(3, 0, 0), hms(3, 0, 14)),
            (hms(3, 10, 0), hms(3, 10, 0)),
        ]
    );
    assert_eq!(
        (status.runs, status.skipped_misfire, status.skipped),
        (6, 13, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn all_with_a_limit_above_the_backlog_runs_every_missed_tick_and_zero_runs_none() {
    let (status, starts) = after_a_suspend(Some(Misfire::All { limit: 100 }), Duration::ZERO).await;
    let ticks: Vec<_> = starts.iter().map(|(tick, _)| *tick).collect();
    let expected: Vec<_> = (1..=19).map(|k| secs(600 * k)).collect();
    assert_eq!(ticks, expected, "00:10 to 03:00, then 03:10");
    assert_eq!(status.skipped_misfire, 0);

    let (status, starts) = after_a_suspend(Some(Misfire::All { limit: 0 }), Duration::ZERO).await;
    assert_eq!(starts, [(hms(3, 10, 0), hms(3, 10, 0))]);
    assert_eq!(status.skipped_misfire, 18);
}

/// `Skip` with `grace`: at 00:00:05.5 the wall clock jumps 5.5 s; the dispatcher re-reads it at
/// 00:00:11.5, when tick 10 is 1.5 s late.
async fn a_short_jump(grace: Option<Duration>) -> (u64, Vec<(DateTime<Utc>, DateTime<Utc>)>) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = JumpingClock {
        base: TokioClock::starting_at(t0()),
        offset_ms: offset.clone(),
    };
    let manager = ServiceManager::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let (service, starts) = logged(every(10), clock, Duration::ZERO, Some(Misfire::Skip));
    let service = match grace {
        Some(grace) => service.misfire_grace(grace),
        None => service,
    };
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_millis(5_500)).await;
    offset.store(5_500, Ordering::SeqCst);
    sleep(Duration::from_secs(10)).await; // the clock reads 21
    let skipped = manager.service("svc").unwrap().skipped_misfire;
    (skipped, taken(&starts))
}

#[tokio::test(start_paused = true)]
async fn the_grace_decides_whether_a_late_tick_is_misfired() {
    let late = secs(11) + TimeDelta::milliseconds(500);
    let (skipped, starts) = a_short_jump(Some(Duration::from_secs(3))).await;
    assert_eq!(
        (skipped, starts),
        (0, vec![(secs(10), late), (secs(20), secs(20))]),
        "1.5 s late, within a 3 s grace: it runs"
    );
    let (skipped, starts) = a_short_jump(None).await;
    assert_eq!(
        (skipped, starts),
        (1, vec![(secs(20), secs(20))]),
        "beyond the default 1 s grace: skipped"
    );
}

/// One worker, taken from 0 to 25 by `hog`'s start run; `svc` (every 10 s) waits for it from its
/// tick 10 on, and gets it at 25 — with ticks 10 and 20 due.
async fn on_a_saturated_pool(
    policy: Option<Misfire>,
    grace: Option<Duration>,
) -> (ServiceStatus, Vec<(DateTime<Utc>, DateTime<Utc>)>) {
    let clock = TokioClock::starting_at(t0());
    let manager = ServiceManager::builder()
        .clock(clock)
        .max_concurrent_jobs(1)
        .build()
        .unwrap();
    manager.add_service(
        "hog",
        Service::new(every(1000), |_ctx| sleep(Duration::from_secs(25))).on_start(true),
    );
    let (service, starts) = logged(every(10), clock, Duration::ZERO, policy);
    let service = match grace {
        Some(grace) => service.misfire_grace(grace),
        None => service,
    };
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(12)).await;
    assert_eq!(
        manager.service("svc").unwrap().state,
        ServiceState::WaitingForSlot
    );
    sleep(Duration::from_millis(23_500)).await; // 35.5
    let status = manager.service("svc").unwrap();
    (status, taken(&starts))
}

#[tokio::test(start_paused = true)]
async fn a_tick_waiting_for_a_slot_beyond_its_grace_is_misfired() {
    // Coalesce (the default): the worker runs the latest due tick, 20; tick 10 is counted.
    let (status, starts) = on_a_saturated_pool(None, None).await;
    assert_eq!(starts, [(secs(20), secs(25)), (secs(30), secs(30))]);
    assert_eq!((status.skipped_misfire, status.skipped), (1, 0));

    // Skip: tick 20 is 5 s late too; nothing runs until 30.
    let (status, starts) = on_a_saturated_pool(Some(Misfire::Skip), None).await;
    assert_eq!(starts, [(secs(30), secs(30))]);
    assert_eq!(status.skipped_misfire, 2);

    // All: 10 and 20, one after the other, then 30.
    let (status, starts) = on_a_saturated_pool(Some(Misfire::All { limit: 10 }), None).await;
    assert_eq!(
        starts,
        [
            (secs(10), secs(25)),
            (secs(20), secs(25)),
            (secs(30), secs(30))
        ]
    );
    assert_eq!(status.skipped_misfire, 0);

    // A grace longer than the wait: tick 10 runs late, and tick 20, passed meanwhile, is an
    // ordinary skip (the service was busy with tick 10).
    let (status, starts) = on_a_saturated_pool(None, Some(Duration::from_secs(20))).await;
    assert_eq!(starts, [(secs(10), secs(25)), (secs(30), secs(30))]);
    assert_eq!((status.skipped_misfire, status.skipped), (0, 1));
}

fn state_path(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "scheduler-misfire-{}-{test}.state",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs `report` (every hour, `policy`) and `plain` (every hour, no policy) from 00:00 until
/// 01:00:00.5 with the state file at `path`, then stops.
async fn first_life(path: &PathBuf, policy: Misfire) {
    let clock = TokioClock::starting_at(t0());
    let manager = ServiceManager::builder()
        .clock(clock)
        .state_file(path)
        .build()
        .unwrap();
    manager.add_service(
        "report",
        logged(every(3600), clock, Duration::ZERO, Some(policy)).0,
    );
    manager.add_service("plain", logged(every(3600), clock, Duration::ZERO, None).0);
    manager.start().unwrap();
    sleep(Duration::from_millis(3_600_500)).await;
    manager.stop().await;
}

/// The process comes back at 05:30 with the same state file.
async fn second_life(path: &PathBuf, policy: Misfire) -> (ServiceManager, Starts, Starts) {
    let clock = TokioClock::starting_at(hms(5, 30, 0));
    let manager = ServiceManager::builder()
        .clock(clock)
        .state_file(path)
        .build()
        .unwrap();
    let (report, report_starts) = logged(every(3600), clock, Duration::ZERO, Some(policy));
    let (plain, plain_starts) = logged(every(3600), clock, Duration::ZERO, None);
    manager.add_service("report", report);
    manager.add_service("plain", plain);
    manager.start().unwrap();
    sleep(Duration::from_secs(1)).await;
    (manager, report_starts, plain_starts)
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_state_file_lets_coalesce_catch_up_once() {
    let path = state_path("coalesce");
    first_life(&path, Misfire::Coalesce).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .any(|line| line == "2024-01-01T01:00:00Z\treport"),
        "{text}"
    );
    assert!(
        !text.contains("plain"),
        "only services that ask for catch-up: {text}"
    );

    let (manager, report, plain) = second_life(&path, Misfire::Coalesce).await;
    // 02:00 to 05:00 were missed while down: one run for them, on the grid of the last run.
    assert_eq!(taken(&report), [(hms(5, 0, 0), hms(5, 30, 0))]);
    let status = manager.service("report").unwrap();
    assert_eq!(
        (status.skipped_misfire, status.next_fire),
        (3, Some(hms(6, 0, 0)))
    );
    // No policy set: no catch-up, and the period starts afresh.
    assert!(taken(&plain).is_empty());
    assert_eq!(
        manager.service("plain").unwrap().next_fire,
        Some(hms(6, 30, 0))
    );
    manager.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("2024-01-01T05:00:00Z\treport"), "{text}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_all_catches_up_its_limit_from_the_state_file() {
    let path = state_path("all");
    first_life(&path, Misfire::All { limit: 2 }).await;
    let (manager, report, _) = second_life(&path, Misfire::All { limit: 2 }).await;
    assert_eq!(
        taken(&report),
        [(hms(4, 0, 0), hms(5, 30, 0)), (hms(5, 0, 0), hms(5, 30, 0))]
    );
    assert_eq!(manager.service("report").unwrap().skipped_misfire, 2);
    manager.stop().await;
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_the_file_and_the_line() {
    let path = state_path("corrupt");
    std::fs::write(
        &path,
        "# state\n2024-01-01T01:00:00Z\treport\nnot a tick\treport\n",
    )
    .unwrap();
    let Err(error) = ServiceManager::builder().state_file(&path).build() else {
        panic!("a corrupt state file must not build");
    };
    assert!(matches!(error, Error::StateFile { .. }), "{error:#?}");
    let message = error.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
    assert!(message.contains("line 3"), "{message}");
    let _ = std::fs::remove_file(&path);
    // A state file that does not exist yet is the first start...
    assert!(ServiceManager::builder().state_file(&path).build().is_ok());
    // ... unless it could never be written.
    let nowhere = path.join("no-such-directory").join("state");
    let Err(error) = ServiceManager::builder().state_file(&nowhere).build() else {
        panic!("a state file in a missing directory must not build");
    };
    assert!(error.to_string().contains("does not exist"), "{error}");
}

/// Replica `a` runs from 00:00 to 00:20:00.5 (ticks 00:10, 00:20); replica `b` starts at 01:05.
async fn catch_up_from_the_cluster(policy: Misfire) -> (InMemoryCoordinator, ServiceStatus) {
    let cluster = InMemoryCoordinator::new();
    let clock = TokioClock::starting_at(t0());
    let a = ServiceManager::builder()
        .clock(clock)
        .coordinator(cluster.replica("a"))
        .build()
        .unwrap();
    a.add_service(
        "svc",
        logged(every(600), clock, Duration::ZERO, Some(policy)).0,
    );
    a.start().unwrap();
    sleep(Duration::from_millis(1_200_500)).await;
    a.stop().await;
    let clock = TokioClock::starting_at(hms(1, 5, 0));
    let b = ServiceManager::builder()
        .clock(clock)
        .coordinator(cluster.replica("b"))
        .build()
        .unwrap();
    b.add_service(
        "svc",
        logged(every(600), clock, Duration::ZERO, Some(policy)).0,
    );
    b.start().unwrap();
    sleep(Duration::from_secs(1)).await;
    let status = b.service("svc").unwrap();
    b.stop().await;
    (cluster, status)
}

fn on(replica: &str, tick: DateTime<Utc>) -> (String, DateTime<Utc>, String) {
    ("svc".to_owned(), tick, replica.to_owned())
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_coordinators_history_drives_the_catch_up() {
    let (cluster, status) = catch_up_from_the_cluster(Misfire::Coalesce).await;
    assert_eq!(
        cluster.runs(),
        [
            on("a", hms(0, 10, 0)),
            on("a", hms(0, 20, 0)),
            on("b", hms(1, 0, 0))
        ]
    );
    assert_eq!(status.skipped_misfire, 3, "00:30, 00:40, 00:50");

    let (cluster, status) = catch_up_from_the_cluster(Misfire::All { limit: 3 }).await;
    assert_eq!(
        cluster.runs(),
        [
            on("a", hms(0, 10, 0)),
            on("a", hms(0, 20, 0)),
            on("b", hms(0, 40, 0)),
            on("b", hms(0, 50, 0)),
            on("b", hms(1, 0, 0))
        ]
    );
    assert_eq!(status.skipped_misfire, 1, "00:30");
}

#[tokio::test(start_paused = true)]
async fn paused_time_is_not_misfire_and_resume_does_not_catch_up() {
    let clock = TokioClock::starting_at(t0());
    let manager = ServiceManager::builder().clock(clock).build().unwrap();
    let (service, starts) = logged(
        every(10),
        clock,
        Duration::ZERO,
        Some(Misfire::All { limit: 10 }),
    );
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    manager.pause("svc").unwrap();
    sleep(Duration::from_secs(42)).await; // 47: ticks 10 to 40 came while paused
    manager.resume("svc").unwrap();
    sleep(Duration::from_millis(3_500)).await; // 50.5
    assert_eq!(taken(&starts), [(secs(50), secs(50))]);
    let status = manager.service("svc").unwrap();
    assert_eq!((status.skipped_paused, status.skipped_misfire), (4, 0));
}

#[tokio::test(start_paused = true)]
async fn a_pause_during_a_run_takes_effect_when_it_ends_and_is_not_misfire() {
    let clock = TokioClock::starting_at(t0());
    let manager = ServiceManager::builder().clock(clock).build().unwrap();
    let (service, starts) = logged(every(10), clock, Duration::from_secs(15), None);
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(12)).await; // tick 10 runs until 25
    manager.pause("svc").unwrap();
    assert_eq!(manager.service("svc").unwrap().state, ServiceState::Running);
    sleep(Duration::from_secs(14)).await; // 26
    let status = manager.service("svc").unwrap();
    assert_eq!((status.state, status.runs), (ServiceState::Paused, 1));
    sleep(Duration::from_secs(21)).await; // 47
    manager.resume("svc").unwrap();
    let status = manager.service("svc").unwrap();
    assert_eq!(
        (
            status.skipped_paused,
            status.skipped_misfire,
            status.next_fire
        ),
        (3, 0, Some(secs(50)))
    );
    sleep(Duration::from_secs(4)).await;
    assert_eq!(taken(&starts), [(secs(10), secs(10)), (secs(50), secs(50))]);
}

/// A job that ignores its cancellation, with a 5 s timeout and 2 retries, run at 10; the manager's
/// abort grace is 1 s.
fn deaf_with_a_timeout() -> (ServiceManager, Arc<Mutex<Vec<Outcome>>>) {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .abort_grace(Duration::from_secs(1))
        .on_failure(move |failure| sink.lock().unwrap().push(failure.outcome.clone()))
        .build()
        .unwrap();
    manager.add_service(
        "deaf",
        Service::new(every(10), |_ctx| sleep(Duration::from_secs(3600)))
            .timeout(Duration::from_secs(5))
            .retries(2),
    );
    (manager, failures)
}

#[tokio::test(start_paused = true)]
async fn a_timeout_during_a_stop_ends_the_run_as_timed_out_and_the_stop_returns_then() {
    let (manager, failures) = deaf_with_a_timeout();
    manager.start().unwrap();
    sleep(Duration::from_secs(12)).await;
    let began = Instant::now();
    manager.stop().await; // waits: the timeout fires at 15, the grace ends at 16
    assert_eq!(began.elapsed(), Duration::from_secs(4));
    let status = manager.service("deaf").unwrap();
    assert_eq!(status.state, ServiceState::Stopped, "no retry after a stop");
    assert_eq!(status.last_outcome, Some(Outcome::TimedOut));
    assert_eq!((status.runs, status.failures), (1, 1));
    assert_eq!(*failures.lock().unwrap(), [Outcome::TimedOut]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_deadline_before_the_timeout_aborts_the_run() {
    let (manager, failures) = deaf_with_a_timeout();
    manager.start().unwrap();
    sleep(Duration::from_secs(12)).await;
    let began = Instant::now();
    manager.stop_within(Duration::from_secs(2)).await; // cancelled at 13, dropped at 14
    assert_eq!(began.elapsed(), Duration::from_secs(2));
    let status = manager.service("deaf").unwrap();
    assert_eq!(status.last_outcome, Some(Outcome::Aborted));
    assert_eq!((status.runs, status.failures), (1, 0));
    assert!(
        failures.lock().unwrap().is_empty(),
        "an abort is not a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocking_job_that_ignores_its_timeout_is_timed_out_everywhere() {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .abort_grace(Duration::from_secs(1))
        .on_failure(move |failure| sink.lock().unwrap().push(failure.outcome.clone()))
        .build()
        .unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let running = Arc::new(AtomicBool::new(false));
    let flag = running.clone();
    manager.add_service(
        "stubborn",
        Service::blocking(every(60), move |_ctx| {
            flag.store(true, Ordering::SeqCst);
            // Ignores its cancellation; returns only when the test says so.
            let _ = wait.lock().unwrap().recv();
            flag.store(false, Ordering::SeqCst);
        })
        .timeout(Duration::from_secs(5)),
    );
    manager.start().unwrap();
    // tokio's paused clock does not advance by itself while a blocking task runs: from the run's
    // start on, the test moves time with `advance`.
    sleep(Duration::from_millis(59_900)).await;
    while !running.load(Ordering::SeqCst) {
        tokio::time::advance(Duration::from_millis(10)).await;
        std::thread::sleep(Duration::from_millis(1)); // the thread starts in real time
    }
    for _ in 0..70 {
        tokio::time::advance(Duration::from_millis(100)).await; // timed out at 65, abandoned at 66
    }
    let status = manager.service("stubborn").unwrap();
    assert_eq!(status.last_outcome, Some(Outcome::TimedOut));
    assert_eq!((status.runs, status.failures), (1, 1));
    assert_eq!(
        *failures.lock().unwrap(),
        [Outcome::TimedOut],
        "the hook hears of it when the run is given up on, not only when its thread returns"
    );
    release.send(()).unwrap();
    while running.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1)); // the thread returns in real time
    }
    sleep(Duration::from_secs(1)).await;
    let status = manager.service("stubborn").unwrap();
    assert_eq!(status.last_outcome, Some(Outcome::TimedOut));
    assert_eq!((status.runs, status.failures), (1, 1), "counted once");
    assert_eq!(
        *failures.lock().unwrap(),
        [Outcome::TimedOut],
        "reported once"
    );
    let history = manager.history("stubborn").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome.as_deref(), Some("timed_out"));
}

#[tokio::test(start_paused = true)]
async fn run_now_while_a_retry_waits_replaces_it_and_counts_it_dropped() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let calls = Arc::new(AtomicU32::new(0));
    manager.add_service(
        "flaky",
        Service::new(every(60), move |ctx| {
            sink.lock()
                .unwrap()
                .push((ctx.tick(), ctx.attempt(), ctx.trigger()));
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err("first call fails")
                } else {
                    Ok(())
                }
            }
        })
        .retries(3)
        .retry_backoff(Duration::from_secs(10), Duration::from_secs(10)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(61)).await; // tick 60 failed; its retry waits for [65, 70)
    assert_eq!(manager.service("flaky").unwrap().retries_dropped, 0);
    manager.run_now("flaky").unwrap();
    sleep(Duration::from_secs(60)).await; // 121
    assert_eq!(
        *log.lock().unwrap(),
        [
            (secs(60), 1, Trigger::Schedule),
            (secs(61), 1, Trigger::Manual),
            (secs(120), 1, Trigger::Schedule),
        ],
        "the retry of tick 60 never runs"
    );
    let status = manager.service("flaky").unwrap();
    assert_eq!((status.retries_dropped, status.runs), (1, 3));
}

/// Every 10 s, coordinated; the coordinator is unreachable from 5 to 25. Returns
/// (`skipped_late`, `skipped_misfire`) and the runs.
async fn through_an_outage(
    policy: Option<Misfire>,
) -> ((u64, u64), Vec<(DateTime<Utc>, DateTime<Utc>)>) {
    let cluster = InMemoryCoordinator::new();
    let clock = TokioClock::starting_at(t0());
    let manager = ServiceManager::builder()
        .clock(clock)
        .coordinator(cluster.replica("a"))
        .build()
        .unwrap();
    let (service, starts) = logged(every(10), clock, Duration::ZERO, policy);
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    cluster.set_available(false);
    sleep(Duration::from_secs(20)).await;
    cluster.set_available(true);
    sleep(Duration::from_millis(10_500)).await; // 35.5
    let status = manager.service("svc").unwrap();
    (
        (status.skipped_late, status.skipped_misfire),
        taken(&starts),
    )
}

#[tokio::test(start_paused = true)]
async fn a_tick_the_coordinator_could_not_grant_in_time_is_skipped_as_late() {
    // Coalesce: each claim is retried (0.5 s, 1 s, 2 s, ...) until the next tick is due: tick 10
    // is given up at 17.5, tick 20 is granted at 27.5, before tick 30, and runs then.
    let late = secs(27) + TimeDelta::milliseconds(500);
    let (skipped, starts) = through_an_outage(None).await;
    assert_eq!(
        (skipped, starts),
        ((1, 0), vec![(secs(20), late), (secs(30), secs(30))])
    );
    // Skip: a claim is given up once its tick cannot start within the grace.
    let (skipped, starts) = through_an_outage(Some(Misfire::Skip)).await;
    assert_eq!((skipped, starts), ((2, 0), vec![(secs(30), secs(30))]));
}

#[tokio::test(start_paused = true)]
async fn a_retry_held_up_by_a_suspend_past_the_next_tick_is_dropped_for_the_misfired_ticks() {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = JumpingClock {
        base: TokioClock::starting_at(t0()),
        offset_ms: offset.clone(),
    };
    let manager = ServiceManager::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (sink, c) = (log.clone(), clock.clone());
    let calls = Arc::new(AtomicU32::new(0));
    manager.add_service(
        "flaky",
        Service::new(every(60), move |ctx| {
            sink.lock()
                .unwrap()
                .push((ctx.tick(), ctx.attempt(), c.now()));
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err("first call fails")
                } else {
                    Ok(())
                }
            }
        })
        .retries(3)
        .retry_backoff(Duration::from_secs(10), Duration::from_secs(10)),
    );
    manager.start().unwrap();
    sleep(Duration::from_millis(61_500)).await; // tick 60 failed; its retry waits for [65, 70)
    offset.store(3600 * 1000, Ordering::SeqCst); // suspended for an hour
    sleep(Duration::from_secs(1)).await; // the dispatcher sees 01:01:02
    assert_eq!(
        *log.lock().unwrap(),
        [(secs(60), 1, secs(60)), (hms(1, 1, 0), 1, hms(1, 1, 2))],
        "the retry of tick 60 gives way to one run for ticks 120 to 01:01:00"
    );
    let status = manager.service("flaky").unwrap();
    assert_eq!((status.retries_dropped, status.skipped_misfire), (1, 59));
}

#[tokio::test(start_paused = true)]
async fn a_service_added_to_a_started_manager_catches_up_too() {
    let path = state_path("added");
    first_life(&path, Misfire::Coalesce).await;
    let clock = TokioClock::starting_at(hms(5, 30, 0));
    let manager = ServiceManager::builder()
        .clock(clock)
        .state_file(&path)
        .build()
        .unwrap();
    manager.start().unwrap();
    let (report, starts) = logged(every(3600), clock, Duration::ZERO, Some(Misfire::Coalesce));
    manager.add_service("report", report);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(taken(&starts), [(hms(5, 0, 0), hms(5, 30, 0))]);
    // A reload is not a restart: nothing is caught up again.
    let (again, starts) = logged(every(3600), clock, Duration::ZERO, Some(Misfire::Coalesce));
    manager.add_service("report", again);
    sleep(Duration::from_secs(1)).await;
    assert!(taken(&starts).is_empty());
    manager.stop().await;
    let _ = std::fs::remove_file(&path);
}

/// Every 10 s with `All { limit: 10 }`, each run taking `work`; at 5.5 the machine sleeps for
/// 31 s, and the dispatcher re-reads the clock at 6, when it reads 37: ticks 10, 20 and 30 are
/// misfired, and caught up one after another. Returns the status and the runs at 95.
async fn a_catch_up_of_runs_taking(
    work: Duration,
) -> (ServiceStatus, Vec<(DateTime<Utc>, DateTime<Utc>)>) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = JumpingClock {
        base: TokioClock::starting_at(t0()),
        offset_ms: offset.clone(),
    };
    let manager = ServiceManager::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let (service, starts) = logged(every(10), clock, work, Some(Misfire::All { limit: 10 }));
    manager.add_service("svc", service);
    manager.start().unwrap();
    sleep(Duration::from_millis(5_500)).await;
    offset.store(31_000, Ordering::SeqCst);
    sleep(Duration::from_millis(58_500)).await; // the clock reads 95
    let status = manager.service("svc").unwrap();
    manager.stop().await;
    (status, taken(&starts))
}

#[tokio::test(start_paused = true)]
async fn the_last_tick_of_a_catch_up_does_not_start_another_catch_up() {
    // 5 s runs: 10, 20 and 30 from 37, 5 s apart; 40 and 50, due while the catch-up ran, are
    // skipped as the service was busy, and the grid goes on at 60.
    let (status, starts) = a_catch_up_of_runs_taking(Duration::from_secs(5)).await;
    assert_eq!(
        starts,
        [
            (secs(10), secs(37)),
            (secs(20), secs(42)),
            (secs(30), secs(47)),
            (secs(60), secs(60)),
            (secs(70), secs(70)),
            (secs(80), secs(80)),
            (secs(90), secs(90)),
        ]
    );
    assert_eq!((status.skipped, status.skipped_misfire), (2, 0));

    // Runs longer than the period: the catch-up still ends with tick 30 (61 to 73); 40 to 70 are
    // skipped, 80 runs on the grid (to 92), 90 is skipped during it, and 100 is next.
    let (status, starts) = a_catch_up_of_runs_taking(Duration::from_secs(12)).await;
    assert_eq!(
        starts,
        [
            (secs(10), secs(37)),
            (secs(20), secs(49)),
            (secs(30), secs(61)),
            (secs(80), secs(80)),
        ]
    );
    assert_eq!(
        (status.skipped, status.skipped_misfire, status.next_fire),
        (5, 0, Some(secs(100)))
    );
}

/// The skip events a hook received: (reason, ticks).
type Skips = Arc<Mutex<Vec<(SkipReason, u64)>>>;

/// `flaky` (every 60 s) fails its first run, tick 60, and retries after 10 s. With `hog`, on a
/// single worker, busy from 62 to 92, the retry (due at 70) waits for the worker instead of for
/// its backoff (in [65, 70)). Returns the manager and the skip events the hook receives.
fn a_failed_tick_with_a_retry(hog: bool) -> (ServiceManager, Skips) {
    let skips = Arc::new(Mutex::new(Vec::new()));
    let sink = skips.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .max_concurrent_jobs(1)
        .on_event(move |event| {
            if let RunEvent::Skipped { reason, ticks, .. } = event {
                sink.lock().unwrap().push((*reason, *ticks));
            }
        })
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    manager.add_service(
        "flaky",
        Service::new(every(60), move |_ctx| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err("first call fails")
                } else {
                    Ok(())
                }
            }
        })
        .retries(3)
        .retry_backoff(Duration::from_secs(10), Duration::from_secs(10)),
    );
    if hog {
        manager.add_service(
            "hog",
            Service::new(every(62), |_ctx| sleep(Duration::from_secs(30))),
        );
    }
    (manager, skips)
}

#[tokio::test(start_paused = true)]
async fn pausing_a_pending_retry_drops_it_and_the_tick_that_ran_is_not_skipped() {
    for hog in [false, true] {
        let (manager, skips) = a_failed_tick_with_a_retry(hog);
        manager.start().unwrap();
        // Paused while the retry waits: for its backoff (62), or for the worker (80).
        let (pause_at, waiting) = if hog {
            (80, ServiceState::WaitingForSlot)
        } else {
            (62, ServiceState::Idle)
        };
        sleep(Duration::from_secs(pause_at)).await;
        let status = manager.service("flaky").unwrap();
        assert_eq!((status.state, status.runs), (waiting, 1), "hog: {hog}");
        manager.pause("flaky").unwrap();
        sleep(Duration::from_secs(100 - pause_at)).await;
        manager.resume("flaky").unwrap();
        let status = manager.service("flaky").unwrap();
        assert_eq!(
            (
                status.skipped_paused,
                status.retries_dropped,
                status.next_fire
            ),
            (0, 1, Some(secs(120))),
            "hog: {hog}: tick 60 ran, and its retry is dropped"
        );
        assert!(
            !skips
                .lock()
                .unwrap()
                .iter()
                .any(|(reason, _)| *reason == SkipReason::Paused),
            "hog: {hog}: {:?}",
            skips.lock().unwrap()
        );
        assert!(
            skips
                .lock()
                .unwrap()
                .iter()
                .any(|(reason, _)| *reason == SkipReason::RetryDropped),
            "hog: {hog}: the dropped retry is reported: {:?}",
            skips.lock().unwrap()
        );
        sleep(Duration::from_secs(21)).await; // 121
        let status = manager.service("flaky").unwrap();
        assert_eq!(
            (status.runs, status.failures),
            (2, 1),
            "hog: {hog}: tick 120 ran"
        );
        manager.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_coordinator_the_state_file_is_neither_read_nor_written() {
    let cluster = InMemoryCoordinator::new();
    let path = state_path("coordinated");
    std::fs::write(&path, "not a tick\treport\n").unwrap();
    assert!(
        ServiceManager::builder()
            .coordinator(cluster.replica("a"))
            .state_file(&path)
            .build()
            .is_ok(),
        "the coordinator's history is the memory: a corrupt file is not read"
    );
    let nowhere = path.join("no-such-directory").join("state");
    assert!(ServiceManager::builder()
        .coordinator(cluster.replica("a"))
        .state_file(&nowhere)
        .build()
        .is_ok());

    // A valid file stays as it was, though a catch-up service runs.
    let valid = "2024-01-01T00:00:00Z\tother\n";
    std::fs::write(&path, valid).unwrap();
    let clock = TokioClock::starting_at(t0());
    let manager = ServiceManager::builder()
        .clock(clock)
        .coordinator(cluster.replica("a"))
        .state_file(&path)
        .build()
        .unwrap();
    let (report, starts) = logged(every(10), clock, Duration::ZERO, Some(Misfire::Coalesce));
    manager.add_service("report", report);
    manager.start().unwrap();
    sleep(Duration::from_millis(20_500)).await;
    manager.stop().await;
    assert_eq!(taken(&starts), [(secs(10), secs(10)), (secs(20), secs(20))]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), valid);
    let _ = std::fs::remove_file(&path);
}
