//! The object form: `#[background_service]` on an `impl` block, the object given as state, its
//! `job(&self, ..)` run each tick (through the same `State` handler as a function's).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use scheduler::{background_service, Error, JobContext, ServiceManager, State, TokioClock};
use tokio::time::sleep;

/// A poller with fields of its own.
struct Poller {
    url: String,
    polls: AtomicU64,
    seen: Mutex<Vec<String>>,
}

#[background_service(interval = 10)]
impl Poller {
    async fn job(&self, ctx: JobContext) -> Result<(), String> {
        tokio::task::yield_now().await; // stands for the request
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} {}", self.url, ctx.tick().format("%H:%M:%S")));
        Ok(())
    }
}

/// A blocking object without a context, under a name of its own.
#[derive(Default)]
struct Sweeper {
    sweeps: AtomicU64,
}

#[background_service(interval = 5, name = "sweeper")]
impl Sweeper {
    fn job(&self) {
        self.sweeps.fetch_add(1, Ordering::SeqCst);
    }
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_objects_job_runs_each_tick_with_its_fields() {
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .state(Poller {
            url: "https://example.com".into(),
            polls: AtomicU64::new(0),
            seen: Mutex::default(),
        })
        .state(Sweeper::default())
        .with_registered_services()
        .build()
        .unwrap();
    let names: Vec<_> = manager.services().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["object::Poller", "sweeper"]);
    manager.start().unwrap();
    sleep(Duration::from_millis(20_500)).await;
    manager.stop().await;
    let poller: State<Poller> = manager.state().unwrap();
    assert_eq!(poller.polls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *poller.seen.lock().unwrap(),
        [
            "https://example.com 00:00:10",
            "https://example.com 00:00:20"
        ]
    );
    assert_eq!(
        manager
            .state::<Sweeper>()
            .unwrap()
            .sweeps
            .load(Ordering::SeqCst),
        4
    );
}

#[test]
fn an_object_not_given_is_a_missing_state() {
    let error = ServiceManager::builder()
        .state(Sweeper::default())
        .with_registered_services()
        .build()
        .unwrap_err();
    let Error::MissingState { services } = error else {
        panic!("expected MissingState");
    };
    assert_eq!(
        services,
        [(
            "object::Poller".to_owned(),
            vec![std::any::type_name::<Poller>()]
        )]
    );
}
