//! One-shot services: run once after a delay or at an instant, exactly, and can be cancelled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::{Clock, Outcome, Service, ServiceManager, ServiceState, StopMode, TokioClock};
use tokio::time::sleep;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
}

type Runs = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// A one-shot job that records its tick and when it actually ran.
fn job(runs: &Runs) -> impl Fn(scheduler::JobContext) -> std::future::Ready<()> + Send + Sync {
    let (runs, clock) = (runs.clone(), TokioClock::starting_at(t0()));
    move |ctx| {
        runs.lock().unwrap().push((ctx.tick(), clock.now()));
        std::future::ready(())
    }
}

fn manager() -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn once_after_fires_exactly_once_after_the_delay() {
    let manager = manager();
    let runs = Runs::default();
    manager.add_service(
        "warm",
        Service::once_after(Duration::from_secs(30), job(&runs)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(29)).await;
    assert!(runs.lock().unwrap().is_empty());
    assert_eq!(
        manager.service("warm").unwrap().next_fire,
        Some(t0() + TimeDelta::seconds(30))
    );
    sleep(Duration::from_secs(3600)).await;
    let at = t0() + TimeDelta::seconds(30);
    assert_eq!(*runs.lock().unwrap(), [(at, at)]);
    let status = manager.service("warm").unwrap();
    assert_eq!(status.state, ServiceState::Finished);
    assert_eq!(status.last_outcome, Some(Outcome::Succeeded));
    assert_eq!((status.runs, status.next_fire), (1, None));
}

#[tokio::test(start_paused = true)]
async fn once_at_fires_exactly_at_the_instant() {
    let manager = manager();
    let runs = Runs::default();
    let at = t0() + TimeDelta::minutes(90);
    manager.add_service("launch", Service::once_at(at, job(&runs)));
    manager.start().unwrap();
    sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(*runs.lock().unwrap(), [(at, at)]);
    assert_eq!(
        manager.service("launch").unwrap().state,
        ServiceState::Finished
    );
}

#[tokio::test(start_paused = true)]
async fn once_after_zero_runs_right_at_start() {
    let manager = manager();
    let runs = Runs::default();
    manager.add_service("now", Service::once_after(Duration::ZERO, job(&runs)));
    manager.start().unwrap();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(*runs.lock().unwrap(), [(t0(), t0())]);
}

#[tokio::test(start_paused = true)]
async fn stopping_a_one_shot_before_it_fires_cancels_it() {
    let manager = manager();
    let runs = Runs::default();
    manager.add_service(
        "later",
        Service::once_after(Duration::from_secs(60), job(&runs)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(30)).await;
    manager.stop_service("later", StopMode::Wait).await.unwrap();
    sleep(Duration::from_secs(3600)).await;
    assert!(runs.lock().unwrap().is_empty());
    let status = manager.service("later").unwrap();
    assert_eq!(status.state, ServiceState::Stopped);
    assert_eq!((status.runs, status.next_fire), (0, None));
}

#[tokio::test(start_paused = true)]
async fn an_instant_already_past_never_fires() {
    let manager = manager();
    let runs = Runs::default();
    manager.add_service(
        "missed",
        Service::once_at(t0() - TimeDelta::seconds(1), job(&runs)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(60)).await;
    assert!(runs.lock().unwrap().is_empty());
    let status = manager.service("missed").unwrap();
    assert_eq!((status.state, status.runs), (ServiceState::Finished, 0));
}
