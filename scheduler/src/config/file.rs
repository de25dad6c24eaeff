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
//!
//! [services.sync]
//! timeout = 30                # seconds; also retries, retry_backoff(_max), jitter, misfire(_limit, _grace)
//! paused = true
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
            let hint = e
                .span()
                .and_then(|span| unquoted_name_hint(&text, span.start))
                .unwrap_or_default();
            problems.push(ConfigProblem {
                location: shown,
                message: format!("not valid TOML: {}{hint}", e.to_string().trim_end()),
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
                            format!(
                                "unknown setting{}: expected max_concurrent_jobs or stop_deadline",
                                near(key, &Key::MANAGER.map(Key::name))
                            ),
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
                            None => at(&location, unknown_service_key(key)),
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
                format!(
                    "unknown section{}: expected [manager] or [services.\"<name>\"]",
                    near(section, &["manager", "services"])
                ),
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

/// The problem with a key of a service table that is none of the service keys.
fn unknown_service_key(key: &str) -> String {
    format!(
        "unknown setting{}: expected {}",
        near(key, &Key::SERVICE.map(Key::name)),
        Key::service_keys(str::to_owned)
    )
}

/// ` (did you mean x?)` when a name in `valid` is near `written`, else nothing.
fn near(written: &str, valid: &[&str]) -> String {
    scheduler_core::suggest::closest(written, valid.iter().copied())
        .first()
        .map_or_else(String::new, |name| format!(" (did you mean {name}?)"))
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

/// The fix for the line holding byte `at` when it has a bare key with `::` in it, the usual form of
/// a default service name (`[services.app::jobs::sync]`): TOML allows only letters, digits, `_` and
/// `-` in a bare key, so the name must be quoted.
fn unquoted_name_hint(text: &str, at: usize) -> Option<String> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text.get(at..)?.find('\n').map_or(text.len(), |i| at + i);
    let line = text[start..end].trim_end_matches('\r');
    let code = line.split('#').next().unwrap_or(line);
    // Only `::` outside a quoted string.
    let mut quoted = false;
    let mut colons = None;
    for (i, c) in code.char_indices() {
        match c {
            '"' | '\'' => quoted = !quoted,
            ':' if !quoted && code[i..].starts_with("::") => {
                colons = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colons = colons?;
    let in_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':');
    let name_start = code[..colons]
        .char_indices()
        .rfind(|&(_, c)| !in_name(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let name_end = code[colons..]
        .find(|c: char| !in_name(c))
        .map_or(code.len(), |i| colons + i);
    let name = &code[name_start..name_end];
    let fixed = format!("{}\"{name}\"{}", &line[..name_start], &line[name_end..]);
    Some(format!(
        "\n  help: a service name with `::` must be quoted in TOML: write `{}`",
        fixed.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unquoted_name_with_colons_gets_the_quoted_line() {
        let text = "[manager]\nstop_deadline = 5\n\n[services.app::jobs::sync] # nightly\nenabled = false\n";
        let at = text.find("::").unwrap();
        assert_eq!(
            unquoted_name_hint(text, at).as_deref(),
            Some(
                "\n  help: a service name with `::` must be quoted in TOML: write \
                 `[services.\"app::jobs::sync\"] # nightly`"
            )
        );
        let inline = "[services]\napp::sync = { enabled = false }";
        assert!(unquoted_name_hint(inline, inline.len() - 3)
            .unwrap()
            .ends_with("write `\"app::sync\" = { enabled = false }`"));
        // Quoted already, or no `::` at all: nothing to say.
        let quoted = "[services.\"app::sync\"]\nenabled = maybe\n";
        assert_eq!(unquoted_name_hint(quoted, quoted.len() - 3), None);
        assert_eq!(unquoted_name_hint(quoted, 3), None);
        assert_eq!(unquoted_name_hint("[services.x\n", 5), None);
        // Any text: a name after a character of several bytes, a position inside one.
        assert!(unquoted_name_hint("é::x = 1", 2)
            .unwrap()
            .ends_with("write `é\"::x\" = 1`"));
        assert_eq!(unquoted_name_hint("[é]", 2), None);
    }
}
