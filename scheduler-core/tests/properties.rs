//! Property tests for the schedule engine.
//!
//! Valid expressions are generated field by field, so the test knows the set of values each field
//! allows without asking the crate; an independent oracle (`is_fire`) then decides, instant by instant,
//! whether an expression should fire, applying Vixie cron's day rule and its DST rules (see the crate
//! docs). `next_after` is checked against that oracle both ways: every answer must fire, and no instant
//! between two answers may.
//!
//! The generated expressions include the dialect extensions: `L`, `L-n`, `LW` and `nW` in
//! day-of-month, `wL` and `w#k` in day-of-week, ranges that wrap (`22-2`, `FRI-SUN`) and a 7th year
//! field. The oracle reads the day extensions from the calendar (the day after the last is in
//! another month; the k-th Friday is the one with k-1 Fridays before it in the month), not from
//! arithmetic on month lengths.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::time::Duration;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::test_runner::Config;
use scheduler_core::{suggest, Schedule};

// ---------------------------------------------------------------------------------------------------
// Generated expressions and the oracle
// ---------------------------------------------------------------------------------------------------

/// What one field accepts, mirroring the documented grammar (not the crate's code).
#[derive(Debug)]
struct Spec {
    min: u32,
    max: u32,
    /// Names standing for `name_base + index`.
    names: &'static [&'static str],
    name_base: u32,
}

const SECOND: Spec = Spec {
    min: 0,
    max: 59,
    names: &[],
    name_base: 0,
};
const MINUTE: Spec = SECOND;
const HOUR: Spec = Spec {
    min: 0,
    max: 23,
    names: &[],
    name_base: 0,
};
const DAY_OF_MONTH: Spec = Spec {
    min: 1,
    max: 31,
    names: &[],
    name_base: 0,
};
const MONTH: Spec = Spec {
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    name_base: 1,
};
const DAY_OF_WEEK: Spec = Spec {
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    name_base: 0,
};

/// The day extensions a generated field holds.
#[derive(Debug, Clone, Copy, Default)]
struct Ext {
    /// Bit `n` for `L-n` (bit 0: `L`).
    from_end: u32,
    /// `LW`.
    last_weekday: bool,
    /// Bit `n` for `nW`.
    nearest: u32,
    /// Bit `w` for `wL` (Sunday = 0).
    last: u8,
    /// `nth[w]` bit `k` for `w#k`.
    nth: [u8; 7],
}

impl Ext {
    fn merge(mut self, other: Ext) -> Ext {
        self.from_end |= other.from_end;
        self.last_weekday |= other.last_weekday;
        self.nearest |= other.nearest;
        self.last |= other.last;
        for (a, b) in self.nth.iter_mut().zip(other.nth) {
            *a |= b;
        }
        self
    }

    fn is_empty(&self) -> bool {
        self.from_end == 0
            && !self.last_weekday
            && self.nearest == 0
            && self.last == 0
            && self.nth == [0; 7]
    }
}

/// One generated field: its text and the set of values it allows (bit `v` set for value `v`).
#[derive(Debug, Clone)]
struct GenField {
    text: String,
    bits: u64,
    ext: Ext,
}

impl GenField {
    fn starts_with_star(&self) -> bool {
        self.text.starts_with('*') || self.text == "?"
    }
}

/// A generated, valid expression with the sets it stands for.
#[derive(Debug, Clone)]
struct GenExpr {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bits 0-6, Sunday = 0 (7 already folded into 0).
    days_of_week: u64,
    /// Vixie: OR when neither day field starts with `*`, else AND.
    days_either: bool,
    /// Fixed-time job: none of second, minute, hour starts with `*`.
    fixed_time: bool,
    /// The day extensions of both day fields (day-of-month ones and day-of-week ones never mix).
    ext: Ext,
    /// The years of a 7-field expression; `None` for every year.
    years: Option<Vec<i32>>,
}

fn bit(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

fn span(start: u32, end: u32, step: u64) -> u64 {
    let mut bits = 0;
    let mut v = u64::from(start);
    while v <= u64::from(end) {
        bits |= 1 << v;
        v = v.saturating_add(step);
    }
    bits
}

fn full(spec: &Spec) -> u64 {
    span(spec.min, spec.max, 1)
}

/// A value as a number or, when the field has a name for it, possibly as that name in some case.
fn render(spec: &Spec, v: u32, as_name: bool, case: u8) -> String {
    let index = v.wrapping_sub(spec.name_base) as usize;
    match spec.names.get(index) {
        Some(name) if as_name => match case {
            0 => (*name).to_owned(),
            1 => name.to_ascii_lowercase(),
            _ => name[..1].to_owned() + &name[1..].to_ascii_lowercase(),
        },
        _ => v.to_string(),
    }
}

/// A step as written and as it acts: steps wider than the field select the first value only.
fn step_strategy(spec: &'static Spec) -> BoxedStrategy<(String, u64)> {
    prop_oneof![
        8 => (1..=u64::from(spec.max) + 2).prop_map(|s| (s.to_string(), s)),
        1 => Just(("100".to_owned(), 100)),
        1 => Just(("99999999999999999999".to_owned(), u64::MAX)),
    ]
    .boxed()
}

fn value_strategy(spec: &'static Spec) -> BoxedStrategy<(String, u32)> {
    (spec.min..=spec.max, any::<bool>(), 0u8..3)
        .prop_map(move |(v, as_name, case)| (render(spec, v, as_name, case), v))
        .boxed()
}

/// One list element: `*`, `*/s`, `v`, `a-b`, `a-b/s` or `a/s`.
fn element_strategy(spec: &'static Spec) -> BoxedStrategy<(String, u64)> {
    let range = (value_strategy(spec), value_strategy(spec)).prop_map(|(a, b)| {
        if a.1 <= b.1 {
            (a, b)
        } else {
            (b, a)
        }
    });
    prop_oneof![
        1 => Just(("*".to_owned(), full(spec))),
        2 => step_strategy(spec)
            .prop_map(move |(s, step)| (format!("*/{s}"), span(spec.min, spec.max, step))),
        4 => value_strategy(spec).prop_map(|(text, v)| (text, 1 << v)),
        2 => range
            .clone()
            .prop_map(|((ta, a), (tb, b))| (format!("{ta}-{tb}"), span(a, b, 1))),
        2 => (range, step_strategy(spec)).prop_map(|(((ta, a), (tb, b)), (s, step))| {
            (format!("{ta}-{tb}/{s}"), span(a, b, step))
        }),
        1 => (value_strategy(spec), step_strategy(spec)).prop_map(move |((ta, a), (s, step))| {
            (format!("{ta}/{s}"), span(a, spec.max, step))
        }),
    ]
    .boxed()
}

/// A range written backwards, `a-b` with `a` after `b`: it runs to the end of the field and on from
/// its start (day of week: Saturday, then Sunday as 0). A start of 7 in day of week is Sunday, 0, so
/// `7-2` is the plain range 0-2.
fn wrapped_strategy(spec: &'static Spec) -> BoxedStrategy<(String, u64)> {
    let step = prop_oneof![3 => Just(None), 1 => step_strategy(spec).prop_map(Some)];
    (value_strategy(spec), value_strategy(spec), step)
        .prop_filter("a backwards range", |(a, b, _)| a.1 > b.1)
        .prop_map(move |((ta, a), (tb, b), step)| {
            let is_dow = spec.max == 7;
            let start = if is_dow && a == 7 { 0 } else { a };
            let top = if is_dow { 6 } else { spec.max };
            let sequence: Vec<u32> = if start <= b {
                (start..=b).collect()
            } else {
                (start..=top).chain(spec.min..=b).collect()
            };
            let (text, every) = match &step {
                Some((s, n)) => (format!("{ta}-{tb}/{s}"), *n),
                None => (format!("{ta}-{tb}"), 1),
            };
            let bits = sequence
                .iter()
                .step_by(usize::try_from(every).unwrap_or(usize::MAX))
                .fold(0, |acc, v| acc | 1 << v);
            (text, bits)
        })
        .boxed()
}

/// A day-of-month extension element and what it stands for.
fn dom_extension_strategy() -> BoxedStrategy<(String, Ext)> {
    prop_oneof![
        prop::sample::select(vec!["L", "l"]).prop_map(|t| (
            t.to_owned(),
            Ext {
                from_end: 1,
                ..Ext::default()
            }
        )),
        (1u32..=30).prop_map(|n| (
            format!("L-{n}"),
            Ext {
                from_end: 1 << n,
                ..Ext::default()
            }
        )),
        prop::sample::select(vec!["LW", "lw", "Lw"]).prop_map(|t| (
            t.to_owned(),
            Ext {
                last_weekday: true,
                ..Ext::default()
            }
        )),
        (1u32..=31, any::<bool>()).prop_map(|(n, upper)| (
            format!("{n}{}", if upper { "W" } else { "w" }),
            Ext {
                nearest: 1 << n,
                ..Ext::default()
            }
        )),
    ]
    .boxed()
}

/// A day-of-week extension element (`wL`, `w#k`) and what it stands for.
fn dow_extension_strategy() -> BoxedStrategy<(String, Ext)> {
    let weekday = value_strategy(&DAY_OF_WEEK);
    prop_oneof![
        (weekday.clone(), any::<bool>()).prop_map(|((t, w), upper)| {
            let ext = Ext {
                last: 1 << (w % 7),
                ..Ext::default()
            };
            (format!("{t}{}", if upper { "L" } else { "l" }), ext)
        }),
        (weekday, 1u8..=5).prop_map(|((t, w), k)| {
            let mut ext = Ext::default();
            ext.nth[(w % 7) as usize] = 1 << k;
            (format!("{t}#{k}"), ext)
        }),
    ]
    .boxed()
}

fn field_strategy(spec: &'static Spec, day_field: bool) -> BoxedStrategy<GenField> {
    let plain = prop_oneof![
        9 => element_strategy(spec),
        1 => wrapped_strategy(spec),
    ]
    .prop_map(|(text, bits)| (text, bits, Ext::default()));
    let element = if day_field {
        let extension = if spec.max == 7 {
            dow_extension_strategy()
        } else {
            dom_extension_strategy()
        };
        prop_oneof![
            3 => plain,
            1 => extension.prop_map(|(text, ext)| (text, 0, ext)),
        ]
        .boxed()
    } else {
        plain.boxed()
    };
    let list = prop::collection::vec(element, 1..=3).prop_map(|elements| {
        let text = elements
            .iter()
            .map(|(t, _, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let bits = elements.iter().fold(0, |acc, (_, b, _)| acc | b);
        let ext = elements
            .iter()
            .fold(Ext::default(), |acc, (_, _, e)| acc.merge(*e));
        GenField { text, bits, ext }
    });
    let star = Just(GenField {
        text: "*".to_owned(),
        bits: full(spec),
        ext: Ext::default(),
    });
    if day_field {
        let question = Just(GenField {
            text: "?".to_owned(),
            bits: full(spec),
            ext: Ext::default(),
        });
        prop_oneof![3 => star, 1 => question, 6 => list].boxed()
    } else {
        prop_oneof![3 => star, 7 => list].boxed()
    }
}

const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2099;

/// The year field of a 7-field expression: its text and its years (`None` for `*`).
fn year_strategy() -> BoxedStrategy<(String, Option<Vec<i32>>)> {
    let year = FIRST_YEAR..=LAST_YEAR;
    let element = prop_oneof![
        year.clone().prop_map(|y| (y.to_string(), vec![y])),
        (year.clone(), year.clone(), 1i32..=12).prop_map(|(a, b, s)| {
            let (a, b) = (a.min(b), a.max(b));
            (
                format!("{a}-{b}/{s}"),
                (a..=b).step_by(s as usize).collect(),
            )
        }),
        (year.clone(), 0i32..=40).prop_map(|(a, n)| {
            let b = (a + n).min(LAST_YEAR);
            (format!("{a}-{b}"), (a..=b).collect())
        }),
        (year, 1i32..=20).prop_map(|(a, s)| {
            (
                format!("{a}/{s}"),
                (a..=LAST_YEAR).step_by(s as usize).collect(),
            )
        }),
    ];
    let list = prop::collection::vec(element, 1..=2).prop_map(|elements| {
        let text = elements
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut years: Vec<i32> = elements.into_iter().flat_map(|(_, y)| y).collect();
        years.sort_unstable();
        years.dedup();
        (text, Some(years))
    });
    prop_oneof![1 => Just(("*".to_owned(), None)), 4 => list].boxed()
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(" "), 1 => Just("  "), 1 => Just("\t")]
}

fn fold_sunday(bits: u64) -> u64 {
    if bit(bits, 7) {
        (bits & !(1 << 7)) | 1
    } else {
        bits
    }
}

fn assemble(
    second: Option<&GenField>,
    fields: &[GenField; 5],
    seps: &[&str],
    pad: (&str, &str),
) -> GenExpr {
    assemble_with_years(second, fields, None, seps, pad)
}

/// A 7-field expression when `year` is given (with "0" for a missing seconds field).
fn assemble_with_years(
    second: Option<&GenField>,
    fields: &[GenField; 5],
    year: Option<&(String, Option<Vec<i32>>)>,
    seps: &[&str],
    pad: (&str, &str),
) -> GenExpr {
    let [minute, hour, dom, month, dow] = fields;
    let zero = GenField {
        text: "0".to_owned(),
        bits: 1,
        ext: Ext::default(),
    };
    let second = if year.is_some() && second.is_none() {
        Some(&zero)
    } else {
        second
    };
    let mut parts: Vec<&str> = Vec::new();
    if let Some(s) = second {
        parts.push(&s.text);
    }
    for f in [minute, hour, dom, month, dow] {
        parts.push(&f.text);
    }
    if let Some((text, _)) = year {
        parts.push(text);
    }
    let mut text = pad.0.to_owned();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            text.push_str(seps[i % seps.len()]);
        }
        text.push_str(part);
    }
    text.push_str(pad.1);
    let second_star = second.is_some_and(GenField::starts_with_star);
    GenExpr {
        text,
        seconds: second.map_or(1, |s| s.bits),
        minutes: minute.bits,
        hours: hour.bits,
        days_of_month: dom.bits,
        months: month.bits,
        days_of_week: fold_sunday(dow.bits),
        days_either: !dom.starts_with_star() && !dow.starts_with_star(),
        fixed_time: !(second_star || minute.starts_with_star() || hour.starts_with_star()),
        ext: dom.ext.merge(dow.ext),
        years: year.and_then(|(_, years)| years.clone()),
    }
}

fn shorthand(text: &str, fields: [&str; 5]) -> GenExpr {
    let parse = |spec: &Spec, t: &str| -> u64 {
        if t == "*" {
            full(spec)
        } else {
            1 << t.parse::<u32>().unwrap()
        }
    };
    GenExpr {
        text: text.to_owned(),
        seconds: 1,
        minutes: parse(&MINUTE, fields[0]),
        hours: parse(&HOUR, fields[1]),
        days_of_month: parse(&DAY_OF_MONTH, fields[2]),
        months: parse(&MONTH, fields[3]),
        days_of_week: fold_sunday(parse(&DAY_OF_WEEK, fields[4])),
        days_either: fields[2] != "*" && fields[4] != "*",
        fixed_time: fields[0] != "*" && fields[1] != "*",
        ext: Ext::default(),
        years: None,
    }
}

fn expr_strategy() -> BoxedStrategy<GenExpr> {
    let fields = (
        prop::option::weighted(0.25, field_strategy(&SECOND, false)),
        field_strategy(&MINUTE, false),
        field_strategy(&HOUR, false),
        field_strategy(&DAY_OF_MONTH, true),
        field_strategy(&MONTH, false),
        field_strategy(&DAY_OF_WEEK, true),
        prop::collection::vec(separator(), 1..=6),
        prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\t ")],
        prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just(" \n")],
        prop::option::weighted(0.15, year_strategy()),
    )
        .prop_map(|(s, mi, h, dom, mo, dow, seps, lead, trail, year)| {
            assemble_with_years(
                s.as_ref(),
                &[mi, h, dom, mo, dow],
                year.as_ref(),
                &seps,
                (lead, trail),
            )
        });
    let shorthands = prop::sample::select(vec![
        ("@yearly", ["0", "0", "1", "1", "*"]),
        ("@Annually", ["0", "0", "1", "1", "*"]),
        ("@monthly", ["0", "0", "1", "*", "*"]),
        ("@WEEKLY", ["0", "0", "*", "*", "0"]),
        ("@daily", ["0", "0", "*", "*", "*"]),
        ("@midnight", ["0", "0", "*", "*", "*"]),
        ("@hourly", ["0", "*", "*", "*", "*"]),
    ])
    .prop_map(|(t, f)| shorthand(t, f));
    prop_oneof![20 => fields, 1 => shorthands].boxed()
}

fn wall_matches(e: &GenExpr, w: NaiveDateTime) -> bool {
    bit(e.seconds, w.second())
        && bit(e.minutes, w.minute())
        && bit(e.hours, w.hour())
        && bit(e.months, w.month())
        && day_matches(e, w.date())
}

/// The fields above seconds: whether any second of this wall-clock minute could match.
fn minute_matches(e: &GenExpr, w: NaiveDateTime) -> bool {
    bit(e.minutes, w.minute())
        && bit(e.hours, w.hour())
        && bit(e.months, w.month())
        && day_matches(e, w.date())
}

fn day_matches(e: &GenExpr, d: NaiveDate) -> bool {
    if let Some(years) = &e.years {
        if years.binary_search(&d.year()).is_err() {
            return false;
        }
    }
    let mut dom = bit(e.days_of_month, d.day());
    let mut dow = bit(e.days_of_week, d.weekday().num_days_from_sunday());
    if !e.ext.is_empty() {
        dom = dom || extension_dom(&e.ext, d);
        dow = dow || extension_dow(&e.ext, d);
    }
    if e.days_either {
        dom || dow
    } else {
        dom && dow
    }
}

/// The days of `d`'s month, read off the calendar.
fn month_of(d: NaiveDate) -> Vec<NaiveDate> {
    let first = d.with_day(1).unwrap();
    first
        .iter_days()
        .take_while(|x| x.month() == d.month())
        .collect()
}

fn is_weekday(d: NaiveDate) -> bool {
    !matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun)
}

/// `L-n`, `LW`, `nW`: the month's days counted from the end, its last weekday, and the weekday
/// closest to day `n` (there is never a tie: Saturday's Friday is one day away, its Monday two).
fn extension_dom(ext: &Ext, d: NaiveDate) -> bool {
    let month = month_of(d);
    let from_end = month.len() - d.day() as usize;
    if bit(u64::from(ext.from_end), from_end as u32) {
        return true;
    }
    let weekdays: Vec<NaiveDate> = month.iter().copied().filter(|&x| is_weekday(x)).collect();
    if ext.last_weekday && weekdays.last() == Some(&d) {
        return true;
    }
    (1..=31u32)
        .filter(|&n| bit(u64::from(ext.nearest), n) && n as usize <= month.len())
        .any(|n| weekdays.iter().min_by_key(|x| x.day().abs_diff(n)) == Some(&d))
}

/// `wL`, `w#k`: the same weekdays of the month in order.
fn extension_dow(ext: &Ext, d: NaiveDate) -> bool {
    let w = d.weekday().num_days_from_sunday();
    let same: Vec<NaiveDate> = month_of(d)
        .into_iter()
        .filter(|x| x.weekday() == d.weekday())
        .collect();
    let k = same.iter().position(|&x| x == d).unwrap() + 1;
    (bit(u64::from(ext.last), w) && k == same.len())
        || bit(u64::from(ext.nth[w as usize]), k as u32)
}

/// Whether some calendar day can ever match: every day of the expression's years is tried until one
/// does, or without a year field every day of 2001-2028, one whole 28-year cycle of weekdays with no
/// leap day skipped, in which every month starts on every weekday (February in common and in leap
/// years), which is all the day rules look at.
fn can_fire(e: &GenExpr) -> bool {
    if e.months == 0 {
        return false;
    }
    let (first, last) = match &e.years {
        Some(years) => (years[0], years[years.len() - 1]),
        None => (2001, 2028),
    };
    let start = NaiveDate::from_ymd_opt(first, 1, 1).unwrap();
    let end = NaiveDate::from_ymd_opt(last, 12, 31).unwrap();
    start
        .iter_days()
        .take_while(|d| *d <= end)
        .any(|d| bit(e.months, d.month()) && day_matches(e, d))
}

/// For an expression with a year field whose answers ran out after `t`: no instant after `t` fires.
/// Each later day that matches (as a day) is searched instant by instant.
fn assert_no_fire_after(e: &GenExpr, tz: Tz, t: DateTime<Utc>) -> Result<(), TestCaseError> {
    let Some(years) = &e.years else {
        return Ok(());
    };
    let last = NaiveDate::from_ymd_opt(years[years.len() - 1], 12, 31).unwrap();
    let mut day = t.date_naive().pred_opt().unwrap();
    while day <= last {
        if bit(e.months, day.month()) && day_matches(e, day) {
            // Every instant whose wall clock falls on `day`, with room for any UTC offset.
            let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
            let lo = (midnight - 15 * 3600).max(t.timestamp() + 1);
            let hi = midnight + 39 * 3600;
            if lo < hi {
                assert_none_fire(e, tz, lo, hi)?;
            }
        }
        day = day.succ_opt().unwrap();
    }
    Ok(())
}

fn offset_secs(tz: Tz, t: DateTime<Utc>) -> i64 {
    i64::from(t.with_timezone(&tz).offset().fix().local_minus_utc())
}

/// The oracle: should the expression fire at the whole-second instant `t` in zone `tz`?
///
/// - A wall-clock match fires, except that a fixed-time job fires only at the first of two
///   occurrences of a repeated (fall-back) wall-clock time.
/// - At a spring-forward instant, a fixed-time job whose match fell inside the skipped wall-clock
///   interval fires right after the gap (at the instant of the change).
fn is_fire(e: &GenExpr, tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz);
    let wall = local.naive_local();
    if wall_matches(e, wall) {
        if e.fixed_time {
            if let LocalResult::Ambiguous(first, _) = tz.from_local_datetime(&wall) {
                return first == local;
            }
        }
        return true;
    }
    if e.fixed_time {
        let before = offset_secs(tz, t - TimeDelta::seconds(1));
        let now = offset_secs(tz, t);
        if now > before {
            // Wall-clock times [t + before, t + now) never happen.
            let start = t.naive_utc() + TimeDelta::seconds(before);
            return (0..now - before).any(|i| wall_matches(e, start + TimeDelta::seconds(i)));
        }
    }
    false
}

/// Asserts that no whole second in `[lo, hi)` fires. Offsets in the tested zones are whole minutes,
/// and so are their changes, so a minute whose wall clock cannot match is skipped in one step.
fn assert_none_fire(e: &GenExpr, tz: Tz, lo: i64, hi: i64) -> Result<(), TestCaseError> {
    let mut t = lo;
    while t < hi {
        let instant = DateTime::from_timestamp(t, 0).unwrap();
        let minute_end = (t.div_euclid(60) + 1) * 60;
        let at_minute_start = t.rem_euclid(60) == 0 || t == lo;
        let wall = instant.with_timezone(&tz).naive_local();
        if at_minute_start && !minute_matches(e, wall) {
            // Only a DST change (at a minute boundary) could make this minute fire.
            prop_assert!(
                !is_fire(e, tz, instant),
                "'{}' in {tz}: skipped fire at {instant}",
                e.text
            );
            t = minute_end;
            continue;
        }
        prop_assert!(
            !is_fire(e, tz, instant),
            "'{}' in {tz}: skipped fire at {instant}",
            e.text
        );
        t += 1;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Instants and zones
// ---------------------------------------------------------------------------------------------------

const Y1990: i64 = 631_152_000;
const Y2090: i64 = 3_786_825_600;

fn instant_strategy() -> impl Strategy<Value = DateTime<Utc>> {
    let nanos = prop_oneof![3 => Just(0u32), 1 => 0u32..1_000_000_000];
    let uniform = (Y1990..Y2090, nanos.clone()).prop_map(|(s, n)| DateTime::from_timestamp(s, n));
    // Days around the DST changes of the tested zones (March/April and October/November).
    let near_dst = (
        1990i32..2090,
        prop::sample::select(vec![3u32, 4, 10, 11]),
        1u32..=31,
        0i64..86_400,
        nanos,
    )
        .prop_map(|(y, m, d, s, n)| {
            let date = NaiveDate::from_ymd_opt(y, m, d.min(30))?;
            let t = date.and_hms_opt(0, 0, 0)?.and_utc() + TimeDelta::seconds(s);
            DateTime::from_timestamp(t.timestamp(), n)
        });
    prop_oneof![uniform, near_dst].prop_map(|t| t.unwrap())
}

fn zone_strategy() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        Tz::UTC,
        Tz::America__New_York,
        Tz::Europe__Berlin,
        Tz::Australia__Lord_Howe,
    ])
}

fn schedule_in(text: &str, tz: Tz) -> Schedule {
    if tz == Tz::UTC {
        text.parse::<Schedule>()
    } else {
        Schedule::cron_in(text, tz.name())
    }
    .unwrap_or_else(|e| panic!("generated '{text}' must parse: {e}"))
}

/// Checks a chain of `count` answers: increasing, whole seconds, each one a fire per the oracle, and
/// (where consecutive answers are less than `brute_force_window` apart) nothing skipped between them.
fn check_chain(
    e: &GenExpr,
    tz: Tz,
    start: DateTime<Utc>,
    count: usize,
    brute_force_window: Option<i64>,
) -> Result<(), TestCaseError> {
    let schedule = schedule_in(&e.text, tz);
    let fires = can_fire(e);
    prop_assert_eq!(
        schedule.never_fires(),
        !fires,
        "never_fires disagrees for '{}'",
        &e.text
    );
    let mut previous = start;
    for i in 0..count {
        let Some(next) = schedule.next_after(previous) else {
            if e.years.is_some() {
                // The years ran out (or never held a match).
                return assert_no_fire_after(e, tz, previous).map_err(|err| {
                    TestCaseError::fail(format!("{err} (no answer after {previous})"))
                });
            }
            prop_assert!(!fires, "'{}' in {tz}: no answer after {previous}", &e.text);
            return Ok(());
        };
        prop_assert!(fires, "'{}' can never fire but got {next}", &e.text);
        prop_assert!(
            next > previous,
            "'{}' in {tz}: answer {next} not after {previous}",
            &e.text
        );
        prop_assert_eq!(next.timestamp_subsec_nanos(), 0, "not a whole second");
        prop_assert!(
            is_fire(e, tz, next),
            "'{}' in {tz}: answer #{i} {next} (wall {}) after {previous} does not match",
            &e.text,
            next.with_timezone(&tz)
        );
        if let Some(window) = brute_force_window {
            // Whole seconds strictly after `previous` and strictly before `next`.
            let lo = previous.timestamp() + 1;
            let hi = next.timestamp();
            if hi - lo < window {
                assert_none_fire(e, tz, lo, hi).map_err(|err| {
                    TestCaseError::fail(format!("{err} (between {previous} and {next})"))
                })?;
            }
        }
        previous = next;
    }
    Ok(())
}

/// `cases` by default; `PROPTEST_CASES=N` runs more (or fewer) for a deeper search.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The oracle itself, on the examples of the crate docs.
#[test]
fn oracle_follows_the_documented_rules() {
    let utc = |s: &str| {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    };
    let fires = |e: &GenExpr, tz: Tz, t: &str| is_fire(e, tz, utc(t));
    let ny = Tz::America__New_York;
    let field = |spec: &Spec, text: &str, bits: u64| GenField {
        text: text.to_owned(),
        bits: if text == "*" { full(spec) } else { bits },
        ext: Ext::default(),
    };
    let at = |minute: (&str, u64), hour: (&str, u64)| {
        assemble(
            None,
            &[
                field(&MINUTE, minute.0, minute.1),
                field(&HOUR, hour.0, hour.1),
                field(&DAY_OF_MONTH, "*", 0),
                field(&MONTH, "*", 0),
                field(&DAY_OF_WEEK, "*", 0),
            ],
            &[" "],
            ("", ""),
        )
    };
    // Spring forward in New York, 2024-03-10 07:00Z: 02:00-02:59 EST never happens.
    let fixed = at(("30", 1 << 30), ("2", 1 << 2));
    assert!(fixed.fixed_time);
    assert!(fires(&fixed, ny, "2024-03-10 07:00:00"));
    assert!(!fires(&fixed, ny, "2024-03-10 07:30:00"));
    assert!(fires(&fixed, ny, "2024-03-11 06:30:00"));
    let wildcard = at(("30", 1 << 30), ("*", 0));
    assert!(!wildcard.fixed_time);
    assert!(!fires(&wildcard, ny, "2024-03-10 07:00:00"));
    assert!(fires(&wildcard, ny, "2024-03-10 06:30:00")); // 01:30 EST
    assert!(fires(&wildcard, ny, "2024-03-10 07:30:00")); // 03:30 EDT
                                                          // Fall back, 2024-11-03 06:00Z: 01:00-01:59 happens twice.
    let fixed = at(("30", 1 << 30), ("1", 1 << 1));
    assert!(fires(&fixed, ny, "2024-11-03 05:30:00"));
    assert!(!fires(&fixed, ny, "2024-11-03 06:30:00"));
    assert!(fires(&wildcard, ny, "2024-11-03 05:30:00"));
    assert!(fires(&wildcard, ny, "2024-11-03 06:30:00"));
    // Vixie's day rule: 1st, 15th or Monday when both are restricted; only Mondays with `*/1`.
    let days = |dom: &str, dom_bits: u64| {
        assemble(
            None,
            &[
                field(&MINUTE, "0", 1),
                field(&HOUR, "0", 1),
                field(&DAY_OF_MONTH, dom, dom_bits),
                field(&MONTH, "*", 0),
                field(&DAY_OF_WEEK, "MON", 1 << 1),
            ],
            &[" "],
            ("", ""),
        )
    };
    let either = days("1,15", 1 << 1 | 1 << 15);
    assert!(fires(&either, Tz::UTC, "2024-04-01 00:00:00")); // a Monday and the 1st
    assert!(fires(&either, Tz::UTC, "2024-04-08 00:00:00")); // a Monday
    assert!(fires(&either, Tz::UTC, "2024-05-15 00:00:00")); // the 15th, a Wednesday
    assert!(!fires(&either, Tz::UTC, "2024-04-09 00:00:00"));
    let both = days("*/1", full(&DAY_OF_MONTH));
    assert!(fires(&both, Tz::UTC, "2024-04-08 00:00:00"));
    assert!(!fires(&both, Tz::UTC, "2024-05-15 00:00:00"));
}

// ---------------------------------------------------------------------------------------------------
// Parsing never panics
// ---------------------------------------------------------------------------------------------------

fn cron_like_string() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        (0u64..70).prop_map(|n| n.to_string()),
        Just("*".to_owned()),
        Just("/".to_owned()),
        Just("-".to_owned()),
        Just(",".to_owned()),
        Just("?".to_owned()),
        Just("L".to_owned()),
        Just("#".to_owned()),
        prop::sample::select(vec![
            "W", "l", "w", "LW", "L-", "#5", "#0", "FRIL", "5L", "2099", "1970", "2100"
        ])
        .prop_map(str::to_owned),
        Just("99999999999999999999".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("255".to_owned()),
        Just("256".to_owned()),
        Just("-1".to_owned()),
        prop::sample::select(vec![
            "JAN", "feb", "Dec", "SUN", "mon", "Sat", "FOO", "MONDAY", "é", "٣", "１",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(vec![
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
            "@reboot",
            "@",
            "@every",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(vec![" ", " ", " ", "\t", "\n", "\u{a0}", "\u{2003}"])
            .prop_map(str::to_owned),
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

/// Whatever parsed must also answer without panicking.
fn exercise(schedule: &Schedule, t: DateTime<Utc>) {
    let _ = schedule.never_fires();
    let _ = schedule.to_string();
    if let Some(next) = schedule.next_after(t) {
        assert!(next > t);
        let _ = schedule.next_after(next);
    }
    let _ = schedule.next_after(DateTime::<Utc>::MAX_UTC);
    let _ = schedule.next_after(DateTime::<Utc>::MIN_UTC);
}

fn f64_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 2.0,
            5e-324,
            1e-9,
            0.999e-9,
            0.5,
            1.0,
            -1.0,
            9.2e9,
            9.3e9,
            1.8e19,
            f64::MAX,
            f64::MIN,
        ]),
        (1e-12f64..1e12),
        (-1e12f64..0.0),
    ]
}

fn zone_name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "UTC",
            "utc",
            "Etc/UTC",
            "Zulu",
            "America/New_York",
            "america/new_york",
            "Europe/Berlin",
            "Europe/Berlin ",
            " Europe/Berlin",
            "Australia/Lord_Howe",
            "Etc/GMT+5",
            "Etc/GMT-14",
            "Mars/Olympus",
            "",
            "/",
            "Local",
            "EST5EDT",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z_/+-]{0,24}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_never_panics_on_any_string(text in any::<String>(), t in instant_strategy()) {
        if let Ok(schedule) = text.parse::<Schedule>() {
            exercise(&schedule, t);
        }
        if let Ok(schedule) = Schedule::parse_interval(&text) {
            exercise(&schedule, t);
        }
    }

    #[test]
    fn parse_never_panics_on_cron_like_strings(
        text in cron_like_string(),
        t in instant_strategy(),
    ) {
        if let Ok(schedule) = text.parse::<Schedule>() {
            prop_assert_eq!(schedule.expression(), Some(text.trim()));
            exercise(&schedule, t);
        }
        if let Ok(schedule) = Schedule::parse_interval(&text) {
            exercise(&schedule, t);
        }
    }

    #[test]
    fn cron_in_accepts_exactly_the_known_zones(zone in zone_name_strategy(), t in instant_strategy()) {
        let result = Schedule::cron_in("*/5 * * * *", &zone);
        prop_assert_eq!(result.is_ok(), zone.parse::<Tz>().is_ok(), "zone {:?}", zone);
        if let Ok(schedule) = result {
            prop_assert_eq!(schedule.time_zone(), Some(zone.as_str()));
            exercise(&schedule, t);
        }
        // A bad expression is an error whatever the zone.
        prop_assert!(Schedule::cron_in("61 * * * *", &zone).is_err());
    }

    #[test]
    fn every_secs_rejects_what_is_not_a_positive_period(seconds in f64_strategy(), t in instant_strategy()) {
        let result = Schedule::every_secs(seconds);
        let representable = Duration::try_from_secs_f64(seconds)
            .is_ok_and(|d| !d.is_zero() && d.as_nanos() <= i64::MAX as u128);
        let valid = seconds.is_finite() && seconds > 0.0 && representable;
        prop_assert_eq!(result.is_ok(), valid, "every_secs({:e})", seconds);
        if let Ok(schedule) = result {
            prop_assert_eq!(schedule.period(), Duration::try_from_secs_f64(seconds).ok());
            exercise(&schedule, t);
        }
        let interval = Schedule::parse_interval(&seconds.to_string());
        prop_assert_eq!(interval.is_ok(), valid, "parse_interval({})", seconds);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn suggestions_never_panic_and_name_only_real_things(
        zone in zone_name_strategy(),
        text in any::<String>(),
    ) {
        if let Some(suggested) = suggest::time_zone(&zone) {
            prop_assert!(suggested.parse::<Tz>().is_ok(), "{:?} → {:?}", zone, suggested);
            prop_assert_ne!(suggested, zone.as_str());
        }
        // The error message, which asks for a suggestion, can always be shown.
        if let Err(error) = Schedule::cron_in("* * * * *", &zone) {
            prop_assert!(error.to_string().starts_with("unknown time zone '"));
        }
        if let Some(seconds) = suggest::period_secs(&text) {
            prop_assert!(seconds.is_finite() && seconds > 0.0, "{:?} → {}", text, seconds);
        }
        let names = ["interval", "once_after", "on_start", "name", "tz"];
        for near in suggest::closest(&text, names) {
            prop_assert!(names.contains(&near));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Answers match, increase, and skip nothing
// ---------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn answers_increase_and_match(e in expr_strategy(), tz in zone_strategy(), start in instant_strategy()) {
        check_chain(&e, tz, start, 20, None)?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// `Display` gives back the expression and zone, and `FromStr` reads them: the same schedule.
    #[test]
    fn display_parses_back(e in expr_strategy(), tz in zone_strategy(), start in instant_strategy()) {
        let schedule = schedule_in(&e.text, tz);
        let text = schedule.to_string();
        let back: Schedule = text.parse().map_err(|err| TestCaseError::fail(format!("'{text}': {err}")))?;
        prop_assert_eq!(back.expression(), Some(e.text.trim()));
        prop_assert_eq!(back.time_zone(), (tz != Tz::UTC).then_some(tz.name()));
        prop_assert_eq!(back.next_after(start), schedule.next_after(start));
        prop_assert_eq!(&back, &schedule);
        let sentence = schedule.describe();
        prop_assert!(sentence.starts_with(char::is_uppercase), "'{}' reads {:?}", &e.text, sentence);
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn no_fire_is_skipped_in_utc(e in expr_strategy(), start in instant_strategy()) {
        check_chain(&e, Tz::UTC, start, 20, Some(2 * 86_400))?;
    }

    #[test]
    fn no_fire_is_skipped_across_dst(e in expr_strategy(), tz in zone_strategy(), start in instant_strategy()) {
        check_chain(&e, tz, start, 12, Some(2 * 86_400))?;
    }
}

// ---------------------------------------------------------------------------------------------------
// Fixed periods
// ---------------------------------------------------------------------------------------------------

fn period_strategy() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..2_000_000_000).prop_map(Duration::from_nanos),
        (1u64..10_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (1u64..=9_223_372_036).prop_map(Duration::from_secs),
        Just(Duration::from_nanos(i64::MAX as u64)),
        Just(Duration::from_nanos(1)),
    ]
}

fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn anchored_periods_stay_on_the_grid(
        period in period_strategy(),
        anchor in instant_strategy(),
        offset_nanos in -(10i64.pow(15))..10i64.pow(15),
    ) {
        let schedule = Schedule::every(period).unwrap().anchored_at(anchor);
        prop_assert_eq!(schedule.anchor(), Some(anchor));
        let d = period.as_nanos() as i128;
        let mut t = anchor + TimeDelta::nanoseconds(offset_nanos);
        for _ in 0..20 {
            // 20 periods of at most ~292 years from 1990-2090 stay well within `DateTime`.
            let next = schedule.next_after(t);
            prop_assert!(next.is_some(), "no tick after {}", t);
            let next = next.unwrap();
            prop_assert!(next > t, "{next} not after {t}");
            prop_assert!(nanos(next) - nanos(t) <= d, "{next} more than one period after {t}");
            prop_assert_eq!((nanos(next) - nanos(anchor)).rem_euclid(d), 0, "{} off the grid", next);
            t = next;
        }
    }

    #[test]
    fn periods_and_delays_print_and_parse_back(period in period_strategy()) {
        let every = Schedule::every(period).unwrap();
        prop_assert_eq!(every.to_string().parse::<Schedule>(), Ok(every.clone()), "{}", every);
        let once = Schedule::once_after(period).unwrap();
        prop_assert_eq!(once.to_string().parse::<Schedule>(), Ok(once.clone()), "{}", once);
        let at = Schedule::once_at(DateTime::from_timestamp(period.as_secs() as i64, period.subsec_nanos()).unwrap());
        prop_assert_eq!(at.to_string().parse::<Schedule>(), Ok(at.clone()), "{}", at);
    }

    #[test]
    fn unanchored_periods_count_from_the_question(period in period_strategy(), t in instant_strategy()) {
        let schedule = Schedule::every(period).unwrap();
        let expected = nanos(t) + period.as_nanos() as i128;
        let next = schedule.next_after(t).unwrap();
        prop_assert_eq!(nanos(next), expected);
    }
}
