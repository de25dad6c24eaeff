//! The TOML configuration file.
//!
//! ```toml
//! [manager]
//! max_concurrent_jobs = 4
//! stop_deadline = 30          # seconds
//!
//! [services."daily-report"]
//! interval = "0 10 * * MON-FRI"
//! tz = "Europe/Berlin"
//!
//! [services.heartbeat]
//! enabled = false
//! ```

use std::path::Path;

use super::{ConfigProblem, Key, Origin, Setting, Value};

pub(super) fn read(path: &Path, settings: &mut Vec<Setting>, problems: &mut Vec<ConfigProblem>) {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(ConfigProblem {
                location: shown,
                message: format!("cannot read the configuration file: {e}"),
            });
            return;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            problems.push(ConfigProblem {
                location: shown,
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            });
            return;
        }
    };
    let mut at = |key: &str, message: String| {
        problems.push(ConfigProblem {
            location: format!("{shown}: {key}"),
            message,
        });
    };
    for (section, value) in &table {
        match (section.as_str(), value) {
            ("manager", toml::Value::Table(manager)) => {
                for (key, value) in manager {
                    let location = format!("manager.{key}");
                    match Key::MANAGER.into_iter().find(|k| k.name() == key) {
                        Some(key) => settings.push(setting(None, key, value, &shown, &location)),
                        None => at(
                            &location,
                            "unknown setting: expected max_concurrent_jobs or stop_deadline".into(),
                        ),
                    }
                }
            }
            ("services", toml::Value::Table(services)) => {
                for (name, value) in services {
                    let toml::Value::Table(service) = value else {
                        at(
                            &format!("services.{}", quoted(name)),
                            format!("expected a table of settings, found {}", value.type_str()),
                        );
                        continue;
                    };
                    if service.is_empty() {
                        settings.push(Setting {
                            service: Some(name.clone()),
                            key: Key::Enabled,
                            value: Value::Bool(true),
                            origin: Origin::File,
                            location: format!("{shown}: services.{}", quoted(name)),
                        });
                    }
                    for (key, value) in service {
                        let location = format!("services.{}.{key}", quoted(name));
                        match Key::SERVICE.into_iter().find(|k| k.name() == key) {
                            Some(key) => settings.push(setting(
                                Some(name.clone()),
                                key,
                                value,
                                &shown,
                                &location,
                            )),
                            None => at(
                                &location,
                                "unknown setting: expected enabled, interval, tz or on_start"
                                    .into(),
                            ),
                        }
                    }
                }
            }
            ("manager" | "services", other) => at(
                section,
                format!("expected a table, found {}", other.type_str()),
            ),
            _ => at(
                section,
                "unknown section: expected [manager] or [services.\"<name>\"]".into(),
            ),
        }
    }
}

fn setting(
    service: Option<String>,
    key: Key,
    value: &toml::Value,
    file: &str,
    location: &str,
) -> Setting {
    let value = match value {
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Integer(i) => Value::Integer(*i),
        toml::Value::Float(x) => Value::Float(*x),
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Datetime(_) => Value::Other("a date-time"),
        toml::Value::Array(_) => Value::Other("an array"),
        toml::Value::Table(_) => Value::Other("a table"),
    };
    Setting {
        service,
        key,
        value,
        origin: Origin::File,
        location: format!("{file}: {location}"),
    }
}

/// A service name as a TOML key: bare when it can be, quoted otherwise.
fn quoted(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}
