//! Environment variables.
//!
//! Per service, `SCHEDULER_SERVICE__<NAME>__<KEY>`, where `<NAME>` is the service name upper-cased
//! with every character other than a letter or digit replaced by `_` (`daily-report` →
//! `DAILY_REPORT`, `app::jobs::sync` → `APP__JOBS__SYNC`) and `<KEY>` is a key of the file's
//! service tables, upper-cased: `ENABLED`, `INTERVAL`, `TZ`, `ON_START`, `PAUSED`, `TIMEOUT`,
//! `RETRIES`, `RETRY_BACKOFF`, `RETRY_BACKOFF_MAX`, `JITTER`, `MISFIRE`, `MISFIRE_LIMIT` or
//! `MISFIRE_GRACE`. Manager-wide: `SCHEDULER_MAX_CONCURRENT_JOBS` and `SCHEDULER_STOP_DEADLINE`.
//!
//! A `SCHEDULER_SERVICE__` variable that matches no service and key is an error that says which
//! part is unknown, the service or the key, and names the variables near it. Other `SCHEDULER_`
//! variables may be the application's own and are ignored, except near misses of ours
//! (`SCHEDULER_SERVICE_X__TZ`, `SCHEDULER_MAX_CONCURENT_JOBS`), which are errors too.

use std::collections::HashMap;

use super::{ConfigProblem, Key, Origin, Setting, Value};

const SERVICE_PREFIX: &str = "SCHEDULER_SERVICE__";

/// The environment variable that sets `key` (`enabled`, `interval`, `timeout`, ...: a key of the
/// file's service tables) of the service `name`.
///
/// ```
/// assert_eq!(
///     scheduler::config::env_var_name("daily-report", "interval"),
///     "SCHEDULER_SERVICE__DAILY_REPORT__INTERVAL"
/// );
/// assert_eq!(
///     scheduler::config::env_var_name("app::jobs::sync", "on_start"),
///     "SCHEDULER_SERVICE__APP__JOBS__SYNC__ON_START"
/// );
/// ```
pub fn env_var_name(name: &str, key: &str) -> String {
    format!("{SERVICE_PREFIX}{}__{}", normalize(name), normalize(key))
}

/// A name as it appears in a variable: upper-cased, every character other than a letter or digit
/// replaced by `_`.
fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn read<'a>(
    vars: impl Iterator<Item = (String, String)>,
    services: impl Iterator<Item = &'a String>,
    settings: &mut Vec<Setting>,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut known: HashMap<String, Vec<(&'a str, Key)>> = HashMap::new();
    for service in services {
        for key in Key::SERVICE {
            known
                .entry(env_var_name(service, key.name()))
                .or_default()
                .push((service, key));
        }
    }
    // Each service as its variables spell it, sorted so that suggestions come in a fixed order.
    let mut names: Vec<(String, &'a str)> = known
        .values()
        .flatten()
        .filter(|(_, key)| *key == Key::Enabled)
        .map(|(service, _)| (normalize(service), *service))
        .collect();
    names.sort_unstable();
    let mut vars: Vec<(String, String)> = vars.collect();
    vars.sort();
    for (var, value) in vars {
        let location = format!("environment variable {var}");
        let manager_key = Key::MANAGER
            .into_iter()
            .find(|k| var == format!("SCHEDULER_{}", k.name().to_ascii_uppercase()));
        if let Some(key) = manager_key {
            settings.push(Setting {
                service: None,
                key,
                value: Value::Text(value),
                origin: Origin::Env,
                location,
            });
            continue;
        }
        if !var.starts_with(SERVICE_PREFIX) {
            if let Some(message) = near_miss(&var) {
                problems.push(ConfigProblem { location, message });
            }
            continue;
        }
        match known.get(&var).map(Vec::as_slice) {
            Some([(service, key)]) => settings.push(Setting {
                service: Some((*service).to_owned()),
                key: *key,
                value: Value::Text(value),
                origin: Origin::Env,
                location,
            }),
            Some(several) => problems.push(ConfigProblem {
                location,
                message: format!(
                    "ambiguous: the services {} all map to this name; rename one",
                    several
                        .iter()
                        .map(|(s, _)| format!("'{s}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            None => problems.push(ConfigProblem {
                location,
                message: unknown_service_variable(&var[SERVICE_PREFIX.len()..], &names),
            }),
        }
    }
}

/// The keys of a service variable, as they are written there.
const KEYS: [&str; 13] = [
    "ENABLED",
    "INTERVAL",
    "TZ",
    "ON_START",
    "PAUSED",
    "TIMEOUT",
    "RETRIES",
    "RETRY_BACKOFF",
    "RETRY_BACKOFF_MAX",
    "JITTER",
    "MISFIRE",
    "MISFIRE_LIMIT",
    "MISFIRE_GRACE",
];

/// What a variable is: `SCHEDULER_SERVICE__<NAME>__<KEY>`.
const FORM: &str = "expected SCHEDULER_SERVICE__<NAME>__<KEY>";

/// The keys, as a message lists them.
fn keys() -> String {
    Key::service_keys(str::to_ascii_uppercase)
}

/// Why `SCHEDULER_SERVICE__<rest>` matches no setting: which part is unknown, the service or the
/// key, and the names near it. `names` holds each service as its variables spell it, and its name.
///
/// When the variable ends in a known key, the service part is the unknown one (a name may contain
/// `__`, as `app::jobs::sync` → `APP__JOBS__SYNC` does, so this reading comes first).
fn unknown_service_variable(rest: &str, names: &[(String, &str)]) -> String {
    if let Some(key) = KEYS.iter().find(|key| {
        rest.strip_suffix(*key)
            .is_some_and(|name| name.ends_with("__") && name.len() > 2)
    }) {
        let written = &rest[..rest.len() - key.len() - 2];
        return format!(
            "the service part '{written}' matches no service; {}",
            near_services(written, key, names)
        );
    }
    let known_service = names
        .iter()
        .filter(|(normalized, _)| {
            rest.strip_prefix(normalized.as_str())
                .is_some_and(|key| key.starts_with("__") && key.len() > 2)
        })
        .max_by_key(|(normalized, _)| normalized.len());
    if let Some((normalized, service)) = known_service {
        let written = &rest[normalized.len() + 2..];
        let near = scheduler_core::suggest::closest(written, KEYS);
        let hint = near
            .first()
            .map_or_else(String::new, |key| format!(" (did you mean {key}?)"));
        return format!(
            "the key '{written}' is not a setting of service '{service}'{hint}: expected {}",
            keys()
        );
    }
    match rest.rsplit_once("__") {
        Some((written, key)) if !written.is_empty() && !key.is_empty() => {
            let near_key = scheduler_core::suggest::closest(key, KEYS);
            let key_hint = near_key
                .first()
                .map_or_else(String::new, |key| format!(" (did you mean {key}?)"));
            format!(
                "neither the service part '{written}' nor the key '{key}'{key_hint} is known; {}",
                near_services(written, near_key.first().copied().unwrap_or("<KEY>"), names)
            )
        }
        _ => format!("{FORM}, with the service's name and a key ({})", keys()),
    }
}

/// The services whose variable names are near `written`, as full variables with `key`, or the
/// known services when none is near.
fn near_services(written: &str, key: &str, names: &[(String, &str)]) -> String {
    let near = scheduler_core::suggest::closest(written, names.iter().map(|(n, _)| n.as_str()));
    let variable = |normalized: &str| {
        let service = names
            .iter()
            .find(|(n, _)| n == normalized)
            .map_or("", |(_, service)| *service);
        format!("{SERVICE_PREFIX}{normalized}__{key} (service '{service}')")
    };
    if !near.is_empty() {
        let near: Vec<String> = near.iter().take(3).map(|n| variable(n)).collect();
        return format!("did you mean {}?", near.join(" or "));
    }
    if names.is_empty() {
        return "no service is registered".to_owned();
    }
    // `names` is sorted by the variables' spelling.
    let known: Vec<String> = names
        .iter()
        .take(12)
        .map(|(normalized, service)| format!("{normalized} ('{service}')"))
        .collect();
    let more = if names.len() > known.len() {
        ", …"
    } else {
        ""
    };
    format!("known services: {}{more}", known.join(", "))
}

/// A `SCHEDULER_` variable that is not one but looks like a misspelt one: `SCHEDULER_SERVICE_X__TZ`
/// (one `_` after `SERVICE`) or a manager-wide variable near a known one. Other `SCHEDULER_`
/// variables may belong to the application and are left alone.
fn near_miss(var: &str) -> Option<String> {
    if let Some(rest) = var.strip_prefix("SCHEDULER_SERVICE") {
        if !rest.starts_with("__") {
            return Some(format!(
                "{FORM}: two underscores after SCHEDULER_SERVICE, and two before the key"
            ));
        }
    }
    // Compared without the common `SCHEDULER_`, which would make every name look near.
    let written = var.strip_prefix("SCHEDULER_")?;
    let manager: Vec<String> = Key::MANAGER
        .iter()
        .map(|key| key.name().to_ascii_uppercase())
        .collect();
    let near = scheduler_core::suggest::closest(written, manager.iter().map(String::as_str));
    near.first().map(|known| {
        format!(
            "not a setting (did you mean SCHEDULER_{known}?): expected \
             SCHEDULER_MAX_CONCURRENT_JOBS, SCHEDULER_STOP_DEADLINE or \
             SCHEDULER_SERVICE__<NAME>__<KEY>"
        )
    })
}
