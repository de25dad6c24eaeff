//! Operator configuration: precedence, validation, disabled services and reloads.
//!
//! The services configured here are the ones this crate and `extra-services` declare:
//! `extra::nightly-cleanup` (cron 03:00 Berlin), `scheduler_tests::billing::settle_invoices` (every
//! 10 s, on start) and `search-reindex` (every minute).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeZone, Utc};
// Link the crates whose services these tests configure (a crate nothing mentions is not linked).
use scheduler_tests as _;

use scheduler::{
    env_var_name, Error, Origin, ServiceManager, ServiceManagerBuilder, ServiceState, TokioClock,
};

const SETTLE: &str = "scheduler_tests::billing::settle_invoices";
const REINDEX: &str = "search-reindex";
const CLEANUP: &str = "extra::nightly-cleanup";

/// A config file unique to one test, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(label: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "scheduler-config-{}-{label}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        ConfigFile(path)
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn builder() -> ServiceManagerBuilder {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        ))
        .with_registered_services()
}

fn problems(error: Error) -> Vec<String> {
    match error {
        Error::Config(config) => config.problems().iter().map(ToString::to_string).collect(),
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[tokio::test]
async fn file_overrides_the_attribute_and_env_overrides_the_file_key_by_key() {
    let file = ConfigFile::new(
        "precedence",
        r#"
[manager]
max_concurrent_jobs = 3

[services."search-reindex"]
interval = "*/2 * * * *"     # overridden again by the environment below
on_start = true              # only here: the file wins

[services."extra::nightly-cleanup"]
tz = "America/New_York"      # only the zone: the attribute's expression stays
"#,
    );
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars([
            (env_var_name(REINDEX, "interval"), "*/7 * * * *".to_owned()),
            (env_var_name(SETTLE, "enabled"), "false".to_owned()),
            ("SCHEDULER_MAX_CONCURRENT_JOBS".to_owned(), "5".to_owned()),
            ("UNRELATED_VARIABLE".to_owned(), "ignored".to_owned()),
        ])
        .build()
        .unwrap();

    let reindex = manager.service(REINDEX).unwrap();
    assert_eq!(reindex.schedule, "*/7 * * * *");
    assert_eq!(reindex.origin, Origin::Env);
    let cleanup = manager.service(CLEANUP).unwrap();
    assert_eq!(cleanup.schedule, "0 3 * * * (America/New_York)");
    assert_eq!(cleanup.origin, Origin::File);
    let settle = manager.service(SETTLE).unwrap();
    assert_eq!(settle.schedule, "every 10s");
    assert_eq!(settle.origin, Origin::Attribute);
    assert_eq!(settle.state, ServiceState::Disabled);
    assert_eq!(manager.max_concurrent_jobs(), 5, "env over file");

    // on_start from the file: the reindex runs at once when started.
    manager.start().unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while manager.service(REINDEX).unwrap().runs == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("on_start = true from the file runs the service at start");
    manager.stop().await;
}

#[tokio::test]
async fn every_problem_is_reported_at_once_with_where_it_is() {
    let file = ConfigFile::new(
        "problems",
        r#"
colour = "blue"

[manager]
max_concurrent_jobs = 0
grace = 3

[services."search-reindex"]
interval = "61 * * * *"
enabled = "yes"
frequency = 3

[services."extra::nightly-cleanup"]
tz = "Mars/Olympus_Mons"

[services."no-such-service"]
enabled = false
"#,
    );
    let error = builder()
        .config_file(&file.0)
        .config_env_vars([
            (env_var_name(SETTLE, "on_start"), "maybe"),
            (env_var_name(SETTLE, "tz"), "Europe/Paris"),
            ("SCHEDULER_SERVICE__NOPE__INTERVAL".to_owned(), "10"),
            ("SCHEDULER_STOP_DEADLINE".to_owned(), "-4"),
        ])
        .build()
        .unwrap_err();
    let path = file.0.display().to_string();
    let at = |key: &str, message: &str| format!("{path}: {key}: {message}");
    let env = |var: &str, message: &str| format!("environment variable {var}: {message}");
    let mut expected = vec![
        at(
            "colour",
            "unknown section: expected [manager] or [services.\"<name>\"]",
        ),
        at(
            "manager.grace",
            "unknown setting: expected max_concurrent_jobs or stop_deadline",
        ),
        at(
            "services.search-reindex.frequency",
            "unknown setting: expected enabled, interval, tz or on_start",
        ),
        at(
            "manager.max_concurrent_jobs",
            "expected a whole number of at least 1, found integer 0",
        ),
        env(
            "SCHEDULER_SERVICE__NOPE__INTERVAL",
            "matches no service and setting: expected \
             SCHEDULER_SERVICE__<NAME>__<ENABLED|INTERVAL|TZ|ON_START> for a known service",
        ),
        env(
            "SCHEDULER_STOP_DEADLINE",
            "expected a non-negative number of seconds, found -4",
        ),
        at(
            "services.no-such-service.enabled",
            "no service is named 'no-such-service' (known services: extra::nightly-cleanup, \
             scheduler_tests::billing::settle_invoices, search-reindex)",
        ),
        at(
            "services.\"extra::nightly-cleanup\".tz",
            "unknown time zone 'Mars/Olympus_Mons': expected an IANA name such as 'UTC', \
             'Europe/Berlin' or 'America/New_York'",
        ),
        env(
            &env_var_name(SETTLE, "on_start"),
            "expected true or false, found 'maybe'",
        ),
        env(
            &env_var_name(SETTLE, "tz"),
            "tz applies only to cron intervals, and this service runs every 10s",
        ),
        at(
            "services.search-reindex.enabled",
            "expected true or false, found string 'yes'",
        ),
        at(
            "services.search-reindex.interval",
            "minute field: 61 is out of range 0-59 in '61 * * * *'",
        ),
    ];
    let mut actual = problems(error);
    actual.sort();
    expected.sort();
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn unreadable_or_malformed_files_are_errors() {
    let missing = builder()
        .config_file("/nonexistent/scheduler.toml")
        .build()
        .unwrap_err();
    let missing = problems(missing);
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with(
            "/nonexistent/scheduler.toml: cannot read the configuration file: No such file"
        ),
        "{missing:?}"
    );

    let file = ConfigFile::new("syntax", "[services.x\nenabled = true\n");
    let malformed = problems(builder().config_file(&file.0).build().unwrap_err());
    assert_eq!(malformed.len(), 1);
    assert!(
        malformed[0].contains("not valid TOML") && malformed[0].contains("line 1"),
        "{malformed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_service_never_runs() {
    let manager = builder()
        .config_env_vars([(env_var_name(SETTLE, "enabled"), "0")])
        .build()
        .unwrap();
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let status = manager.service(SETTLE).unwrap();
    assert_eq!(
        (status.state, status.runs, status.next_fire),
        (ServiceState::Disabled, 0, None)
    );
    assert!(
        manager.service(REINDEX).unwrap().runs >= 59,
        "the others run"
    );
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_changes_exactly_the_changed_services() {
    let file = ConfigFile::new(
        "reload",
        r#"
[services."search-reindex"]
interval = 60
"#,
    );
    let manager = builder().config_file(&file.0).build().unwrap();
    manager.start().unwrap();
    tokio::time::sleep(Duration::from_millis(120_500)).await;
    assert_eq!(manager.service(REINDEX).unwrap().runs, 2);
    let settle_runs = manager.service(SETTLE).unwrap().runs;
    assert_eq!(settle_runs, 13, "on start, then every 10 s");

    // Nothing changed: nothing is touched.
    let report = manager.reload_config().unwrap();
    assert!(report.changed.is_empty(), "{report:?}");

    file.rewrite(
        r#"
[services."search-reindex"]
interval = 30

[services."extra::nightly-cleanup"]
enabled = false
"#,
    );
    let report = manager.reload_config().unwrap();
    assert_eq!(report.changed, [CLEANUP, REINDEX]);
    let reindex = manager.service(REINDEX).unwrap();
    assert_eq!(
        (reindex.schedule.as_str(), reindex.origin),
        ("every 30s", Origin::File)
    );
    assert_eq!(reindex.runs, 2, "a reload keeps the service's history");
    assert_eq!(
        manager.service(CLEANUP).unwrap().state,
        ServiceState::Disabled
    );
    // The unchanged service kept its record and its grid.
    assert_eq!(manager.service(SETTLE).unwrap().runs, settle_runs);

    tokio::time::sleep(Duration::from_secs(65)).await;
    // Re-registered at 120.5 s: ticks at 150.5 and 180.5; the old 60 s grid (180) never fires.
    let reindex = manager.service(REINDEX).unwrap();
    assert_eq!(reindex.runs, 4);
    assert_eq!(
        reindex.last_start,
        Some(
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 3, 0).unwrap()
                + chrono::TimeDelta::milliseconds(500)
        )
    );

    // A broken file changes nothing.
    file.rewrite("[services.\"search-reindex\"]\ninterval = \"every day\"\n");
    assert!(matches!(manager.reload_config(), Err(Error::Config(_))));
    assert_eq!(manager.service(REINDEX).unwrap().schedule, "every 30s");
    manager.stop().await;
}
