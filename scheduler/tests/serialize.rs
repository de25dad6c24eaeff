//! With the `serde` feature, the status and event types serialize to the JSON an endpoint of your
//! own would serve.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use scheduler::{Outcome, RunEvent, Schedule, Service, ServiceManager, SkipReason, TokioClock};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn statuses_and_events_serialize_with_plain_names() {
    let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let manager = ServiceManager::builder()
        .clock(TokioClock::starting_at(t0))
        .build()
        .unwrap();
    manager.add_service(
        "sync",
        Service::new(
            Schedule::every(Duration::from_secs(10)).unwrap(),
            |_ctx| async { Err::<(), _>("refused") },
        ),
    );
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let status = serde_json::to_value(manager.service("sync").unwrap()).unwrap();
    assert_eq!(status["name"], "sync");
    assert_eq!(status["state"], "idle");
    assert_eq!(status["origin"], "code");
    assert_eq!(status["last_outcome"], json!({"failed": "refused"}));
    assert_eq!(status["last_trigger"], "schedule");
    assert_eq!(status["runs"], 1);
    assert_eq!(status["next_fire"], "2024-01-01T00:00:20Z");

    let event = RunEvent::Skipped {
        service: "sync".into(),
        reason: SkipReason::ClaimedElsewhere,
        ticks: 2,
    };
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"event": "skipped", "service": "sync", "reason": "claimed_elsewhere", "ticks": 2})
    );
    assert_eq!(
        serde_json::to_value(Outcome::TimedOut).unwrap(),
        json!("timed_out")
    );
    manager.stop().await;
}
