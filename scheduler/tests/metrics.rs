//! The metrics (feature `metrics`) and the event hook, after a scripted run on the paused clock:
//! exact names, labels and values. The recorder is global to this test binary: each test names its
//! services apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use scheduler::{
    Outcome, RunEvent, Schedule, Service, ServiceManager, SkipReason, TokioClock, Trigger,
};
use tokio::time::sleep;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
}

fn unix(n: i64) -> f64 {
    secs(n).timestamp() as f64
}

fn every(seconds: u64) -> Schedule {
    Schedule::every(Duration::from_secs(seconds)).unwrap()
}

/// A metric as `name{label=value,...}`, labels sorted.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

#[derive(Debug, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// Every metric recorded so far, by series.
fn values(snapshotter: &Snapshotter) -> BTreeMap<String, Value> {
    let mut seen = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        let value = match value {
            DebugValue::Counter(n) => Value::Counter(n),
            DebugValue::Gauge(g) => Value::Gauge(g.0),
            DebugValue::Histogram(h) => Value::Histogram(h.into_iter().map(|v| v.0).collect()),
        };
        seen.insert(series(key.name(), &labels), value);
    }
    seen
}

/// The names the crate docs' table lists, and no others.
fn assert_only_the_documented_names(seen: &BTreeMap<String, Value>) {
    let names: std::collections::BTreeSet<_> = seen
        .keys()
        .map(|k| k.split('{').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "scheduler_last_success_timestamp_seconds",
            "scheduler_next_run_timestamp_seconds",
            "scheduler_run_duration_seconds",
            "scheduler_run_lag_seconds",
            "scheduler_running_jobs",
            "scheduler_runs_total",
            "scheduler_skipped_ticks_total",
            "scheduler_waiting_for_slot",
        ],
        "the documented names, and no others"
    );
}

#[tokio::test(start_paused = true)]
async fn a_scripted_run_reports_exact_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .max_concurrent_jobs(4)
        .build()
        .unwrap();
    manager.add_service("ok", Service::new(every(10), |_ctx| async {}));
    manager.add_service(
        "bad",
        Service::new(every(10), |_ctx| async { Err::<(), _>("no route to host") }),
    );
    // 25 s runs on a 10 s period: the run of 10 ends at 35, so 20 and 30 are skipped.
    manager.add_service(
        "slow",
        Service::new(every(10), |_ctx| sleep(Duration::from_secs(25))),
    );
    manager.add_service("held", Service::new(every(10), |_ctx| async {}));
    manager.start().unwrap();
    manager.pause("held").unwrap();
    sleep(Duration::from_secs(45)).await;
    // Paused through 10, 20, 30 and 40: four ticks skipped; it runs at 50 and 60.
    manager.resume("held").unwrap();
    sleep(Duration::from_secs(16)).await; // t = 61: the run of "slow" that began at 40 still goes

    let seen = values(&snapshotter);
    let get = |name: &str, labels: &[(&str, &str)]| seen.get(&series(name, labels));
    let runs = |service: &str, outcome: &str| {
        get(
            "scheduler_runs_total",
            &[("service", service), ("outcome", outcome)],
        )
    };
    let skipped = |service: &str, reason: &str| {
        get(
            "scheduler_skipped_ticks_total",
            &[("service", service), ("reason", reason)],
        )
    };
    let one = |name: &str, service: &str| get(name, &[("service", service)]);

    assert_eq!(runs("ok", "succeeded"), Some(&Value::Counter(6)));
    assert_eq!(runs("ok", "failed"), Some(&Value::Counter(0)));
    assert_eq!(runs("bad", "failed"), Some(&Value::Counter(6)));
    assert_eq!(runs("bad", "succeeded"), Some(&Value::Counter(0)));
    assert_eq!(runs("slow", "succeeded"), Some(&Value::Counter(1)));
    assert_eq!(runs("held", "succeeded"), Some(&Value::Counter(2)));

    assert_eq!(skipped("slow", "overlap"), Some(&Value::Counter(2)));
    assert_eq!(skipped("held", "paused"), Some(&Value::Counter(4)));
    assert_eq!(skipped("ok", "overlap"), Some(&Value::Counter(0)));

    assert_eq!(
        one("scheduler_run_duration_seconds", "slow"),
        Some(&Value::Histogram(vec![25.0]))
    );
    assert_eq!(
        one("scheduler_run_lag_seconds", "ok"),
        Some(&Value::Histogram(vec![0.0; 6])),
        "every run began exactly on its tick"
    );
    assert_eq!(
        one("scheduler_running_jobs", "slow"),
        Some(&Value::Gauge(1.0))
    );
    assert_eq!(
        one("scheduler_running_jobs", "ok"),
        Some(&Value::Gauge(0.0))
    );
    assert_eq!(
        one("scheduler_last_success_timestamp_seconds", "ok"),
        Some(&Value::Gauge(unix(60)))
    );
    assert_eq!(
        one("scheduler_last_success_timestamp_seconds", "slow"),
        Some(&Value::Gauge(unix(35)))
    );
    assert_eq!(
        one("scheduler_last_success_timestamp_seconds", "bad"),
        Some(&Value::Gauge(0.0)),
        "never succeeded"
    );
    assert_eq!(
        one("scheduler_next_run_timestamp_seconds", "ok"),
        Some(&Value::Gauge(unix(70)))
    );
    assert_eq!(
        one("scheduler_next_run_timestamp_seconds", "held"),
        Some(&Value::Gauge(unix(70)))
    );
    assert_eq!(
        one("scheduler_waiting_for_slot", "ok"),
        Some(&Value::Gauge(0.0)),
        "four workers: nobody waits"
    );
    assert_only_the_documented_names(&seen);
    manager.stop().await;

    waits_for_a_slot_while_the_pool_is_full(&snapshotter).await;
}

/// One worker, taken by a 30 s run from the start: the tick at 10 of another service waits for it,
/// shown in its status and in `scheduler_waiting_for_slot` until the worker frees at 30.
async fn waits_for_a_slot_while_the_pool_is_full(snapshotter: &Snapshotter) {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .max_concurrent_jobs(1)
        .build()
        .unwrap();
    manager.add_service(
        "hog",
        Service::new(Schedule::once_after(Duration::ZERO).unwrap(), |_ctx| {
            sleep(Duration::from_secs(30))
        }),
    );
    manager.add_service("queued", Service::new(every(10), |_ctx| async {}));
    manager.start().unwrap();
    let waiting = || {
        values(snapshotter).remove(&series(
            "scheduler_waiting_for_slot",
            &[("service", "queued")],
        ))
    };
    sleep(Duration::from_secs(15)).await;
    assert_eq!(
        manager.service("queued").unwrap().state,
        scheduler::ServiceState::WaitingForSlot
    );
    assert_eq!(waiting(), Some(Value::Gauge(1.0)));
    sleep(Duration::from_secs(20)).await; // t = 35: the worker freed at 30
    assert_ne!(
        manager.service("queued").unwrap().state,
        scheduler::ServiceState::WaitingForSlot
    );
    assert_eq!(waiting(), Some(Value::Gauge(0.0)));
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_event_hook_sees_every_start_end_and_skip_in_order() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .on_event(move |event| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    let hook_manager = manager.clone();
    manager.add_service(
        "long",
        Service::new(every(10), |_ctx| sleep(Duration::from_secs(25))),
    );
    manager.add_service(
        "flaky-retry",
        Service::new(every(60), |ctx| async move {
            if ctx.attempt() == 1 {
                Err("first try fails")
            } else {
                Ok(())
            }
        })
        .retries(1)
        .timeout(Duration::from_secs(30)),
    );
    manager.start().unwrap();
    sleep(Duration::from_secs(36)).await;
    manager.run_now("flaky-retry").unwrap();
    sleep(Duration::from_secs(1)).await;
    // The hook runs outside every lock: a hook that reads the manager does not deadlock.
    assert!(hook_manager.services().len() == 2);

    let events = events.lock().unwrap().clone();
    let slow: Vec<_> = events.iter().filter(|e| e.service() == "long").collect();
    assert_eq!(
        slow,
        [
            &RunEvent::Started {
                service: "long".into(),
                tick: secs(10),
                trigger: Trigger::Schedule,
                attempt: 1,
                lag: Duration::ZERO,
            },
            &RunEvent::Finished {
                service: "long".into(),
                tick: secs(10),
                trigger: Trigger::Schedule,
                attempt: 1,
                outcome: Outcome::Succeeded,
                duration: Duration::from_secs(25),
            },
            &RunEvent::Skipped {
                service: "long".into(),
                reason: SkipReason::Overlap,
                ticks: 2,
            },
        ]
    );
    let flaky: Vec<_> = events
        .iter()
        .filter(|e| e.service() == "flaky-retry")
        .map(|e| match e {
            RunEvent::Started {
                tick,
                trigger,
                attempt,
                ..
            } => format!(
                "start {}s {trigger} #{attempt}",
                (*tick - t0()).num_seconds()
            ),
            RunEvent::Finished {
                outcome, attempt, ..
            } => format!("end #{attempt} {outcome}"),
            RunEvent::Skipped { reason, ticks, .. } => format!("skip {ticks} {reason}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        flaky,
        [
            "start 36s manual #1",
            "end #1 failed: first try fails",
            "start 36s manual #2",
            "end #2 ok",
        ]
    );
}
