//! Scale: 3 replicas × 1000 services at 1 Hz against one PostgreSQL server (started by the test,
//! see `support/postgres.rs`), on the real clock. Every tick of every service runs exactly once.
//!
//! It runs for 15 s by default; `SCHEDULER_SCALE_SECS` sets another duration (the issue's figure
//! is 60 s). It prints claims per second and the claim latency:
//!
//! ```text
//! SCHEDULER_SCALE_SECS=60 cargo test -p scheduler-tests --test cluster_scale -- --nocapture
//! ```
//!
//! The server runs with `synchronous_commit=off`: the test measures the coordinator, not the
//! disk's flush rate (a server with a fast disk, or a managed one, gets there with its defaults).

#[path = "support/coordinators.rs"]
mod coordinators;
#[path = "support/postgres.rs"]
mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use scheduler::coordinator::Coordinator;
use scheduler::{PostgresCoordinator, Schedule, Service, ServiceManager};

use coordinators::{percentile, Wrapped};
use postgres::{Postgres, Setup};

const SERVICES: usize = 1000;
const REPLICAS: [&str; 3] = ["a", "b", "c"];

type Ran = Arc<Mutex<Vec<(u16, DateTime<Utc>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_a_thousand_services_every_second_exactly_once() {
    let setup = Setup {
        options: "-c synchronous_commit=off -c max_connections=50",
        ..Setup::default()
    };
    let Some(server) = Postgres::launch_with("scale", &setup) else {
        return;
    };
    let secs: u64 = std::env::var("SCHEDULER_SCALE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let url = server.url();
    // The schema first, so the first ticks measure claims, not a migration.
    PostgresCoordinator::connect(&url, "setup")
        .prepare()
        .await
        .unwrap();
    let ran = Ran::default();
    let replicas: Vec<(ServiceManager, Wrapped)> = REPLICAS
        .iter()
        .map(|name| replica(&url, name, &ran))
        .collect();
    let began = Utc::now();
    for (manager, _) in &replicas {
        manager.start().unwrap();
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let ended = Utc::now();
    for (manager, _) in &replicas {
        manager.stop().await;
    }

    // Ticks from the first whole second after the start to the last one a second before the end:
    // every one of them, for every service, ran exactly once.
    let second = TimeDelta::seconds(1);
    let first = began.duration_trunc(second).unwrap() + second;
    let last = ended.duration_trunc(second).unwrap() - second;
    let mut per_tick: HashMap<(u16, DateTime<Utc>), usize> = HashMap::new();
    for (id, tick) in ran.lock().unwrap().iter() {
        *per_tick.entry((*id, *tick)).or_default() += 1;
    }
    let twice: Vec<_> = per_tick.iter().filter(|(_, n)| **n > 1).collect();
    let mut missing = Vec::new();
    let mut expected = 0;
    let mut tick = first;
    while tick <= last {
        for id in 0..u16::try_from(SERVICES).unwrap() {
            expected += 1;
            if !per_tick.contains_key(&(id, tick)) {
                missing.push((id, tick));
            }
        }
        tick += second;
    }
    let mut latencies: Vec<Duration> = replicas
        .iter()
        .flat_map(|(_, coordinator)| coordinator.claim_latencies())
        .collect();
    let claims = latencies.len();
    let elapsed = (ended - began).to_std().unwrap();
    let skipped: u64 = replicas
        .iter()
        .flat_map(|(manager, _)| manager.services())
        .map(|s| s.skipped + s.skipped_late)
        .sum();
    println!(
        "scale: {} replicas x {SERVICES} services at 1 Hz for {elapsed:.1?}: {claims} claims, \
         {:.0} claims/s; claim latency p50 {:?}, p99 {:?}, max {:?}; ticks checked {expected}, \
         ran twice {}, missing {}, skipped {skipped}",
        REPLICAS.len(),
        claims as f64 / elapsed.as_secs_f64(),
        percentile(&mut latencies, 50),
        percentile(&mut latencies, 99),
        latencies.last().copied().unwrap_or_default(),
        twice.len(),
        missing.len(),
    );
    assert!(twice.is_empty(), "ticks that ran twice: {twice:?}");
    assert!(
        missing.is_empty(),
        "{} ticks never ran, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        expected >= SERVICES * 5,
        "the test ran too briefly to count"
    );
}

/// A replica with the thousand services, each recording (its number, the tick) in `ran`.
fn replica(url: &str, name: &str, ran: &Ran) -> (ServiceManager, Wrapped) {
    let coordinator = Wrapped::new(PostgresCoordinator::connect(url, name));
    let manager = ServiceManager::builder()
        .coordinator(coordinator.clone())
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    for k in 0..SERVICES {
        let ran = ran.clone();
        let id = u16::try_from(k).unwrap();
        let service = Service::new(
            Schedule::every(Duration::from_secs(1)).unwrap(),
            move |ctx| {
                ran.lock().unwrap().push((id, ctx.tick()));
                async {}
            },
        );
        manager.add_service(format!("svc-{k:04}"), service);
    }
    (manager, coordinator)
}
