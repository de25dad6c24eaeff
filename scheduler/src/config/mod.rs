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

mod env;
mod file;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::service::Service;
use crate::Schedule;

pub use crate::status::Origin;
pub use env::env_var_name;

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
    MaxConcurrentJobs,
    StopDeadline,
}

impl Key {
    pub(crate) const SERVICE: [Key; 4] = [Key::Enabled, Key::Interval, Key::Tz, Key::OnStart];
    pub(crate) const MANAGER: [Key; 2] = [Key::MaxConcurrentJobs, Key::StopDeadline];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Enabled => "enabled",
            Key::Interval => "interval",
            Key::Tz => "tz",
            Key::OnStart => "on_start",
            Key::MaxConcurrentJobs => "max_concurrent_jobs",
            Key::StopDeadline => "stop_deadline",
        }
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
    pub(crate) service: Service,
    pub(crate) enabled: bool,
    pub(crate) origin: Origin,
}

impl Effective {
    /// Whether a change from `self` to `other` needs the service re-registered.
    pub(crate) fn differs_from(&self, other: &Effective) -> bool {
        self.enabled != other.enabled
            || self.service.schedule != other.service.schedule
            || self.service.on_start != other.service.on_start
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
        other => Err(problem(
            setting,
            format!("expected true or false, found {}", other.describe()),
        )),
    }
}

fn as_seconds(setting: &Setting) -> Result<f64, ConfigProblem> {
    let seconds = match &setting.value {
        Value::Integer(i) => *i as f64,
        Value::Float(x) => *x,
        Value::Text(text) if setting.origin == Origin::Env => {
            text.trim().parse::<f64>().map_err(|_| {
                problem(
                    setting,
                    format!("expected a number of seconds, found '{text}'"),
                )
            })?
        }
        other => {
            return Err(problem(
                setting,
                format!("expected a number of seconds, found {}", other.describe()),
            ))
        }
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
                _ => problems.push(problem(
                    setting,
                    format!(
                        "expected a whole number of at least 1, found {}",
                        setting.value.describe()
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
fn apply_service_settings(
    base: &Base,
    settings: &[&Setting],
    problems: &mut Vec<ConfigProblem>,
) -> Option<Effective> {
    let before = problems.len();
    let mut enabled = true;
    let mut on_start = base.service.on_start;
    let mut interval: Option<&Setting> = None;
    let mut tz: Option<&Setting> = None;
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
            Key::Interval => interval = Some(setting),
            Key::Tz => tz = Some(setting),
            Key::MaxConcurrentJobs | Key::StopDeadline => {
                problems.push(problem(
                    setting,
                    "a manager-wide setting: put it under [manager]",
                ));
            }
        }
    }
    let (schedule, origin) = if interval.is_none() && tz.is_none() {
        (base.service.schedule.clone(), base.origin)
    } else {
        rebuild_schedule(base, interval, tz, problems)?
    };
    if problems.len() > before {
        return None;
    }
    let mut service = base.service.clone();
    service.schedule = schedule;
    service.on_start = on_start;
    Some(Effective {
        service,
        enabled,
        origin,
    })
}

fn rebuild_schedule(
    base: &Base,
    interval: Option<&Setting>,
    tz: Option<&Setting>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Schedule, Origin)> {
    let zone = match tz.map(|s| &s.value) {
        None => base.service.schedule.time_zone().map(str::to_owned),
        Some(Value::Text(zone)) => Some(zone.trim().to_owned()),
        Some(other) => {
            problems.push(problem(
                tz?,
                format!("expected a time zone name, found {}", other.describe()),
            ));
            return None;
        }
    };
    // The interval: the override, else the attribute's (a cron text, or a period in seconds).
    let (text, numeric) = match interval.map(|s| &s.value) {
        None => {
            let Some(expr) = base.service.schedule.expression() else {
                if let Some(tz) = tz {
                    problems.push(problem(
                        tz,
                        format!(
                            "tz applies only to cron intervals, and this service runs {}",
                            base.service.schedule
                        ),
                    ));
                }
                return None;
            };
            (expr.to_owned(), false)
        }
        Some(Value::Integer(_) | Value::Float(_)) => (String::new(), true),
        Some(Value::Text(text)) => (text.clone(), text.trim().parse::<f64>().is_ok()),
        Some(other) => {
            problems.push(problem(
                interval?,
                format!(
                    "expected a number of seconds or a cron expression, found {}",
                    other.describe()
                ),
            ));
            return None;
        }
    };
    let origin = interval.or(tz).map_or(base.origin, |s| s.origin);
    if numeric {
        let setting = interval?;
        if let Some(tz) = tz {
            problems.push(problem(tz, "tz applies only to cron intervals"));
            return None;
        }
        let seconds = match as_seconds(setting) {
            Ok(seconds) => seconds,
            Err(p) => {
                problems.push(p);
                return None;
            }
        };
        return match Schedule::every_secs(seconds) {
            Ok(schedule) => Some((schedule, origin)),
            Err(e) => {
                problems.push(problem(setting, e.to_string()));
                None
            }
        };
    }
    let result = match &zone {
        Some(zone) => Schedule::cron_in(&text, zone),
        None => Schedule::cron(&text),
    };
    match result {
        Ok(schedule) if schedule.never_fires() => {
            let at = interval.or(tz)?;
            problems.push(problem(at, format!("cron expression '{text}' never fires")));
            None
        }
        Ok(schedule) => Some((schedule, origin)),
        Err(e @ scheduler_core::ScheduleError::UnknownTimeZone(_)) => {
            problems.push(problem(tz.or(interval)?, e.to_string()));
            None
        }
        Err(e) => {
            problems.push(problem(interval.or(tz)?, e.to_string()));
            None
        }
    }
}
