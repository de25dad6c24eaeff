//! Job policies on the attribute: every argument, on a repeating and a one-shot service, reaches the
//! registered service exactly (durations with fractions, the default misfire limit).
#![deny(warnings)]

use std::time::Duration;

use scheduler::{background_service, Misfire, ServiceManager};

#[background_service(
    interval = 60,
    name = "sync",
    timeout = 30,
    retries = 3,
    retry_backoff = 0.5,
    retry_backoff_max = 20,
    jitter = 2.5,
    misfire = "all",
    misfire_limit = 4,
    misfire_grace = 1.5
)]
async fn sync() -> anyhow::Result<()> {
    Ok(())
}

#[background_service(interval = "*/5 * * * *", name = "catch-up", misfire = "all")]
fn catch_up() {}

#[background_service(interval = 10, name = "skipper", misfire = "skip", retries = 0)]
async fn skipper() {}

#[background_service(once_after = 5, name = "migrate", timeout = 0.25, retries = 2, retry_backoff = 3)]
async fn migrate() -> Result<(), String> {
    Ok(())
}

#[background_service(interval = 1, name = "plain")]
fn plain() {}

fn main() {
    let _ = (sync, catch_up, skipper, migrate, plain);
    let manager = ServiceManager::from_registry().expect("the registrations are valid");
    let policies = |name: &str| manager.policies(name).expect("registered");

    let sync = policies("sync");
    assert_eq!(sync.timeout, Some(Duration::from_secs(30)));
    assert_eq!(sync.retries, 3);
    assert_eq!(sync.retry_backoff, Duration::from_millis(500));
    assert_eq!(sync.retry_backoff_max, Duration::from_secs(20));
    assert_eq!(sync.jitter, Some(Duration::from_millis(2500)));
    assert_eq!(sync.misfire, Some(Misfire::All { limit: 4 }));
    assert_eq!(sync.misfire_grace, Duration::from_millis(1500));

    assert_eq!(
        policies("catch-up").misfire,
        Some(Misfire::All { limit: Misfire::DEFAULT_LIMIT })
    );
    assert_eq!(Misfire::DEFAULT_LIMIT, 10);
    assert_eq!(policies("skipper").misfire, Some(Misfire::Skip));
    assert_eq!(policies("skipper").retries, 0);

    let migrate = policies("migrate");
    assert_eq!(migrate.timeout, Some(Duration::from_millis(250)));
    assert_eq!((migrate.retries, migrate.retry_backoff), (2, Duration::from_secs(3)));
    assert_eq!(migrate.retry_backoff_max, Duration::from_secs(60), "the default cap");

    // No policy: the defaults.
    let plain = policies("plain");
    assert_eq!((plain.timeout, plain.retries, plain.jitter, plain.misfire), (None, 0, None, None));
    assert_eq!(
        (plain.retry_backoff, plain.retry_backoff_max, plain.misfire_grace),
        (Duration::from_secs(1), Duration::from_secs(60), Duration::from_secs(1))
    );
}
