//! [`Schedule`]: the one answer the engine gives, *when does this fire next?*

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::cron::Cron;
use crate::error::ScheduleError;
use crate::every::Every;
use crate::zone::{self, Zone};

/// When a service fires: a cron expression in a time zone, a fixed period, or once.
///
/// A `Schedule` is pure time math: [`next_after`](Schedule::next_after) never reads a clock, so the same
/// question always gets the same answer.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use scheduler_core::Schedule;
///
/// let every_five = "*/5 * * * *".parse::<Schedule>()?;
/// let t = Utc.with_ymd_and_hms(2024, 1, 1, 10, 2, 0).unwrap();
/// assert_eq!(every_five.next_after(t), Some(Utc.with_ymd_and_hms(2024, 1, 1, 10, 5, 0).unwrap()));
///
/// // 02:30 does not exist in New York on 2024-03-10: a fixed-time job runs right after the gap.
/// let nightly = Schedule::cron_in("30 2 * * *", "America/New_York")?;
/// let t = Utc.with_ymd_and_hms(2024, 3, 9, 12, 0, 0).unwrap();
/// assert_eq!(nightly.next_after(t), Some(Utc.with_ymd_and_hms(2024, 3, 10, 7, 0, 0).unwrap()));
///
/// // February never has a 30th.
/// assert_eq!("0 0 30 2 *".parse::<Schedule>()?.next_after(t), None);
/// # Ok::<(), scheduler_core::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Shared, so that cloning a schedule (once per service start) costs a reference count.
    Cron(Arc<CronIn>),
    Every(Every),
    /// One tick: at `at`, or, until anchored, `delay` after the instant asked about.
    Once {
        at: Option<DateTime<Utc>>,
        delay: Duration,
    },
}

/// A cron expression, the zone whose wall clock it reads, and how the user wrote both.
#[derive(Debug, PartialEq, Eq)]
struct CronIn {
    cron: Cron,
    zone: Zone,
    zone_name: Option<Box<str>>,
    expr: Box<str>,
}

impl Schedule {
    /// A cron expression evaluated in UTC; the same as `expr.parse::<Schedule>()`.
    ///
    /// # Errors
    /// A [`ScheduleError`] naming the field and token when the expression is malformed.
    pub fn cron(expr: &str) -> Result<Self, ScheduleError> {
        Schedule::cron_with_zone(expr, Zone::Utc, None)
    }

    fn cron_with_zone(
        expr: &str,
        zone: Zone,
        zone_name: Option<&str>,
    ) -> Result<Self, ScheduleError> {
        Ok(Schedule {
            kind: Kind::Cron(Arc::new(CronIn {
                cron: Cron::parse(expr)?,
                zone,
                zone_name: zone_name.map(Into::into),
                expr: expr.trim().into(),
            })),
        })
    }

    /// A cron expression evaluated on the wall clock of an IANA time zone, such as `"Europe/Berlin"`.
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin")?;
    /// assert_eq!(report.to_string(), "0 9 * * MON-FRI (Europe/Berlin)");
    /// assert!(Schedule::cron_in("0 9 * * *", "Mars/Olympus").is_err());
    /// # Ok::<(), scheduler_core::ScheduleError>(())
    /// ```
    ///
    /// # Errors
    /// A [`ScheduleError`] when the expression is malformed or the zone is unknown.
    pub fn cron_in(expr: &str, time_zone: &str) -> Result<Self, ScheduleError> {
        let zone = Zone::parse(time_zone)
            .ok_or_else(|| ScheduleError::UnknownTimeZone(time_zone.to_owned()))?;
        Schedule::cron_with_zone(expr, zone, Some(time_zone))
    }

    /// A fixed period, such as every 30 seconds. Fixed periods ignore the wall clock and DST.
    ///
    /// Unanchored, the next tick is one period after the instant asked about; a runtime anchors the
    /// schedule (see [`anchored_at`](Schedule::anchored_at)) so that ticks never drift.
    ///
    /// # Errors
    /// [`ScheduleError::InvalidPeriod`] for a zero period, or one too long to represent (~292 years).
    pub fn every(period: Duration) -> Result<Self, ScheduleError> {
        Ok(Schedule {
            kind: Kind::Every(Every::new(period)?),
        })
    }

    /// A fixed period given in (possibly fractional) seconds, as in `interval = 0.5`.
    ///
    /// # Errors
    /// [`ScheduleError::InvalidPeriod`] when `seconds` is zero, negative, NaN or infinite.
    pub fn every_secs(seconds: f64) -> Result<Self, ScheduleError> {
        Ok(Schedule {
            kind: Kind::Every(Every::from_secs_f64(seconds)?),
        })
    }

    /// A single tick at `at`: a one-shot job.
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// # use chrono::{TimeZone, Utc};
    /// let launch = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    /// let once = Schedule::once_at(launch);
    /// assert_eq!(once.next_after(launch - chrono::TimeDelta::days(1)), Some(launch));
    /// assert_eq!(once.next_after(launch), None);
    /// ```
    pub fn once_at(at: DateTime<Utc>) -> Self {
        Schedule {
            kind: Kind::Once {
                at: Some(at),
                delay: Duration::ZERO,
            },
        }
    }

    /// A single tick `delay` after the service starts: a one-shot job. A runtime anchors it at its
    /// start (see [`anchored_at`](Schedule::anchored_at)); unanchored, it counts from the instant asked
    /// about.
    ///
    /// # Errors
    /// [`ScheduleError::InvalidDelay`] for a delay too long to represent (~292 years).
    pub fn once_after(delay: Duration) -> Result<Self, ScheduleError> {
        if delay.as_nanos() > u128::from(i64::MAX.unsigned_abs()) {
            return Err(ScheduleError::InvalidDelay(format!("{delay:?}")));
        }
        Ok(Schedule {
            kind: Kind::Once { at: None, delay },
        })
    }

    /// [`once_after`](Schedule::once_after) in (possibly fractional) seconds, as in `once_after = 30`.
    ///
    /// # Errors
    /// [`ScheduleError::InvalidDelay`] when `seconds` is negative, NaN or infinite.
    pub fn once_after_secs(seconds: f64) -> Result<Self, ScheduleError> {
        if seconds == 0.0 {
            return Schedule::once_after(Duration::ZERO);
        }
        let invalid = || ScheduleError::InvalidDelay(seconds.to_string());
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(invalid());
        }
        let delay = Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?;
        Schedule::once_after(delay).map_err(|_| invalid())
    }

    /// Parses an interval as a user writes it in an attribute or config file: a number of seconds
    /// (`"30"`, `"0.5"`) or a cron expression (`"*/5 * * * *"`).
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// # use std::time::Duration;
    /// assert_eq!(Schedule::parse_interval("0.5")?.period(), Some(Duration::from_millis(500)));
    /// assert!(Schedule::parse_interval("@hourly")?.period().is_none());
    /// # Ok::<(), scheduler_core::ScheduleError>(())
    /// ```
    ///
    /// # Errors
    /// A [`ScheduleError`] for a non-positive number or a malformed cron expression.
    pub fn parse_interval(text: &str) -> Result<Self, ScheduleError> {
        match text.trim().parse::<f64>() {
            Ok(seconds) => Schedule::every_secs(seconds),
            Err(_) => Schedule::cron(text),
        }
    }

    /// Ticks of a fixed period fall on `anchor + k × period` for every whole `k`, and a `once_after`
    /// tick falls `delay` after `anchor`; other schedules are returned unchanged.
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// # use chrono::{TimeZone, Utc};
    /// # use std::time::Duration;
    /// let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    /// let every_10s = Schedule::every(Duration::from_secs(10))?.anchored_at(start);
    /// // However late we ask, the answer stays on the grid.
    /// let late = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 13).unwrap();
    /// assert_eq!(every_10s.next_after(late), Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 20).unwrap()));
    /// # Ok::<(), scheduler_core::ScheduleError>(())
    /// ```
    #[must_use]
    pub fn anchored_at(self, anchor: DateTime<Utc>) -> Self {
        match self.kind {
            Kind::Every(every) => Schedule {
                kind: Kind::Every(every.anchored_at(anchor)),
            },
            Kind::Once { at: None, delay } => Schedule {
                kind: Kind::Once {
                    at: TimeDelta::from_std(delay)
                        .ok()
                        .and_then(|delay| anchor.checked_add_signed(delay)),
                    delay,
                },
            },
            kind => Schedule { kind },
        }
    }

    /// The first tick of a schedule started at `start`: [`next_after`](Schedule::next_after)`(start)`,
    /// except that a one-shot instant equal to `start` (as `once_after(0)` anchored there) counts.
    pub fn first_tick(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Once { at: Some(at), .. } if *at == start => Some(*at),
            _ => self.next_after(start),
        }
    }

    /// The first fire instant strictly after `after`, or `None` when the schedule can never fire again
    /// (such as `0 0 30 2 *`, or an instant beyond what `DateTime` represents).
    ///
    /// Cron schedules fire on whole seconds; fixed periods keep nanosecond precision.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron(c) => zone::next_fire(&c.cron, c.zone, after),
            Kind::Every(every) => every.next_after(after),
            Kind::Once { at: Some(at), .. } => (*at > after).then_some(*at),
            Kind::Once { at: None, delay } => TimeDelta::from_std(*delay)
                .ok()
                .and_then(|delay| after.checked_add_signed(delay)),
        }
    }

    /// The period of a fixed-period schedule; `None` for cron.
    pub fn period(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Every(every) => Some(every.period()),
            Kind::Cron(_) | Kind::Once { .. } => None,
        }
    }

    /// The anchor of a fixed-period schedule, once [`anchored_at`](Schedule::anchored_at) set it.
    pub fn anchor(&self) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(every) => every.anchor(),
            Kind::Cron(_) | Kind::Once { .. } => None,
        }
    }

    /// The cron expression as written (trimmed); `None` for a fixed period.
    pub fn expression(&self) -> Option<&str> {
        match &self.kind {
            Kind::Cron(c) => Some(&c.expr),
            Kind::Every(_) | Kind::Once { .. } => None,
        }
    }

    /// The time zone given to [`cron_in`](Schedule::cron_in); `None` for UTC cron and fixed periods.
    pub fn time_zone(&self) -> Option<&str> {
        match &self.kind {
            Kind::Cron(c) => c.zone_name.as_deref(),
            Kind::Every(_) | Kind::Once { .. } => None,
        }
    }

    /// Whether the schedule can never fire at all, such as `0 0 31 4,6,9,11 *`.
    pub fn never_fires(&self) -> bool {
        match &self.kind {
            Kind::Cron(c) => !c.cron.can_fire(),
            Kind::Every(_) | Kind::Once { .. } => false,
        }
    }

    /// The schedule in plain English, for people: "At 09:00, Monday through Friday (Europe/Berlin)",
    /// "Every 15 minutes", "At 00:00 on the last day of the month", "Every 2.5 seconds".
    ///
    /// The sentence is made from what the schedule means, not from how it was written, so `*/15`
    /// and `0,15,30,45` read the same. It is meant for display and may be worded differently in a
    /// later version; use [`Display`](fmt::Display) for a form that parses back.
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin")?;
    /// assert_eq!(report.describe(), "At 09:00, Monday through Friday (Europe/Berlin)");
    /// assert_eq!("0 0 L * *".parse::<Schedule>()?.describe(), "At 00:00 on the last day of the month");
    /// assert_eq!(Schedule::every_secs(2.5)?.describe(), "Every 2.5 seconds");
    /// # Ok::<(), scheduler_core::ScheduleError>(())
    /// ```
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Cron(c) => match &c.zone_name {
                Some(zone) => format!("{} ({zone})", c.cron.describe()),
                None => c.cron.describe(),
            },
            Kind::Every(every) => format!("Every {}", duration_words(every.period())),
            Kind::Once { at: Some(at), .. } => {
                format!("Once, at {}", at.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            Kind::Once { at: None, delay } if delay.is_zero() => "Once, at the start".to_owned(),
            Kind::Once { at: None, delay } => {
                format!("Once, {} after the start", duration_words(*delay))
            }
        }
    }

    /// The fire instants after `after`, in order: [`next_after`](Schedule::next_after) applied
    /// again and again, so `schedule.upcoming(now).take(10)` is the next ten runs. The iterator ends
    /// when the schedule does (a one-shot after its tick, a year field after its last year).
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// # use chrono::{TimeZone, Utc};
    /// let schedule: Schedule = "0 12 * * FRI#1".parse()?; // noon on the first Friday of the month
    /// let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    /// let days: Vec<u32> = schedule.upcoming(t).take(3).map(|t| chrono::Datelike::day(&t)).collect();
    /// assert_eq!(days, [5, 2, 1]); // January 5, February 2, March 1 2024
    /// # Ok::<(), scheduler_core::ScheduleError>(())
    /// ```
    pub fn upcoming(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after), move |&t| self.next_after(t))
    }

    /// Whether this is a one-shot schedule ([`once_at`](Schedule::once_at) or
    /// [`once_after`](Schedule::once_after)).
    pub fn is_one_shot(&self) -> bool {
        matches!(self.kind, Kind::Once { .. })
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// A cron expression in UTC, or any text [`Display`](fmt::Display) gives: `expr (Zone/Name)`,
    /// `every 30s`, `once after 1.5s`, `once at <RFC 3339>`.
    ///
    /// ```
    /// # use scheduler_core::Schedule;
    /// let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin")?;
    /// assert_eq!(report.to_string().parse::<Schedule>()?, report);
    /// # Ok::<(), scheduler_core::ScheduleError>(())
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // The common case, a bare cron expression, goes straight to the parser.
        let lead = text.trim_start().as_bytes().first();
        if !matches!(lead, Some(b'e' | b'o')) && !text.contains('(') {
            return Schedule::cron(text);
        }
        let trimmed = text.trim();
        // No cron expression holds parentheses, so a trailing `(...)` can only be a zone.
        if let Some((expr, zone)) = trimmed
            .strip_suffix(')')
            .and_then(|rest| rest.rsplit_once(" ("))
        {
            return Schedule::cron_in(expr, zone);
        }
        if let Some(seconds) = trimmed
            .strip_prefix("every ")
            .and_then(|t| t.strip_suffix('s'))
        {
            let period = exact_secs(seconds)
                .ok_or_else(|| ScheduleError::InvalidPeriod(seconds.to_owned()))?;
            return Schedule::every(period);
        }
        if let Some(seconds) = trimmed
            .strip_prefix("once after ")
            .and_then(|t| t.strip_suffix('s'))
        {
            let delay = exact_secs(seconds)
                .ok_or_else(|| ScheduleError::InvalidDelay(seconds.to_owned()))?;
            return Schedule::once_after(delay);
        }
        if let Some(at) = trimmed.strip_prefix("once at ") {
            if let Ok(at) = DateTime::parse_from_rfc3339(at) {
                return Ok(Schedule::once_at(at.with_timezone(&Utc)));
            }
        }
        Schedule::cron(text)
    }
}

impl fmt::Display for Schedule {
    /// The expression as written with its zone (`0 9 * * MON-FRI (Europe/Berlin)`), `every 30s`,
    /// `once after 1.5s` or `once at 2030-01-01T00:00:00+00:00`; [`FromStr`] reads each back (a
    /// period's anchor is not part of the text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Cron(c) => match &c.zone_name {
                Some(zone) => write!(f, "{} ({zone})", c.expr),
                None => f.write_str(&c.expr),
            },
            Kind::Every(every) => write!(f, "every {}s", SecondsText(every.period())),
            Kind::Once { at: Some(at), .. } => write!(f, "once at {}", at.to_rfc3339()),
            Kind::Once { at: None, delay } => write!(f, "once after {}s", SecondsText(*delay)),
        }
    }
}

/// A duration as an exact decimal number of seconds: `30`, `0.5`, `1.000000001`.
struct SecondsText(Duration);

impl fmt::Display for SecondsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        if nanos == 0 {
            return write!(f, "{secs}");
        }
        let fraction = format!("{nanos:09}");
        write!(f, "{secs}.{}", fraction.trim_end_matches('0'))
    }
}

/// Reads what [`SecondsText`] writes: whole seconds and up to nine decimals, exactly.
fn exact_secs(text: &str) -> Option<Duration> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 9
        || (text.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let nanos = format!("{fraction:0<9}").parse::<u32>().ok()?;
    Some(Duration::new(whole.parse().ok()?, nanos))
}

/// A duration in the largest unit that divides it: "5 minutes", "2 hours", "2.5 seconds", "second".
fn duration_words(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    let unit = |n: u64, one: &str, many: &str| {
        if n == 1 {
            one.to_owned()
        } else {
            format!("{n} {many}")
        }
    };
    match (secs, nanos) {
        (0, 0) => "0 seconds".to_owned(),
        (s, 0) if s % 86_400 == 0 => unit(s / 86_400, "day", "days"),
        (s, 0) if s % 3_600 == 0 => unit(s / 3_600, "hour", "hours"),
        (s, 0) if s % 60 == 0 => unit(s / 60, "minute", "minutes"),
        (s, 0) => unit(s, "second", "seconds"),
        (0, n) if n % 1_000_000 == 0 => {
            unit(u64::from(n / 1_000_000), "millisecond", "milliseconds")
        }
        _ => format!("{} seconds", SecondsText(d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn once_after_anchors_at_the_start_and_fires_once() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let once = Schedule::once_after(Duration::from_secs(30))
            .unwrap()
            .anchored_at(start);
        let at = start + TimeDelta::seconds(30);
        assert_eq!(once.first_tick(start), Some(at));
        assert_eq!(once.next_after(at), None);
        assert_eq!(once.to_string(), format!("once at {}", at.to_rfc3339()));
        let immediately = Schedule::once_after_secs(0.0).unwrap().anchored_at(start);
        assert_eq!(immediately.first_tick(start), Some(start));
        assert_eq!(
            Schedule::once_after_secs(1.5).unwrap().to_string(),
            "once after 1.5s"
        );
    }

    #[test]
    fn once_at_in_the_past_never_fires() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let past = Schedule::once_at(start - TimeDelta::seconds(1));
        assert_eq!(past.first_tick(start), None);
    }

    #[test]
    fn bad_delays_are_errors() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(Schedule::once_after_secs(bad).is_err(), "{bad}");
        }
    }
}
