//! Job policies from the attribute and from operator configuration: precedence key by key, every bad
//! value with its message, reloads that change a policy or `paused`, and (on the paused clock) that
//! a policy from either place applies at run time.
//!
//! The services are declared in this file, so this test binary registers exactly them.

// Jobs that stand in for real ones, which would await I/O.
#![allow(clippy::unused_async)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::{
    background_service,
    config::{env_var_name, ConfigReload},
    Error, JobContext, Misfire, Outcome, ServiceManager, ServiceManagerBuilder, ServiceState,
    TokioClock,
};
use tokio::time::{sleep, Instant};

/// Every policy, from the attribute.
#[background_service(
    interval = 60,
    name = "policied",
    timeout = 30,
    retries = 2,
    retry_backoff = 2,
    retry_backoff_max = 20,
    misfire = "all",
    misfire_limit = 4,
    misfire_grace = 2
)]
async fn policied() {}

/// No policy in the attribute.
#[background_service(interval = 60, name = "plain")]
async fn plain() {}

/// A one-shot service.
#[background_service(once_after = 30, name = "once")]
async fn once() {}

/// A run that never ends by itself.
#[background_service(interval = 60, name = "slow")]
async fn slow() {
    sleep(Duration::from_secs(3600)).await;
}

/// Each call of [`flaky`]: its tick, attempt and when it started. Only
/// `retries_from_the_attribute_retry_a_failed_tick` runs `flaky`.
static FLAKY_CALLS: Mutex<Vec<(DateTime<Utc>, u32, Instant)>> = Mutex::new(Vec::new());

/// Fails its first two calls, then succeeds; retries from the attribute.
#[background_service(
    interval = 60,
    name = "flaky",
    retries = 2,
    retry_backoff = 1,
    retry_backoff_max = 1
)]
async fn flaky(ctx: JobContext) -> Result<(), String> {
    let mut calls = FLAKY_CALLS.lock().unwrap();
    calls.push((ctx.tick(), ctx.attempt(), Instant::now()));
    if calls.len() <= 2 {
        return Err(format!("attempt {} failed", ctx.attempt()));
    }
    Ok(())
}

const SERVICES: [&str; 5] = ["policied", "plain", "once", "slow", "flaky"];

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(n)
}

/// A config file unique to one test, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(label: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "scheduler-config-policies-{}-{label}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        ConfigFile(path)
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    fn at(&self, key: &str, message: &str) -> String {
        format!("{}: {key}: {message}", self.0.display())
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn builder() -> ServiceManagerBuilder {
    ServiceManager::builder()
        .clock(TokioClock::starting_at(t0()))
        .with_registered_services()
}

/// Variables that disable every service but `keep`.
fn only(keep: &str) -> Vec<(String, String)> {
    SERVICES
        .iter()
        .filter(|name| **name != keep)
        .map(|name| (env_var_name(name, "enabled"), "false".to_owned()))
        .collect()
}

fn var(service: &str, key: &str, value: &str) -> (String, String) {
    (env_var_name(service, key), value.to_owned())
}

fn env(service: &str, key: &str, message: &str) -> String {
    format!(
        "environment variable {}: {message}",
        env_var_name(service, key)
    )
}

/// The problems of a build with this file (if any) and these variables, sorted.
fn build_problems(file: Option<&ConfigFile>, vars: Vec<(String, String)>) -> Vec<String> {
    let mut builder = builder().config_env_vars(vars);
    if let Some(file) = file {
        builder = builder.config_file(&file.0);
    }
    let mut found = match builder.build() {
        Err(Error::Config(config)) => config
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("expected a configuration error"),
    };
    found.sort();
    found
}

#[test]
fn the_attribute_declares_exactly_these_services_with_their_policies() {
    let manager = builder().build().unwrap();
    let mut names: Vec<_> = manager.services().into_iter().map(|s| s.name).collect();
    names.sort();
    let mut expected = SERVICES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    let policied = manager.policies("policied").unwrap();
    assert_eq!(
        (policied.timeout, policied.retries, policied.misfire),
        (
            Some(Duration::from_secs(30)),
            2,
            Some(Misfire::All { limit: 4 })
        )
    );
}

#[test]
fn file_overrides_the_attribute_and_env_overrides_the_file_key_by_key() {
    let file = ConfigFile::new(
        "precedence",
        r#"
[services.policied]
timeout = 10            # overridden again by the environment
retries = 5             # only here: the file wins
misfire_limit = 6       # the attribute's misfire = "all" stays, with this limit
jitter = 3

[services.plain]
misfire = "ALL"         # any case; the default limit
retries = 1
retry_backoff = 120     # above the default cap of 60: the cap follows
paused = true
"#,
    );
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars([
            var("policied", "timeout", "20"),
            var("policied", "retry_backoff_max", "40"),
            var("policied", "misfire_grace", "0.5"),
            var("plain", "jitter", "0.25"),
        ])
        .build()
        .unwrap();

    let policied = manager.policies("policied").unwrap();
    assert_eq!(policied.timeout, Some(Duration::from_secs(20)), "env");
    assert_eq!(policied.retries, 5, "file");
    assert_eq!(policied.retry_backoff, Duration::from_secs(2), "attribute");
    assert_eq!(policied.retry_backoff_max, Duration::from_secs(40), "env");
    assert_eq!(policied.jitter, Some(Duration::from_secs(3)), "file");
    assert_eq!(policied.misfire, Some(Misfire::All { limit: 6 }));
    assert_eq!(policied.misfire_grace, Duration::from_millis(500), "env");

    let plain = manager.policies("plain").unwrap();
    assert_eq!(
        plain.misfire,
        Some(Misfire::All {
            limit: Misfire::DEFAULT_LIMIT
        })
    );
    assert_eq!(
        (plain.retries, plain.retry_backoff, plain.retry_backoff_max),
        (1, Duration::from_secs(120), Duration::from_secs(120))
    );
    assert_eq!(plain.jitter, Some(Duration::from_millis(250)));
    // `paused` takes effect at start; the schedule and its origin are the attribute's.
    let status = manager.service("plain").unwrap();
    assert_eq!(
        (status.state, status.schedule.as_str()),
        (ServiceState::NotStarted, "every 60s")
    );
}

#[test]
fn zero_removes_what_the_attribute_sets_and_a_moot_attribute_value_is_no_error() {
    let manager = builder()
        .config_env_vars([
            var("policied", "timeout", "0"),
            // The attribute's retry_backoff(_max) and misfire_limit now do nothing: not an error,
            // as the operator did not write them.
            var("policied", "retries", "0"),
            var("policied", "misfire", "skip"),
        ])
        .build()
        .unwrap();
    let policied = manager.policies("policied").unwrap();
    assert_eq!(
        (policied.timeout, policied.retries, policied.misfire),
        (None, 0, Some(Misfire::Skip))
    );
    let file = ConfigFile::new("zero", "[services.plain]\ntimeout = 0\njitter = 0\n");
    let manager = builder().config_file(&file.0).build().unwrap();
    assert_eq!(
        manager.policies("plain").unwrap(),
        manager.policies("once").unwrap(),
        "zero everywhere is no policy at all"
    );
}

#[test]
fn every_bad_policy_value_in_the_file_is_reported_with_its_key_and_the_fix() {
    let file = ConfigFile::new(
        "bad-values",
        r#"
[services.plain]
timeout = "30s"
retries = 2.5
jitter = -1
misfire = "coalese"
misfire_grace = 0
paused = "yes"
retry_backof = 1

[services.policied]
misfire_limit = 0
retries = "3"
misfire = 3
retry_backoff_max = 1e300
"#,
    );
    let mut expected = vec![
        file.at(
            "services.plain.timeout",
            "expected a number of seconds, found string '30s'; for 30 seconds, write \
             `timeout = 30` (a number of seconds, without quotes)",
        ),
        file.at(
            "services.plain.retries",
            "expected a whole number from 0 to 4294967295, found number 2.5",
        ),
        file.at(
            "services.plain.jitter",
            "expected a non-negative number of seconds, found -1",
        ),
        file.at(
            "services.plain.misfire",
            "unknown misfire policy 'coalese' (did you mean 'coalesce'?): expected 'skip', \
             'coalesce' or 'all'",
        ),
        file.at(
            "services.plain.misfire_grace",
            "expected a number of seconds greater than zero, found integer 0; a run always \
             starts a little after its tick",
        ),
        file.at(
            "services.plain.paused",
            "expected true or false, found string 'yes'",
        ),
        file.at(
            "services.plain.retry_backof",
            "unknown setting (did you mean retry_backoff?): expected enabled, interval, tz, \
             on_start, paused, timeout, retries, retry_backoff, retry_backoff_max, jitter, \
             misfire, misfire_limit or misfire_grace",
        ),
        file.at(
            "services.policied.misfire_limit",
            "expected a whole number from 1 to 4294967295, found integer 0; to run none of the \
             missed ticks, set misfire to 'skip'",
        ),
        file.at(
            "services.policied.retries",
            "expected a whole number from 0 to 4294967295, found string '3'; write \
             `retries = 3` (a number, without quotes)",
        ),
        file.at(
            "services.policied.misfire",
            "expected 'skip', 'coalesce' or 'all', found integer 3",
        ),
        file.at(
            "services.policied.retry_backoff_max",
            &format!("{} seconds is too long for retry_backoff_max", 1e300),
        ),
    ];
    expected.sort();
    assert_eq!(build_problems(Some(&file), Vec::new()), expected);
}

#[test]
fn every_bad_policy_value_in_the_environment_is_reported_with_its_variable() {
    let vars = vec![
        var("plain", "timeout", "1e400"),
        var("plain", "retries", "-1"),
        var("policied", "misfire", "everything"),
        var("policied", "retry_backoff", "1h"),
        var("policied", "paused", "maybe"),
        (
            "SCHEDULER_SERVICE__POLICIED__JITTR".to_owned(),
            "1".to_owned(),
        ),
    ];
    let mut expected = vec![
        env(
            "plain",
            "timeout",
            "expected a non-negative number of seconds, found inf",
        ),
        env(
            "plain",
            "retries",
            "expected a whole number from 0 to 4294967295, found -1",
        ),
        env(
            "policied",
            "misfire",
            "unknown misfire policy 'everything': expected 'skip', 'coalesce' or 'all'",
        ),
        env(
            "policied",
            "retry_backoff",
            "expected a number of seconds, found '1h'; for 3600 seconds, set it to 3600 (a \
             number of seconds, no unit)",
        ),
        env(
            "policied",
            "paused",
            "expected true or false, found 'maybe'",
        ),
        "environment variable SCHEDULER_SERVICE__POLICIED__JITTR: the key 'JITTR' is not a \
         setting of service 'policied' (did you mean JITTER?): expected ENABLED, INTERVAL, TZ, \
         ON_START, PAUSED, TIMEOUT, RETRIES, RETRY_BACKOFF, RETRY_BACKOFF_MAX, JITTER, MISFIRE, \
         MISFIRE_LIMIT or MISFIRE_GRACE"
            .to_owned(),
    ];
    expected.sort();
    assert_eq!(build_problems(None, vars), expected);
}

#[test]
fn a_bad_file_value_is_an_error_even_when_the_environment_overrides_it() {
    let file = ConfigFile::new(
        "overridden",
        "[services.plain]\ntimeout = -3\nmisfire = \"sometimes\"\n",
    );
    let vars = vec![
        var("plain", "timeout", "10"),
        var("plain", "misfire", "skip"),
    ];
    assert_eq!(
        build_problems(Some(&file), vars.clone()),
        [
            file.at(
                "services.plain.misfire",
                "unknown misfire policy 'sometimes': expected 'skip', 'coalesce' or 'all'"
            ),
            file.at(
                "services.plain.timeout",
                "expected a non-negative number of seconds, found -3"
            ),
        ]
    );
    file.rewrite("[services.plain]\ntimeout = 3\n");
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars(vars)
        .build()
        .unwrap();
    let plain = manager.policies("plain").unwrap();
    assert_eq!(
        (plain.timeout, plain.misfire),
        (Some(Duration::from_secs(10)), Some(Misfire::Skip))
    );
}

#[test]
fn rules_between_keys_apply_to_what_takes_effect_and_name_the_key_written() {
    let file = ConfigFile::new(
        "rules",
        r#"
[services.plain]
misfire_limit = 5
retry_backoff = 2

[services.policied]
retry_backoff_max = 1

[services.once]
jitter = 2
misfire = "skip"
timeout = 5             # fine on a one-shot
"#,
    );
    let vars = vec![
        var("slow", "retries", "1"),
        var("slow", "retry_backoff_max", "0.5"),
        var("flaky", "retry_backoff", "3"),
        var("flaky", "misfire", "coalesce"),
        var("flaky", "misfire_limit", "2"),
    ];
    let mut expected = vec![
        file.at(
            "services.plain.misfire_limit",
            "misfire_limit applies only to misfire = 'all', and this service sets no misfire \
             (the default is 'coalesce')",
        ),
        file.at(
            "services.plain.retry_backoff",
            "retry_backoff has no effect while retries is 0: set retries too",
        ),
        file.at(
            "services.policied.retry_backoff_max",
            "retry_backoff_max 1 is less than retry_backoff 2 (from the attribute): the cap \
             must be at least the base",
        ),
        file.at(
            "services.once.jitter",
            "jitter does not apply to a one-shot service, and this one runs once after 30s",
        ),
        file.at(
            "services.once.misfire",
            "misfire does not apply to a one-shot service, and this one runs once after 30s",
        ),
        env(
            "slow",
            "retry_backoff_max",
            "retry_backoff_max 0.5 is less than the default retry_backoff of 1 second: set \
             retry_backoff too, to at most 0.5",
        ),
        env(
            "flaky",
            "retry_backoff",
            "retry_backoff 3 is more than retry_backoff_max 1 (from the attribute): set \
             retry_backoff_max too",
        ),
        env(
            "flaky",
            "misfire_limit",
            "misfire_limit applies only to misfire = 'all', and this service's misfire is \
             'coalesce'",
        ),
    ];
    expected.sort();
    assert_eq!(build_problems(Some(&file), vars), expected);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_from_the_configuration_cancels_a_run() {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let file = ConfigFile::new("timeout", "[services.slow]\ntimeout = 5\n");
    let manager = builder()
        .abort_grace(Duration::from_secs(1))
        .on_failure(move |failure| sink.lock().unwrap().push(failure.outcome.clone()))
        .config_file(&file.0)
        .config_env_vars(only("slow"))
        .build()
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(70)).await;
    let status = manager.service("slow").unwrap();
    assert_eq!(status.last_outcome, Some(Outcome::TimedOut));
    assert_eq!((status.runs, status.failures), (1, 1));
    assert_eq!(
        status.last_duration,
        Some(Duration::from_secs(6)),
        "cancelled at 5 s, dropped after the 1 s grace"
    );
    assert_eq!(status.next_fire, Some(secs(120)), "the schedule goes on");
    assert_eq!(*failures.lock().unwrap(), [Outcome::TimedOut]);
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retries_from_the_attribute_retry_a_failed_tick() {
    let started = Instant::now();
    let manager = builder().config_env_vars(only("flaky")).build().unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(125)).await;
    let calls = FLAKY_CALLS.lock().unwrap().clone();
    let attempts: Vec<_> = calls
        .iter()
        .map(|(tick, attempt, _)| (*tick, *attempt))
        .collect();
    assert_eq!(
        attempts,
        [(secs(60), 1), (secs(60), 2), (secs(60), 3), (secs(120), 1)]
    );
    // Backoff 1 s capped at 1 s: each retry between half and all of it after the failure.
    assert_eq!(calls[0].2 - started, Duration::from_secs(60));
    for pair in calls[..3].windows(2) {
        let gap = pair[1].2 - pair[0].2;
        assert!(
            (Duration::from_millis(500)..Duration::from_secs(1)).contains(&gap),
            "{gap:?}"
        );
    }
    let status = manager.service("flaky").unwrap();
    assert_eq!(
        (status.runs, status.failures, status.retries_dropped),
        (4, 2, 0)
    );
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_changes_a_policy_re_registers_the_service_and_keeps_its_counters() {
    let file = ConfigFile::new("reload", "[services.policied]\ntimeout = 10\n");
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars(only("policied"))
        .build()
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(125)).await;
    assert_eq!(manager.service("policied").unwrap().runs, 2);

    let report = manager.reload_config().unwrap();
    assert!(
        report.changed.is_empty() && report.paused.is_empty(),
        "{report:?}"
    );

    file.rewrite("[services.policied]\ntimeout = 15\nmisfire = \"skip\"\n");
    let report = manager.reload_config().unwrap();
    assert_eq!(report.changed, ["policied"]);
    let policies = manager.policies("policied").unwrap();
    assert_eq!(
        (policies.timeout, policies.misfire),
        (Some(Duration::from_secs(15)), Some(Misfire::Skip))
    );
    let status = manager.service("policied").unwrap();
    assert_eq!(status.runs, 2, "a reload keeps the counters");
    // Re-registered at 125 s: the new grid counts from there.
    assert_eq!(status.next_fire, Some(secs(185)));

    // A bad policy changes nothing.
    file.rewrite("[services.policied]\ntimeout = \"soon\"\n");
    assert!(matches!(manager.reload_config(), Err(Error::Config(_))));
    assert_eq!(
        manager.policies("policied").unwrap().timeout,
        Some(Duration::from_secs(15))
    );
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn paused_from_the_configuration_starts_paused_and_a_reload_resumes_and_pauses_it() {
    let file = ConfigFile::new("paused", "[services.plain]\npaused = true\n");
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars(only("plain"))
        .build()
        .unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(150)).await;
    let status = manager.service("plain").unwrap();
    assert_eq!(
        (status.state, status.runs, status.next_fire),
        (ServiceState::Paused, 0, None)
    );

    file.rewrite("[services.plain]\npaused = false\n");
    let report = manager.reload_config().unwrap();
    assert_eq!(
        (report.changed.len(), report.resumed.as_slice()),
        (0, ["plain".to_owned()].as_slice())
    );
    let status = manager.service("plain").unwrap();
    assert_eq!(status.state, ServiceState::Idle);
    assert_eq!(status.skipped_paused, 2, "the ticks at 60 and 120");
    assert_eq!(
        status.next_fire,
        Some(secs(180)),
        "on the grid of the start"
    );
    sleep(Duration::from_secs(35)).await;
    assert_eq!(manager.service("plain").unwrap().runs, 1);

    // Unchanged: nothing happens.
    assert_eq!(manager.reload_config().unwrap(), ConfigReload::default());

    file.rewrite("[services.plain]\npaused = true\n");
    let report = manager.reload_config().unwrap();
    assert_eq!(report.paused, ["plain"]);
    sleep(Duration::from_secs(120)).await;
    let status = manager.service("plain").unwrap();
    assert_eq!((status.state, status.runs), (ServiceState::Paused, 1));

    // Still configured paused: the next start begins paused again.
    manager.stop().await;
    manager.start().unwrap();
    assert_eq!(
        manager.service("plain").unwrap().state,
        ServiceState::Paused
    );
    // A pause by hand and a resume by hand work as usual; the configuration applies again only
    // when it changes.
    manager.resume("plain").unwrap();
    assert_eq!(manager.service("plain").unwrap().state, ServiceState::Idle);
    assert!(manager.reload_config().unwrap().paused.is_empty());
    assert_eq!(manager.service("plain").unwrap().state, ServiceState::Idle);
    manager.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_service_still_configured_paused_is_paused_again_when_re_registered_or_enabled() {
    let file = ConfigFile::new(
        "paused-again",
        "[services.plain]\npaused = true\ntimeout = 5\n\n[services.policied]\nenabled = false\npaused = true\n",
    );
    let vars: Vec<_> = only("plain")
        .into_iter()
        .filter(|(name, _)| *name != env_var_name("policied", "enabled"))
        .collect();
    let manager = builder()
        .config_file(&file.0)
        .config_env_vars(vars)
        .build()
        .unwrap();
    manager.start().unwrap();
    let state = |name: &str| manager.service(name).unwrap().state;
    assert_eq!(
        (state("plain"), state("policied")),
        (ServiceState::Paused, ServiceState::Disabled)
    );
    manager.resume("plain").unwrap();
    assert_eq!(state("plain"), ServiceState::Idle);

    // Another setting of the paused service changes: it is re-registered, and paused as at start.
    // The disabled one's `paused` turns false: nothing to resume, nothing reported.
    file.rewrite(
        "[services.plain]\npaused = true\ntimeout = 6\n\n[services.policied]\nenabled = false\n",
    );
    let report = manager.reload_config().unwrap();
    assert_eq!(report.changed, ["plain"]);
    assert!(
        report.paused.is_empty() && report.resumed.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        (state("plain"), state("policied")),
        (ServiceState::Paused, ServiceState::Disabled)
    );

    // Enabled while configured paused: it comes back paused.
    file.rewrite(
        "[services.plain]\npaused = true\ntimeout = 6\n\n[services.policied]\npaused = true\n",
    );
    let report = manager.reload_config().unwrap();
    assert_eq!(
        (report.changed.as_slice(), report.paused.as_slice()),
        (
            ["policied".to_owned()].as_slice(),
            ["policied".to_owned()].as_slice()
        )
    );
    assert_eq!(state("policied"), ServiceState::Paused);
    sleep(Duration::from_secs(300)).await;
    assert_eq!(manager.service("policied").unwrap().runs, 0);
    manager.stop().await;
}

/// The (tick, start) of each run of `plain` over 10 minutes with `jitter` from the environment.
async fn plain_starts_with_jitter(jitter: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut vars = only("plain");
    vars.push(var("plain", "jitter", jitter));
    let manager = builder().config_env_vars(vars).build().unwrap();
    manager.start().unwrap();
    sleep(Duration::from_secs(605)).await;
    manager.stop().await;
    let mut runs: Vec<_> = manager
        .history("plain")
        .unwrap()
        .into_iter()
        .map(|run| (run.tick, run.started))
        .collect();
    runs.reverse();
    runs
}

#[tokio::test(start_paused = true)]
async fn a_jitter_from_the_environment_delays_each_start_and_keeps_the_ticks_on_the_grid() {
    let runs = plain_starts_with_jitter("3").await;
    let ticks: Vec<_> = runs.iter().map(|(tick, _)| *tick).collect();
    assert_eq!(ticks, (1..=10).map(|k| secs(60 * k)).collect::<Vec<_>>());
    for (tick, started) in &runs {
        let delay = (*started - *tick).to_std().unwrap();
        assert!(delay < Duration::from_secs(3), "{tick}: {delay:?}");
    }
    assert!(
        runs.iter()
            .any(|(tick, started)| *started - *tick > TimeDelta::seconds(1)),
        "the delays are spread, not all zero: {runs:?}"
    );
    // Without it, each run starts on its tick.
    let plain = plain_starts_with_jitter("0").await;
    assert!(
        plain.iter().all(|(tick, started)| tick == started),
        "{plain:?}"
    );
}
