//! Environment variables.
//!
//! Per service, `SCHEDULER_SERVICE__<NAME>__<KEY>`, where `<NAME>` is the service name upper-cased
//! with every character other than a letter or digit replaced by `_` (`daily-report` →
//! `DAILY_REPORT`, `app::jobs::sync` → `APP__JOBS__SYNC`) and `<KEY>` is `ENABLED`, `INTERVAL`, `TZ`
//! or `ON_START`. Manager-wide: `SCHEDULER_MAX_CONCURRENT_JOBS` and `SCHEDULER_STOP_DEADLINE`.

use std::collections::HashMap;

use super::{ConfigProblem, Key, Origin, Setting, Value};

const SERVICE_PREFIX: &str = "SCHEDULER_SERVICE__";

/// The environment variable that sets `key` (`enabled`, `interval`, `tz` or `on_start`) of the
/// service `name`.
///
/// ```
/// assert_eq!(
///     scheduler::env_var_name("daily-report", "interval"),
///     "SCHEDULER_SERVICE__DAILY_REPORT__INTERVAL"
/// );
/// assert_eq!(
///     scheduler::env_var_name("app::jobs::sync", "on_start"),
///     "SCHEDULER_SERVICE__APP__JOBS__SYNC__ON_START"
/// );
/// ```
pub fn env_var_name(name: &str, key: &str) -> String {
    let normalize = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{SERVICE_PREFIX}{}__{}", normalize(name), normalize(key))
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
                message: "matches no service and setting: expected \
                          SCHEDULER_SERVICE__<NAME>__<ENABLED|INTERVAL|TZ|ON_START> for a known service"
                    .to_owned(),
            }),
        }
    }
}
