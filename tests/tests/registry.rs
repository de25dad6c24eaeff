//! Services declared with `#[background_service]` in this crate and in a linked one are all collected.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use scheduler::{ServiceManager, ServiceState, TokioClock};
use scheduler_tests::billing::{settle_invoices, SETTLEMENTS};

#[tokio::test(start_paused = true)]
async fn services_from_every_linked_crate_are_collected_sorted_and_run() {
    // 2024-01-01 was a Monday; 03:00 Berlin is 02:00 UTC in winter.
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(start))
        .with_registered_services()
        .build()
        .unwrap();
    let services = manager.services();
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "extra::nightly-cleanup",
            "scheduler_tests::billing::settle_invoices",
            "search-reindex",
        ],
        "sorted by name; the default name is the module path and function name"
    );
    assert_eq!(services[0].schedule, "0 3 * * * (Europe/Berlin)");
    assert_eq!(services[1].schedule, "every 10s");
    assert_eq!(services[2].schedule, "* * * * *");
    assert!(services.iter().all(|s| s.state == ServiceState::NotStarted));

    manager.start().unwrap();
    tokio::time::sleep(Duration::from_millis(2 * 3600 * 1000 + 500)).await;
    // on_start at 0, then every 10 s for two hours.
    assert_eq!(SETTLEMENTS.load(Ordering::SeqCst), 1 + 720);
    assert_eq!(scheduler_tests::CLEANUPS.load(Ordering::SeqCst), 1);
    let cleanup = manager.service("extra::nightly-cleanup").unwrap();
    assert_eq!(
        cleanup.last_start,
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 2, 0, 0).unwrap())
    );
    assert_eq!(
        cleanup.next_fire,
        Some(Utc.with_ymd_and_hms(2024, 1, 2, 2, 0, 0).unwrap())
    );
    manager.stop().await;
}

#[tokio::test]
async fn annotated_functions_stay_callable() {
    let ctx_free = scheduler_tests::search::reindex;
    ctx_free();
    // settle_invoices takes a JobContext, which only the manager makes; calling it through a manager
    // is covered above. Here it is enough that the item still exists with its signature.
    let _: fn(scheduler::JobContext) -> _ = settle_invoices;
}
