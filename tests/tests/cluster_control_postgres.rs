//! The shared control state against a real PostgreSQL server, driven as an operator drives it:
//! through the admin API of each of two replicas. A pause on A holds on B (the issue's report:
//! B went on running), outlives a restart of both, survives a database restart, and a run-now
//! while paused is one run.
//!
//! ```text
//! cargo test -p scheduler-tests --test cluster_control_postgres -- --nocapture   # shows the figures
//! ```

#[path = "support/http.rs"]
mod http;
#[path = "support/postgres.rs"]
mod postgres;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scheduler::{PostgresCoordinator, Schedule, Service, ServiceManager, Trigger};

use http::{act, api_state, http, serve_admin};
use postgres::{wait_for, Postgres};

/// (replica, when the run began, trigger) of every run.
type Ran = Arc<Mutex<Vec<(String, Instant, Trigger)>>>;

/// A replica with the service `beat` (every second, instant) and its admin API on a local port.
async fn replica(url: &str, name: &str, ran: &Ran) -> (ServiceManager, SocketAddr) {
    let manager = ServiceManager::builder()
        .coordinator(PostgresCoordinator::connect(url, name).timeout(Duration::from_secs(2)))
        .lease(Duration::from_secs(3))
        .build()
        .unwrap();
    let (replica, ran) = (name.to_owned(), ran.clone());
    manager.add_service(
        "beat",
        Service::new(
            Schedule::every(Duration::from_secs(1)).unwrap(),
            move |ctx| {
                ran.lock()
                    .unwrap()
                    .push((replica.clone(), Instant::now(), ctx.trigger()));
                async {}
            },
        ),
    );
    manager.start().unwrap();
    let addr = serve_admin(&manager).await;
    (manager, addr)
}

/// Waits until both APIs show `state`; how long it took.
async fn until_both(addrs: [SocketAddr; 2], state: &str) -> Duration {
    let began = Instant::now();
    wait_for(&format!("both replicas to show {state}"), || async {
        let a = api_state(addrs[0], "beat").await;
        let b = api_state(addrs[1], "beat").await;
        (a == state && b == state).then_some(())
    })
    .await;
    began.elapsed()
}

fn runs_after(ran: &Ran, after: Instant) -> Vec<(String, Trigger)> {
    ran.lock()
        .unwrap()
        .iter()
        .filter(|(_, began, _)| *began > after)
        .map(|(replica, _, trigger)| (replica.clone(), *trigger))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_are_paused_resumed_and_run_as_one_scheduler() {
    let Some(mut server) = Postgres::launch("control") else {
        return;
    };
    let url = server.url();
    let ran = Ran::default();
    let (a, a_api) = replica(&url, "a", &ran).await;
    let (b, b_api) = replica(&url, "b", &ran).await;
    let both = [a_api, b_api];
    wait_for("runs on the cluster", || async {
        (ran.lock().unwrap().len() >= 2).then_some(())
    })
    .await;

    replicas_are_listed_and_a_shared_name_is_reported(&url, a_api, b_api).await;

    // The issue's report: pause on A, B went on. Now B pauses too, within a second.
    act(a_api, "beat", "pause").await;
    let took = until_both(both, "paused").await;
    println!("pause on A seen on both APIs after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs_after(&ran, settled), vec![], "no run while paused");

    // Run-now on A while paused: one run in the cluster, and the service stays paused.
    let asked = Instant::now();
    act(a_api, "beat", "run-now").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_after(&ran, asked),
        vec![("a".to_owned(), Trigger::Manual)],
        "one run in 3 s"
    );
    assert!(until_both(both, "paused").await < Duration::from_secs(1));

    // A deploy: both replicas restarted. The pause is still there.
    a.stop().await;
    b.stop().await;
    drop((a, b));
    let restarted = Instant::now();
    let (a, a_api) = replica(&url, "a", &ran).await;
    let (b, b_api) = replica(&url, "b", &ran).await;
    let both = [a_api, b_api];
    until_both(both, "paused").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_after(&ran, restarted),
        vec![],
        "paused after the restart"
    );

    // Resume on B: both resume, and the ticks run again, once each.
    act(b_api, "beat", "resume").await;
    let resumed = Instant::now();
    wait_for("runs after the resume", || async {
        (runs_after(&ran, resumed).len() >= 3).then_some(())
    })
    .await;
    assert_ne!(api_state(a_api, "beat").await, "paused");
    assert_ne!(api_state(b_api, "beat").await, "paused");

    // The database restarts while A pauses: the write waits for it, and B learns it by polling
    // (the notifications of the outage are lost with the connection).
    server.stop();
    act(a_api, "beat", "pause").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(
        api_state(b_api, "beat").await,
        "paused",
        "B cannot know yet"
    );
    server.start();
    let back = Instant::now();
    let took = until_both(both, "paused").await;
    println!("pause during the outage seen on both APIs {took:?} after the restart");
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_after(&ran, settled),
        vec![],
        "no run once the pause landed"
    );
    assert!(back.elapsed() > took);

    disable_and_enable_reach_both(both, &ran).await;
    a.stop().await;
    b.stop().await;
}

/// Each API lists both replicas, alive, and says which one answers; a second process started as
/// "b" by mistake is reported on both, and takes nothing over.
async fn replicas_are_listed_and_a_shared_name_is_reported(
    url: &str,
    a_api: SocketAddr,
    b_api: SocketAddr,
) {
    // Each API lists both replicas, alive, and says which one answers.
    for (api, me) in [(a_api, "a"), (b_api, "b")] {
        let body = wait_for("both replicas in the list", || async {
            let (status, body) = http(api, "GET", "/api/replicas").await;
            assert_eq!(status, 200, "{body}");
            let alive = body.matches("\"status\":\"alive\"").count();
            (alive == 2).then_some(body)
        })
        .await;
        assert!(body.contains(&format!("\"replica\":\"{me}\"")), "{body}");
        assert!(body.contains("\"name\":\"a\"") && body.contains("\"name\":\"b\""));
        assert!(body.contains("\"name_shared_with\":null"), "{body}");
    }

    let impostor = ServiceManager::builder()
        .coordinator(PostgresCoordinator::connect(url, "b"))
        .build()
        .unwrap();
    impostor.start().unwrap();
    let shared = wait_for("the shared name to be reported", || async {
        let (_, body) = http(b_api, "GET", "/api/replicas").await;
        (impostor.name_shared_with().is_some() && !body.contains("\"name_shared_with\":null"))
            .then_some(body)
    })
    .await;
    assert!(shared.contains("\"name_shared\":true"), "{shared}");
    impostor.stop().await;
    drop(impostor);
}

/// Disable on B, through its API: both show it within a second; enable on A: both run again.
async fn disable_and_enable_reach_both(both: [SocketAddr; 2], ran: &Ran) {
    let [a_api, b_api] = both;
    act(b_api, "beat", "resume").await;
    until_both(both, "idle").await;
    act(b_api, "beat", "disable").await;
    let took = until_both(both, "disabled").await;
    println!("disable on B seen on both APIs after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs_after(ran, settled), vec![], "no run while disabled");
    act(a_api, "beat", "enable").await;
    let enabled = Instant::now();
    wait_for("runs after the enable", || async {
        (runs_after(ran, enabled).len() >= 2).then_some(())
    })
    .await;
}
