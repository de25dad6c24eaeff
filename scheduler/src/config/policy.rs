//! A service's job policy keys: `timeout`, `retries`, `retry_backoff`, `retry_backoff_max`,
//! `jitter`, `misfire`, `misfire_limit`, `misfire_grace`.
//!
//! Each value is checked on its own as it is read (so one that a later source overrides is checked
//! all the same); then the rules between keys apply to what takes effect, and only to keys an
//! operator wrote: a value the attribute set and the configuration made moot (`retry_backoff` once
//! `retries = 0`) is no mistake of the operator's.
//!
//! What each key may be, what it needs and where it applies is `scheduler_core::policy_rules`'s
//! table, which the attribute reads too; this module words it as the configuration's problems.
//!
//! Unlike the attribute, the configuration accepts `timeout = 0` and `jitter = 0`: they remove a
//! limit or a jitter the attribute sets, which is what an operator needs them for.

use std::time::Duration;

use super::{as_seconds, problem, ConfigProblem, Key, Origin, Setting, Value};
use crate::policy::{Misfire, Policies, DEFAULT_BACKOFF_BASE};
use crate::service::Service;
use crate::Schedule;
use scheduler_core::policy_rules::PolicyKey;

/// The last valid value of each policy key, with the setting that gave it.
#[derive(Default)]
pub(super) struct Overrides<'a> {
    timeout: Option<(&'a Setting, Option<Duration>)>,
    retries: Option<(&'a Setting, u32)>,
    retry_backoff: Option<(&'a Setting, Duration)>,
    retry_backoff_max: Option<(&'a Setting, Duration)>,
    jitter: Option<(&'a Setting, Option<Duration>)>,
    misfire: Option<(&'a Setting, Misfire)>,
    misfire_limit: Option<(&'a Setting, u32)>,
    misfire_grace: Option<(&'a Setting, Duration)>,
}

impl<'a> Overrides<'a> {
    /// Checks one policy setting on its own and keeps its value.
    pub(super) fn read(&mut self, setting: &'a Setting) -> Result<(), ConfigProblem> {
        match setting.key {
            Key::Timeout => self.timeout = Some((setting, nonzero(duration(setting)?))),
            Key::Retries => {
                let min = PolicyKey::Retries.min_count();
                self.retries = Some((setting, count(setting, min)?));
            }
            Key::RetryBackoff => self.retry_backoff = Some((setting, duration(setting)?)),
            Key::RetryBackoffMax => self.retry_backoff_max = Some((setting, duration(setting)?)),
            Key::Jitter => self.jitter = Some((setting, nonzero(duration(setting)?))),
            Key::Misfire => self.misfire = Some((setting, misfire(setting)?)),
            Key::MisfireLimit => {
                let min = PolicyKey::MisfireLimit.min_count();
                self.misfire_limit = Some((setting, count(setting, min)?));
            }
            Key::MisfireGrace => {
                let grace = duration(setting)?;
                if grace.is_zero() {
                    return Err(problem(
                        setting,
                        format!(
                            "expected a number of seconds greater than zero, found {}; a run \
                             always starts a little after its tick",
                            setting.shown()
                        ),
                    ));
                }
                self.misfire_grace = Some((setting, grace));
            }
            _ => unreachable!("not a policy key: {:?}", setting.key),
        }
        Ok(())
    }

    /// The policies of `base` with these overrides, on `schedule` (the effective one); `None`
    /// after a problem between keys, which is added to `problems`.
    pub(super) fn apply(
        self,
        base: &Service,
        schedule: &Schedule,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<Policies> {
        let before = problems.len();
        let mut policies = base.policies().cloned().unwrap_or_default();
        if let Some((_, timeout)) = self.timeout {
            policies.timeout = timeout;
        }
        if let Some((_, retries)) = self.retries {
            policies.retries = retries;
        }
        if let Some((_, base)) = self.retry_backoff {
            policies.backoff_base = Some(base);
        }
        if let Some((_, cap)) = self.retry_backoff_max {
            policies.backoff_cap = Some(cap);
        }
        if let Some((_, jitter)) = self.jitter {
            policies.jitter = jitter;
        }
        if let Some((_, grace)) = self.misfire_grace {
            policies.misfire_grace = Some(grace);
        }
        let limit = self.misfire_limit.map(|(_, limit)| limit);
        policies.misfire = match (self.misfire.map(|(_, misfire)| misfire), policies.misfire) {
            (Some(Misfire::All { .. }), Some(Misfire::All { limit: from_base })) => {
                Some(Misfire::All {
                    limit: limit.unwrap_or(from_base),
                })
            }
            (Some(Misfire::All { .. }), _) => Some(Misfire::All {
                limit: limit.unwrap_or(Misfire::DEFAULT_LIMIT),
            }),
            (Some(other), _) => Some(other),
            (None, Some(Misfire::All { limit: from_base })) => Some(Misfire::All {
                limit: limit.unwrap_or(from_base),
            }),
            (None, other) => other,
        };

        if schedule.is_one_shot() {
            let written = [
                (self.timeout.map(|(s, _)| s), PolicyKey::Timeout),
                (self.retries.map(|(s, _)| s), PolicyKey::Retries),
                (self.retry_backoff.map(|(s, _)| s), PolicyKey::RetryBackoff),
                (
                    self.retry_backoff_max.map(|(s, _)| s),
                    PolicyKey::RetryBackoffMax,
                ),
                (self.jitter.map(|(s, _)| s), PolicyKey::Jitter),
                (self.misfire.map(|(s, _)| s), PolicyKey::Misfire),
                (self.misfire_limit.map(|(s, _)| s), PolicyKey::MisfireLimit),
                (self.misfire_grace.map(|(s, _)| s), PolicyKey::MisfireGrace),
            ];
            let not_for_one_shot = written
                .into_iter()
                .filter(|(_, key)| !key.applies_to_one_shot())
                .filter_map(|(setting, _)| setting);
            for setting in not_for_one_shot {
                problems.push(problem(
                    setting,
                    format!(
                        "{} does not apply to a one-shot service, and this one runs {schedule}",
                        setting.key.name()
                    ),
                ));
            }
        }
        // On a one-shot, `misfire_limit` is reported as such above, and only that.
        if let (Some((setting, _)), false) = (self.misfire_limit, schedule.is_one_shot()) {
            if !matches!(policies.misfire, Some(Misfire::All { .. })) {
                let now = match policies.misfire {
                    Some(other) => format!("this service's misfire is '{}'", other.name()),
                    None => "this service sets no misfire (the default is 'coalesce')".to_owned(),
                };
                problems.push(problem(
                    setting,
                    format!("misfire_limit applies only to misfire = 'all', and {now}"),
                ));
            }
        }
        if policies.retries == 0 {
            for setting in [
                self.retry_backoff.map(|(s, _)| s),
                self.retry_backoff_max.map(|(s, _)| s),
            ]
            .into_iter()
            .flatten()
            {
                problems.push(problem(
                    setting,
                    format!(
                        "{} has no effect while retries is 0: set retries too",
                        setting.key.name()
                    ),
                ));
            }
        }
        if let Some(problem) = self.backoff_cap_problem(&policies) {
            problems.push(problem);
        }
        (problems.len() == before).then_some(policies)
    }

    /// A cap below the base, when an operator wrote either: reported at the cap if it was written,
    /// else at the base. A base alone above the default cap raises the cap with it.
    fn backoff_cap_problem(&self, policies: &Policies) -> Option<ConfigProblem> {
        let cap = policies.backoff_cap?;
        let base = policies.backoff_base.unwrap_or(DEFAULT_BACKOFF_BASE);
        if cap >= base || (self.retry_backoff.is_none() && self.retry_backoff_max.is_none()) {
            return None;
        }
        let (cap_secs, base_secs) = (cap.as_secs_f64(), base.as_secs_f64());
        Some(match (self.retry_backoff_max, self.retry_backoff) {
            (Some((setting, _)), _) if policies.backoff_base.is_none() => problem(
                setting,
                format!(
                    "retry_backoff_max {cap_secs} is less than the default retry_backoff of \
                     {base_secs} second: set retry_backoff too, to at most {cap_secs}"
                ),
            ),
            (Some((setting, _)), written_base) => problem(
                setting,
                format!(
                    "retry_backoff_max {cap_secs} is less than retry_backoff {base_secs}{}: the \
                     cap must be at least the base",
                    if written_base.is_some() {
                        ""
                    } else {
                        " (from the attribute)"
                    }
                ),
            ),
            (None, Some((setting, _))) => problem(
                setting,
                format!(
                    "retry_backoff {base_secs} is more than retry_backoff_max {cap_secs} (from the \
                     attribute): set retry_backoff_max too"
                ),
            ),
            (None, None) => return None,
        })
    }
}

/// Zero as "none": how the configuration removes a timeout or a jitter the attribute sets.
fn nonzero(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// A number of seconds, zero or more, that a `Duration` holds.
fn duration(setting: &Setting) -> Result<Duration, ConfigProblem> {
    let seconds = as_seconds(setting)?;
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        problem(
            setting,
            format!("{seconds} seconds is too long for {}", setting.key.name()),
        )
    })
}

/// A whole number from `min` to `u32::MAX`.
fn count(setting: &Setting, min: u32) -> Result<u32, ConfigProblem> {
    let count = match &setting.value {
        Value::Integer(i) => u32::try_from(*i).ok(),
        Value::Text(text) if setting.origin == Origin::Env => text.trim().parse().ok(),
        _ => None,
    };
    match count {
        Some(count) if count >= min => Ok(count),
        _ => {
            let mut message = format!(
                "expected a whole number from {min} to {}, found {}",
                u32::MAX,
                setting.shown()
            );
            match &setting.value {
                Value::Text(text) if setting.origin == Origin::File => {
                    if let Ok(count) = text.trim().parse::<u32>() {
                        message = format!(
                            "{message}; write `{} = {count}` (a number, without quotes)",
                            setting.key.name()
                        );
                    }
                }
                Value::Integer(0) if setting.key == Key::MisfireLimit => {
                    message.push_str("; to run none of the missed ticks, set misfire to 'skip'");
                }
                _ => {}
            }
            Err(problem(setting, message))
        }
    }
}

/// `skip`, `coalesce` or `all`, in any case; an unknown word gets the nearest one.
fn misfire(setting: &Setting) -> Result<Misfire, ConfigProblem> {
    const EXPECTED: &str = "expected 'skip', 'coalesce' or 'all'";
    let Value::Text(text) = &setting.value else {
        return Err(problem(
            setting,
            format!("{EXPECTED}, found {}", setting.shown()),
        ));
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "skip" => Ok(Misfire::Skip),
        "coalesce" => Ok(Misfire::Coalesce),
        // The limit is filled in with the rules between keys.
        "all" => Ok(Misfire::All { limit: 0 }),
        written => {
            let hint = scheduler_core::suggest::misfire_policy(written)
                .map_or_else(String::new, |near| format!(" (did you mean '{near}'?)"));
            Err(problem(
                setting,
                format!("unknown misfire policy '{text}'{hint}: {EXPECTED}"),
            ))
        }
    }
}
