//! Coordinated replicas, with the in-memory coordinator and tokio's paused clock: the cluster rules,
//! exactly (the PostgreSQL coordinator is held to the same rules against a real database).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduler::{
    Delivery, Error, InMemoryCoordinator, Schedule, Service, ServiceManager, StopMode, TokioClock,
};
use tokio::time::sleep;

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
    assert!(b.service("slow").unwrap().skipped >= 2);
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
