//! A replica that cannot reach its database says so: in `coordinator_health()`, in its admin API
//! (`GET api/coordinator`, and the `coordinator` of `GET api/services` the dashboard's banner reads)
//! and in its metrics (`scheduler_coordinator_up`, `scheduler_coordinator_errors_total`). The
//! throw-away PostgreSQL server is stopped under a running manager, then started again.
//!
//! ```text
//! cargo test -p scheduler-tests --test cluster_health_postgres -- --nocapture   # shows the figures
//! ```

#[path = "support/http.rs"]
mod http;
#[path = "support/postgres.rs"]
mod postgres;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use scheduler::health::Reachability;
use scheduler::{PostgresCoordinator, Schedule, Service, ServiceManager};

use http::{http, serve_admin};
use postgres::{wait_for, Postgres};

/// `scheduler_coordinator_up` and `scheduler_coordinator_errors_total` of `replica`, if recorded.
fn meters(snapshotter: &Snapshotter, replica: &str) -> (Option<f64>, Option<u64>) {
    let (mut up, mut errors) = (None, None);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if !key
            .labels()
            .any(|l| l.key() == "replica" && l.value() == replica)
        {
            continue;
        }
        match (key.name(), value) {
            ("scheduler_coordinator_up", DebugValue::Gauge(g)) => up = Some(g.0),
            ("scheduler_coordinator_errors_total", DebugValue::Counter(n)) => errors = Some(n),
            _ => {}
        }
    }
    (up, errors)
}

/// The `state` of the `coordinator` object in an API answer.
async fn api_says(api: SocketAddr, path: &str) -> String {
    let (status, body) = http(api, "GET", path).await;
    assert_eq!(status, 200, "{body}");
    let (_, coordinator) = body
        .split_once("\"coordinator\":{")
        .unwrap_or_else(|| panic!("a coordinator object in {body}"));
    let (_, rest) = coordinator.split_once("\"state\":\"").expect("a state");
    rest.split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_reach_the_database_says_so_and_recovers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    let Some(mut server) = Postgres::launch("health") else {
        return;
    };
    let manager = ServiceManager::builder()
        .coordinator(
            PostgresCoordinator::connect(&server.url(), "a").timeout(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    manager.add_service(
        "beat",
        Service::new(
            Schedule::every(Duration::from_secs(1)).unwrap(),
            |_| async {},
        ),
    );
    manager.start().unwrap();
    let api = serve_admin(&manager).await;

    wait_for("the coordinator to answer", || async {
        let health = manager.coordinator_health().unwrap();
        (health.state == Reachability::Reachable && meters(&snapshotter, "a").0 == Some(1.0))
            .then_some(())
    })
    .await;
    assert_eq!(api_says(api, "/api/coordinator").await, "reachable");
    assert_eq!(manager.coordinator_health().unwrap().errors, 0);

    let stopped_at = Utc::now();
    tokio::task::block_in_place(|| server.stop());
    let stopped = Instant::now();
    let down = wait_for("the outage to be reported", || async {
        let health = manager.coordinator_health().unwrap();
        (health.state == Reachability::Unreachable).then_some(health)
    })
    .await;
    let seen_after = stopped.elapsed();
    println!("outage seen {seen_after:?} after the server stopped: {down:?}");
    assert!(down.since.unwrap() >= stopped_at, "{down:?}");
    assert!(down.last_error.as_deref().is_some_and(|e| !e.is_empty()));
    assert!(down.errors >= 1);
    // The API answers from memory while the database is down, in both places the page reads.
    assert_eq!(api_says(api, "/api/coordinator").await, "unreachable");
    assert_eq!(api_says(api, "/api/services").await, "unreachable");
    let (up, errors) = meters(&snapshotter, "a");
    assert_eq!(up, Some(0.0));
    assert!(errors.is_some_and(|n| n >= 1), "{errors:?}");
    // Calls go on failing while it is down, and each one is counted.
    wait_for("more failed calls", || async {
        (meters(&snapshotter, "a").1 > errors).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| server.start());
    let started = Instant::now();
    let back = wait_for("the recovery to be reported", || async {
        let health = manager.coordinator_health().unwrap();
        (health.state == Reachability::Reachable).then_some(health)
    })
    .await;
    println!(
        "recovery seen {:?} after the server started: {back:?}",
        started.elapsed()
    );
    assert!(back.since.unwrap() > down.since.unwrap());
    assert!(back.last_error.is_some(), "the last outage's error is kept");
    assert_eq!(api_says(api, "/api/coordinator").await, "reachable");
    assert_eq!(api_says(api, "/api/services").await, "reachable");
    assert_eq!(meters(&snapshotter, "a").0, Some(1.0));
    // And the service runs again.
    let runs = manager.service("beat").unwrap().runs;
    wait_for("a run after the recovery", || async {
        (manager.service("beat").unwrap().runs > runs).then_some(())
    })
    .await;
    manager.stop().await;
}
