//! Coordinated replicas, with the in-memory coordinator and tokio's paused clock: the cluster rules,
//! exactly (the PostgreSQL coordinator is held to the same rules against a real database).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduler::coordinator::{
    Claim, ClaimPolicy, ControlRecord, Coordinator, CoordinatorError, FinishedRun, RunRecord,
    Ticket,
};
use scheduler::{
    Delivery, Error, InMemoryCoordinator, Schedule, Service, ServiceManager, StopMode, TokioClock,
};
use tokio::time::sleep;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

type Ran = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

fn replica(cluster: &InMemoryCoordinator, name: &str) -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .coordinator(cluster.replica(name))
        .lease(Duration::from_secs(6))
        .build()
        .unwrap()
}

/// A service every `period` seconds whose job takes `work` and records (replica, tick).
fn service(replica: &str, period: u64, work: u64, ran: &Ran) -> Service {
    let (replica, ran) = (replica.to_owned(), ran.clone());
    Service::new(
        Schedule::every(Duration::from_secs(period)).unwrap(),
        move |ctx| {
            ran.lock().unwrap().push((replica.clone(), ctx.tick()));
            async move { sleep(Duration::from_secs(work)).await }
        },
    )
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::seconds(n)
}

#[tokio::test(start_paused = true)]
async fn three_replicas_run_every_tick_exactly_once() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let managers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let manager = replica(&cluster, name);
            manager.add_service("report", service(name, 1, 0, &ran));
            manager.start().unwrap();
            manager
        })
        .collect();
    sleep(Duration::from_millis(20_500)).await;

    let ran = ran.lock().unwrap().clone();
    let mut per_tick: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for (_, tick) in &ran {
        *per_tick.entry(*tick).or_default() += 1;
    }
    let expected: BTreeMap<_, _> = (1..=20).map(|k| (secs(k), 1)).collect();
    assert_eq!(per_tick, expected, "every tick ran, and ran once");
    let (runs, elsewhere): (u64, u64) = managers
        .iter()
        .map(|m| m.service("report").unwrap())
        .fold((0, 0), |(r, e), s| (r + s.runs, e + s.claimed_elsewhere));
    assert_eq!((runs, elsewhere), (20, 40));
    let history = managers[0].cluster_history("report", 5).await.unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[0].tick, secs(20));
    assert!(history.iter().all(|r| r.outcome.as_deref() == Some("ok")));
    assert!(matches!(
        ServiceManager::new().cluster_history("report", 1).await,
        Err(Error::NotCoordinated)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_long_run_blocks_the_service_on_every_replica() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let a = replica(&cluster, "a");
    let b = replica(&cluster, "b");
    a.add_service("slow", service("a", 10, 25, &ran));
    a.start().unwrap();
    sleep(Duration::from_secs(5)).await; // a is first to every tick from here on
    b.add_service("slow", service("b", 10, 25, &ran));
    b.start().unwrap();
    sleep(Duration::from_millis(40_500)).await;
    // a runs 10 (until 35); b sees 20 and 30 busy on a; 40 is free again.
    let ran = ran.lock().unwrap().clone();
    assert_eq!(
        ran.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        [secs(10), secs(40)]
    );
    let status = b.service("slow").unwrap();
    assert!(status.skipped >= 2);
    // What blocked it, and where, is in the status until b runs a tick.
    let held = status.held_elsewhere.expect("b saw a's claim");
    assert_eq!(
        (held.replica.as_str(), held.tick, held.running_earlier),
        ("a", secs(40), false),
        "b's latest claim (tick 40) found it a's"
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_blocked_elsewhere_says_by_whom() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let a = replica(&cluster, "a");
    let b = replica(&cluster, "b");
    a.add_service("slow", service("a", 10, 25, &ran));
    a.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    b.add_service("slow", service("b", 10, 25, &ran));
    b.start().unwrap();
    sleep(Duration::from_millis(15_500)).await; // 20.5: b's claim of 20 found a running 10
    let held = b.service("slow").unwrap().held_elsewhere.expect("blocked");
    assert_eq!(
        (held.replica.as_str(), held.tick, held.running_earlier),
        ("a", secs(10), true)
    );
    assert_eq!(a.service("slow").unwrap().held_elsewhere, None);
}

async fn crash_mid_run(delivery: Delivery) -> Vec<(String, DateTime<Utc>)> {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let a = replica(&cluster, "a");
    let b = replica(&cluster, "b");
    a.add_service("job", service("a", 10, 25, &ran).delivery(delivery));
    a.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    b.add_service("job", service("b", 10, 25, &ran).delivery(delivery));
    b.start().unwrap();
    sleep(Duration::from_secs(10)).await; // 15 s: a runs tick 10
                                          // a dies: it renews and reports nothing from now on, and its task is gone.
    cluster.replica("a").crash();
    a.stop_service("job", StopMode::Abort).await.unwrap();
    sleep(Duration::from_millis(20_500)).await; // until 35.5
    let runs = ran.lock().unwrap().clone();
    runs
}

#[tokio::test(start_paused = true)]
async fn at_most_once_never_reruns_a_dead_runners_tick() {
    let runs = crash_mid_run(Delivery::AtMostOnce).await;
    // a's lease on tick 10 (renewed at 12) ran out at 18: b runs 20 as usual, 10 is abandoned.
    assert_eq!(
        runs,
        [("a".to_owned(), secs(10)), ("b".to_owned(), secs(20))]
    );
}

#[tokio::test(start_paused = true)]
async fn at_least_once_reruns_a_dead_runners_tick_first() {
    let runs = crash_mid_run(Delivery::AtLeastOnce).await;
    // At 20 b finds tick 10 abandoned, takes it over and runs it (until 45): tick 20 waits for it
    // and, at 45, is claimed and run late; 30 passed meanwhile.
    assert_eq!(
        runs[..2],
        [("a".to_owned(), secs(10)), ("b".to_owned(), secs(10))]
    );
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn an_outage_pauses_coordinated_runs_and_they_resume_by_themselves() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let a = replica(&cluster, "a");
    let b = replica(&cluster, "b");
    a.add_service("tick", service("a", 1, 0, &ran));
    b.add_service("tick", service("b", 1, 0, &ran));
    a.start().unwrap();
    b.start().unwrap();
    sleep(Duration::from_millis(5_500)).await;
    cluster.set_available(false);
    sleep(Duration::from_secs(5)).await; // 10.5
    let status = a.service("tick").unwrap();
    assert_eq!(
        status.coordinator_error.as_deref(),
        Some("the in-memory coordinator is unavailable")
    );
    let during: Vec<_> = ran.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(
        during,
        (1..=5).map(secs).collect::<Vec<_>>(),
        "nothing ran during the outage"
    );
    cluster.set_available(true);
    sleep(Duration::from_secs(5)).await; // 15.5
    assert_eq!(a.service("tick").unwrap().coordinator_error, None);
    let ticks: Vec<_> = ran.lock().unwrap().iter().map(|(_, t)| *t).collect();
    let mut unique = ticks.clone();
    unique.dedup();
    assert_eq!(unique, ticks, "no tick ran twice");
    assert!(ticks.contains(&secs(15)), "runs resumed: {ticks:?}");
}

fn replica_with_lease(coordinator: impl Coordinator, lease: u64) -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .coordinator(coordinator)
        .lease(Duration::from_secs(lease))
        .build()
        .unwrap()
}

/// The issue's first fault: a run ends while the coordinator is down. Its report is retried (the
/// lease renewed meanwhile) until it lands, so the tick is neither re-run (at least once) nor left
/// blocking the service for a lease.
///
/// ```text
/// 10 ─ a claims 10, runs ─ 13 renewed (lease to 22) ─ 14.5 outage ─ 15 run ends, report ✘ … ✘
///    ─ 19.3 back ─ 19.7 report ✔ (released) ─ 20 tick 20 claimed as usual ─ 30, 40 likewise
/// ```
#[tokio::test(start_paused = true)]
async fn a_run_that_ends_during_an_outage_is_recorded_once_it_is_over() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let a = replica_with_lease(cluster.replica("a"), 9);
    let b = replica_with_lease(cluster.replica("b"), 9);
    let alo = |name| service(name, 10, 5, &ran).delivery(Delivery::AtLeastOnce);
    a.add_service("alo", alo("a"));
    a.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    b.add_service("alo", alo("b"));
    b.start().unwrap();
    sleep(Duration::from_millis(9_500)).await; // 14.5
    cluster.set_available(false);
    sleep(Duration::from_millis(1_500)).await; // 16: the run ended at 15, unreported
    let status = a.service("alo").unwrap();
    assert_eq!(status.pending_report, Some(secs(10)), "{status:?}");
    assert!(status.coordinator_error.is_some(), "{status:?}");
    sleep(Duration::from_millis(3_300)).await; // 19.3
    cluster.set_available(true);
    sleep(Duration::from_millis(21_500)).await; // 40.8

    let ticks: Vec<_> = ran.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(
        ticks,
        [secs(10), secs(20), secs(30), secs(40)],
        "every tick once, none re-run"
    );
    let history = a.cluster_history("alo", 10).await.unwrap();
    let ten = history.iter().find(|r| r.tick == secs(10)).unwrap();
    assert_eq!((ten.attempt, ten.outcome.as_deref()), (1, Some("ok")));
    let status = a.service("alo").unwrap();
    assert_eq!(
        (status.pending_report, status.coordinator_error),
        (None, None)
    );
}

/// A coordinator whose claims (and releases) take as long as the test says.
#[derive(Clone)]
struct Slow {
    inner: InMemoryCoordinator,
    delay: Arc<Mutex<Duration>>,
    release_delay: Duration,
}

impl Coordinator for Slow {
    fn replica(&self) -> &str {
        Coordinator::replica(&self.inner)
    }
    fn prepare(&self) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        self.inner.prepare()
    }
    fn claim<'a>(
        &'a self,
        service: &'a str,
        tick: DateTime<Utc>,
        policy: ClaimPolicy,
    ) -> BoxFuture<'a, Result<Claim, CoordinatorError>> {
        let delay = *self.delay.lock().unwrap();
        Box::pin(async move {
            sleep(delay).await;
            self.inner.claim(service, tick, policy).await
        })
    }
    fn renew<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.inner.renew(ticket)
    }
    fn finish<'a>(
        &'a self,
        ticket: &'a Ticket,
        run: &'a FinishedRun,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        self.inner.finish(ticket, run)
    }
    fn release<'a>(
        &'a self,
        ticket: &'a Ticket,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, CoordinatorError>> {
        Box::pin(async move {
            sleep(self.release_delay).await;
            self.inner.release(ticket, reason).await
        })
    }
    fn history<'a>(
        &'a self,
        service: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RunRecord>, CoordinatorError>> {
        self.inner.history(service, limit)
    }
    fn set_paused<'a>(
        &'a self,
        service: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        self.inner.set_paused(service, paused)
    }
    fn set_disabled<'a>(
        &'a self,
        service: &'a str,
        disabled: bool,
    ) -> BoxFuture<'a, Result<ControlRecord, CoordinatorError>> {
        self.inner.set_disabled(service, disabled)
    }
    fn controls(&self, since: u64) -> BoxFuture<'_, Result<Vec<ControlRecord>, CoordinatorError>> {
        self.inner.controls(since)
    }
    fn control_changed(&self) -> BoxFuture<'_, ()> {
        self.inner.control_changed()
    }
}

/// A claim that comes back after the next tick was due is not run: it is released (recorded as
/// skipped, with the reason) and counted.
#[tokio::test(start_paused = true)]
async fn a_claim_granted_after_the_next_tick_is_skipped_not_run_late() {
    let slow = Slow {
        inner: InMemoryCoordinator::new(),
        delay: Arc::new(Mutex::new(Duration::from_secs(12))),
        release_delay: Duration::ZERO,
    };
    let ran = Ran::default();
    let a = replica_with_lease(slow.clone(), 6);
    a.add_service("s", service("a", 10, 0, &ran));
    a.start().unwrap();
    sleep(Duration::from_millis(10_500)).await; // the claim of 10 is under way until 22
    *slow.delay.lock().unwrap() = Duration::ZERO;
    sleep(Duration::from_secs(30)).await; // 40.5
    let ticks: Vec<_> = ran.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(ticks, [secs(30), secs(40)], "10 not run late, at 22");
    let status = a.service("s").unwrap();
    assert_eq!(status.skipped_late, 1, "{status:?}");
    let history = a.cluster_history("s", 10).await.unwrap();
    let ten = history.iter().find(|r| r.tick == secs(10)).unwrap();
    assert_eq!(ten.outcome.as_deref(), Some("skipped"), "{ten:?}");
    assert!(
        ten.error
            .as_deref()
            .is_some_and(|e| e.contains("after the next tick was due")),
        "{ten:?}"
    );
}

/// A retry (`Service::retries`) in cluster mode claims its own failed tick again and runs, rather
/// than find the tick taken (by itself) and count it as claimed elsewhere.
#[tokio::test(start_paused = true)]
async fn a_retry_runs_on_the_replica_whose_attempt_failed() {
    let cluster = InMemoryCoordinator::new();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let flaky = |name: &'static str| {
        let attempts = attempts.clone();
        Service::new(
            Schedule::every(Duration::from_secs(10)).unwrap(),
            move |ctx| {
                attempts
                    .lock()
                    .unwrap()
                    .push((name, ctx.tick(), ctx.attempt()));
                let attempt = ctx.attempt();
                async move {
                    if attempt == 1 {
                        Err("first attempts fail".to_owned())
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .retries(1)
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(1))
    };
    let a = replica(&cluster, "a");
    let b = replica(&cluster, "b");
    a.add_service("flaky", flaky("a"));
    a.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    b.add_service("flaky", flaky("b"));
    b.start().unwrap();
    sleep(Duration::from_millis(7_500)).await; // 12.5
    assert_eq!(
        *attempts.lock().unwrap(),
        [("a", secs(10), 1), ("a", secs(10), 2)],
        "the retry ran, on a"
    );
    let status = a.service("flaky").unwrap();
    assert_eq!(
        (status.runs, status.claimed_elsewhere),
        (2, 0),
        "{status:?}"
    );
    let history = a.cluster_history("flaky", 1).await.unwrap();
    assert_eq!(
        (
            history[0].tick,
            history[0].attempt,
            history[0].outcome.as_deref()
        ),
        (secs(10), 2, Some("ok"))
    );
}

/// A claimed tick that waits for a worker (`max_concurrent_jobs`) until its lease runs out, and is
/// taken over meanwhile, does not run when the worker comes free: it would run twice.
///
/// ```text
/// a (one worker): x@3 ─ hog@5 runs 5..9.5 ─ x@6 claimed (lease 2 s), waits for the worker ─ 8 lease out
/// b (x only, from 6.5): 9 ─ claims x@9: x@6 abandoned → takes it over, runs it (attempt 2), then x@9
/// a: 9.5 worker free ─ x@6 renews first: refused ─ not run, counted in skipped_late
/// ```
#[tokio::test(start_paused = true)]
async fn a_claim_lost_while_waiting_for_a_worker_does_not_run() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let a = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .coordinator(cluster.replica("a"))
        .lease(Duration::from_secs(2))
        .max_concurrent_jobs(1)
        .build()
        .unwrap();
    let x = |name| service(name, 3, 0, &ran).delivery(Delivery::AtLeastOnce);
    a.add_service("x", x("a"));
    a.add_service(
        "hog",
        Service::new(Schedule::every(Duration::from_secs(5)).unwrap(), |_ctx| {
            sleep(Duration::from_millis(4_500))
        }),
    );
    a.start().unwrap();
    sleep(Duration::from_millis(6_500)).await;
    let b = ServiceManager::builder()
        .clock(TokioClock::starting_at(
            secs(6) + chrono::TimeDelta::milliseconds(500),
        ))
        .coordinator(cluster.replica("b"))
        .lease(Duration::from_secs(2))
        .build()
        .unwrap();
    b.add_service("x", x("b"));
    b.start().unwrap();
    sleep(Duration::from_secs(4)).await; // 10.5
    let runs = ran.lock().unwrap().clone();
    let of_six: Vec<_> = runs.iter().filter(|(_, t)| *t == secs(6)).collect();
    assert_eq!(of_six, [&("b".to_owned(), secs(6))], "{runs:?}");
    assert_eq!(a.service("x").unwrap().skipped_late, 1);
}

/// A manual run is claimed like a tick: while it runs on one replica, no other replica starts the
/// service's ticks, so runs never overlap across the cluster; and it is recorded as that replica's.
#[tokio::test(start_paused = true)]
async fn a_manual_run_holds_the_service_on_every_replica() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let managers: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let manager = replica(&cluster, name);
            // Every 60 s, 70 s runs.
            manager.add_service("export", service(name, 60, 70, &ran));
            manager.start().unwrap();
            manager
        })
        .collect();
    sleep(Duration::from_secs(5)).await;
    managers[0].run_now("export").unwrap();
    // 5: a's manual run begins (until 75); 60: the tick comes while it runs, on either replica.
    sleep(Duration::from_secs(70)).await;
    assert_eq!(
        *ran.lock().unwrap(),
        [("a".to_owned(), secs(5))],
        "only the manual run, on a: b did not run tick 60 beside it"
    );
    let skipped: u64 = managers
        .iter()
        .map(|m| m.service("export").unwrap().skipped)
        .sum();
    assert!(skipped >= 1, "tick 60 is counted as skipped");
    let history = managers[1].cluster_history("export", 10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|r| r.tick == secs(5) && r.replica == "a"),
        "the manual run is in the cluster's history: {history:?}"
    );
    // 120: the next tick runs once, somewhere.
    sleep(Duration::from_secs(50)).await;
    let ran = ran.lock().unwrap().clone();
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert_eq!(ran[1].1, secs(120));
    for manager in &managers {
        manager.stop_within(Duration::from_secs(1)).await;
    }
}

/// Runs (replica, tick, how late it started) of a service every second whose job takes `work_ms`.
type Started = Arc<Mutex<Vec<(String, DateTime<Utc>, chrono::TimeDelta)>>>;

fn timed_service(replica: &str, work_ms: u64, started: &Started) -> Service {
    // Created with the managers' clocks (the paused clock does not move in between): the same time.
    timed_service_at(t0(), replica, work_ms, started)
}

/// [`timed_service`], made when the managers' clocks read `now`.
fn timed_service_at(now: DateTime<Utc>, replica: &str, work_ms: u64, started: &Started) -> Service {
    let (replica, started) = (replica.to_owned(), started.clone());
    let clock = TokioClock::starting_at(now);
    Service::new(
        Schedule::every(Duration::from_secs(1)).unwrap(),
        move |ctx| {
            use scheduler::clock::Clock as _;
            let lag = clock.now() - ctx.tick();
            started
                .lock()
                .unwrap()
                .push((replica.clone(), ctx.tick(), lag));
            sleep(Duration::from_millis(work_ms))
        },
    )
}

fn ahead_replica(coordinator: impl Coordinator, ahead_ms: u64) -> ServiceManager {
    ahead_replica_at(t0(), coordinator, ahead_ms)
}

/// Replica "a", claiming 300 ms ahead, started with service "s" ([`timed_service`], its job
/// taking `work_ms`).
fn started_ahead_replica_a(
    coordinator: impl Coordinator,
    work_ms: u64,
    started: &Started,
) -> ServiceManager {
    let a = ahead_replica(coordinator, 300);
    a.add_service("s", timed_service("a", work_ms, started));
    a.start().unwrap();
    a
}

/// [`ahead_replica`], started when the paused clock reads `now`.
fn ahead_replica_at(
    now: DateTime<Utc>,
    coordinator: impl Coordinator,
    ahead_ms: u64,
) -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(now))
        .coordinator(coordinator)
        .lease(Duration::from_secs(6))
        .claim_ahead(Duration::from_millis(ahead_ms))
        .build()
        .unwrap()
}

/// Claims that take 200 ms make every run start 200 ms late; claimed 300 ms ahead, the same claims
/// are answered before the tick and every run starts on it, each tick still once across three
/// replicas.
///
/// ```text
/// claim_ahead 0:    T ── claim (200 ms) ── T+0.2 run
/// claim_ahead 0.3:  T−0.3 ── claim (200 ms) ── T−0.1 granted, held ── T run
/// ```
#[tokio::test(start_paused = true)]
async fn a_tick_claimed_ahead_starts_on_time_however_slow_its_claim() {
    for (ahead_ms, lag_ms) in [(0, 200), (300, 0)] {
        let cluster = InMemoryCoordinator::new();
        let started = Started::default();
        let managers: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|name| {
                let slow = Slow {
                    inner: cluster.replica(name),
                    delay: Arc::new(Mutex::new(Duration::from_millis(200))),
                    release_delay: Duration::ZERO,
                };
                let manager = ahead_replica(slow, ahead_ms);
                manager.add_service("s", timed_service(name, 0, &started));
                manager.start().unwrap();
                manager
            })
            .collect();
        sleep(Duration::from_millis(10_500)).await;
        for manager in &managers {
            manager.stop().await;
        }
        let started = started.lock().unwrap().clone();
        let ticks: Vec<_> = started.iter().map(|(_, tick, _)| *tick).collect();
        let expected: Vec<_> = (1..=10).map(secs).collect();
        assert_eq!(
            ticks, expected,
            "claim_ahead {ahead_ms} ms: every tick, once"
        );
        for (replica, tick, lag) in &started {
            assert_eq!(
                *lag,
                chrono::TimeDelta::milliseconds(lag_ms),
                "claim_ahead {ahead_ms} ms: {replica} started {tick} late by {lag}"
            );
        }
    }
}

/// A claim made ahead of the tick that finds the previous run still going elsewhere (`Busy`) is
/// made again when the tick is due, so claiming early skips nothing that claiming on time would
/// run.
///
/// ```text
/// a: 1 ── run (0.8 s) ─────────────── 1.8 ends, reported; a stops
/// b:          starts 1.5 ── 1.7 claims 2: Busy ── 2.0 claims 2 again: granted, runs
/// ```
#[tokio::test(start_paused = true)]
async fn a_tick_claimed_ahead_while_busy_elsewhere_is_claimed_again_when_due() {
    let cluster = InMemoryCoordinator::new();
    let started = Started::default();
    let a = started_ahead_replica_a(cluster.replica("a"), 800, &started);
    sleep(Duration::from_millis(1_500)).await;
    let b = ahead_replica_at(
        secs(1) + chrono::TimeDelta::milliseconds(500),
        cluster.replica("b"),
        300,
    );
    b.add_service("s", timed_service("b", 800, &started));
    b.start().unwrap();
    a.stop().await; // returns at 1.8, when its run of 1 ends
    sleep(Duration::from_secs(2)).await; // 3.8
    b.stop().await;
    let runs: Vec<_> = started
        .lock()
        .unwrap()
        .iter()
        .map(|(replica, tick, _)| (replica.clone(), *tick))
        .collect();
    assert_eq!(
        runs,
        [
            ("a".to_owned(), secs(1)),
            ("b".to_owned(), secs(2)),
            ("b".to_owned(), secs(3))
        ]
    );
    assert_eq!(b.service("s").unwrap().skipped, 0, "tick 2 was not skipped");
}

/// A stop between a claim made ahead and its tick gives the claim back at once (recorded as
/// skipped, with the reason) instead of holding it, or the stop, until the tick.
#[tokio::test(start_paused = true)]
async fn a_stop_gives_back_a_tick_claimed_ahead() {
    let cluster = InMemoryCoordinator::new();
    let started = Started::default();
    let a = started_ahead_replica_a(cluster.replica("a"), 0, &started);
    sleep(Duration::from_millis(1_800)).await; // tick 2 was claimed at 1.7

    // Held for its tick, it is not waiting for a worker: it shows idle, due at 2.
    let status = a.service("s").unwrap();
    assert_eq!(
        (status.state, status.next_fire),
        (scheduler::ServiceState::Idle, Some(secs(2)))
    );
    let stop_began = tokio::time::Instant::now();
    a.stop().await;
    assert_eq!(
        stop_began.elapsed(),
        Duration::ZERO,
        "the stop did not wait for the tick"
    );
    sleep(Duration::from_secs(1)).await;
    let ticks: Vec<_> = started.lock().unwrap().iter().map(|(_, t, _)| *t).collect();
    assert_eq!(ticks, [secs(1)], "tick 2 did not run");
    let history = cluster.replica("b").history("s", 10).await.unwrap();
    let two = history
        .iter()
        .find(|r| r.tick == secs(2))
        .expect("tick 2 was claimed");
    assert_eq!(two.outcome.as_deref(), Some("skipped"), "{two:?}");
    assert!(
        two.error
            .as_deref()
            .is_some_and(|e| e.contains("stopped before the tick's run began")),
        "{two:?}"
    );
}

/// A pause between a claim made ahead and its tick keeps the tick from running, as a pause before
/// the claim would; the resume brings the next ticks back.
#[tokio::test(start_paused = true)]
async fn a_pause_after_a_claim_made_ahead_keeps_its_tick_from_running() {
    let cluster = InMemoryCoordinator::new();
    let started = Started::default();
    let a = started_ahead_replica_a(cluster.replica("a"), 0, &started);
    sleep(Duration::from_millis(1_800)).await; // tick 2 was claimed at 1.7
    a.pause("s").unwrap();
    sleep(Duration::from_millis(1_500)).await; // 3.3
    a.resume("s").unwrap();
    sleep(Duration::from_millis(1_500)).await; // 4.8
    a.stop().await;
    let ticks: Vec<_> = started.lock().unwrap().iter().map(|(_, t, _)| *t).collect();
    assert_eq!(
        ticks,
        [secs(1), secs(4)],
        "neither 2 (claimed, then paused) nor 3 ran"
    );
    let history = a.cluster_history("s", 10).await.unwrap();
    let two = history
        .iter()
        .find(|r| r.tick == secs(2))
        .expect("tick 2 was claimed");
    assert_eq!(two.outcome.as_deref(), Some("skipped"), "{two:?}");
}

#[test]
fn claiming_further_ahead_than_a_quarter_of_the_lease_is_refused() {
    let built = ServiceManager::builder()
        .coordinator(InMemoryCoordinator::new().replica("a"))
        .lease(Duration::from_secs(4))
        .claim_ahead(Duration::from_millis(1_001))
        .build();
    match built {
        Err(Error::InvalidOption { option, reason }) => {
            assert_eq!(option, "claim_ahead");
            assert!(reason.contains("quarter of the lease"), "{reason}");
        }
        other => panic!("expected InvalidOption, got {:?}", other.err()),
    }
    let at_the_limit = ServiceManager::builder()
        .coordinator(InMemoryCoordinator::new().replica("a"))
        .lease(Duration::from_secs(4))
        .claim_ahead(Duration::from_secs(1))
        .build();
    assert!(at_the_limit.is_ok());
    let huge = ServiceManager::builder()
        .coordinator(InMemoryCoordinator::new().replica("a"))
        .claim_ahead(Duration::MAX)
        .build();
    assert!(matches!(huge, Err(Error::InvalidOption { .. })));
}

/// A takeover of a dead replica's tick is attempt 2 of that tick: the job's context says so, as
/// the cluster's history does (it said 1 before, so a job or a log could not tell a takeover).
#[tokio::test(start_paused = true)]
async fn a_takeover_runs_as_the_attempt_the_history_records() {
    type Attempts = Arc<Mutex<Vec<(String, DateTime<Utc>, u32)>>>;
    let cluster = InMemoryCoordinator::new();
    let attempts = Attempts::default();
    let job = |name: &str| {
        let (name, attempts) = (name.to_owned(), attempts.clone());
        Service::new(
            Schedule::every(Duration::from_secs(10)).unwrap(),
            move |ctx| {
                let run = (name.clone(), ctx.tick(), ctx.attempt());
                attempts.lock().unwrap().push(run);
                sleep(Duration::from_secs(25))
            },
        )
        .delivery(Delivery::AtLeastOnce)
    };
    let a = replica(&cluster, "a");
    let b = replica(&cluster, "b");
    a.add_service("job", job("a"));
    a.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    b.add_service("job", job("b"));
    b.start().unwrap();
    sleep(Duration::from_secs(10)).await; // 15: a runs tick 10, then dies
    cluster.replica("a").crash();
    a.stop_service("job", StopMode::Abort).await.unwrap();
    sleep(Duration::from_millis(20_500)).await; // 35.5: b took 10 over at 20
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts,
        [("a".to_owned(), secs(10), 1), ("b".to_owned(), secs(10), 2)]
    );
    let history = b.cluster_history("job", 10).await.unwrap();
    let taken_over = history
        .iter()
        .find(|r| r.tick == secs(10) && r.replica == "b")
        .expect("b's run of 10 is in the history");
    assert_eq!(taken_over.attempt, 2, "{taken_over:?}");
}

/// A pause and a resume both between a claim made ahead and its tick: the tick still runs, on
/// time, under the claim already held (claimed again, it would answer "taken" by this very
/// replica, and run nowhere). A service replaced in the same window keeps its tick the same way.
#[tokio::test(start_paused = true)]
async fn a_tick_claimed_ahead_survives_a_pause_and_resume_or_a_reload_before_it() {
    let cluster = InMemoryCoordinator::new();
    let started = Started::default();
    let a = started_ahead_replica_a(cluster.replica("a"), 0, &started);
    sleep(Duration::from_millis(1_800)).await; // tick 2 was claimed at 1.7
    a.pause("s").unwrap();
    sleep(Duration::from_millis(100)).await;
    a.resume("s").unwrap();
    sleep(Duration::from_secs(1)).await; // 2.9; tick 3 claimed at 2.7
    let now = secs(2) + chrono::TimeDelta::milliseconds(900);
    a.add_service("s", timed_service_at(now, "a", 0, &started)); // a reload of the same service
    sleep(Duration::from_secs(1)).await; // 3.9
    a.stop().await;
    let runs = started.lock().unwrap().clone();
    let ticks: Vec<_> = runs.iter().map(|(_, t, _)| *t).collect();
    assert_eq!(ticks, [secs(1), secs(2), secs(3)], "{runs:?}");
    assert!(
        runs.iter()
            .all(|(_, _, lag)| *lag == chrono::TimeDelta::zero()),
        "{runs:?}"
    );
    let status = a.service("s").unwrap();
    assert_eq!(status.claimed_elsewhere, 0, "{status:?}");
    let history = a.cluster_history("s", 10).await.unwrap();
    for tick in [secs(2), secs(3)] {
        let row = history.iter().find(|r| r.tick == tick).unwrap();
        assert_eq!(row.outcome.as_deref(), Some("ok"), "{row:?}");
    }
}

/// A claim made ahead that found an earlier run going waits to claim again at the tick; a stop
/// in between means it does not claim at all (before, it claimed after the stop, won the tick
/// from the replicas still running, and gave it up).
#[tokio::test(start_paused = true)]
async fn a_stop_cancels_the_second_claim_of_a_tick_found_busy() {
    let cluster = InMemoryCoordinator::new();
    let started = Started::default();
    let a = started_ahead_replica_a(cluster.replica("a"), 800, &started);
    sleep(Duration::from_millis(1_500)).await;
    let b = ahead_replica_at(
        secs(1) + chrono::TimeDelta::milliseconds(500),
        cluster.replica("b"),
        300,
    );
    b.add_service("s", timed_service("b", 800, &started));
    b.start().unwrap();
    a.stop().await; // 1.8: a's run of 1 ended; b found 2 busy at 1.7
    b.stop().await;
    sleep(Duration::from_secs(1)).await; // 2.8
    let history = cluster.replica("c").history("s", 10).await.unwrap();
    assert!(
        history.iter().all(|r| r.tick != secs(2)),
        "tick 2 was claimed after both stopped: {history:?}"
    );
}

/// A manager stopped and started again between a claim made ahead and its tick gives that tick up
/// (the stop gave its claim back), counts it as not run here (`skipped_late`), not as claimed by
/// another replica, and runs the next one.
#[tokio::test(start_paused = true)]
async fn a_quick_stop_and_start_gives_up_the_tick_claimed_ahead_and_says_so() {
    let cluster = InMemoryCoordinator::new();
    let started = Started::default();
    let a = started_ahead_replica_a(cluster.replica("a"), 0, &started);
    sleep(Duration::from_millis(1_800)).await; // tick 2 was claimed at 1.7
    a.stop().await;
    sleep(Duration::from_millis(50)).await;
    a.start().unwrap();
    sleep(Duration::from_millis(1_500)).await; // 3.35
    a.stop().await;
    let ticks: Vec<_> = started.lock().unwrap().iter().map(|(_, t, _)| *t).collect();
    assert_eq!(ticks, [secs(1), secs(3)]);
    let status = a.service("s").unwrap();
    assert_eq!(
        (
            status.claimed_elsewhere,
            status.skipped_late,
            status.held_elsewhere.is_none()
        ),
        (0, 1, true),
        "{status:?}"
    );
}

/// A stop with a deadline returns by it even when giving back the claims made ahead hangs (the
/// coordinator answers releases after a minute): they are given back beside the wait for runs,
/// within the deadline, not before it.
#[tokio::test(start_paused = true)]
async fn a_stop_within_returns_by_its_deadline_while_claims_made_ahead_are_given_back() {
    let cluster = InMemoryCoordinator::new();
    let slow = Slow {
        inner: cluster.replica("a"),
        delay: Arc::new(Mutex::new(Duration::ZERO)),
        release_delay: Duration::from_secs(60),
    };
    let started = Started::default();
    let a = started_ahead_replica_a(slow, 0, &started);
    sleep(Duration::from_millis(1_800)).await; // tick 2 was claimed at 1.7
    let stop_began = tokio::time::Instant::now();
    a.stop_within(Duration::from_secs(1)).await;
    let took = stop_began.elapsed();
    assert!(took <= Duration::from_secs(1), "the stop took {took:?}");
    let ticks: Vec<_> = started.lock().unwrap().iter().map(|(_, t, _)| *t).collect();
    assert_eq!(ticks, [secs(1)], "tick 2 did not run");
}
