//! The shared control state (pause, resume) with the in-memory coordinator and tokio's paused
//! clock: a pause on one replica holds on every replica, outlives a restart of all of them, and a
//! manual run while paused is one run that leaves the service paused. The same rules are held
//! against PostgreSQL in `cluster_control_postgres.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduler::coordinator::Coordinator;
use scheduler::{
    InMemoryCoordinator, Schedule, Service, ServiceManager, ServiceState, TokioClock, Trigger,
};
use tokio::time::sleep;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::seconds(n)
}

/// (replica, tick, trigger) of every run.
type Ran = Arc<Mutex<Vec<(String, DateTime<Utc>, Trigger)>>>;

fn replica(cluster: &InMemoryCoordinator, name: &str) -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .coordinator(cluster.replica(name))
        .lease(Duration::from_secs(6))
        .build()
        .unwrap()
}

/// A service every second whose instant job records its run.
fn beat(replica: &str, ran: &Ran) -> Service {
    let (replica, ran) = (replica.to_owned(), ran.clone());
    Service::new(
        Schedule::every(Duration::from_secs(1)).unwrap(),
        move |ctx| {
            ran.lock()
                .unwrap()
                .push((replica.clone(), ctx.tick(), ctx.trigger()));
            async {}
        },
    )
}

fn pair(cluster: &InMemoryCoordinator, ran: &Ran) -> (ServiceManager, ServiceManager) {
    let (a, b) = (replica(cluster, "a"), replica(cluster, "b"));
    a.add_service("beat", beat("a", ran));
    b.add_service("beat", beat("b", ran));
    a.start().unwrap();
    b.start().unwrap();
    (a, b)
}

fn state(manager: &ServiceManager) -> ServiceState {
    manager.service("beat").unwrap().state
}

#[tokio::test(start_paused = true)]
async fn a_pause_on_one_replica_holds_on_every_replica_and_a_resume_too() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let (a, b) = pair(&cluster, &ran);
    sleep(Duration::from_millis(5_500)).await;
    a.pause("beat").unwrap();
    assert_eq!(state(&a), ServiceState::Paused);
    // B learns it from the coordinator's notification, well within the second.
    sleep(Duration::from_millis(100)).await;
    assert_eq!(state(&b), ServiceState::Paused);
    sleep(Duration::from_secs(10)).await; // 15.6: ticks 6 to 15 paused on both
    let after_pause: Vec<_> = ran
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, tick, _)| *tick > secs(5))
        .cloned()
        .collect();
    assert_eq!(after_pause, vec![], "no replica ran a tick after the pause");

    b.resume("beat").unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (state(&a), state(&b)),
        (ServiceState::Idle, ServiceState::Idle)
    );
    // Counted as the pause ends, on each replica: ticks 6 to 15.
    for manager in [&a, &b] {
        assert_eq!(manager.service("beat").unwrap().skipped_paused, 10);
    }
    sleep(Duration::from_secs(3)).await; // 18.7: ticks 16, 17, 18 run, once each
    let resumed: Vec<DateTime<Utc>> = ran
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, tick, _)| *tick > secs(15))
        .map(|(_, tick, _)| *tick)
        .collect();
    assert_eq!(resumed, vec![secs(16), secs(17), secs(18)]);
}

#[tokio::test(start_paused = true)]
async fn a_pause_outlives_a_restart_of_every_replica() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let (a, b) = pair(&cluster, &ran);
    sleep(Duration::from_millis(2_500)).await;
    b.pause("beat").unwrap();
    sleep(Duration::from_millis(100)).await;
    a.stop().await;
    b.stop().await;
    drop((a, b));
    let before = ran.lock().unwrap().len();

    // The deploy: new processes, same cluster, a service that would run at once on start.
    let (c, d) = (replica(&cluster, "a"), replica(&cluster, "b"));
    for (manager, name) in [(&c, "a"), (&d, "b")] {
        manager.add_service("beat", beat(name, &ran).on_start(true));
        manager.start().unwrap();
    }
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        ran.lock().unwrap().len(),
        before,
        "nothing ran after the restart"
    );
    assert_eq!(
        (state(&c), state(&d)),
        (ServiceState::Paused, ServiceState::Paused)
    );
    let records = cluster.controls(0).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].paused, records[0].disabled), (Some(true), None));
    assert_eq!(records[0].changed_by, "b");
}

#[tokio::test(start_paused = true)]
async fn run_now_while_paused_is_one_run_in_the_cluster_and_stays_paused() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let (a, b) = pair(&cluster, &ran);
    sleep(Duration::from_millis(1_500)).await;
    a.pause("beat").unwrap();
    sleep(Duration::from_millis(500)).await; // 2.0
    let before = ran.lock().unwrap().len();
    a.run_now("beat").unwrap();
    sleep(Duration::from_secs(3)).await; // 5.0
    let runs: Vec<_> = ran.lock().unwrap()[before..].to_vec();
    assert_eq!(runs.len(), 1, "one run in 3 s: {runs:?}");
    assert_eq!((runs[0].0.as_str(), runs[0].2), ("a", Trigger::Manual));
    assert_eq!(
        (state(&a), state(&b)),
        (ServiceState::Paused, ServiceState::Paused)
    );
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_before_start_are_accepted_and_apply_at_start() {
    for coordinated in [false, true] {
        let ran = Ran::default();
        let manager = if coordinated {
            replica(&InMemoryCoordinator::new(), "a")
        } else {
            ServiceManager::builder()
                .clock(TokioClock::starting_at(t0()))
                .build()
                .unwrap()
        };
        manager.add_service("beat", beat("a", &ran).on_start(true));
        manager.pause("beat").unwrap();
        manager.start().unwrap();
        assert_eq!(
            state(&manager),
            ServiceState::Paused,
            "coordinated: {coordinated}"
        );
        sleep(Duration::from_millis(3_500)).await;
        assert!(ran.lock().unwrap().is_empty(), "not even on_start ran");
        manager.resume("beat").unwrap();
        sleep(Duration::from_secs(1)).await; // 4.5
        assert_eq!(ran.lock().unwrap().len(), 1, "tick 4 ran");
        manager.stop().await;

        // Resumed before start: a pause by the same manager earlier is undone.
        manager.pause("beat").ok();
        let ran_before = ran.lock().unwrap().len();
        manager.restart_service("beat").unwrap();
        manager.resume("beat").unwrap();
        manager.start().unwrap();
        sleep(Duration::from_millis(100)).await;
        assert_eq!(ran.lock().unwrap().len(), ran_before + 1, "on_start ran");
        manager.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_pause_written_while_the_coordinator_is_down_lands_when_it_is_back() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let (a, b) = pair(&cluster, &ran);
    sleep(Duration::from_millis(1_500)).await;
    cluster.set_available(false);
    a.pause("beat").unwrap();
    assert_eq!(state(&a), ServiceState::Paused, "applied here at once");
    sleep(Duration::from_secs(3)).await;
    assert!(cluster.controls(0).await.is_err());
    cluster.set_available(true);
    sleep(Duration::from_millis(1_100)).await; // one retry later
    assert_eq!(state(&b), ServiceState::Paused);
    let records = cluster.controls(0).await.unwrap();
    assert_eq!((records.len(), records[0].paused), (1, Some(true)));
    let late = ran.lock().unwrap().len();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ran.lock().unwrap().len(),
        late,
        "nothing runs once the pause landed"
    );
}

/// (replica, tick, began, ended) of every run, in seconds of the paused clock.
type Spans = Arc<Mutex<Vec<(String, DateTime<Utc>, f64, f64)>>>;

/// A service every 10 s whose job runs until it is cancelled (at most 60 s), cooperatively.
fn until_cancelled(replica: &str, spans: &Spans, origin: tokio::time::Instant) -> Service {
    let (replica, spans) = (replica.to_owned(), spans.clone());
    Service::new(
        Schedule::every(Duration::from_secs(10)).unwrap(),
        move |ctx| {
            let (replica, spans) = (replica.clone(), spans.clone());
            async move {
                let began = origin.elapsed().as_secs_f64();
                tokio::select! {
                    () = ctx.cancelled() => {}
                    () = sleep(Duration::from_secs(60)) => {}
                }
                let ended = origin.elapsed().as_secs_f64();
                spans
                    .lock()
                    .unwrap()
                    .push((replica, ctx.tick(), began, ended));
            }
        },
    )
    .delivery(scheduler::Delivery::AtLeastOnce)
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_renewals_fail_past_its_lease_is_cancelled_as_lease_lost() {
    let origin = tokio::time::Instant::now();
    let cluster = InMemoryCoordinator::new();
    let spans = Spans::default();
    let a = replica(&cluster, "a"); // lease 6 s, renewed every 2 s
    a.add_service("long", until_cancelled("a", &spans, origin));
    a.start().unwrap();
    sleep(Duration::from_secs(11)).await; // tick 10 runs, its claim confirmed at 10
    cluster.set_available(false);
    sleep(Duration::from_secs(10)).await;
    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (_, tick, began, ended) = &spans[0];
    assert_eq!((*tick, *began), (secs(10), 10.0));
    assert!(
        (16.0..=16.01).contains(ended),
        "cancelled when the lease ran out, at 16: {ended}"
    );
    let status = a.service("long").unwrap();
    assert_eq!(status.last_outcome, Some(scheduler::Outcome::LeaseLost));
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_tick_another_replica_takes_over_has_ended_before_the_takeover_runs() {
    let origin = tokio::time::Instant::now();
    let cluster = InMemoryCoordinator::new();
    let spans = Spans::default();
    let (a, b) = (replica(&cluster, "a"), replica(&cluster, "b"));
    a.add_service("long", until_cancelled("a", &spans, origin));
    a.start().unwrap();
    sleep(Duration::from_secs(9)).await;
    b.add_service("long", until_cancelled("b", &spans, origin));
    b.start().unwrap();
    sleep(Duration::from_secs(2)).await; // 11: A runs tick 10
                                         // A's coordinator stops answering (a network partition): its renewals hang.
    cluster.replica("a").crash();
    sleep(Duration::from_secs(20)).await; // 31: B took tick 10 over at 20
    let spans = spans.lock().unwrap().clone();
    let a_run = spans.iter().find(|s| s.0 == "a").expect("A's run ended");
    let b_run = spans.iter().find(|s| s.0 == "b" && s.1 == secs(10));
    // B's takeover run of tick 10 began at 20 and runs until cancelled or 60 s: not ended yet.
    assert!(b_run.is_none(), "{spans:?}");
    assert_eq!((a_run.1, a_run.2), (secs(10), 10.0));
    assert!(a_run.3 <= 16.01, "A's run was cancelled by 16: {a_run:?}");
    let history = b.cluster_history("long", 10).await.unwrap();
    let ten = history.iter().find(|r| r.tick == secs(10)).unwrap();
    assert_eq!((ten.replica.as_str(), ten.attempt), ("b", 2), "taken over");
    // B claims at its tick 20, and takes tick 10 over then: after A's run had ended, at 16.
    assert_eq!(b.service("long").unwrap().state, ServiceState::Running);
    assert_eq!(
        a.service("long").unwrap().last_outcome,
        Some(scheduler::Outcome::LeaseLost)
    );
}

#[tokio::test(start_paused = true)]
async fn replicas_heartbeat_what_they_hold_die_when_silent_and_a_shared_name_is_reported() {
    let origin = tokio::time::Instant::now();
    let cluster = InMemoryCoordinator::new();
    let spans = Spans::default();
    let (a, b) = (replica(&cluster, "a"), replica(&cluster, "b"));
    a.add_service("long", until_cancelled("a", &spans, origin));
    a.start().unwrap();
    b.start().unwrap();
    sleep(Duration::from_secs(12)).await; // A runs tick 10
    let replicas = b.replicas().await.unwrap();
    let names: Vec<_> = replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(replicas.iter().all(|r| r.alive && !r.name_shared));
    assert_eq!(
        (
            replicas[0].services_held.clone(),
            replicas[0].runs_in_flight
        ),
        (vec!["long".to_owned()], 1)
    );
    assert_eq!(
        (replicas[1].services_held.len(), replicas[1].runs_in_flight),
        (0, 0)
    );

    // A second process under the name "b": it does not take the row over, and both are told.
    let impostor = replica(&cluster, "b");
    impostor.start().unwrap();
    sleep(Duration::from_secs(2)).await; // 14
    let b_instance = b.replicas().await.unwrap()[1].instance.clone();
    assert_eq!(impostor.name_shared_with(), Some(b_instance.clone()));
    assert!(
        b.name_shared_with().is_some(),
        "the holder of the name is told too"
    );
    let row = &a.replicas().await.unwrap()[1];
    assert_eq!(
        (row.instance.as_str(), row.name_shared),
        (b_instance.as_str(), true)
    );
    impostor.stop().await;
    sleep(Duration::from_secs(6)).await; // 20: the contest is over
    assert_eq!(b.name_shared_with(), None);

    // B stops: dead once its heartbeat is 5 s old (its last one came at most 2 s before).
    b.stop().await;
    assert!(
        a.replicas().await.unwrap()[1].alive,
        "just stopped: not dead yet"
    );
    sleep(Duration::from_secs(3)).await;
    assert!(
        a.replicas().await.unwrap()[1].alive,
        "3 s of silence: not dead yet"
    );
    sleep(Duration::from_secs(3)).await;
    assert!(
        !a.replicas().await.unwrap()[1].alive,
        "6 s of silence: dead"
    );
    assert!(a.replicas().await.unwrap()[0].alive);
}

/// A pause asked outside any runtime (before the app's runtime exists) is written at the start.
#[test]
fn a_pause_before_the_runtime_exists_is_written_at_the_start() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let manager = replica(&cluster, "a");
    manager.add_service("beat", beat("a", &ran).on_start(true));
    manager.pause("beat").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        manager.start().unwrap();
        sleep(Duration::from_secs(3)).await;
        assert!(ran.lock().unwrap().is_empty());
        assert_eq!(state(&manager), ServiceState::Paused);
        let records = cluster.controls(0).await.unwrap();
        assert_eq!((records.len(), records[0].paused), (1, Some(true)));
        manager.stop().await;
    });
}

#[tokio::test(start_paused = true)]
async fn disable_on_one_replica_holds_on_every_replica_across_a_restart_until_enabled() {
    let cluster = InMemoryCoordinator::new();
    let ran = Ran::default();
    let (a, b) = pair(&cluster, &ran);
    sleep(Duration::from_millis(2_500)).await;
    b.disable("beat").unwrap();
    assert_eq!(state(&b), ServiceState::Disabled);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(state(&a), ServiceState::Disabled);
    assert!(matches!(
        a.run_now("beat"),
        Err(scheduler::Error::InvalidState { .. })
    ));
    let before = ran.lock().unwrap().len();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(ran.lock().unwrap().len(), before, "no run while disabled");

    // A deploy: still disabled (a pause of a disabled service is refused, as before).
    assert!(matches!(
        a.pause("beat"),
        Err(scheduler::Error::InvalidState { .. })
    ));
    a.stop().await;
    b.stop().await;
    let (c, d) = (replica(&cluster, "a"), replica(&cluster, "b"));
    for (manager, name) in [(&c, "a"), (&d, "b")] {
        manager.add_service("beat", beat(name, &ran));
        manager.start().unwrap();
    }
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (state(&c), state(&d)),
        (ServiceState::Disabled, ServiceState::Disabled)
    );
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ran.lock().unwrap().len(),
        before,
        "no run after the restart"
    );

    // Enabled on one: scheduled again on both, and it runs, once per tick.
    c.enable("beat").unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (state(&c), state(&d)),
        (ServiceState::Idle, ServiceState::Idle)
    );
    sleep(Duration::from_secs(3)).await;
    let runs: Vec<DateTime<Utc>> = ran.lock().unwrap()[before..].iter().map(|r| r.1).collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let records = cluster.controls(0).await.unwrap();
    assert_eq!(
        (records[0].paused, records[0].disabled),
        (None, Some(false))
    );
}

/// Without a coordinator the manager is a cluster of one: its row is written when asked for (a
/// heartbeat visits every service, too dear to pay every second for nobody), and says what runs.
#[tokio::test(start_paused = true)]
async fn a_manager_without_a_coordinator_lists_itself_with_what_it_runs() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap();
    manager.add_service(
        "long",
        Service::new(
            Schedule::every(Duration::from_secs(10)).unwrap(),
            |_ctx: scheduler::JobContext| sleep(Duration::from_secs(60)),
        )
        .on_start(true),
    );
    manager.add_service(
        "idle",
        Service::new(
            Schedule::every(Duration::from_secs(3600)).unwrap(),
            |_ctx: scheduler::JobContext| async {},
        ),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(2)).await;
    let replicas = manager.replicas().await.unwrap();
    assert_eq!(replicas.len(), 1);
    let row = &replicas[0];
    assert_eq!(row.name, manager.replica_name());
    assert!(row.alive && !row.name_shared);
    assert_eq!(
        (row.services_held.clone(), row.runs_in_flight),
        (vec!["long".to_owned()], 1)
    );
    manager.stop().await;
}
