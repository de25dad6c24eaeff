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

/// Every key of a service, as a message lists them.
const SERVICE_KEYS: &str = "enabled, interval, tz, on_start, paused, timeout, retries, \
                            retry_backoff, retry_backoff_max, jitter, misfire, misfire_limit or \
                            misfire_grace";
/// The same, as environment variables spell them.
const ENV_KEYS: &str = "ENABLED, INTERVAL, TZ, ON_START, PAUSED, TIMEOUT, RETRIES, RETRY_BACKOFF, \
                        RETRY_BACKOFF_MAX, JITTER, MISFIRE, MISFIRE_LIMIT or MISFIRE_GRACE";

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
            &format!("unknown setting: expected {SERVICE_KEYS}"),
        ),
        at(
            "manager.max_concurrent_jobs",
            "expected a whole number of at least 1, found integer 0",
        ),
        env(
            "SCHEDULER_SERVICE__NOPE__INTERVAL",
            "the service part 'NOPE' matches no service; known services: \
             EXTRA__NIGHTLY_CLEANUP ('extra::nightly-cleanup'), \
             SCHEDULER_TESTS__BILLING__SETTLE_INVOICES ('scheduler_tests::billing::settle_invoices'), \
             SEARCH_REINDEX ('search-reindex')",
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

/// The problems of a build with this file (if any) and these variables, sorted.
fn build_problems(file: Option<&ConfigFile>, vars: &[(String, &str)]) -> Vec<String> {
    let mut builder = builder().config_env_vars(vars.iter().map(|(k, v)| (k.clone(), *v)));
    if let Some(file) = file {
        builder = builder.config_file(&file.0);
    }
    let mut found = problems(builder.build().expect_err("a bad configuration"));
    found.sort();
    found
}

#[tokio::test]
async fn a_bad_file_value_is_an_error_even_when_the_environment_overrides_it() {
    let file = ConfigFile::new(
        "overridden",
        r#"
[manager]
max_concurrent_jobs = 0

[services."search-reindex"]
interval = "61 * * * *"

[services."extra::nightly-cleanup"]
tz = "Europe/Berln"
on_start = "yes"
"#,
    );
    // Every one of these variables is valid, and overrides a bad value of the file.
    let vars = [
        (env_var_name(REINDEX, "interval"), "*/5 * * * *"),
        (env_var_name(CLEANUP, "tz"), "Europe/Berlin"),
        (env_var_name(CLEANUP, "on_start"), "false"),
        ("SCHEDULER_MAX_CONCURRENT_JOBS".to_owned(), "4"),
    ];
    let path = file.0.display().to_string();
    assert_eq!(
        build_problems(Some(&file), &vars),
        [
            format!("{path}: manager.max_concurrent_jobs: expected a whole number of at least 1, found integer 0"),
            format!("{path}: services.\"extra::nightly-cleanup\".on_start: expected true or false, found string 'yes'"),
            format!("{path}: services.\"extra::nightly-cleanup\".tz: unknown time zone 'Europe/Berln': did you mean 'Europe/Berlin'?"),
            format!("{path}: services.search-reindex.interval: minute field: 61 is out of range 0-59 in '61 * * * *'"),
        ]
    );

    // With the file fixed, the same variables build, and win.
    file.rewrite(
        r#"
[services."search-reindex"]
interval = "*/2 * * * *"

[services."extra::nightly-cleanup"]
tz = "Europe/Paris"
"#,
    );
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars(vars.iter().map(|(k, v)| (k.clone(), *v)))
        .build()
        .unwrap();
    assert_eq!(manager.service(REINDEX).unwrap().schedule, "*/5 * * * *");
    assert_eq!(
        manager.service(CLEANUP).unwrap().schedule,
        "0 3 * * * (Europe/Berlin)"
    );
}

#[tokio::test(start_paused = true)]
async fn reload_rejects_a_bad_file_value_that_the_environment_overrides() {
    let file = ConfigFile::new(
        "reload-overridden",
        "[services.\"search-reindex\"]\ninterval = 60\n",
    );
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars([(env_var_name(REINDEX, "interval"), "30")])
        .build()
        .unwrap();
    manager.start().unwrap();
    assert_eq!(manager.service(REINDEX).unwrap().schedule, "every 30s");

    file.rewrite("[services.\"search-reindex\"]\ninterval = \"every day\"\n");
    let found = problems(manager.reload_config().expect_err("the file is broken"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!(
            "{}: services.search-reindex.interval: expected 5 fields",
            file.0.display()
        )),
        "{found:?}"
    );
    assert_eq!(manager.service(REINDEX).unwrap().schedule, "every 30s");

    file.rewrite("[services.\"search-reindex\"]\ntz = \"Mars/Olympus\"\n");
    assert!(
        manager.reload_config().is_err(),
        "a bad tz, overridden or not"
    );
    manager.stop().await;
}

#[tokio::test]
async fn a_period_written_with_a_unit_gets_the_number_to_write() {
    let file = ConfigFile::new(
        "unit",
        "[services.\"search-reindex\"]\ninterval = \"30s\"\n\n[services.\"extra::nightly-cleanup\"]\ninterval = \"5 min\"\n",
    );
    let path = file.0.display().to_string();
    let fields = "expected 5 fields (minute hour day-of-month month day-of-week), 6 (with a \
                  leading seconds field) or 7 (seconds first, year last), found";
    assert_eq!(
        build_problems(Some(&file), &[(env_var_name(SETTLE, "interval"), "1h")]),
        [
            format!(
                "{path}: services.\"extra::nightly-cleanup\".interval: {fields} 2 in '5 min'; \
                 for a period of 300 seconds, write `interval = 300` (a number of seconds, \
                 without quotes)"
            ),
            format!(
                "{path}: services.search-reindex.interval: {fields} 1 in '30s'; for a period of \
                 30 seconds, write `interval = 30` (a number of seconds, without quotes)"
            ),
            format!(
                "environment variable {}: {fields} 1 in '1h'; for a period of 3600 seconds, set \
                 it to 3600 (a number of seconds, no unit)",
                env_var_name(SETTLE, "interval")
            ),
        ]
    );
}

#[tokio::test]
async fn a_misspelt_section_or_key_in_the_file_gets_a_suggestion() {
    let file = ConfigFile::new(
        "misspelt",
        "[service.x]\n\n[manager]\nstop_deadlin = 3\n\n[services.\"search-reindex\"]\nintervall = 5\n\n[services.search-reindx]\nenabled = false\n",
    );
    let path = file.0.display().to_string();
    assert_eq!(
        build_problems(Some(&file), &[]),
        [
            format!("{path}: manager.stop_deadlin: unknown setting (did you mean stop_deadline?): expected max_concurrent_jobs or stop_deadline"),
            format!("{path}: service: unknown section (did you mean services?): expected [manager] or [services.\"<name>\"]"),
            format!("{path}: services.search-reindex.intervall: unknown setting (did you mean interval?): expected {SERVICE_KEYS}"),
            format!("{path}: services.search-reindx.enabled: no service is named 'search-reindx' (did you mean 'search-reindex'?)"),
        ]
    );
}

#[tokio::test]
async fn a_stop_deadline_with_a_unit_gets_the_number_to_write() {
    let file = ConfigFile::new("deadline", "[manager]\nstop_deadline = \"2m\"\n");
    let path = file.0.display().to_string();
    assert_eq!(
        build_problems(Some(&file), &[]),
        [format!(
            "{path}: manager.stop_deadline: expected a number of seconds, found string '2m'; for 120 \
             seconds, write `stop_deadline = 120` (a number of seconds, without quotes)"
        )]
    );
    assert_eq!(
        build_problems(None, &[("SCHEDULER_STOP_DEADLINE".to_owned(), "30s")]),
        ["environment variable SCHEDULER_STOP_DEADLINE: expected a number of seconds, found '30s'; \
          for 30 seconds, set it to 30 (a number of seconds, no unit)"]
    );
}

#[tokio::test]
async fn an_unknown_variable_says_which_part_is_unknown_and_what_is_near() {
    let var = |v: &str| format!("environment variable {v}: ");
    let cases = [
        (
            "SCHEDULER_SERVICE__SEARCH_REINDX__INTERVAL",
            "the service part 'SEARCH_REINDX' matches no service; did you mean \
             SCHEDULER_SERVICE__SEARCH_REINDEX__INTERVAL (service 'search-reindex')?",
        ),
        (
            "SCHEDULER_SERVICE__SEARCH_REINDEX__INTERVALL",
            "the key 'INTERVALL' is not a setting of service 'search-reindex' (did you mean \
             INTERVAL?): expected {ENV_KEYS}",
        ),
        (
            // The service's name has `::`, so its part has `__` too.
            "SCHEDULER_SERVICE__EXTRA__NIGHTLY_CLEANUP__ENABLE",
            "the key 'ENABLE' is not a setting of service 'extra::nightly-cleanup' (did you mean \
             ENABLED?): expected {ENV_KEYS}",
        ),
        (
            "SCHEDULER_SERVICE__SEARCH_REINDEXER__TZZ",
            "neither the service part 'SEARCH_REINDEXER' nor the key 'TZZ' (did you mean TZ?) is \
             known; did you mean SCHEDULER_SERVICE__SEARCH_REINDEX__TZ (service 'search-reindex')?",
        ),
        (
            "SCHEDULER_SERVICE_SEARCH_REINDEX__TZ",
            "expected SCHEDULER_SERVICE__<NAME>__<KEY>: two underscores after SCHEDULER_SERVICE, \
             and two before the key",
        ),
        (
            "SCHEDULER_MAX_CONCURENT_JOBS",
            "not a setting (did you mean SCHEDULER_MAX_CONCURRENT_JOBS?): expected \
             SCHEDULER_MAX_CONCURRENT_JOBS, SCHEDULER_STOP_DEADLINE or \
             SCHEDULER_SERVICE__<NAME>__<KEY>",
        ),
    ];
    for (name, message) in cases {
        assert_eq!(
            build_problems(None, &[(name.to_owned(), "1")]),
            [format!(
                "{}{}",
                var(name),
                message.replace("{ENV_KEYS}", ENV_KEYS)
            )]
        );
    }
    // Variables of the application's own that merely share the prefix are not the scheduler's.
    builder()
        .config_env_vars([("SCHEDULER_LOG_DIR", "/var/log"), ("SCHEDULER_URL", "x")])
        .build()
        .unwrap();
}

#[tokio::test]
async fn an_environment_number_is_shown_as_written() {
    assert_eq!(
        build_problems(None, &[("SCHEDULER_MAX_CONCURRENT_JOBS".to_owned(), "0")]),
        ["environment variable SCHEDULER_MAX_CONCURRENT_JOBS: expected a whole number of at least 1, found 0"]
    );
    assert_eq!(
        build_problems(None, &[("SCHEDULER_MAX_CONCURRENT_JOBS".to_owned(), "four")]),
        ["environment variable SCHEDULER_MAX_CONCURRENT_JOBS: expected a whole number of at least 1, found 'four'"]
    );
    assert_eq!(
        build_problems(None, &[("SCHEDULER_MAX_CONCURRENT_JOBS".to_owned(), "2000000000")]),
        ["environment variable SCHEDULER_MAX_CONCURRENT_JOBS: expected a whole number from 1 to 65536, found 2000000000"]
    );
}

#[tokio::test]
async fn a_misspelt_zone_gets_a_suggestion() {
    let tz = env_var_name(CLEANUP, "tz");
    assert_eq!(
        build_problems(None, &[(tz.clone(), "america/new york")]),
        [format!("environment variable {tz}: unknown time zone 'america/new york': did you mean 'America/New_York'?")]
    );
}

#[tokio::test]
async fn an_unquoted_service_name_with_colons_says_to_quote_it() {
    let file = ConfigFile::new(
        "unquoted",
        "[services.scheduler_tests::billing::settle_invoices]\nenabled = false\n",
    );
    let found = build_problems(Some(&file), &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("not valid TOML"), "{found:?}");
    assert!(
        found[0].ends_with(
            "a service name with `::` must be quoted in TOML: write \
             `[services.\"scheduler_tests::billing::settle_invoices\"]`"
        ),
        "{found:?}"
    );
}
