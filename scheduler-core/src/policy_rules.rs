//! The job policies' rules, in one table, for the two places that check them: the
//! `#[background_service]` attribute (at compile time, as spanned errors) and the runtime's
//! configuration (file and environment, as located problems). Each reports in its own words; what
//! a value may be, what it needs, and where it applies is written here once.
//!
//! | key | value | needs | on a one-shot |
//! |---|---|---|---|
//! | `timeout` | seconds; 0 means none | | yes: a one-shot run may hang too |
//! | `retries` | a whole number, 0 or more | | yes: a failed migration may be worth another try |
//! | `retry_backoff` | seconds, 0 or more | `retries` ≥ 1 | yes |
//! | `retry_backoff_max` | seconds, at least the backoff | `retries` ≥ 1 | yes |
//! | `jitter` | seconds; 0 means none | | no: one run has no grid to spread around |
//! | `misfire` | `"skip"`, `"coalesce"`, `"all"` | | no: a one-shot runs its one tick however late |
//! | `misfire_limit` | a whole number, 1 or more | `misfire = "all"` | no |
//! | `misfire_grace` | seconds, more than 0 | | no |
//!
//! "0 means none": the attribute rejects it (leave the argument out), the configuration takes it
//! as removing what the attribute set.

/// A job policy key, as the attribute's argument and the configuration's key spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyKey {
    /// `timeout`.
    Timeout,
    /// `retries`.
    Retries,
    /// `retry_backoff`.
    RetryBackoff,
    /// `retry_backoff_max`.
    RetryBackoffMax,
    /// `jitter`.
    Jitter,
    /// `misfire`.
    Misfire,
    /// `misfire_limit`.
    MisfireLimit,
    /// `misfire_grace`.
    MisfireGrace,
}

/// What a key's value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyValue {
    /// A number of seconds (fractions allowed), finite and not negative.
    Seconds {
        /// What zero means.
        zero: Zero,
    },
    /// A whole number, at least `min`.
    Count {
        /// The smallest value allowed.
        min: u32,
    },
    /// One of these words.
    Word(&'static [&'static str]),
}

/// What a zero number of seconds means for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Zero {
    /// An ordinary value (no backoff).
    Allowed,
    /// "None": the attribute rejects it (leave the argument out), the configuration takes it as
    /// removing what the attribute set.
    MeansNone,
    /// Meaningless anywhere (a grace of zero: a run always starts a little after its tick).
    Rejected,
}

/// What a key needs of the other keys to have any effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Needs {
    /// `retries` of 1 or more.
    Retries,
    /// `misfire = "all"`.
    MisfireAll,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyRule {
    /// The key.
    pub key: PolicyKey,
    /// Its name, as written.
    pub name: &'static str,
    /// What its value may be.
    pub value: PolicyValue,
    /// What it needs of the other keys.
    pub needs: Option<Needs>,
    /// Whether it applies to a one-shot service (`once_after`).
    pub on_one_shot: bool,
}

/// The misfire policies' words.
pub const MISFIRE_WORDS: [&str; 3] = ["skip", "coalesce", "all"];

/// The backoff before the first retry when none is given, in seconds.
pub const DEFAULT_RETRY_BACKOFF_SECS: u64 = 1;

/// The cap of the backoff when none is given, in seconds.
pub const DEFAULT_RETRY_BACKOFF_MAX_SECS: u64 = 60;

/// At most this many missed ticks run with `misfire = "all"` when no limit is given.
pub const DEFAULT_MISFIRE_LIMIT: u32 = 10;

/// How late a run may start before its tick counts as misfired, when none is given, in seconds.
pub const DEFAULT_MISFIRE_GRACE_SECS: u64 = 1;

const fn row(
    key: PolicyKey,
    name: &'static str,
    value: PolicyValue,
    needs: Option<Needs>,
    on_one_shot: bool,
) -> PolicyRule {
    PolicyRule {
        key,
        name,
        value,
        needs,
        on_one_shot,
    }
}

/// Every policy key's rule, in the order of the table above.
pub const POLICY_RULES: [PolicyRule; 8] = [
    row(
        PolicyKey::Timeout,
        "timeout",
        PolicyValue::Seconds {
            zero: Zero::MeansNone,
        },
        None,
        true,
    ),
    row(
        PolicyKey::Retries,
        "retries",
        PolicyValue::Count { min: 0 },
        None,
        true,
    ),
    row(
        PolicyKey::RetryBackoff,
        "retry_backoff",
        PolicyValue::Seconds {
            zero: Zero::Allowed,
        },
        Some(Needs::Retries),
        true,
    ),
    row(
        PolicyKey::RetryBackoffMax,
        "retry_backoff_max",
        PolicyValue::Seconds {
            zero: Zero::Allowed,
        },
        Some(Needs::Retries),
        true,
    ),
    row(
        PolicyKey::Jitter,
        "jitter",
        PolicyValue::Seconds {
            zero: Zero::MeansNone,
        },
        None,
        false,
    ),
    row(
        PolicyKey::Misfire,
        "misfire",
        PolicyValue::Word(&MISFIRE_WORDS),
        None,
        false,
    ),
    row(
        PolicyKey::MisfireLimit,
        "misfire_limit",
        PolicyValue::Count { min: 1 },
        Some(Needs::MisfireAll),
        false,
    ),
    row(
        PolicyKey::MisfireGrace,
        "misfire_grace",
        PolicyValue::Seconds {
            zero: Zero::Rejected,
        },
        None,
        false,
    ),
];

impl PolicyKey {
    /// This key's row of [`POLICY_RULES`].
    pub fn rule(self) -> &'static PolicyRule {
        let at = POLICY_RULES.iter().position(|rule| rule.key == self);
        // Every key has exactly one row (the test `every_key_has_one_row` holds it).
        &POLICY_RULES[at.unwrap_or(0)]
    }

    /// The key's name, as written.
    pub fn name(self) -> &'static str {
        self.rule().name
    }

    /// The smallest whole number a count key takes (0 for keys that are not counts).
    pub fn min_count(self) -> u32 {
        match self.rule().value {
            PolicyValue::Count { min } => min,
            _ => 0,
        }
    }

    /// Whether the key applies to a one-shot service.
    pub fn applies_to_one_shot(self) -> bool {
        self.rule().on_one_shot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_row() {
        for rule in &POLICY_RULES {
            let rows = POLICY_RULES.iter().filter(|r| r.key == rule.key).count();
            assert_eq!(rows, 1, "{:?}", rule.key);
            assert_eq!(rule.key.rule(), rule);
        }
        assert_eq!(PolicyKey::MisfireLimit.min_count(), 1);
        assert_eq!(PolicyKey::Retries.min_count(), 0);
        let one_shot: Vec<_> = POLICY_RULES
            .iter()
            .filter(|r| !r.on_one_shot)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            one_shot,
            ["jitter", "misfire", "misfire_limit", "misfire_grace"]
        );
    }
}
