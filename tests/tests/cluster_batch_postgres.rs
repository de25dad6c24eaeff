//! Batched claims against a real PostgreSQL server (started by the test: see
//! `support/postgres.rs`): claims made together share one statement, replicas racing over the same
//! services in batches still grant each tick once, and every claim gets its own answer.
//!
//! The batches are counted with the `scheduler_coordinator_claim_batch_size` histogram, through
//! `metrics-util`'s debugging recorder, installed for this test binary only.

#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use scheduler::coordinator::{Claim, ClaimPolicy, Coordinator, FinishedRun};
use scheduler::status::Outcome;
use scheduler::{Delivery, PostgresCoordinator};

use postgres::Postgres;

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// The sizes of the claim batches each replica sent so far. A snapshot drains the histograms (of
/// every test of this binary), so what each one read is kept here for all.
fn batch_sizes() -> BTreeMap<String, Vec<f64>> {
    static SEEN: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());
    let mut seen = SEEN.lock().unwrap();
    for (key, .., value) in snapshotter().snapshot().into_vec() {
        let key = key.key();
        let replica = key.labels().find(|l| l.key() == "replica");
        if let (true, Some(replica), DebugValue::Histogram(values)) = (
            key.name() == "scheduler_coordinator_claim_batch_size",
            replica,
            value,
        ) {
            seen.entry(replica.value().to_owned())
                .or_default()
                .extend(values.into_iter().map(f64::from));
        }
    }
    seen.clone()
}

fn policy() -> ClaimPolicy {
    ClaimPolicy::new(Duration::from_secs(30), Delivery::AtMostOnce)
}

/// Claims `tick` of every service in `services` at once from `coordinator`.
async fn claim_all(
    coordinator: &Arc<PostgresCoordinator>,
    services: &[String],
    tick: DateTime<Utc>,
) -> Vec<(String, Claim)> {
    let tasks: Vec<_> = services
        .iter()
        .map(|service| {
            let (coordinator, service) = (coordinator.clone(), service.clone());
            tokio::spawn(async move {
                let claim = coordinator.claim(&service, tick, policy()).await.unwrap();
                (service, claim)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_made_together_go_in_batches_and_racing_replicas_grant_each_tick_once() {
    let _ = snapshotter();
    let Some(server) = Postgres::launch("batch") else {
        return;
    };
    let url = server.url();
    let connect = |name: &str| {
        Arc::new(
            PostgresCoordinator::connect(&url, name)
                .claim_connections(3)
                .claim_batch(100),
        )
    };
    let (a, b) = (connect("batch-a"), connect("batch-b"));
    a.prepare().await.unwrap();
    b.prepare().await.unwrap();
    let services: Vec<String> = (0..1000).map(|k| format!("svc-{k:04}")).collect();
    let tick = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).unwrap();

    // Both replicas claim the same thousand ticks at the same moment.
    let (by_a, by_b) = tokio::join!(
        claim_all(&a, &services, tick),
        claim_all(&b, &services, tick)
    );
    let mut winners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (replica, answers) in [("batch-a", &by_a), ("batch-b", &by_b)] {
        for (service, claim) in answers {
            match claim {
                Claim::Granted(ticket) => {
                    assert_eq!((&ticket.service, ticket.tick), (service, tick));
                    winners.entry(service.clone()).or_default().push(replica);
                }
                Claim::Taken { replica: holder } => {
                    assert_ne!(holder, replica, "{service}: taken by itself");
                }
                other => panic!("{service}: {other:?}"),
            }
        }
    }
    let not_once: Vec<_> = winners.iter().filter(|(_, w)| w.len() != 1).collect();
    assert!(not_once.is_empty(), "granted twice: {not_once:?}");
    assert_eq!(winners.len(), services.len(), "every tick granted once");
    // Each answer names the replica that holds the tick.
    for (service, claim) in by_a.iter().chain(&by_b) {
        if let Claim::Taken { replica } = claim {
            assert_eq!(winners[service], vec![replica.as_str()]);
        }
    }

    // A thousand claims from each replica, at most a hundred a statement: a few batches each,
    // not a statement per claim.
    let all_sizes = batch_sizes();
    for replica in ["batch-a", "batch-b"] {
        let sizes = all_sizes.get(replica).cloned().unwrap_or_default();
        // Whole numbers, summed exactly.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let claims: u64 = sizes.iter().map(|s| *s as u64).sum();
        println!(
            "{replica}: {} statements for {claims} claims: {sizes:?}",
            sizes.len()
        );
        assert_eq!(claims, 1000, "{replica}");
        assert!(sizes.iter().all(|s| *s <= 100.0), "{replica}: {sizes:?}");
        assert!(sizes.len() <= 40, "{replica}: {} statements", sizes.len());
    }

    // The next tick: the winners' runs are still going (busy), except those that finished.
    let finished: Vec<&String> = services.iter().step_by(2).collect();
    for service in &finished {
        let winner = if winners[*service] == ["batch-a"] {
            &a
        } else {
            &b
        };
        let ticket = scheduler::coordinator::Ticket::new((*service).clone(), tick, 1);
        let run = FinishedRun::new(tick, tick + TimeDelta::seconds(1), Outcome::Succeeded);
        assert!(winner.finish(&ticket, &run).await.unwrap());
    }
    let next = tick + TimeDelta::seconds(1);
    for (service, claim) in claim_all(&a, &services, next).await {
        let done = finished.contains(&&service);
        match claim {
            Claim::Granted(_) => assert!(done, "{service}: granted while its run goes on"),
            Claim::Busy { tick: running, .. } => {
                assert!(!done, "{service}: busy after its run finished");
                assert_eq!(running, tick);
            }
            other => panic!("{service}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ticks_of_one_service_in_one_batch_are_claimed_in_turn() {
    let _ = snapshotter();
    let Some(server) = Postgres::launch("batch_twice") else {
        return;
    };
    let coordinator = Arc::new(PostgresCoordinator::connect(&server.url(), "twice"));
    coordinator.prepare().await.unwrap();
    let tick = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).unwrap();
    let later = tick + TimeDelta::seconds(1);
    // Sent together, so in one batch (asserted below): the first is granted, and the second sees
    // it running.
    let (first, second) = tokio::join!(
        coordinator.claim("svc", tick, policy()),
        coordinator.claim("svc", later, policy())
    );
    let answers = [first.unwrap(), second.unwrap()];
    let granted: Vec<_> = answers
        .iter()
        .filter(|a| matches!(a, Claim::Granted(_)))
        .collect();
    let busy: Vec<_> = answers
        .iter()
        .filter(|a| matches!(a, Claim::Busy { .. }))
        .collect();
    assert_eq!((granted.len(), busy.len()), (1, 1), "{answers:?}");
    let sizes = batch_sizes().remove("twice").unwrap_or_default();
    assert_eq!(sizes, vec![2.0], "one batch of both");
}

#[tokio::test]
async fn out_of_range_pool_and_batch_sizes_are_reported_by_validate() {
    let url = "postgres://u@localhost/db";
    let error = PostgresCoordinator::connect(url, "r")
        .claim_connections(0)
        .claim_batch(20_000)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("claim_connections: 0 is not between 1 and 16"),
        "{error}"
    );
    assert!(
        error.contains("claim_batch: 20000 is not between 1 and 10000"),
        "{error}"
    );
    assert!(PostgresCoordinator::connect(url, "r")
        .claim_connections(16)
        .claim_batch(1)
        .validate()
        .is_ok());
}

/// Two replicas claiming 200 services 300 ms ahead of each tick on real PostgreSQL: every tick in
/// the window runs once, and no run starts before its tick (the claim is early, the run is not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_claimed_ahead_run_once_and_never_before_their_tick() {
    use scheduler::{Schedule, Service, ServiceManager};

    type Runs = Arc<Mutex<Vec<(String, String, DateTime<Utc>, TimeDelta)>>>;
    let Some(server) = Postgres::launch("ahead") else {
        return;
    };
    let url = server.url();
    let runs = Runs::default();
    let services: Vec<String> = (0..200).map(|k| format!("svc-{k:03}")).collect();
    let mut managers = Vec::new();
    let started = Utc::now();
    for name in ["ahead-a", "ahead-b"] {
        let manager = ServiceManager::builder()
            .coordinator(PostgresCoordinator::connect(&url, name))
            .lease(Duration::from_secs(10))
            .claim_ahead(Duration::from_millis(300))
            .build()
            .unwrap();
        for service in &services {
            let (runs, replica, service_name) = (runs.clone(), name.to_owned(), service.clone());
            manager.add_service(
                service,
                Service::new(
                    Schedule::every(Duration::from_secs(1)).unwrap(),
                    move |ctx| {
                        let lag = Utc::now() - ctx.tick();
                        let run = (replica.clone(), service_name.clone(), ctx.tick(), lag);
                        runs.lock().unwrap().push(run);
                        async {}
                    },
                ),
            );
        }
        manager.start().unwrap();
        managers.push(manager);
    }
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let stopping = Utc::now();
    for manager in &managers {
        manager.stop().await;
    }
    let runs = runs.lock().unwrap().clone();
    for (replica, service, tick, lag) in &runs {
        assert!(
            *lag >= TimeDelta::zero(),
            "{replica} started {service}@{tick} {lag} before its tick"
        );
    }
    // Whole seconds from the second after the start to the second before the stop.
    let second = |t: DateTime<Utc>| t.timestamp();
    let (first, last) = (second(started) + 2, second(stopping) - 1);
    assert!(last > first, "the window holds at least two ticks");
    let mut per_tick: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for (_, service, tick, _) in &runs {
        *per_tick
            .entry((service.clone(), tick.timestamp()))
            .or_default() += 1;
    }
    for service in &services {
        for tick in first..=last {
            assert_eq!(
                per_tick.get(&(service.clone(), tick)).copied().unwrap_or(0),
                1,
                "{service}@{tick}: runs across both replicas"
            );
        }
    }
}
