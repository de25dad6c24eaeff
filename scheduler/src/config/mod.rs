//! Operator configuration: change when, and whether, services run without recompiling.
//!
//! Three layers, each overriding the one before, key by key:
//!
//! 1. the attribute (`#[background_service(...)]`), i.e. what the code says;
//! 2. a TOML file ([`ServiceManagerBuilder::config_file`](crate::ServiceManagerBuilder::config_file));
//! 3. environment variables ([`ServiceManagerBuilder::config_env`](crate::ServiceManagerBuilder::config_env)).
//!
//! Every source is read and checked as a whole before anything is applied: a bad configuration is one
//! [`ConfigError`] listing every problem with its file key or variable, and nothing starts.
//!
//! Every value is checked where it is written, even when a later source overrides it: a file's
//! `interval = "61 * * * *"` is an error although `SCHEDULER_SERVICE__<NAME>__INTERVAL` replaces it,
//! at build and at every reload. A fix made only in the environment would leave a broken file
//! behind, to surface the day the variable is unset. Rules between keys (`tz` only with a cron
//! interval, `misfire_limit` only with `misfire = "all"`) apply to what takes effect.
//!
//! Per service: `enabled`, `interval`, `tz`, `on_start`, `paused`, and the job policies
//! `timeout`, `retries`, `retry_backoff`, `retry_backoff_max`, `jitter`, `misfire`,
//! `misfire_limit` and `misfire_grace` (the README's "Configuration" section describes each).
//! Manager-wide: `max_concurrent_jobs`, `stop_deadline`.

mod env;
mod file;
mod policy;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::Policies;
use crate::service::Service;
use crate::Schedule;

pub use crate::status::Origin;
pub use env::env_var_name;

/// What [`ServiceManager::reload_config`](crate::ServiceManager::reload_config) changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigReload {
    /// Services re-registered (or disabled, or enabled) because their settings changed, by name.
    pub changed: Vec<String>,
    /// Whether `max_concurrent_jobs` changed.
    pub pool_resized: bool,
    /// Services paused because their `paused` setting turned true, by name.
    pub paused: Vec<String>,
    /// Services resumed because their `paused` setting turned false, by name.
    pub resumed: Vec<String>,
}

/// Everything wrong with a configuration, found in one pass.
///
/// ```text
/// invalid configuration (2 problems):
///   - config.toml: services."daily-report".interval: minute field: 61 is out of range 0-59 in '61 9 * * *'
///   - environment variable SCHEDULER_SERVICE__HEARTBEAT__ENABLED: expected true or false, found 'maybe'
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// Each problem, in the order the sources were read.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// One problem in a configuration: where it is, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file and key (`config.toml: services."x".interval`) or the environment variable.
    pub location: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Where configuration is read from; kept by the manager so `reload_config` reads the same places.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigSources {
    pub(crate) file: Option<PathBuf>,
    pub(crate) env: Option<EnvSource>,
}

#[derive(Debug, Clone)]
pub(crate) enum EnvSource {
    /// The process environment, read afresh on every load.
    Process,
    /// A fixed set of variables (tests, or an app that gathers them itself).
    Fixed(Vec<(String, String)>),
}

impl ConfigSources {
    pub(crate) fn is_empty(&self) -> bool {
        self.file.is_none() && self.env.is_none()
    }
}

/// A setting's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Enabled,
    Interval,
    Tz,
    OnStart,
    Paused,
    Timeout,
    Retries,
    RetryBackoff,
    RetryBackoffMax,
    Jitter,
    Misfire,
    MisfireLimit,
    MisfireGrace,
    MaxConcurrentJobs,
    StopDeadline,
}

impl Key {
    pub(crate) const SERVICE: [Key; 13] = [
        Key::Enabled,
        Key::Interval,
        Key::Tz,
        Key::OnStart,
        Key::Paused,
        Key::Timeout,
        Key::Retries,
        Key::RetryBackoff,
        Key::RetryBackoffMax,
        Key::Jitter,
        Key::Misfire,
        Key::MisfireLimit,
        Key::MisfireGrace,
    ];
    pub(crate) const MANAGER: [Key; 2] = [Key::MaxConcurrentJobs, Key::StopDeadline];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Enabled => "enabled",
            Key::Interval => "interval",
            Key::Tz => "tz",
            Key::OnStart => "on_start",
            Key::Paused => "paused",
            Key::Timeout => "timeout",
            Key::Retries => "retries",
            Key::RetryBackoff => "retry_backoff",
            Key::RetryBackoffMax => "retry_backoff_max",
            Key::Jitter => "jitter",
            Key::Misfire => "misfire",
            Key::MisfireLimit => "misfire_limit",
            Key::MisfireGrace => "misfire_grace",
            Key::MaxConcurrentJobs => "max_concurrent_jobs",
            Key::StopDeadline => "stop_deadline",
        }
    }

    /// The service keys as a message lists them, each through `spell` (`enabled, interval, …
    /// or misfire_grace`).
    pub(crate) fn service_keys(spell: impl Fn(&str) -> String) -> String {
        let names: Vec<String> = Key::SERVICE.iter().map(|key| spell(key.name())).collect();
        let (last, rest) = names.split_last().expect("services have keys");
        format!("{} or {last}", rest.join(", "))
    }
}

/// A value as a source wrote it: typed in TOML, always text in the environment.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    Other(&'static str),
}

impl Setting {
    /// The value as a message shows it: with its TOML type from the file (`integer 0`, `string
    /// 'x'`), as written from the environment, where every value is text (`0`, `'maybe'`).
    fn shown(&self) -> String {
        match (&self.value, self.origin) {
            (Value::Text(text), Origin::Env) if text.trim().parse::<f64>().is_ok() => {
                text.trim().to_owned()
            }
            (Value::Text(text), Origin::Env) => format!("'{text}'"),
            (value, _) => value.describe(),
        }
    }
}

impl Value {
    fn describe(&self) -> String {
        match self {
            Value::Bool(b) => format!("boolean {b}"),
            Value::Integer(i) => format!("integer {i}"),
            Value::Float(x) => format!("number {x}"),
            Value::Text(s) => format!("string '{s}'"),
            Value::Other(kind) => (*kind).to_owned(),
        }
    }
}

/// One setting read from a source, not yet checked against its key.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// `None` for manager-wide settings.
    pub(crate) service: Option<String>,
    pub(crate) key: Key,
    pub(crate) value: Value,
    pub(crate) origin: Origin,
    pub(crate) location: String,
}

/// A service as the code defines it, before configuration.
#[derive(Clone)]
pub(crate) struct Base {
    pub(crate) service: Service,
    pub(crate) origin: Origin,
}

/// What a service runs with once configuration is applied.
#[derive(Clone)]
pub(crate) struct Effective {
    /// The definition, with the configured schedule, `on_start`, policies, and `paused` (as
    /// `start_paused`).
    pub(crate) service: Service,
    pub(crate) enabled: bool,
    pub(crate) origin: Origin,
}

impl Effective {
    /// Whether a change from `self` to `other` needs the service re-registered. `paused` is not
    /// part of it: a change of it alone pauses or resumes the service, which keeps its grid.
    pub(crate) fn differs_from(&self, other: &Effective) -> bool {
        self.enabled != other.enabled
            || self.service.schedule != other.service.schedule
            || self.service.on_start != other.service.on_start
            || self.service.policies != other.service.policies
    }

    /// Whether the configuration asks for the service paused.
    pub(crate) fn paused(&self) -> bool {
        self.service.start_paused
    }
}

/// The outcome of loading every source.
pub(crate) struct Loaded {
    pub(crate) services: BTreeMap<String, Effective>,
    pub(crate) max_concurrent_jobs: Option<usize>,
    pub(crate) stop_deadline: Option<Duration>,
}

/// Reads every source and applies it to `bases`, collecting every problem.
pub(crate) fn load(
    sources: &ConfigSources,
    bases: &BTreeMap<String, Base>,
) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let mut settings = Vec::new();
    if let Some(path) = &sources.file {
        file::read(path, &mut settings, &mut problems);
    }
    match &sources.env {
        Some(EnvSource::Process) => {
            let vars = std::env::vars_os().filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                let v = v
                    .into_string()
                    .unwrap_or_else(|v| v.to_string_lossy().into_owned());
                Some((k, v))
            });
            env::read(vars, bases.keys(), &mut settings, &mut problems);
        }
        Some(EnvSource::Fixed(vars)) => {
            env::read(
                vars.iter().cloned(),
                bases.keys(),
                &mut settings,
                &mut problems,
            );
        }
        None => {}
    }

    let mut loaded = Loaded {
        services: BTreeMap::new(),
        max_concurrent_jobs: None,
        stop_deadline: None,
    };
    let mut per_service: BTreeMap<&str, Vec<&Setting>> = BTreeMap::new();
    for setting in &settings {
        match &setting.service {
            None => apply_manager_setting(setting, &mut loaded, &mut problems),
            Some(name) if bases.contains_key(name) => {
                per_service.entry(name).or_default().push(setting);
            }
            Some(name) => problems.push(ConfigProblem {
                location: setting.location.clone(),
                message: unknown_service(name, bases),
            }),
        }
    }
    for (name, base) in bases {
        let overrides = per_service.remove(name.as_str()).unwrap_or_default();
        if let Some(effective) = apply_service_settings(base, &overrides, &mut problems) {
            loaded.services.insert(name.clone(), effective);
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError { problems })
    }
}

fn unknown_service(name: &str, bases: &BTreeMap<String, Base>) -> String {
    let near = scheduler_core::suggest::closest(name, bases.keys().map(String::as_str));
    if !near.is_empty() {
        let near: Vec<String> = near.iter().take(3).map(|n| format!("'{n}'")).collect();
        return format!(
            "no service is named '{name}' (did you mean {}?)",
            near.join(" or ")
        );
    }
    let known: Vec<&str> = bases.keys().map(String::as_str).take(12).collect();
    let more = if bases.len() > known.len() {
        ", …"
    } else {
        ""
    };
    format!(
        "no service is named '{name}' (known services: {}{more})",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )
}

fn problem(setting: &Setting, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        location: setting.location.clone(),
        message: message.into(),
    }
}

fn as_bool(setting: &Setting) -> Result<bool, ConfigProblem> {
    match &setting.value {
        Value::Bool(b) => Ok(*b),
        Value::Text(text) if setting.origin == Origin::Env => {
            match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(problem(
                    setting,
                    format!("expected true or false, found '{text}'"),
                )),
            }
        }
        _ => Err(problem(
            setting,
            format!("expected true or false, found {}", setting.shown()),
        )),
    }
}

fn as_seconds(setting: &Setting) -> Result<f64, ConfigProblem> {
    let seconds = match &setting.value {
        Value::Integer(i) => *i as f64,
        Value::Float(x) => *x,
        Value::Text(text) if setting.origin == Origin::Env => match text.trim().parse::<f64>() {
            Ok(seconds) => seconds,
            Err(_) => return Err(not_seconds(setting)),
        },
        _ => return Err(not_seconds(setting)),
    };
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(seconds)
    } else {
        Err(problem(
            setting,
            format!("expected a non-negative number of seconds, found {seconds}"),
        ))
    }
}

/// The problem with a value that should be a number of seconds, with the number to write when the
/// text reads as a period (`"30s"`).
fn not_seconds(setting: &Setting) -> ConfigProblem {
    let mut message = format!("expected a number of seconds, found {}", setting.shown());
    if let Value::Text(text) = &setting.value {
        if let Some(seconds) = scheduler_core::suggest::period_secs(text) {
            message = format!("{message}; {}", period_fix(setting, seconds));
        }
    }
    problem(setting, message)
}

/// How to write a period of `seconds` where `setting` is: a number in the file, digits alone in the
/// environment.
fn period_fix(setting: &Setting, seconds: f64) -> String {
    let what = match setting.key {
        Key::Interval => format!("a period of {seconds} seconds"),
        _ => format!("{seconds} seconds"),
    };
    match setting.origin {
        Origin::Env => format!("for {what}, set it to {seconds} (a number of seconds, no unit)"),
        _ => format!(
            "for {what}, write `{} = {seconds}` (a number of seconds, without quotes)",
            setting.key.name()
        ),
    }
}

fn apply_manager_setting(
    setting: &Setting,
    loaded: &mut Loaded,
    problems: &mut Vec<ConfigProblem>,
) {
    match setting.key {
        Key::MaxConcurrentJobs => {
            let jobs = match &setting.value {
                Value::Integer(i) => usize::try_from(*i).ok(),
                Value::Text(text) if setting.origin == Origin::Env => text.trim().parse().ok(),
                _ => None,
            };
            match jobs {
                Some(jobs) if (1..=crate::pool::MAX_WORKERS).contains(&jobs) => {
                    loaded.max_concurrent_jobs = Some(jobs);
                }
                Some(jobs) if jobs > crate::pool::MAX_WORKERS => problems.push(problem(
                    setting,
                    format!(
                        "expected a whole number from 1 to {}, found {}",
                        crate::pool::MAX_WORKERS,
                        setting.shown()
                    ),
                )),
                _ => problems.push(problem(
                    setting,
                    format!(
                        "expected a whole number of at least 1, found {}",
                        setting.shown()
                    ),
                )),
            }
        }
        Key::StopDeadline => match as_seconds(setting) {
            Ok(seconds) => match Duration::try_from_secs_f64(seconds) {
                Ok(deadline) => loaded.stop_deadline = Some(deadline),
                Err(_) => problems.push(problem(
                    setting,
                    format!("{seconds} seconds is too long for a stop deadline"),
                )),
            },
            Err(p) => problems.push(p),
        },
        _ => problems.push(problem(setting, "not a manager-wide setting")),
    }
}

/// Applies one service's settings in order (file before environment), then rebuilds its schedule.
///
/// Each value is checked on its own as it is read, so that one overridden by a later source is
/// checked all the same; the rules between keys apply to the values that take effect.
fn apply_service_settings(
    base: &Base,
    settings: &[&Setting],
    problems: &mut Vec<ConfigProblem>,
) -> Option<Effective> {
    let before = problems.len();
    let mut enabled = true;
    let mut on_start = base.service.on_start;
    let mut paused = false;
    let mut policies = policy::Overrides::default();
    // The last `interval` and `tz`, with their values if valid.
    let mut interval: Option<(&Setting, Option<IntervalValue>)> = None;
    let mut tz: Option<(&Setting, Option<String>)> = None;
    for &setting in settings {
        match setting.key {
            Key::Enabled => match as_bool(setting) {
                Ok(b) => enabled = b,
                Err(p) => problems.push(p),
            },
            Key::OnStart => match as_bool(setting) {
                Ok(b) => on_start = b,
                Err(p) => problems.push(p),
            },
            Key::Paused => match as_bool(setting) {
                Ok(b) => paused = b,
                Err(p) => problems.push(p),
            },
            Key::Timeout
            | Key::Retries
            | Key::RetryBackoff
            | Key::RetryBackoffMax
            | Key::Jitter
            | Key::Misfire
            | Key::MisfireLimit
            | Key::MisfireGrace => {
                if let Err(p) = policies.read(setting) {
                    problems.push(p);
                }
            }
            Key::Interval => {
                let value = check_interval(setting).map_err(|p| problems.push(p)).ok();
                interval = Some((setting, value));
            }
            Key::Tz => {
                let value = check_tz(setting).map_err(|p| problems.push(p)).ok();
                tz = Some((setting, value));
            }
            Key::MaxConcurrentJobs | Key::StopDeadline => {
                problems.push(problem(
                    setting,
                    "a manager-wide setting: put it under [manager]",
                ));
            }
        }
    }
    let interval = match interval {
        Some((setting, Some(value))) => Some((setting, value)),
        Some((_, None)) => return None,
        None => None,
    };
    let tz = match tz {
        Some((setting, Some(zone))) => Some((setting, zone)),
        Some((_, None)) => return None,
        None => None,
    };
    let (schedule, origin) = if interval.is_none() && tz.is_none() {
        (base.service.schedule.clone(), base.origin)
    } else {
        let interval = interval.as_ref().map(|(setting, value)| (*setting, value));
        let tz = tz.as_ref().map(|(setting, zone)| (*setting, zone.as_str()));
        rebuild_schedule(base, interval, tz, problems)?
    };
    if problems.len() > before {
        return None;
    }
    let policies = policies.apply(&base.service, &schedule, problems)?;
    let mut service = base.service.clone();
    service.schedule = schedule;
    service.on_start = on_start;
    // A service left without any policy pays nothing for them, as if none had been set.
    service.policies = (policies != Policies::default()).then(|| Box::new(policies));
    service.start_paused = paused;
    Some(Effective {
        service,
        enabled,
        origin,
    })
}

/// An `interval` value that is valid on its own.
enum IntervalValue {
    /// A positive number of seconds.
    Seconds(f64),
    /// A cron expression that parses and fires (in any zone: neither depends on it).
    Cron(String),
}

/// Checks one `interval` value on its own: a positive number of seconds, or a cron expression that
/// parses and can fire. A period written as text with a unit (`"30s"`) gets the fix in its message.
fn check_interval(setting: &Setting) -> Result<IntervalValue, ConfigProblem> {
    let text = match &setting.value {
        Value::Integer(_) | Value::Float(_) => {
            let seconds = as_seconds(setting)?;
            Schedule::every_secs(seconds).map_err(|e| problem(setting, e.to_string()))?;
            return Ok(IntervalValue::Seconds(seconds));
        }
        Value::Text(text) => text,
        _ => {
            return Err(problem(
                setting,
                format!(
                    "expected a number of seconds or a cron expression, found {}",
                    setting.shown()
                ),
            ))
        }
    };
    // Every environment value is text: a number there is a number of seconds.
    if setting.origin == Origin::Env {
        if let Ok(seconds) = text.trim().parse::<f64>() {
            Schedule::every_secs(seconds).map_err(|e| problem(setting, e.to_string()))?;
            return Ok(IntervalValue::Seconds(seconds));
        }
    }
    match Schedule::cron(text) {
        Ok(schedule) if schedule.never_fires() => Err(problem(
            setting,
            format!("cron expression '{}' never fires", text.trim()),
        )),
        Ok(_) => Ok(IntervalValue::Cron(text.clone())),
        Err(e) => {
            let mut message = e.to_string();
            if let Some(seconds) = scheduler_core::suggest::period_secs(text) {
                message = format!("{message}; {}", period_fix(setting, seconds));
            }
            Err(problem(setting, message))
        }
    }
}

/// Checks one `tz` value on its own: a zone name the bundled database knows.
fn check_tz(setting: &Setting) -> Result<String, ConfigProblem> {
    let Value::Text(zone) = &setting.value else {
        return Err(problem(
            setting,
            format!("expected a time zone name, found {}", setting.shown()),
        ));
    };
    let zone = zone.trim();
    match Schedule::cron_in("* * * * *", zone) {
        Ok(_) => Ok(zone.to_owned()),
        Err(e) => Err(problem(setting, e.to_string())),
    }
}

/// The schedule from the effective `interval` and `tz`, each valid on its own (or absent: then the
/// attribute's), and where it came from.
fn rebuild_schedule(
    base: &Base,
    interval: Option<(&Setting, &IntervalValue)>,
    tz: Option<(&Setting, &str)>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Schedule, Origin)> {
    let origin = interval
        .map(|(s, _)| s)
        .or(tz.map(|(s, _)| s))
        .map_or(base.origin, |s| s.origin);
    let zone = tz
        .map(|(_, zone)| zone)
        .or(base.service.schedule.time_zone());
    let cron = |expr: &str, at: &Setting, problems: &mut Vec<ConfigProblem>| {
        let result = match zone {
            Some(zone) => Schedule::cron_in(expr, zone),
            None => Schedule::cron(expr),
        };
        result
            .map_err(|e| problems.push(problem(at, e.to_string())))
            .ok()
    };
    let schedule = match (interval, tz) {
        (Some((_, IntervalValue::Seconds(_))), Some((tz, _))) => {
            problems.push(problem(tz, "tz applies only to cron intervals"));
            return None;
        }
        (Some((at, IntervalValue::Seconds(seconds))), None) => Schedule::every_secs(*seconds)
            .map_err(|e| problems.push(problem(at, e.to_string())))
            .ok()?,
        (Some((at, IntervalValue::Cron(expr))), _) => cron(expr, at, problems)?,
        (None, Some((tz, _))) => {
            let Some(expr) = base.service.schedule.expression() else {
                problems.push(problem(
                    tz,
                    format!(
                        "tz applies only to cron intervals, and this service runs {}",
                        base.service.schedule
                    ),
                ));
                return None;
            };
            cron(expr, tz, problems)?
        }
        (None, None) => base.service.schedule.clone(),
    };
    Some((schedule, origin))
}
