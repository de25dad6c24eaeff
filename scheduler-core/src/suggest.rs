//! "Did you mean" for names and values typed by hand: a misspelt time zone, argument or setting, and a
//! period written with a unit where a number of seconds is expected.
//!
//! The `#[background_service]` attribute and the runtime's configuration both ask these functions, so
//! that a mistake gets the same suggestion wherever it is made.
//!
//! ```
//! use scheduler_core::suggest;
//!
//! assert_eq!(suggest::time_zone("Europe/Berln"), Some("Europe/Berlin"));
//! assert_eq!(suggest::closest("intervl", ["interval", "on_start", "tz"]), ["interval"]);
//! assert_eq!(suggest::period_secs("5m"), Some(300.0));
//! ```

/// The Levenshtein distance between `a` and `b`: how many characters must be inserted, deleted or
/// replaced to turn one into the other.
///
/// ```
/// assert_eq!(scheduler_core::suggest::edit_distance("Berln", "Berlin"), 1);
/// assert_eq!(scheduler_core::suggest::edit_distance("", "tz"), 2);
/// ```
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = Vec::with_capacity(b.len() + 1);
    for (i, ca) in a.chars().enumerate() {
        current.clear();
        current.push(i + 1);
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Names longer than this get no suggestion: nobody misspells a paragraph, and the search stays cheap
/// whatever the input.
const MAX_LEN: usize = 64;

/// How far a name may be from what was written and still be suggested: one edit in three characters,
/// at least one.
fn is_near(distance: usize, written: &str) -> bool {
    distance <= (written.chars().count() / 3).max(1)
}

/// The `candidates` close to `written`, nearest first (ties in the order given), compared without
/// regard to case; empty when none is close.
///
/// A candidate is close when at most one character in three of `written` must change to reach it.
///
/// ```
/// use scheduler_core::suggest::closest;
///
/// assert_eq!(closest("DAILY_REPORTS", ["HEARTBEAT", "DAILY_REPORTER", "DAILY_REPORT"]),
///            ["DAILY_REPORT", "DAILY_REPORTER"]);
/// assert!(closest("colour", ["manager", "services"]).is_empty());
/// ```
pub fn closest<'a>(written: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    if written.len() > MAX_LEN {
        return Vec::new();
    }
    let lower = written.to_lowercase();
    let mut near: Vec<(usize, &'a str)> = candidates
        .into_iter()
        .map(|candidate| (edit_distance(&lower, &candidate.to_lowercase()), candidate))
        .filter(|&(distance, _)| is_near(distance, written))
        .collect();
    near.sort_by_key(|&(distance, _)| distance);
    near.into_iter().map(|(_, candidate)| candidate).collect()
}

/// The IANA time zone that `name` was probably meant to be, when it is not one itself.
///
/// Finds a zone that differs only in case (`europe/berlin`), or in spaces for underscores
/// (`America/New York`), a city written without its region (`Berlin`), and small misspellings
/// (`Europe/Berln`). Returns `None` for a known zone and for a name close to none.
///
/// ```
/// use scheduler_core::suggest::time_zone;
///
/// assert_eq!(time_zone("Europe/Berln"), Some("Europe/Berlin"));
/// assert_eq!(time_zone("america/new york"), Some("America/New_York"));
/// assert_eq!(time_zone("Tokyo"), Some("Asia/Tokyo"));
/// assert_eq!(time_zone("Europe/Berlin"), None);
/// assert_eq!(time_zone("Mars/Olympus_Mons"), None);
/// ```
pub fn time_zone(name: &str) -> Option<&'static str> {
    let written = name.trim().replace(' ', "_");
    if written.is_empty() || written.len() > MAX_LEN {
        return None;
    }
    let zones = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    if zones().any(|zone| zone == name) {
        return None;
    }
    let lower = written.to_lowercase();
    if let Some(zone) = zones().find(|zone| zone.to_lowercase() == lower) {
        return Some(zone);
    }
    // Only a city: compare it with the last part of each name (`Tokyo` → `Asia/Tokyo`).
    let city_of = |zone: &'static str| zone.rsplit('/').next().unwrap_or(zone);
    let (distance, zone) = if written.contains('/') {
        zones()
            .map(|zone| (edit_distance(&lower, &zone.to_lowercase()), zone))
            .min_by_key(|&(distance, _)| distance)?
    } else {
        zones()
            .filter(|zone| zone.contains('/'))
            .map(|zone| (edit_distance(&lower, &city_of(zone).to_lowercase()), zone))
            .min_by_key(|&(distance, _)| distance)?
    };
    is_near(distance, &written).then_some(zone)
}

/// The number of seconds meant by a period written as text with a unit, such as `"30s"`, `"5 min"`,
/// `"1h30m"` or `"500ms"`, or as a bare number in quotes (`"30"`); `None` for anything else, and for
/// a period that is not positive.
///
/// Units: `ms`; `s`, `sec`, `secs`, `second(s)`; `m`, `min`, `mins`, `minute(s)`; `h`, `hr`, `hrs`,
/// `hour(s)`; `d`, `day(s)`, in any case.
///
/// ```
/// use scheduler_core::suggest::period_secs;
///
/// assert_eq!(period_secs("30s"), Some(30.0));
/// assert_eq!(period_secs("1h30m"), Some(5400.0));
/// assert_eq!(period_secs("500ms"), Some(0.5));
/// assert_eq!(period_secs("*/5 * * * *"), None);
/// ```
pub fn period_secs(text: &str) -> Option<f64> {
    let mut rest = text.trim();
    if rest.is_empty() || rest.len() > MAX_LEN {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_ascii_lowercase();
        rest = rest[unit_len..].trim_start();
        let scale = match unit.as_str() {
            // A bare number only as the whole text: `"30"`, not `"1h 30"`.
            "" if total == 0.0 && rest.is_empty() => 1.0,
            "ms" | "msec" | "msecs" | "millis" | "milliseconds" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            _ => return None,
        };
        total += number * scale;
    }
    (total.is_finite() && total > 0.0).then_some(total)
}

/// The misfire policies, as the attribute and the configuration write them.
pub const MISFIRE_POLICIES: [&str; 3] = ["skip", "coalesce", "all"];

/// The misfire policy (`skip`, `coalesce` or `all`) that `written` was probably meant to be: one
/// that differs in case or by a small misspelling, or the word another scheduler uses for it
/// (`catch_up`, `ignore`, `fire_once_now`, ...). `None` for a policy as written, and for a word
/// close to none.
///
/// ```
/// use scheduler_core::suggest::misfire_policy;
///
/// assert_eq!(misfire_policy("coalese"), Some("coalesce"));
/// assert_eq!(misfire_policy("catch-up"), Some("all"));
/// assert_eq!(misfire_policy("skip"), None);
/// assert_eq!(misfire_policy("sometimes"), None);
/// ```
pub fn misfire_policy(written: &str) -> Option<&'static str> {
    let word = written.trim().to_lowercase().replace(['-', ' '], "_");
    if MISFIRE_POLICIES.contains(&written) {
        return None;
    }
    match word.as_str() {
        "ignore" | "drop" | "none" | "do_nothing" | "skip_missed" | "discard" => Some("skip"),
        "once" | "run_once" | "fire_once_now" | "fire_now" | "merge" | "smart" | "latest" => {
            Some("coalesce")
        }
        "catch_up" | "catchup" | "run_all" | "every" | "each" | "backfill" | "ignore_misfires" => {
            Some("all")
        }
        _ => closest(&word, MISFIRE_POLICIES).first().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_misfire_policies() {
        for (written, expected) in [
            ("Skip", Some("skip")),
            ("COALESCE", Some("coalesce")),
            ("coalese", Some("coalesce")),
            ("al", Some("all")),
            ("catch_up", Some("all")),
            ("Catch up", Some("all")),
            ("ignore", Some("skip")),
            ("fire_once_now", Some("coalesce")),
            ("skip", None),
            ("all", None),
            ("sometimes", None),
            ("", None),
        ] {
            assert_eq!(misfire_policy(written), expected, "{written:?}");
        }
    }

    #[test]
    fn suggests_zones() {
        for (written, expected) in [
            ("Europe/Berln", Some("Europe/Berlin")),
            ("Europe/Berlim", Some("Europe/Berlin")),
            ("EUROPE/PARIS", Some("Europe/Paris")),
            ("America/New York", Some("America/New_York")),
            ("America/NewYork", Some("America/New_York")),
            ("Asia/Calcuta", Some("Asia/Calcutta")),
            ("berlin", Some("Europe/Berlin")),
            ("utc", Some("UTC")),
            ("UTC", None),
            ("America/New_York", None),
            ("Mars/Olympus", None),
            ("Mars/Olympus_Mons", None),
            ("", None),
            ("   ", None),
        ] {
            assert_eq!(time_zone(written), expected, "{written:?}");
        }
        assert_eq!(time_zone(&"Europe/Berlin".repeat(10)), None);
    }

    #[test]
    fn closest_is_nearest_first_and_bounded() {
        assert_eq!(closest("tz", ["TZ", "ON_START"]), ["TZ"]);
        assert_eq!(closest("ENABLE", ["INTERVAL", "ENABLED"]), ["ENABLED"]);
        assert!(closest("x", ["INTERVAL"]).is_empty());
        assert!(closest(&"a".repeat(100), ["a"]).is_empty());
    }

    #[test]
    fn reads_periods_with_units() {
        for (text, expected) in [
            ("30", Some(30.0)),
            (" 30s ", Some(30.0)),
            ("30 sec", Some(30.0)),
            ("0.5s", Some(0.5)),
            ("5m", Some(300.0)),
            ("5 MIN", Some(300.0)),
            ("2h", Some(7200.0)),
            ("1d", Some(86_400.0)),
            ("1h 30m", Some(5400.0)),
            ("250ms", Some(0.25)),
            ("0s", None),
            ("1h 30", None),
            ("30 parsecs", None),
            ("s", None),
            ("1..2s", None),
            ("-5s", None),
            ("*/5 * * * *", None),
            ("@hourly", None),
            ("", None),
        ] {
            assert_eq!(period_secs(text), expected, "{text:?}");
        }
    }

    #[test]
    fn counts_edits_in_characters() {
        assert_eq!(edit_distance("Zürich", "Zurich"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
