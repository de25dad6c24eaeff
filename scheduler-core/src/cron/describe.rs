//! Plain English for a cron expression, built from the sets it stands for rather than from its text,
//! so that `*/15`, `0,15,30,45` and `0-59/15` all read "Every 15 minutes".

use super::days::{DomRules, DowRules};
use super::year::Years;
use super::Cron;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const NTH: [&str; 6] = ["", "first", "second", "third", "fourth", "fifth"];
/// Up to this many clock times are listed one by one ("At 09:00 and 17:30").
const MAX_LISTED_TIMES: usize = 6;

impl Cron {
    /// The expression as a sentence, such as "At 09:00, Monday through Friday".
    pub(crate) fn describe(&self) -> String {
        let mut text = self.time_clause();
        text.push_str(&self.day_clause());
        if self.months != 0b1_1111_1111_1110 {
            let months = values(u64::from(self.months), 1, 12);
            text.push_str(" in ");
            text.push_str(&list(&runs(&months, |m| MONTHS[m as usize - 1].to_owned())));
        }
        if let Some(years) = self.years() {
            text.push_str(&year_clause(years));
        }
        text
    }

    fn time_clause(&self) -> String {
        let seconds = values(self.seconds, 0, 59);
        let minutes = values(self.minutes, 0, 59);
        let hours = values(u64::from(self.hours), 0, 23);
        let seconds_matter = self.seconds != 1;
        let (all_s, all_m, all_h) = (seconds.len() == 60, minutes.len() == 60, hours.len() == 24);
        if let ([0], [m], Some(n)) = (&seconds[..], &minutes[..], step(&hours, 0, 23)) {
            return if *m == 0 {
                format!("Every {n} hours")
            } else {
                format!("Every {n} hours, at minute {m}")
            };
        }
        if !all_h
            && !all_m
            && !all_s
            && seconds.len() * minutes.len() * hours.len() <= MAX_LISTED_TIMES
        {
            let mut times = Vec::new();
            for &h in &hours {
                for &m in &minutes {
                    for &s in &seconds {
                        times.push(if seconds_matter {
                            format!("{h:02}:{m:02}:{s:02}")
                        } else {
                            format!("{h:02}:{m:02}")
                        });
                    }
                }
            }
            return format!("At {}", list(&times));
        }
        if seconds_matter {
            let lead = match (all_s, step(&seconds, 0, 59)) {
                (true, _) => "Every second".to_owned(),
                (false, Some(n)) => format!("Every {n} seconds"),
                (false, None) => format!("At {}", numbered("second", &seconds)),
            };
            return match (all_m, all_h) {
                (true, true) => lead,
                (true, false) => format!("{lead}, {}", hours_qualifier(&hours)),
                (false, true) => {
                    format!("{lead}, at {} of every hour", numbered("minute", &minutes))
                }
                (false, false) => format!(
                    "{lead}, at {} of {}",
                    numbered("minute", &minutes),
                    numbered("hour", &hours)
                ),
            };
        }
        let minute_step = step(&minutes, 0, 59);
        if all_h {
            return match (all_m, minute_step) {
                (true, _) => "Every minute".to_owned(),
                _ if minutes == [0] => "Every hour".to_owned(),
                (false, Some(n)) => format!("Every {n} minutes"),
                (false, None) => format!("At {} of every hour", numbered("minute", &minutes)),
            };
        }
        if all_m || minute_step.is_some() {
            let lead =
                minute_step.map_or("Every minute".to_owned(), |n| format!("Every {n} minutes"));
            return format!("{lead}, {}", hours_qualifier(&hours));
        }
        if let [m] = minutes[..] {
            if let Some((first, last)) = single_run(&hours) {
                return format!("Every hour from {first:02}:{m:02} through {last:02}:{m:02}");
            }
        }
        format!(
            "At {} of {}",
            numbered("minute", &minutes),
            numbered("hour", &hours)
        )
    }

    fn day_clause(&self) -> String {
        let (dom, dow) = match &self.extra {
            Some(extra) => (
                dom_phrase(self.days_of_month, &extra.dom),
                dow_phrase(self.days_of_week, extra.dow),
            ),
            None => (
                dom_phrase(self.days_of_month, &DomRules::default()),
                dow_phrase(self.days_of_week, DowRules::default()),
            ),
        };
        match (dom, dow) {
            (None, None) => String::new(),
            // Either field unrestricted makes every day match when they are ORed.
            (Some(_), None) | (None, Some(_)) if self.days_either => String::new(),
            (Some(dom), None) => format!(" on {dom}"),
            (None, Some(dow)) => format!(", {dow}"),
            (Some(dom), Some(dow)) if self.days_either => format!(" on {dom}, and {dow}"),
            (Some(dom), Some(dow)) => {
                format!(" on {dom}, if it is also {}", dow.trim_start_matches("on "))
            }
        }
    }
}

/// The day-of-month side, or `None` when it allows every day.
fn dom_phrase(bits: u32, rules: &DomRules) -> Option<String> {
    let days = values(u64::from(bits), 1, 31);
    if days.len() == 31 {
        return None;
    }
    let mut items = Vec::new();
    if !days.is_empty() {
        items.push(match (step(&days, 1, 31), &days[..]) {
            (Some(n), _) => format!("every {} day of the month", ordinal(n)),
            (None, [day]) => format!("day {day} of the month"),
            (None, _) => format!(
                "days {} of the month",
                list(&runs(&days, |d| d.to_string()))
            ),
        });
    }
    if rules.from_end & 1 != 0 {
        items.push("the last day of the month".to_owned());
    }
    for n in values(u64::from(rules.from_end), 1, 30) {
        let days = if n == 1 { "day" } else { "days" };
        items.push(format!("{n} {days} before the last day of the month"));
    }
    if rules.last_weekday {
        items.push("the last weekday of the month".to_owned());
    }
    for n in values(u64::from(rules.nearest_weekday), 1, 31) {
        items.push(format!("the weekday nearest day {n} of the month"));
    }
    (!items.is_empty()).then(|| list(&items))
}

/// The day-of-week side, or `None` when it allows every day. Starts with "on " unless it is one range
/// of weekdays ("Monday through Friday").
fn dow_phrase(bits: u8, rules: DowRules) -> Option<String> {
    let all = values(u64::from(bits), 0, 6);
    if all.len() == 7 {
        return None;
    }
    // Monday first, as a week is read.
    let mut monday_first: Vec<u32> = all.iter().map(|&w| (w + 6) % 7).collect();
    monday_first.sort_unstable();
    let name = |k: u32| WEEKDAYS[((k + 1) % 7) as usize].to_owned();
    let mut items = runs(&monday_first, name);
    let one_range = items.len() == 1 && monday_first.len() >= 3;
    for w in values(u64::from(rules.last), 0, 6) {
        items.push(format!("the last {} of the month", WEEKDAYS[w as usize]));
    }
    for (w, nth) in rules.nth.iter().enumerate() {
        for k in values(u64::from(*nth), 1, 5) {
            items.push(format!(
                "the {} {} of the month",
                NTH[k as usize], WEEKDAYS[w]
            ));
        }
    }
    if items.is_empty() {
        return None; // no weekday at all: only the day-of-month side can match
    }
    let text = list(&items);
    Some(if one_range && items.len() == 1 {
        text
    } else {
        format!("on {text}")
    })
}

fn year_clause(years: &Years) -> String {
    let all: Vec<u32> = years.iter().map(|y| y as u32).collect();
    match step_anywhere(&all) {
        Some(n) if all.len() > MAX_LISTED_TIMES => format!(
            " in every {} year from {} through {}",
            ordinal(n),
            all[0],
            all[all.len() - 1]
        ),
        _ => format!(" in {}", list(&runs(&all, |y| y.to_string()))),
    }
}

/// "hour 9", "hours 9 and 17", "hours 9 through 17".
fn numbered(unit: &str, vals: &[u32]) -> String {
    match vals {
        [v] => format!("{unit} {v}"),
        _ => format!("{unit}s {}", list(&runs(vals, |v| v.to_string()))),
    }
}

/// What limits a clause that repeats within the hour: "between 09:00 and 17:59", "every 2 hours",
/// "during hours 9, 12 and 15".
fn hours_qualifier(hours: &[u32]) -> String {
    if let Some((first, last)) = single_run(hours) {
        return format!("between {first:02}:00 and {last:02}:59");
    }
    if let Some(n) = step(hours, 0, 23) {
        return format!("every {n} hours");
    }
    format!("during {}", numbered("hour", hours))
}

/// The values `lo..=hi` whose bits are set.
fn values(bits: u64, lo: u32, hi: u32) -> Vec<u32> {
    (lo..=hi).filter(|v| bits & (1 << v) != 0).collect()
}

/// `Some(n)` when `vals` is exactly `lo, lo + n, lo + 2n, …` up to `hi`, with `n` at least 2 and at
/// least two values: what `*/n` gives.
fn step(vals: &[u32], lo: u32, hi: u32) -> Option<u32> {
    let n = step_anywhere(vals)?;
    (vals[0] == lo && vals[vals.len() - 1] + n > hi).then_some(n)
}

/// `Some(n)` when `vals` is an arithmetic progression of at least two values with step `n` ≥ 2.
fn step_anywhere(vals: &[u32]) -> Option<u32> {
    let [a, b, ..] = vals[..] else { return None };
    let n = b - a;
    (n >= 2 && vals.windows(2).all(|w| w[1] - w[0] == n)).then_some(n)
}

/// `(first, last)` when the hours `vals` are one unbroken run, also one that wraps past midnight
/// (22, 23, 0, 1 gives `(22, 1)`).
fn single_run(vals: &[u32]) -> Option<(u32, u32)> {
    let (&first, &last) = (vals.first()?, vals.last()?);
    if last - first + 1 == vals.len() as u32 {
        return Some((first, last));
    }
    // Wrapped: one gap, and the run touches both 0 and 23.
    let gaps: Vec<usize> = (1..vals.len())
        .filter(|&i| vals[i] != vals[i - 1] + 1)
        .collect();
    match gaps[..] {
        [i] if first == 0 && last == 23 => Some((vals[i], vals[i - 1])),
        _ => None,
    }
}

/// Sorted values as list items: runs of three or more become "a through b".
fn runs(vals: &[u32], name: impl Fn(u32) -> String) -> Vec<String> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < vals.len() {
        let mut j = i;
        while j + 1 < vals.len() && vals[j + 1] == vals[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            items.push(format!("{} through {}", name(vals[i]), name(vals[j])));
        } else {
            items.extend(vals[i..=j].iter().map(|&v| name(v)));
        }
        i = j + 1;
    }
    items
}

/// "a", "a and b", "a, b and c".
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
