//! Checking the job policy arguments (`timeout`, `retries`, `retry_backoff`, `retry_backoff_max`,
//! `jitter`, `misfire`, `misfire_limit`, `misfire_grace`) on their own, against each other, and
//! against the service's timing.
//!
//! What each may be, what it needs and where it applies is `scheduler_core::policy_rules`'s table
//! (the configuration reads the same one); this module words it as spanned errors:
//!
//! | argument | value | with `once_after` |
//! |---|---|---|
//! | `timeout` | seconds, > 0 (no limit: leave it out) | yes: a one-shot run may hang too |
//! | `retries` | a whole number, 0 or more | yes: a failed migration may be worth another try |
//! | `retry_backoff` | seconds, 0 or more; only with `retries` ≥ 1 | yes, with `retries` |
//! | `retry_backoff_max` | seconds, at least `retry_backoff` (1 s by default); only with `retries` ≥ 1 | yes, with `retries` |
//! | `jitter` | seconds, > 0 (none: leave it out) | no: one run has no grid to spread around; add to the delay instead |
//! | `misfire` | `"skip"`, `"coalesce"` or `"all"` | no: a one-shot runs its one tick however late it comes |
//! | `misfire_limit` | a whole number, 1 or more; only with `misfire = "all"` | no |
//! | `misfire_grace` | seconds, > 0 | no |

use std::time::Duration;

use proc_macro2::Span;
use scheduler_core::policy_rules::{self, Needs, PolicyKey};
use scheduler_core::suggest;

use crate::args::{combine, CountValue, MisfireValue, PolicyArgs, SecondsValue, MISFIRE_HELP};

/// The backoff before the first retry when `retry_backoff` is left out; the runtime's default.
const DEFAULT_BACKOFF_SECS: f64 = policy_rules::DEFAULT_RETRY_BACKOFF_SECS as f64;

/// A checked misfire policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misfire {
    /// `"skip"`.
    Skip,
    /// `"coalesce"`.
    Coalesce,
    /// `"all"`, with `misfire_limit` if given (else the runtime's default).
    All(Option<u32>),
}

/// The checked job policies; absent ones are `None` (0 retries), so that the runtime's defaults
/// apply.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Policies {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: u32,
    pub(crate) retry_backoff: Option<Duration>,
    pub(crate) retry_backoff_max: Option<Duration>,
    pub(crate) jitter: Option<Duration>,
    pub(crate) misfire: Option<Misfire>,
    pub(crate) misfire_grace: Option<Duration>,
}

/// Whether zero is a meaningful value of a duration argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Allowed,
    /// Rejected, with what to do instead.
    Rejected(&'static str),
}

/// Checks the policy arguments; `one_shot` when the service is declared with `once_after`. Every
/// problem is added to `errors`, spanned on its token.
pub(crate) fn check(args: PolicyArgs, one_shot: bool, errors: &mut Option<syn::Error>) -> Policies {
    let PolicyArgs {
        timeout,
        retries,
        retry_backoff,
        retry_backoff_max,
        jitter,
        misfire,
        misfire_limit,
        misfire_grace,
    } = args;
    let mut policies = Policies::default();
    if let Some(timeout) = &timeout {
        policies.timeout = duration(
            timeout,
            "timeout",
            Zero::Rejected("leave `timeout` out for no time limit"),
            errors,
        );
    }
    if let Some(retries) = &retries {
        policies.retries =
            count(retries, "retries", PolicyKey::Retries.min_count(), errors).unwrap_or(0);
    }
    let base = retry_backoff.as_ref().and_then(|backoff| {
        retry_only(
            backoff.keyword,
            PolicyKey::RetryBackoff,
            retries.as_ref(),
            errors,
        );
        duration(backoff, "retry_backoff", Zero::Allowed, errors).map(|d| (d, backoff.seconds))
    });
    policies.retry_backoff = base.map(|(d, _)| d);
    if let Some(max) = &retry_backoff_max {
        retry_only(
            max.keyword,
            PolicyKey::RetryBackoffMax,
            retries.as_ref(),
            errors,
        );
        policies.retry_backoff_max = duration(max, "retry_backoff_max", Zero::Allowed, errors);
        if let Some(cap) = policies.retry_backoff_max {
            check_cap(max, cap, base, retry_backoff.is_some(), errors);
        }
    }
    if let Some(jitter) = &jitter {
        policies.jitter = duration(
            jitter,
            "jitter",
            Zero::Rejected("leave `jitter` out to start each run on its tick"),
            errors,
        );
    }
    policies.misfire = misfire_policy(misfire.as_ref(), misfire_limit.as_ref(), one_shot, errors);
    if let Some(grace) = &misfire_grace {
        policies.misfire_grace = duration(
            grace,
            "misfire_grace",
            Zero::Rejected("a run always starts a little after its tick"),
            errors,
        );
    }
    if one_shot {
        let keyword = |value: &Option<SecondsValue>| value.as_ref().map(|v| v.keyword);
        reject_on_one_shot(
            [
                (keyword(&timeout), PolicyKey::Timeout),
                (retries.as_ref().map(|r| r.keyword), PolicyKey::Retries),
                (keyword(&retry_backoff), PolicyKey::RetryBackoff),
                (keyword(&retry_backoff_max), PolicyKey::RetryBackoffMax),
                (keyword(&jitter), PolicyKey::Jitter),
                (misfire.as_ref().map(|m| m.keyword), PolicyKey::Misfire),
                (
                    misfire_limit.as_ref().map(|m| m.keyword),
                    PolicyKey::MisfireLimit,
                ),
                (keyword(&misfire_grace), PolicyKey::MisfireGrace),
            ],
            errors,
        );
    }
    policies
}

/// `misfire = "<word>"` with `misfire_limit`: the limit only with `"all"`.
fn misfire_policy(
    misfire: Option<&MisfireValue>,
    misfire_limit: Option<&CountValue>,
    one_shot: bool,
    errors: &mut Option<syn::Error>,
) -> Option<Misfire> {
    let word = misfire.and_then(|misfire| misfire_word(misfire, errors));
    let limit = misfire_limit.and_then(|limit| {
        let message = match (word, misfire) {
            // On a one-shot, `misfire_limit` is reported as such, and only that.
            _ if one_shot => None,
            // Fine, or the unknown word is reported.
            (Some(Misfire::All(_)), _) | (None, Some(_)) => None,
            (Some(other), _) => Some(format!(
                "`misfire_limit` applies only to `misfire = \"all\"`, not to `misfire = \"{}\"`: \
                 remove `misfire_limit`",
                name(other)
            )),
            (None, None) => Some(
                "`misfire_limit` applies only to `misfire = \"all\"`: add it, or remove \
                 `misfire_limit`"
                    .to_owned(),
            ),
        };
        if let Some(message) = message {
            combine(errors, syn::Error::new(limit.keyword, message));
        }
        count(
            limit,
            "misfire_limit",
            PolicyKey::MisfireLimit.min_count(),
            errors,
        )
    });
    word.map(|word| match word {
        Misfire::All(_) => Misfire::All(limit),
        other => other,
    })
}

/// Reports each of `arguments` that was written (its keyword's span) and does not apply to a
/// one-shot service ([`PolicyKey::applies_to_one_shot`]).
fn reject_on_one_shot(arguments: [(Option<Span>, PolicyKey); 8], errors: &mut Option<syn::Error>) {
    for (span, key) in arguments {
        let Some(span) = span else { continue };
        if key.applies_to_one_shot() {
            continue;
        }
        let argument = key.name();
        let why = if key == PolicyKey::Jitter {
            "a one-shot service has one run, and no grid to spread it around; add the delay to \
             `once_after`"
        } else {
            "a one-shot service runs its one tick however late it comes"
        };
        combine(
            errors,
            syn::Error::new(
                span,
                format!("`{argument}` does not apply to `once_after`: {why}"),
            ),
        );
    }
}

/// The policy's name, as written in the attribute.
fn name(misfire: Misfire) -> &'static str {
    match misfire {
        Misfire::Skip => "skip",
        Misfire::Coalesce => "coalesce",
        Misfire::All(_) => "all",
    }
}

/// A number of seconds as a `Duration`: finite, not negative, zero only where `zero` allows it,
/// and not beyond what a `Duration` holds.
fn duration(
    value: &SecondsValue,
    argument: &str,
    zero: Zero,
    errors: &mut Option<syn::Error>,
) -> Option<Duration> {
    let seconds = value.seconds;
    let expected = match zero {
        Zero::Allowed => "zero or more",
        Zero::Rejected(_) => "greater than zero",
    };
    let message = if !seconds.is_finite() || seconds < 0.0 {
        format!("invalid {argument} {seconds}: expected a finite number of seconds, {expected}")
    } else if seconds == 0.0 {
        match zero {
            Zero::Allowed => return Some(Duration::ZERO),
            Zero::Rejected(instead) => {
                format!("invalid {argument} 0: expected a number of seconds greater than zero; {instead}")
            }
        }
    } else {
        match Duration::try_from_secs_f64(seconds) {
            Ok(duration) => return Some(duration),
            Err(_) => format!("invalid {argument} {seconds}: too long for a duration"),
        }
    };
    combine(errors, syn::Error::new_spanned(&value.value, message));
    None
}

/// A whole number from `min` to `u32::MAX`.
fn count(
    value: &CountValue,
    argument: &str,
    min: u32,
    errors: &mut Option<syn::Error>,
) -> Option<u32> {
    if let Ok(count) = u32::try_from(value.count) {
        if count >= min {
            return Some(count);
        }
    }
    let message = if value.count == 0 && argument == "misfire_limit" {
        "invalid misfire_limit 0: expected a whole number of at least 1; to run none of the \
         missed ticks, write `misfire = \"skip\"`"
            .to_owned()
    } else {
        format!(
            "invalid {argument} {}: expected a whole number from {min} to {}",
            value.count,
            u32::MAX
        )
    };
    combine(errors, syn::Error::new_spanned(&value.value, message));
    None
}

/// `retry_backoff` and `retry_backoff_max` shape retries: without `retries` (or with
/// `retries = 0`) they would do nothing, which is a mistake worth pointing at.
fn retry_only(
    keyword: Span,
    key: PolicyKey,
    retries: Option<&CountValue>,
    errors: &mut Option<syn::Error>,
) {
    if key.rule().needs != Some(Needs::Retries) {
        return;
    }
    let argument = key.name();
    let message = match retries {
        None => format!(
            "`{argument}` has no effect without `retries`: add `retries = <count>`, or remove \
             `{argument}`"
        ),
        Some(retries) if retries.count == 0 => {
            format!("`{argument}` has no effect with `retries = 0`, which never retries")
        }
        Some(_) => return,
    };
    combine(errors, syn::Error::new(keyword, message));
}

/// The cap must be at least the base: the written one, or the default 1 s.
fn check_cap(
    max: &SecondsValue,
    cap: Duration,
    base: Option<(Duration, f64)>,
    base_written: bool,
    errors: &mut Option<syn::Error>,
) {
    let message = match base {
        Some((base, seconds)) if cap < base => format!(
            "`retry_backoff_max = {}` is less than `retry_backoff = {seconds}`: the cap of the \
             backoff must be at least its base",
            max.seconds
        ),
        None if !base_written && cap < Duration::from_secs_f64(DEFAULT_BACKOFF_SECS) => format!(
            "`retry_backoff_max = {}` is less than the default `retry_backoff` of \
             {DEFAULT_BACKOFF_SECS} second: set `retry_backoff` too, to at most {}",
            max.seconds, max.seconds
        ),
        _ => return,
    };
    combine(errors, syn::Error::new_spanned(&max.value, message));
}

/// The misfire policy named by `misfire = "<word>"`, with a suggestion for an unknown word.
fn misfire_word(misfire: &MisfireValue, errors: &mut Option<syn::Error>) -> Option<Misfire> {
    let written = misfire.word.value();
    match written.as_str() {
        "skip" => return Some(Misfire::Skip),
        "coalesce" => return Some(Misfire::Coalesce),
        "all" => return Some(Misfire::All(None)),
        _ => {}
    }
    let hint = suggest::misfire_policy(&written)
        .map_or_else(String::new, |near| format!(" (did you mean \"{near}\"?)"));
    combine(
        errors,
        syn::Error::new(
            misfire.word.span(),
            format!("unknown misfire policy \"{written}\"{hint}: {MISFIRE_HELP}"),
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Args;
    use quote::quote;

    fn checked(attr: proc_macro2::TokenStream, one_shot: bool) -> (Policies, Vec<String>) {
        let args = Args::parse(attr);
        let mut errors = args.errors;
        let policies = check(args.policies, one_shot, &mut errors);
        let messages = errors
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        (policies, messages)
    }

    fn messages(attr: proc_macro2::TokenStream) -> Vec<String> {
        checked(attr, false).1
    }

    #[test]
    fn accepts_every_policy() {
        let (policies, errors) = checked(
            quote!(
                timeout = 30,
                retries = 3,
                retry_backoff = 0.5,
                retry_backoff_max = 60,
                jitter = 5,
                misfire = "all",
                misfire_limit = 4,
                misfire_grace = 1.5
            ),
            false,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            policies,
            Policies {
                timeout: Some(Duration::from_secs(30)),
                retries: 3,
                retry_backoff: Some(Duration::from_millis(500)),
                retry_backoff_max: Some(Duration::from_secs(60)),
                jitter: Some(Duration::from_secs(5)),
                misfire: Some(Misfire::All(Some(4))),
                misfire_grace: Some(Duration::from_millis(1500)),
            }
        );
        let (policies, _) = checked(quote!(misfire = "all"), false);
        assert_eq!(policies.misfire, Some(Misfire::All(None)));
        assert_eq!(checked(quote!(), false).0, Policies::default());
    }

    #[test]
    fn rejects_values_out_of_range() {
        assert_eq!(
            messages(quote!(timeout = 0)),
            [
                "invalid timeout 0: expected a number of seconds greater than zero; leave \
              `timeout` out for no time limit"
            ]
        );
        assert_eq!(
            messages(quote!(timeout = -1)),
            ["invalid timeout -1: expected a finite number of seconds, greater than zero"]
        );
        assert_eq!(
            messages(quote!(jitter = 1e999)),
            ["invalid jitter inf: expected a finite number of seconds, greater than zero"]
        );
        assert_eq!(
            messages(quote!(misfire_grace = 1e30)),
            ["invalid misfire_grace 1000000000000000000000000000000: too long for a duration"]
        );
        assert_eq!(
            messages(quote!(retries = -2)),
            ["invalid retries -2: expected a whole number from 0 to 4294967295"]
        );
        assert_eq!(
            messages(quote!(retries = 99999999999999999999999999999999999999999)),
            [
                "invalid retries 170141183460469231731687303715884105727: expected a whole number \
              from 0 to 4294967295"
            ]
        );
        assert!(messages(quote!(misfire = "all", misfire_limit = 0))[0]
            .ends_with("write `misfire = \"skip\"`"));
        assert!(messages(quote!(retries = 1, retry_backoff = 0)).is_empty());
    }

    #[test]
    fn rejects_wrong_types_with_the_fix() {
        assert_eq!(
            messages(quote!(timeout = "30s")),
            ["expected `timeout = 30`: the timeout is a plain number of seconds, not a string"]
        );
        assert_eq!(
            messages(quote!(jitter = "soon")),
            ["expected `jitter = <seconds>`, such as `jitter = 5` or `jitter = 0.5`: the jitter \
              is a plain number of seconds, not a string"]
        );
        assert_eq!(
            messages(quote!(retries = "3")),
            ["expected `retries = 3`: the number of retries is a plain whole number, not a string"]
        );
        assert_eq!(
            messages(quote!(retries = 2.5)),
            [
                "expected `retries = <count>`, such as `retries = 3`: the number of retries is a \
              whole number"
            ]
        );
        assert!(messages(quote!(retries = 3u8))[0].starts_with("unexpected suffix `u8`"));
        assert!(messages(quote!(retries = N))[0].contains("must be a literal"));
        assert_eq!(
            messages(quote!(misfire = skip)),
            ["expected `misfire = \"skip\"`: the policy is a string"]
        );
        assert_eq!(messages(quote!(misfire = 1)), [MISFIRE_HELP]);
        assert_eq!(
            messages(quote!(misfire = "catch-up")),
            [format!(
                "unknown misfire policy \"catch-up\" (did you mean \"all\"?): {MISFIRE_HELP}"
            )]
        );
        assert_eq!(
            messages(quote!(misfire = "whenever")),
            [format!(
                "unknown misfire policy \"whenever\": {MISFIRE_HELP}"
            )]
        );
        assert!(messages(quote!(timeout = 1, timeout = 2))[0]
            .starts_with("duplicate argument `timeout`"));
    }

    #[test]
    fn checks_arguments_against_each_other() {
        assert_eq!(
            messages(quote!(misfire_limit = 3)),
            [
                "`misfire_limit` applies only to `misfire = \"all\"`: add it, or remove \
              `misfire_limit`"
            ]
        );
        assert_eq!(
            messages(quote!(misfire = "skip", misfire_limit = 3)),
            ["`misfire_limit` applies only to `misfire = \"all\"`, not to `misfire = \"skip\"`: \
              remove `misfire_limit`"]
        );
        // An unknown word is the one error: which policy was meant is not known.
        assert_eq!(messages(quote!(misfire = "al", misfire_limit = 3)).len(), 1);
        assert_eq!(
            messages(quote!(retry_backoff = 2)),
            [
                "`retry_backoff` has no effect without `retries`: add `retries = <count>`, or \
              remove `retry_backoff`"
            ]
        );
        assert_eq!(
            messages(quote!(retries = 0, retry_backoff_max = 2)),
            ["`retry_backoff_max` has no effect with `retries = 0`, which never retries"]
        );
        assert_eq!(
            messages(quote!(retries = 2, retry_backoff = 5, retry_backoff_max = 2.5)),
            ["`retry_backoff_max = 2.5` is less than `retry_backoff = 5`: the cap of the backoff \
              must be at least its base"]
        );
        assert_eq!(
            messages(quote!(retries = 2, retry_backoff_max = 0.5)),
            ["`retry_backoff_max = 0.5` is less than the default `retry_backoff` of 1 second: set \
              `retry_backoff` too, to at most 0.5"]
        );
        assert!(messages(quote!(
            retries = 2,
            retry_backoff = 0.1,
            retry_backoff_max = 0.5
        ))
        .is_empty());
        assert!(messages(quote!(retries = 2, retry_backoff = 120)).is_empty());
    }

    #[test]
    fn one_shots_take_timeout_and_retries_only() {
        let (policies, errors) = checked(
            quote!(
                timeout = 5,
                retries = 2,
                retry_backoff = 1,
                retry_backoff_max = 4
            ),
            true,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(policies.retries, 2);
        let (_, errors) = checked(
            quote!(
                jitter = 1,
                misfire = "all",
                misfire_limit = 2,
                misfire_grace = 3
            ),
            true,
        );
        let starts: Vec<_> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            starts,
            [
                "`jitter` does not apply to `once_after`",
                "`misfire` does not apply to `once_after`",
                "`misfire_limit` does not apply to `once_after`",
                "`misfire_grace` does not apply to `once_after`"
            ]
        );
    }
}
