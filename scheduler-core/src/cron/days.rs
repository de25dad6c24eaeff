//! The day extensions: `L`, `L-n`, `LW` and `nW` in day-of-month, `nL` and `n#k` in day-of-week.
//!
//! Each one picks days by their place in the month rather than by number, so a day is judged as a
//! [`Day`]: its number, its weekday and the length of its month. Plain values stay in the fields'
//! bit sets; these rules only add days to them, and the day-of-month/day-of-week rule (OR when both
//! fields are restricted) applies to the result as it does to plain values.

use super::field::{self, FieldSpec};
use crate::error::FieldProblem;

/// A calendar day as the rules see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day {
    /// 1-31.
    pub(crate) mday: u32,
    /// 0-6, Sunday = 0.
    pub(crate) weekday: u32,
    /// The number of days in the month, 28-31.
    pub(crate) last: u32,
}

impl Day {
    /// The weekday (Sunday = 0) of day `n` of the same month.
    fn weekday_of(self, n: u32) -> u32 {
        (self.weekday + 35 + n - self.mday) % 7
    }
}

/// The day-of-month extensions of one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DomRules {
    /// Bit `n` for `L-n`, counting back from the last day; bit 0 is `L` itself.
    pub(crate) from_end: u32,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    pub(crate) last_weekday: bool,
    /// Bit `n` for `nW`: the weekday nearest to day `n`, without leaving the month.
    pub(crate) nearest_weekday: u32,
}

/// The day-of-week extensions of one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DowRules {
    /// Bit `w` for `wL`: the last such weekday of the month.
    pub(crate) last: u8,
    /// `nth[w]` has bit `k` for `w#k`: the `k`-th such weekday of the month (1-5).
    pub(crate) nth: [u8; 7],
}

impl DomRules {
    pub(crate) fn is_empty(&self) -> bool {
        *self == DomRules::default()
    }

    pub(crate) fn matches(&self, d: Day) -> bool {
        (self.from_end >> (d.last - d.mday)) & 1 != 0
            || (self.last_weekday && d.mday == last_weekday(d))
            || (self.nearest_weekday != 0 && self.nearest_matches(d))
    }

    fn nearest_matches(&self, d: Day) -> bool {
        let mut wanted = self.nearest_weekday;
        while wanted != 0 {
            let n = wanted.trailing_zeros();
            wanted &= wanted - 1;
            if nearest_weekday(d, n) == Some(d.mday) {
                return true;
            }
        }
        false
    }
}

impl DowRules {
    pub(crate) fn is_empty(self) -> bool {
        self == DowRules::default()
    }

    pub(crate) fn matches(self, d: Day) -> bool {
        let w = d.weekday as usize;
        ((self.last >> w) & 1 != 0 && d.mday + 7 > d.last)
            || (self.nth[w] >> d.mday.div_ceil(7)) & 1 != 0
    }
}

/// The last Monday-to-Friday of `d`'s month.
pub(crate) fn last_weekday(d: Day) -> u32 {
    match d.weekday_of(d.last) {
        6 => d.last - 1,
        0 => d.last - 2,
        _ => d.last,
    }
}

/// The Monday-to-Friday nearest to day `n` of `d`'s month without leaving it (Saturday the 1st gives
/// Monday the 3rd; Sunday the last gives the Friday before); `None` when the month has no day `n`.
pub(crate) fn nearest_weekday(d: Day, n: u32) -> Option<u32> {
    if n == 0 || n > d.last {
        return None;
    }
    Some(match d.weekday_of(n) {
        6 if n == 1 => 3,
        6 => n - 1,
        0 if n == d.last => n - 2,
        0 => n + 1,
        _ => n,
    })
}

/// Takes the day-of-month extensions out of one list element; `Ok(false)` for a plain element.
pub(crate) fn dom_element(
    spec: &FieldSpec,
    element: &str,
    rules: &mut DomRules,
) -> Result<bool, FieldProblem> {
    if !element
        .bytes()
        .any(|b| matches!(b, b'L' | b'l' | b'W' | b'w' | b'#'))
    {
        return Ok(false);
    }
    let upper = element.to_ascii_uppercase();
    let fail = |rule| {
        Err(FieldProblem::Extension {
            token: element.to_owned(),
            rule,
        })
    };
    if upper.contains('/') {
        return fail("cannot take a step: L and W name single days");
    }
    if upper.contains('#') {
        return fail("uses '#', which belongs in the day-of-week field (such as FRI#3)");
    }
    if upper == "L" {
        rules.from_end |= 1;
    } else if upper == "LW" {
        rules.last_weekday = true;
    } else if let Some(offset) = upper.strip_prefix("L-") {
        match offset.parse::<u32>() {
            Ok(n) if (1..=30).contains(&n) && offset.bytes().all(|b| b.is_ascii_digit()) => {
                rules.from_end |= 1 << n;
            }
            _ => return fail("needs a number of days 1-30 after 'L-', such as L-3"),
        }
    } else if let Some(day) = upper.strip_suffix('W') {
        if day.contains(['-', 'L', 'W', '*', '?']) {
            return fail("names one day before W, such as 15W (or LW for the last weekday)");
        }
        let n = spec.value(day)?;
        rules.nearest_weekday |= 1 << n;
    } else {
        return fail(
            "is not a day of the month: expected a number, L, L-n (n days before the last), LW or nW",
        );
    }
    Ok(true)
}

/// Takes the day-of-week extensions out of one list element; `Ok(false)` for a plain element.
pub(crate) fn dow_element(
    spec: &FieldSpec,
    element: &str,
    rules: &mut DowRules,
) -> Result<bool, FieldProblem> {
    // Weekday names contain no `#` and none ends in L; anything else (such as a misplaced W) is left
    // to the plain parser, whose error says where the extensions belong.
    let is_last = matches!(element.as_bytes().last(), Some(b'L' | b'l'));
    if !is_last && !element.as_bytes().contains(&b'#') {
        return Ok(false);
    }
    let fail = |rule| {
        Err(FieldProblem::Extension {
            token: element.to_owned(),
            rule,
        })
    };
    if element.contains('/') {
        return fail("cannot take a step: L and # name single days");
    }
    let weekday = |text: &str| -> Result<usize, FieldProblem> {
        if text.is_empty() || text.contains(['-', '*', '?', 'L', 'l', '#']) {
            return Err(FieldProblem::Extension {
                token: element.to_owned(),
                rule: "needs one weekday before L or #, such as 5L, FRIL or FRI#3",
            });
        }
        Ok(usize::from(spec.value(text)? % 7))
    };
    if let Some((day, nth)) = element.split_once('#') {
        let w = weekday(day)?;
        match nth.parse::<u8>() {
            Ok(k) if (1..=5).contains(&k) && nth.bytes().all(|b| b.is_ascii_digit()) => {
                rules.nth[w] |= 1 << k;
            }
            _ => {
                return fail(
                    "needs 1-5 after '#': the first to the fifth such weekday of the month",
                )
            }
        }
    } else {
        let day = &element[..element.len() - 1];
        if day.is_empty() {
            return fail(
                "needs a weekday before L in the day-of-week field, such as 5L or FRIL for \
                 the last Friday of the month",
            );
        }
        let w = weekday(day)?;
        rules.last |= 1 << w;
    }
    Ok(true)
}

/// Parses the day-of-month field with its extensions.
pub(crate) fn parse_dom(
    spec: &FieldSpec,
    text: &str,
) -> Result<(field::ParsedField, DomRules), FieldProblem> {
    let mut rules = DomRules::default();
    let parsed = field::parse_with(spec, text, |element| dom_element(spec, element, &mut rules))?;
    Ok((parsed, rules))
}

/// Parses the day-of-week field with its extensions.
pub(crate) fn parse_dow(
    spec: &FieldSpec,
    text: &str,
) -> Result<(field::ParsedField, DowRules), FieldProblem> {
    let mut rules = DowRules::default();
    let parsed = field::parse_with(spec, text, |element| dow_element(spec, element, &mut rules))?;
    Ok((parsed, rules))
}

#[cfg(test)]
mod tests {
    use super::super::field::{DAY_OF_MONTH, DAY_OF_WEEK};
    use super::*;

    /// The days of a month of `last` days whose 1st falls on `first_weekday` that `matches` picks.
    fn days(first_weekday: u32, last: u32, matches: impl Fn(Day) -> bool) -> Vec<u32> {
        (1..=last)
            .filter(|&day| {
                matches(Day {
                    mday: day,
                    weekday: (first_weekday + day - 1) % 7,
                    last,
                })
            })
            .collect()
    }

    fn dom(text: &str) -> DomRules {
        parse_dom(&DAY_OF_MONTH, text).unwrap().1
    }

    fn dow(text: &str) -> DowRules {
        parse_dow(&DAY_OF_WEEK, text).unwrap().1
    }

    // Month shapes, by hand from a calendar: June 2024 starts on a Saturday and has 30 days;
    // March 2024 starts on a Friday (31 days); February 2025 on a Saturday (28 days).
    const JUNE_2024: (u32, u32) = (6, 30);
    const MARCH_2024: (u32, u32) = (5, 31);
    const FEB_2025: (u32, u32) = (6, 28);

    #[test]
    fn last_days() {
        let (w, n) = JUNE_2024;
        assert_eq!(days(w, n, |d| dom("L").matches(d)), [30]);
        assert_eq!(days(w, n, |d| dom("L-3").matches(d)), [27]);
        assert_eq!(days(w, n, |d| dom("L,L-1").matches(d)), [29, 30]);
        // June 30 2024 is a Sunday: the last weekday is Friday the 28th.
        assert_eq!(days(w, n, |d| dom("LW").matches(d)), [28]);
        let (w, n) = FEB_2025;
        assert_eq!(days(w, n, |d| dom("L-27").matches(d)), [1]);
        assert!(days(w, n, |d| dom("L-28").matches(d)).is_empty());
        // Friday the 28th.
        assert_eq!(days(w, n, |d| dom("lw").matches(d)), [28]);
    }

    #[test]
    fn nearest_weekdays_stay_in_the_month() {
        let (w, n) = JUNE_2024;
        // Saturday the 1st: Monday the 3rd, not Friday May 31.
        assert_eq!(days(w, n, |d| dom("1W").matches(d)), [3]);
        // Saturday the 15th: Friday the 14th; Sunday the 16th: Monday the 17th.
        assert_eq!(days(w, n, |d| dom("15W").matches(d)), [14]);
        assert_eq!(days(w, n, |d| dom("16w").matches(d)), [17]);
        // Sunday the 30th, the last day: Friday the 28th.
        assert_eq!(days(w, n, |d| dom("30W").matches(d)), [28]);
        // June has no 31st.
        assert!(days(w, n, |d| dom("31W").matches(d)).is_empty());
        // Wednesday the 12th is itself.
        assert_eq!(days(w, n, |d| dom("12W,15W").matches(d)), [12, 14]);
    }

    #[test]
    fn weekdays_by_place_in_the_month() {
        let (w, n) = MARCH_2024;
        // Fridays of March 2024: 1, 8, 15, 22, 29.
        assert_eq!(days(w, n, |d| dow("5L").matches(d)), [29]);
        assert_eq!(days(w, n, |d| dow("FRIL").matches(d)), [29]);
        assert_eq!(days(w, n, |d| dow("5#3").matches(d)), [15]);
        assert_eq!(days(w, n, |d| dow("fri#5").matches(d)), [29]);
        // Sundays: 3, 10, 17, 24, 31 (and 7 is Sunday too).
        assert_eq!(days(w, n, |d| dow("7L,SUN#1").matches(d)), [3, 31]);
        // Thursdays: 7, 14, 21, 28; there is no fifth.
        assert!(days(w, n, |d| dow("THU#5").matches(d)).is_empty());
    }

    #[test]
    fn misuse_is_an_error_naming_the_element() {
        let dom_problem = |text| parse_dom(&DAY_OF_MONTH, text).unwrap_err().to_string();
        let weekday_problem = |text| parse_dow(&DAY_OF_WEEK, text).unwrap_err().to_string();
        assert_eq!(dom_problem("32W"), "32 is out of range 1-31");
        assert_eq!(dom_problem("0W"), "0 is out of range 1-31");
        assert_eq!(
            dom_problem("1-5W"),
            "'1-5W' names one day before W, such as 15W (or LW for the last weekday)"
        );
        assert_eq!(
            dom_problem("L-31"),
            "'L-31' needs a number of days 1-30 after 'L-', such as L-3"
        );
        assert_eq!(
            dom_problem("L-"),
            "'L-' needs a number of days 1-30 after 'L-', such as L-3"
        );
        assert_eq!(
            dom_problem("L/2"),
            "'L/2' cannot take a step: L and W name single days"
        );
        assert_eq!(
            dom_problem("5#3"),
            "'5#3' uses '#', which belongs in the day-of-week field (such as FRI#3)"
        );
        assert_eq!(
            dom_problem("LX"),
            "'LX' is not a day of the month: expected a number, L, L-n (n days before the last), \
             LW or nW"
        );
        assert_eq!(
            weekday_problem("FRI#6"),
            "'FRI#6' needs 1-5 after '#': the first to the fifth such weekday of the month"
        );
        assert_eq!(
            weekday_problem("5#0"),
            "'5#0' needs 1-5 after '#': the first to the fifth such weekday of the month"
        );
        assert_eq!(
            weekday_problem("L"),
            "'L' needs a weekday before L in the day-of-week field, such as 5L or FRIL for the \
             last Friday of the month"
        );
        assert_eq!(
            weekday_problem("MON-FRIL"),
            "'MON-FRIL' needs one weekday before L or #, such as 5L, FRIL or FRI#3"
        );
        assert_eq!(weekday_problem("8L"), "8 is out of range 0-7");
        assert_eq!(
            weekday_problem("FOOL"),
            "'FOO' is neither a number nor one of the weekday names SUN-SAT"
        );
        assert_eq!(
            parse_dow(&DAY_OF_WEEK, "15W").unwrap_err().to_string(),
            "'15W' is not allowed here: L and W belong in the day-of-month field, L and # in the \
             day-of-week field"
        );
        // WED has a W and is still Wednesday.
        assert!(dow("WED,wed-FRI").is_empty());
    }
}
