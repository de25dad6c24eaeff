//! The runtime at its edges: reloads, concurrent and self stops, aborts, pool ownership, clock jumps,
//! pause, resume and run-now. Every timing is exact, on tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::{
    Clock, Error, Outcome, Schedule, Service, ServiceManager, ServiceState, StopMode, TokioClock,
    Trigger,
};
use tokio::time::{sleep, Instant};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
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

/// A service whose runs take `work`, counting starts and ends.
fn worker(schedule: Schedule, work: Duration) -> (Service, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (s, e) = (started.clone(), ended.clone());
    let service = Service::new(schedule, move |_ctx| {
        s.fetch_add(1, Ordering::SeqCst);
        let e = e.clone();
        async move {
            sleep(work).await;
            e.fetch_add(1, Ordering::SeqCst);
        }
    });
    (service, started, ended)
}

#[tokio::test(start_paused = true)]
async fn debug_of_the_manager_returns() {
    let manager = manager();
    manager.add_service("a", worker(every(10), Duration::ZERO).0);
    let text = format!("{manager:?}");
    assert!(text.contains("services: 1"), "{text}");
    manager.start().unwrap();
    assert!(format!("{manager:?}").contains("running"));
}

#[test]
fn absurd_stop_deadlines_are_config_errors_not_panics() {
    for value in ["1e20", "1e308", "18446744073709551616", "-1", "inf", "NaN"] {
        let built = ServiceManager::builder()
            .config_env_vars([("SCHEDULER_STOP_DEADLINE", value)])
            .build();
        let Err(Error::Config(error)) = built else {
            panic!("{value}: expected a configuration error");
        };
        assert!(
            error.to_string().contains("SCHEDULER_STOP_DEADLINE"),
            "{value}: {error}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_added_after_stop_waits_for_the_next_start() {
    let manager = manager();
    manager.start().unwrap();
    manager.stop().await;
    let (service, started, _) = worker(every(1), Duration::ZERO);
    manager.add_service("late", service);
    sleep(Duration::from_secs(30)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "a stopped manager runs nothing"
    );
    assert_eq!(
        manager.service("late").unwrap().state,
        ServiceState::NotStarted
    );
    manager.start().unwrap();
    sleep(Duration::from_millis(3_500)).await;
    assert_eq!(started.load(Ordering::SeqCst), 3);
}

/// A 10 s period with 15 s runs, reloaded at 12.5 s while the run of tick 10 goes on until 25.
async fn reloaded_mid_run() -> (ServiceManager, Arc<AtomicUsize>) {
    let manager = manager();
    let (v1, _, v1_ended) = worker(every(10), Duration::from_secs(15));
    manager.add_service("job", v1);
    manager.start().unwrap();
    sleep(Duration::from_millis(12_500)).await;
    manager.add_service("job", worker(every(10), Duration::from_secs(1)).0);
    assert_eq!(manager.service("job").unwrap().state, ServiceState::Running);
    (manager, v1_ended)
}

#[tokio::test(start_paused = true)]
async fn stop_after_a_reload_waits_for_the_old_definitions_run() {
    let (manager, v1_ended) = reloaded_mid_run().await;
    let began = Instant::now();
    manager.stop().await;
    assert_eq!(
        began.elapsed(),
        Duration::from_millis(12_500),
        "returns at t=25"
    );
    assert_eq!(v1_ended.load(Ordering::SeqCst), 1);
    assert_eq!(manager.service("job").unwrap().state, ServiceState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn stop_service_wait_after_a_reload_waits_for_the_old_definitions_run() {
    let (manager, v1_ended) = reloaded_mid_run().await;
    let began = Instant::now();
    manager.stop_service("job", StopMode::Wait).await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_millis(12_500));
    assert_eq!(v1_ended.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stop_within_after_a_reload_aborts_the_old_run_at_its_deadline() {
    let (manager, v1_ended) = reloaded_mid_run().await;
    let began = Instant::now();
    manager.stop_within(Duration::from_secs(5)).await;
    assert_eq!(began.elapsed(), Duration::from_secs(5), "aborted at t=17.5");
    let status = manager.service("job").unwrap();
    assert_eq!(status.last_outcome, Some(Outcome::Aborted));
    assert_eq!(status.state, ServiceState::Stopped);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(
        v1_ended.load(Ordering::SeqCst),
        0,
        "the dropped run never ends"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_stops_all_wait_for_the_run() {
    let manager = manager();
    let (service, _, ended) = worker(every(10), Duration::from_secs(15));
    manager.add_service("job", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(12)).await; // the run of tick 10 goes on until 25
    let began = Instant::now();
    let (a, b) = tokio::join!(
        async {
            manager.stop_service("job", StopMode::Wait).await.unwrap();
            began.elapsed()
        },
        async {
            manager.stop_service("job", StopMode::Wait).await.unwrap();
            began.elapsed()
        },
    );
    assert_eq!((a, b), (Duration::from_secs(13), Duration::from_secs(13)));
    assert_eq!(ended.load(Ordering::SeqCst), 1);

    let manager2 = self::manager();
    let (service, _, ended) = worker(every(10), Duration::from_secs(15));
    manager2.add_service("job", service);
    manager2.start().unwrap();
    sleep(Duration::from_secs(12)).await;
    let began = Instant::now();
    let (a, b) = tokio::join!(
        async {
            manager2.stop().await;
            began.elapsed()
        },
        async {
            manager2.stop().await;
            began.elapsed()
        },
    );
    assert_eq!((a, b), (Duration::from_secs(13), Duration::from_secs(13)));
    assert_eq!(ended.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_stops_its_own_service_finishes_and_the_stop_completes() {
    let manager = manager();
    let handle: Arc<OnceLock<ServiceManager>> = Arc::new(OnceLock::new());
    let returned = Arc::new(AtomicBool::new(false));
    let (h, r) = (handle.clone(), returned.clone());
    manager.add_service(
        "self-stopping",
        Service::new(every(10), move |ctx| {
            let (h, r) = (h.clone(), r.clone());
            async move {
                let manager = h.get().unwrap();
                manager
                    .stop_service(ctx.name(), StopMode::Wait)
                    .await
                    .unwrap();
                assert_eq!(
                    manager.service(ctx.name()).unwrap().state,
                    ServiceState::Stopping
                );
                sleep(Duration::from_secs(1)).await;
                r.store(true, Ordering::SeqCst);
            }
        }),
    );
    handle.set(manager.clone()).unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(60)).await;
    assert!(
        returned.load(Ordering::SeqCst),
        "the stop inside the job returned"
    );
    let status = manager.service("self-stopping").unwrap();
    assert_eq!((status.state, status.runs), (ServiceState::Stopped, 1));
}

#[tokio::test(start_paused = true)]
async fn a_job_that_stops_the_whole_manager_waits_for_the_others_only() {
    let manager = manager();
    let handle: Arc<OnceLock<ServiceManager>> = Arc::new(OnceLock::new());
    let stop_took = Arc::new(Mutex::new(None));
    let (h, took) = (handle.clone(), stop_took.clone());
    manager.add_service(
        "shutdown",
        Service::new(every(10), move |_ctx| {
            let (h, took) = (h.clone(), took.clone());
            async move {
                let began = Instant::now();
                h.get().unwrap().stop().await;
                *took.lock().unwrap() = Some(began.elapsed());
            }
        }),
    );
    // Runs from 5 to 12: the stop at 10 waits for it.
    let (other, _, other_ended) = worker(
        Schedule::every(Duration::from_secs(10))
            .unwrap()
            .anchored_at(secs(-5)),
        Duration::from_secs(7),
    );
    manager.add_service("other", other);
    handle.set(manager.clone()).unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(30)).await;
    assert_eq!(*stop_took.lock().unwrap(), Some(Duration::from_secs(2)));
    assert_eq!(other_ended.load(Ordering::SeqCst), 1);
    assert!(manager
        .services()
        .iter()
        .all(|s| s.state == ServiceState::Stopped));
}

#[tokio::test(start_paused = true)]
async fn an_aborted_blocking_job_keeps_its_slot_until_its_thread_returns() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .max_concurrent_jobs(1)
        .abort_grace(Duration::from_secs(1))
        .build()
        .unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let blocking_running = Arc::new(AtomicBool::new(false));
    let flag = blocking_running.clone();
    manager.add_service(
        "stubborn",
        Service::blocking(every(10), move |_ctx| {
            flag.store(true, Ordering::SeqCst);
            // Ignores its cancellation; returns only when the test says so.
            let _ = wait.lock().unwrap().recv();
            flag.store(false, Ordering::SeqCst);
        }),
    );
    let overlap = Arc::new(AtomicBool::new(false));
    let (flag, seen) = (blocking_running.clone(), overlap.clone());
    let quick_runs = Arc::new(AtomicUsize::new(0));
    let runs = quick_runs.clone();
    manager.add_service(
        "quick",
        Service::new(
            Schedule::every(Duration::from_secs(1)).unwrap(),
            move |_ctx| {
                if flag.load(Ordering::SeqCst) {
                    seen.store(true, Ordering::SeqCst);
                }
                runs.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        ),
    );
    // tokio's paused clock does not advance by itself while a blocking task runs, so from the
    // blocking run's start on, this test moves time with `advance`.
    manager.start().unwrap();
    sleep(Duration::from_millis(9_900)).await;
    while !blocking_running.load(Ordering::SeqCst) {
        tokio::time::advance(Duration::from_millis(10)).await;
        std::thread::sleep(Duration::from_millis(1)); // the thread starts in real time
    }
    let runs_before = quick_runs.load(Ordering::SeqCst);
    let advancing = async {
        for _ in 0..15 {
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    };
    let (stopped, ()) = tokio::join!(manager.stop_service("stubborn", StopMode::Abort), advancing);
    stopped.unwrap();
    assert_eq!(
        manager.service("stubborn").unwrap().last_outcome,
        Some(Outcome::Aborted)
    );
    for _ in 0..50 {
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(
        quick_runs.load(Ordering::SeqCst),
        runs_before,
        "nothing runs while the abandoned thread holds the only slot"
    );
    release.send(()).unwrap();
    while blocking_running.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1)); // the thread returns in real time
    }
    sleep(Duration::from_secs(3)).await;
    assert!(quick_runs.load(Ordering::SeqCst) > runs_before);
    assert!(
        !overlap.load(Ordering::SeqCst),
        "two runs at once with one slot"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_the_history_and_does_not_rerun_on_start() {
    let manager = manager();
    let (service, started, _) = worker(every(10), Duration::ZERO);
    manager.add_service("svc", service.on_start(true));
    manager.start().unwrap();
    sleep(Duration::from_millis(20_500)).await; // on start, 10, 20
    assert_eq!(manager.service("svc").unwrap().runs, 3);
    let (v2, v2_started, _) = worker(every(5), Duration::ZERO);
    manager.add_service("svc", v2.on_start(true));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        v2_started.load(Ordering::SeqCst),
        0,
        "on_start is for starts"
    );
    sleep(Duration::from_secs(10)).await; // 25.5 and 30.5 on the new grid
    let status = manager.service("svc").unwrap();
    assert_eq!((status.runs, status.schedule.as_str()), (5, "every 5s"));
    assert_eq!(started.load(Ordering::SeqCst), 3);
    assert_eq!(v2_started.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_users_anchor_is_honoured() {
    let manager = manager();
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let sink = ticks.clone();
    let schedule = Schedule::every(Duration::from_secs(10))
        .unwrap()
        .anchored_at(secs(3));
    manager.add_service(
        "anchored",
        Service::new(schedule, move |ctx| {
            sink.lock().unwrap().push(ctx.tick());
            async {}
        }),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(30)).await;
    assert_eq!(*ticks.lock().unwrap(), [secs(3), secs(13), secs(23)]);
}

#[tokio::test(start_paused = true)]
async fn abort_signals_the_job_first_and_drops_it_after_the_grace() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .abort_grace(Duration::from_secs(2))
        .build()
        .unwrap();
    let cleaned_up = Arc::new(AtomicBool::new(false));
    let flag = cleaned_up.clone();
    manager.add_service(
        "polite",
        Service::new(every(10), move |ctx| {
            let flag = flag.clone();
            async move {
                ctx.cancelled().await;
                sleep(Duration::from_millis(300)).await; // cleaning up
                flag.store(true, Ordering::SeqCst);
            }
        }),
    );
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    manager.add_service(
        "deaf",
        Service::new(every(10), move |_ctx| {
            let guard = DropFlag(flag.clone());
            async move {
                let _guard = guard;
                sleep(Duration::from_secs(3600)).await;
            }
        }),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(11)).await;
    let began = Instant::now();
    manager
        .stop_service("polite", StopMode::Abort)
        .await
        .unwrap();
    assert_eq!(began.elapsed(), Duration::from_millis(300));
    assert!(
        cleaned_up.load(Ordering::SeqCst),
        "the job saw its cancellation"
    );
    let began = Instant::now();
    manager.stop_service("deaf", StopMode::Abort).await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(2), "the grace period");
    assert!(dropped.load(Ordering::SeqCst), "dropped after the grace");
    for name in ["polite", "deaf"] {
        assert_eq!(
            manager.service(name).unwrap().last_outcome,
            Some(Outcome::Aborted)
        );
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A wall clock that follows tokio's time plus an offset the test can jump.
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

#[tokio::test(start_paused = true)]
async fn a_forward_jump_fires_within_a_second_and_a_backward_jump_never_early() {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = JumpingClock {
        base: TokioClock::starting_at(Utc.with_ymd_and_hms(2024, 1, 1, 8, 0, 0).unwrap()),
        offset_ms: offset.clone(),
    };
    let manager = ServiceManager::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let sink = fired.clone();
    let c = clock.clone();
    manager.add_service(
        "hourly",
        Service::new("0 * * * *".parse().unwrap(), move |ctx| {
            sink.lock().unwrap().push((ctx.tick(), c.now()));
            async {}
        }),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(600)).await; // 08:10
                                           // Suspend or NTP step: the wall clock jumps to 08:59:59.5.
    offset.store(49 * 60 * 1000 + 59_500, Ordering::SeqCst);
    sleep(Duration::from_millis(1_600)).await;
    {
        let fired = fired.lock().unwrap();
        let nine = Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).unwrap();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].0, nine);
        assert!(fired[0].1 >= nine && fired[0].1 - nine <= TimeDelta::seconds(1));
    }
    // Now 09:00:01.1; set back to 08:30: the 10:00 tick must wait for 10:00 on the clock.
    offset.fetch_sub(30 * 60 * 1000 + 1_100, Ordering::SeqCst);
    sleep(Duration::from_secs(89 * 60)).await; // the clock reads 09:59
    assert_eq!(fired.lock().unwrap().len(), 1, "never early");
    sleep(Duration::from_secs(61)).await;
    let fired = fired.lock().unwrap();
    assert_eq!(fired.len(), 2);
    assert_eq!(
        fired[1].0,
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap()
    );
    assert!(fired[1].1 >= fired[1].0);
}

#[tokio::test(start_paused = true)]
async fn pause_skips_ticks_resume_keeps_the_grid_and_run_now_never_overlaps() {
    let manager = manager();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    manager.add_service(
        "svc",
        Service::new(every(10), move |ctx| {
            sink.lock().unwrap().push((ctx.tick(), ctx.trigger()));
            async { sleep(Duration::from_secs(2)).await }
        }),
    );
    assert!(matches!(
        manager.run_now("svc"),
        Err(Error::InvalidState { .. })
    ));
    manager.start().unwrap();
    sleep(Duration::from_millis(10_500)).await; // tick 10 running until 12
    assert!(matches!(
        manager.run_now("svc"),
        Err(Error::AlreadyRunning(_))
    ));
    sleep(Duration::from_secs(5)).await; // 15.5
    manager.pause("svc").unwrap();
    assert_eq!(manager.service("svc").unwrap().state, ServiceState::Paused);
    sleep(Duration::from_secs(30)).await; // 45.5: ticks 20, 30, 40 paused
    manager.resume("svc").unwrap();
    let status = manager.service("svc").unwrap();
    assert_eq!(
        (status.skipped_paused, status.next_fire),
        (3, Some(secs(50)))
    );
    manager.run_now("svc").unwrap(); // 45.5 until 47.5
    sleep(Duration::from_secs(10)).await; // 55.5
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            (secs(10), Trigger::Schedule),
            (secs(45) + TimeDelta::milliseconds(500), Trigger::Manual),
            (secs(50), Trigger::Schedule),
        ]
    );
    assert!(matches!(
        manager.pause("nope"),
        Err(Error::UnknownService(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_local_history_keeps_the_latest_runs_newest_first() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .history_len(3)
        .build()
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    manager.add_service(
        "flaky",
        Service::new(every(10), move |_ctx| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(Duration::from_secs(1)).await;
                if n % 2 == 1 {
                    Err(format!("attempt {n} failed"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    assert_eq!(manager.history("flaky"), Some(Vec::new()));
    assert_eq!(manager.history("nope"), None);
    manager.start().unwrap();
    sleep(Duration::from_millis(40_500)).await; // runs at 10, 20, 30, 40 (done at 41: not yet)
    let history = manager.history("flaky").unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|r| (r.tick, r.outcome.clone(), r.error.clone(), r.finished))
        .collect();
    assert_eq!(
        summary,
        [
            (secs(30), Some("ok".to_owned()), None, Some(secs(31))),
            (
                secs(20),
                Some("failed".to_owned()),
                Some("attempt 1 failed".to_owned()),
                Some(secs(21))
            ),
            (secs(10), Some("ok".to_owned()), None, Some(secs(11))),
        ]
    );
    sleep(Duration::from_secs(1)).await;
    let history = manager.history("flaky").unwrap();
    assert_eq!(history.len(), 3, "bounded by history_len");
    assert_eq!((history[0].tick, history[2].tick), (secs(40), secs(20)));
    assert_eq!(history[0].trigger, Some(Trigger::Schedule));
}

/// Every pause, run-now or reload leaves a stale timer entry, and past a thousand of them the timer
/// compacts its heap, while the manager holds the slot's lock: the compaction must not wait for it.
#[tokio::test(start_paused = true)]
async fn thousands_of_pauses_and_run_nows_never_hang_the_timer() {
    let manager = manager();
    let (hourly, _, runs) = worker(every(3600), Duration::ZERO);
    manager.add_service("hourly", hourly);
    manager.add_service("minutely", Service::new(every(60), |_ctx| async {}));
    manager.start().unwrap();
    for _ in 0..3000 {
        manager.pause("hourly").unwrap();
        manager.resume("hourly").unwrap();
    }
    for _ in 0..1500 {
        manager.run_now("hourly").unwrap();
        tokio::task::yield_now().await; // the manual run ends before the next is asked for
        while manager.service("hourly").unwrap().state != scheduler::ServiceState::Idle {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1500);
    tokio::time::sleep(Duration::from_secs(3601)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1501,
        "and the grid still holds"
    );
    assert_eq!(manager.service("minutely").unwrap().runs, 60);
    manager.stop().await;
}
