//! The edge behaviour the README's "Edges" list promises, one test each, on tokio's paused clock:
//! whether a failed manual run is retried, where a retry's backoff is measured from, and what a
//! paused service reports (and when).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduler::{
    Clock, RunEvent, Schedule, Service, ServiceManager, ServiceState, SkipReason, TokioClock,
    Trigger,
};
use tokio::time::sleep;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn every(seconds: u64) -> Schedule {
    Schedule::every(Duration::from_secs(seconds)).unwrap()
}

type Events = Arc<Mutex<Vec<RunEvent>>>;

fn manager_with_events() -> (ServiceManager, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .on_event(move |event| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    (manager, events)
}

/// (attempt, trigger, start, end) of every run of a job that works 2 s and always fails.
type Attempts = Arc<Mutex<Vec<(u32, Trigger, DateTime<Utc>, DateTime<Utc>)>>>;

fn failing_job(schedule: Schedule) -> (Service, Attempts) {
    let attempts: Attempts = Arc::default();
    let sink = attempts.clone();
    let clock = TokioClock::starting_at(t0());
    let service = Service::new(schedule, move |ctx| {
        let sink = sink.clone();
        async move {
            let start = clock.now();
            sleep(Duration::from_secs(2)).await;
            sink.lock()
                .unwrap()
                .push((ctx.attempt(), ctx.trigger(), start, clock.now()));
            Err::<(), _>("still down")
        }
    })
    .retries(2)
    .retry_backoff(Duration::from_secs(4), Duration::from_secs(60));
    (service, attempts)
}

#[tokio::test(start_paused = true)]
async fn a_failed_manual_run_is_retried_like_a_tick_and_backoff_counts_from_its_end() {
    let (manager, _) = manager_with_events();
    let (service, attempts) = failing_job(every(3600));
    manager.add_service("sync", service);
    manager.start().unwrap();
    sleep(Duration::from_secs(5)).await;
    manager.run_now("sync").unwrap();
    sleep(Duration::from_secs(60)).await;
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts.iter().map(|a| (a.0, a.1)).collect::<Vec<_>>(),
        [
            (1, Trigger::Manual),
            (2, Trigger::Manual),
            (3, Trigger::Manual)
        ],
        "retried up to `retries`, each attempt still a manual run"
    );
    // Backoff k is base × 2^(k-1) with up to half of it taken off: [2, 4] s, then [4, 8] s, counted
    // from the end of the failed attempt (counted from its start, the first retry would be due
    // while the 2 s attempt still ran, and would start the moment it ended).
    for (k, pair) in attempts.windows(2).enumerate() {
        let gap = (pair[1].2 - pair[0].3).to_std().unwrap();
        let full = Duration::from_secs(4 << k);
        assert!(
            gap >= full / 2 && gap <= full,
            "retry {}: {gap:?} after the failed attempt ended, expected {:?}..={full:?}",
            k + 1,
            full / 2
        );
    }
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_manual_run_of_a_paused_service_is_not_retried() {
    let (manager, _) = manager_with_events();
    let (service, attempts) = failing_job(every(3600));
    manager.add_service("sync", service);
    manager.start().unwrap();
    manager.pause("sync").unwrap();
    manager.run_now("sync").unwrap();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(attempts.lock().unwrap().len(), 1, "one attempt, no retry");
    let status = manager.service("sync").unwrap();
    assert_eq!(status.state, ServiceState::Paused, "back to paused");
    assert_eq!((status.runs, status.failures), (1, 1));
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_service_emits_nothing_and_reports_its_skipped_ticks_at_resume() {
    let (manager, events) = manager_with_events();
    manager.add_service("tick", Service::new(every(10), |_| async {}));
    manager.start().unwrap();
    manager.pause("tick").unwrap();
    sleep(Duration::from_millis(35_500)).await; // ticks at 10, 20, 30 pass while paused
    assert!(
        events.lock().unwrap().is_empty(),
        "no event while paused: {:?}",
        events.lock().unwrap()
    );
    assert_eq!(
        manager.service("tick").unwrap().skipped_paused,
        0,
        "counted at the resume, not as they pass"
    );
    manager.resume("tick").unwrap();
    assert_eq!(manager.service("tick").unwrap().skipped_paused, 3);
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            matches!(
                &events[0],
                RunEvent::Skipped { service, reason: SkipReason::Paused, ticks: 3 } if &**service == "tick"
            ),
            "{events:?}"
        );
    }
    // Back on the grid: the next run is the tick at 40.
    sleep(Duration::from_secs(5)).await;
    let started: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            RunEvent::Started { tick, .. } => Some(*tick),
            _ => None,
        })
        .collect();
    assert_eq!(started, [t0() + chrono::TimeDelta::seconds(40)]);
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_manual_run_of_a_paused_service_emits_its_start_and_end_only() {
    let (manager, events) = manager_with_events();
    manager.add_service("tick", Service::new(every(10), |_| async {}));
    manager.start().unwrap();
    manager.pause("tick").unwrap();
    sleep(Duration::from_secs(1)).await;
    manager.run_now("tick").unwrap();
    sleep(Duration::from_secs(30)).await;
    let kinds: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|event| match event {
            RunEvent::Started { trigger, .. } => format!("started {trigger:?}"),
            RunEvent::Finished { trigger, .. } => format!("finished {trigger:?}"),
            RunEvent::Skipped { reason, .. } => format!("skipped {reason:?}"),
            _ => "other".to_owned(),
        })
        .collect();
    assert_eq!(kinds, ["started Manual", "finished Manual"]);
    manager.stop().await;
}
