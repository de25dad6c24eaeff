//! Jobs that take the application's resources (`State<T>`), registered and added at run time, and
//! hooks that reach the manager: every timing runs on tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduler::{
    background_service, Error, JobContext, RunEvent, Schedule, Service, ServiceManager,
    ServiceState, State, TokioClock,
};
use tokio::time::sleep;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn every(seconds: u64) -> Schedule {
    Schedule::every(Duration::from_secs(seconds)).unwrap()
}

/// Stands for a database pool: counts the queries run through it.
#[derive(Default)]
struct Db {
    queries: AtomicU64,
}

/// Stands for an HTTP client: remembers what was sent.
#[derive(Default)]
struct Http {
    sent: Mutex<Vec<String>>,
}

// Registered services of this test binary: both need state, so a manager built with the registry
// but without `.state(..)` must refuse to build.
#[background_service(interval = 10, name = "registered-sync")]
async fn registered_sync(ctx: JobContext, db: State<Db>, http: State<Http>) -> anyhow::Result<()> {
    db.queries.fetch_add(1, Ordering::SeqCst);
    http.sent
        .lock()
        .unwrap()
        .push(format!("{}@{}", ctx.name(), ctx.tick()));
    Ok(())
}

#[background_service(interval = 10, name = "registered-vacuum")]
fn registered_vacuum(db: State<Db>) {
    db.queries.fetch_add(100, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn registered_services_get_their_state_each_tick() {
    let db = Arc::new(Db::default());
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(Http::default())
        .state(Arc::clone(&db)) // a State<Arc<Db>> nobody asks for: harmless
        .state(Db::default())
        .with_registered_services()
        .build()
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_millis(20_500)).await;
    let db: State<Db> = manager.state().unwrap();
    // Two ticks each: 2 × 1 (sync) + 2 × 100 (vacuum).
    assert_eq!(db.queries.load(Ordering::SeqCst), 202);
    let http: State<Http> = manager.state().unwrap();
    assert_eq!(
        *http.sent.lock().unwrap(),
        [
            "registered-sync@2024-01-01 00:00:10 UTC",
            "registered-sync@2024-01-01 00:00:20 UTC"
        ]
    );
    manager.stop().await;
}

#[test]
fn a_registry_without_its_state_does_not_build_and_names_everything_missing() {
    let error = ServiceManager::builder()
        .with_registered_services()
        .build()
        .unwrap_err();
    let Error::MissingState { services } = &error else {
        panic!("expected MissingState, got {error:#?}");
    };
    let db = std::any::type_name::<Db>();
    let http = std::any::type_name::<Http>();
    assert_eq!(
        services,
        &[
            ("registered-sync".to_owned(), vec![db, http]),
            ("registered-vacuum".to_owned(), vec![db]),
        ]
    );
    assert_eq!(
        error.to_string(),
        format!(
            "missing state: service 'registered-sync' takes State<{db}>, State<{http}>; \
             service 'registered-vacuum' takes State<{db}>; \
             give each value with `ServiceManager::builder().state(value)`"
        )
    );
    // Only what is missing is named.
    let error = ServiceManager::builder()
        .state(Db::default())
        .with_registered_services()
        .build()
        .unwrap_err();
    let Error::MissingState { services } = error else {
        panic!("expected MissingState");
    };
    assert_eq!(services, [("registered-sync".to_owned(), vec![http])]);
}

async fn sync(ctx: JobContext, db: State<Db>, http: State<Http>) -> Result<(), String> {
    db.queries.fetch_add(1, Ordering::SeqCst);
    http.sent.lock().unwrap().push(ctx.name().to_owned());
    Ok(())
}

/// The context may come anywhere, or not at all.
async fn state_first(http: State<Http>, ctx: JobContext) {
    http.sent
        .lock()
        .unwrap()
        .push(format!("{} attempt {}", ctx.name(), ctx.attempt()));
}

#[allow(clippy::needless_pass_by_value, clippy::unnecessary_wraps)] // the shape under test
fn blocking_count(db: State<Db>) -> Result<(), std::io::Error> {
    db.queries.fetch_add(10, Ordering::SeqCst);
    Ok(())
}

fn built_with_state() -> ServiceManager {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(Db::default())
        .state(Http::default())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn run_time_services_take_state_in_any_position_async_blocking_or_closure() {
    let manager = built_with_state();
    manager
        .try_add_service("sync", Service::from_fn(every(5), sync))
        .unwrap();
    manager
        .try_add_service("first", Service::from_fn(every(5), state_first))
        .unwrap();
    manager
        .try_add_service("blocking", Service::from_fn(every(5), blocking_count))
        .unwrap();
    manager
        .try_add_service(
            "closure",
            Service::from_fn(every(5), |db: State<Db>| async move {
                db.queries.fetch_add(1000, Ordering::SeqCst);
            }),
        )
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_millis(5_500)).await;
    let db: State<Db> = manager.state().unwrap();
    assert_eq!(db.queries.load(Ordering::SeqCst), 1 + 10 + 1000);
    let mut sent = manager
        .state::<Http>()
        .unwrap()
        .sent
        .lock()
        .unwrap()
        .clone();
    sent.sort();
    assert_eq!(sent, ["first attempt 1", "sync"]);
    for status in manager.services() {
        assert_eq!((status.runs, status.failures), (1, 0), "{}", status.name);
    }
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_fire_gets_the_same_value_not_a_copy() {
    let manager = built_with_state();
    let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
    let sink = seen.clone();
    let service = Service::from_fn(every(1), move |db: State<Db>| {
        sink.lock()
            .unwrap()
            .push(std::ptr::from_ref::<Db>(&db) as usize);
    });
    manager.try_add_service("probe", service).unwrap();
    manager.start().unwrap();
    sleep(Duration::from_millis(3_500)).await;
    manager.stop().await;
    let expected = std::ptr::from_ref::<Db>(&manager.state::<Db>().unwrap()) as usize;
    assert_eq!(*seen.lock().unwrap(), [expected; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_service_without_its_state_is_refused_and_stops_the_start_until_fixed() {
    struct Missing;
    struct AlsoMissing;
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(Db::default())
        .build()
        .unwrap();
    let needy = || {
        Service::from_fn(
            every(1),
            |_a: State<Missing>, _db: State<Db>, _b: State<AlsoMissing>| {},
        )
    };
    let error = manager.try_add_service("needy", needy()).unwrap_err();
    let missing = std::any::type_name::<Missing>();
    let also = std::any::type_name::<AlsoMissing>();
    assert!(
        matches!(&error, Error::MissingState { services } if services == &[("needy".to_owned(), vec![missing, also])]),
        "{error:#?}"
    );
    assert!(manager.service("needy").is_none(), "nothing was added");
    // The infallible form logs it; the start then names every such service.
    manager.add_service("other", Service::from_fn(every(1), |_: State<Missing>| {}));
    let error = manager.start().unwrap_err();
    let Error::MissingState { services } = error else {
        panic!("expected MissingState");
    };
    assert_eq!(
        services,
        [
            ("needy".to_owned(), vec![missing, also]),
            ("other".to_owned(), vec![missing]),
        ]
    );
    assert!(manager.services().is_empty());
    // Adding bound services under those names clears them.
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    manager.add_service(
        "needy",
        Service::new(every(1), move |_| {
            flag.store(true, Ordering::SeqCst);
            async {}
        }),
    );
    manager
        .try_add_service("other", Service::from_fn(every(1), |_: State<Db>| {}))
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_millis(1_500)).await;
    assert!(ran.load(Ordering::SeqCst));
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_replacement_leaves_the_running_service_as_it_was() {
    struct Missing;
    let manager = built_with_state();
    manager
        .try_add_service("sync", Service::from_fn(every(5), sync))
        .unwrap();
    manager.start().unwrap();
    let error = manager
        .try_add_service("sync", Service::from_fn(every(1), |_: State<Missing>| {}))
        .unwrap_err();
    assert!(matches!(error, Error::MissingState { .. }));
    sleep(Duration::from_millis(10_500)).await;
    assert_eq!(manager.service("sync").unwrap().runs, 2, "still every 5 s");
    manager.stop().await;
}

#[test]
fn a_second_state_of_a_type_replaces_the_first() {
    let manager = ServiceManager::builder()
        .state(String::from("first"))
        .state(7_u8)
        .state(String::from("second"))
        .build()
        .unwrap();
    assert_eq!(&*manager.state::<String>().unwrap(), "second");
    assert_eq!(*manager.state::<u8>().unwrap(), 7);
    assert!(manager.state::<u16>().is_none());
}

#[tokio::test(start_paused = true)]
async fn the_failure_hook_acts_on_the_manager_and_reads_state() {
    struct Alerts(Mutex<Vec<String>>);
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(Alerts(Mutex::default()))
        .on_failure_with(|failure, manager| {
            let alerts: State<Alerts> = manager.state().unwrap();
            alerts.0.lock().unwrap().push(failure.outcome.to_string());
            manager.pause(&failure.service).unwrap();
        })
        .build()
        .unwrap();
    manager.add_service(
        "flaky",
        Service::new(every(1), |_| async { Err::<(), _>("boom") }),
    );
    manager.start().unwrap();
    sleep(Duration::from_millis(5_500)).await;
    let alerts: State<Alerts> = manager.state().unwrap();
    assert_eq!(
        *alerts.0.lock().unwrap(),
        ["failed: boom"],
        "paused after the first"
    );
    let status = manager.service("flaky").unwrap();
    assert_eq!(status.state, ServiceState::Paused);
    assert_eq!(status.runs, 1);
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_event_hook_sees_the_manager() {
    let next_runs: Arc<Mutex<Vec<Option<DateTime<Utc>>>>> = Arc::default();
    let sink = next_runs.clone();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .on_event_with(move |event, manager| {
            if let RunEvent::Finished { service, .. } = event {
                sink.lock()
                    .unwrap()
                    .push(manager.service(service).and_then(|s| s.next_fire));
            }
        })
        .build()
        .unwrap();
    manager.add_service("tick", Service::new(every(10), |_| async {}));
    manager.start().unwrap();
    sleep(Duration::from_millis(20_500)).await;
    manager.stop().await;
    let at = |s| Some(t0() + chrono::TimeDelta::seconds(s));
    assert_eq!(*next_runs.lock().unwrap(), [at(20), at(30)]);
}

#[tokio::test(start_paused = true)]
async fn hooks_with_the_manager_do_not_keep_it_alive() {
    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(DropFlag(dropped.clone()))
        .on_failure_with(|_, _| {})
        .on_event_with(|_, _| {})
        .build()
        .unwrap();
    manager.add_service("tick", Service::new(every(1), |_| async {}));
    manager.start().unwrap();
    sleep(Duration::from_millis(2_500)).await;
    manager.stop().await;
    sleep(Duration::from_millis(10)).await; // the dispatcher and workers notice the stop
    drop(manager);
    sleep(Duration::from_millis(10)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the manager and its state were freed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_registered_service_keeps_its_state() {
    let dir = std::env::temp_dir().join(format!("scheduler-state-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("services.toml");
    std::fs::write(&file, "[services.\"registered-vacuum\"]\ninterval = 10\n").unwrap();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(Db::default())
        .state(Http::default())
        .with_registered_services()
        .config_file(&file)
        .build()
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_millis(10_500)).await;
    // One tick each so far: 1 + 100. Now vacuum every 2 s: the new definition still has its Db.
    std::fs::write(&file, "[services.\"registered-vacuum\"]\ninterval = 2\n").unwrap();
    let report = manager.reload_config().unwrap();
    assert_eq!(report.changed, ["registered-vacuum"]);
    sleep(Duration::from_secs(4)).await;
    let db: State<Db> = manager.state().unwrap();
    assert!(
        db.queries.load(Ordering::SeqCst) >= 101 + 100,
        "vacuum ran after the reload: {}",
        db.queries.load(Ordering::SeqCst)
    );
    assert_eq!(manager.service("registered-vacuum").unwrap().failures, 0);
    manager.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
