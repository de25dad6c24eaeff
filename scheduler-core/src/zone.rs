//! Mapping wall-clock matches onto the UTC timeline, with Vixie cron's DST rules.
//!
//! The search keeps one invariant: `from` is an instant (whole seconds) such that no fire instant lies
//! in `(after, from)`. Each pass takes the UTC offset at `from`, finds the next wall-clock match under
//! that offset, and either returns it or advances `from` to the first offset change before it:
//!
//! ```text
//! spring forward (New York, 2024-03-10), offset -5h -> -4h at 07:00Z
//!   wall clock  01:00 ─ 01:59:59 │ 03:00 ─ …        02:00-02:59 never happens
//!   fixed-time `30 2 * * *`      → fires once at 03:00 EDT (07:00Z), the first instant after the gap
//!   wildcard   `30 * * * *`      → 02:30 is skipped; next fire 03:30 EDT
//!
//! fall back (New York, 2024-11-03), offset -4h -> -5h at 06:00Z
//!   wall clock  00:00 ─ 01:59:59 EDT │ 01:00 ─ 01:59:59 EST │ 02:00 …
//!   fixed-time `30 1 * * *`      → 01:30 EDT (05:30Z) only
//!   wildcard   `30 * * * *`      → 01:30 EDT (05:30Z) and 01:30 EST (06:30Z)
//! ```

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::cron::Cron;

/// Where a cron expression reads its wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    /// UTC: no DST, so the wall-clock match is the answer.
    Utc,
    /// An IANA zone from the bundled database.
    Named(Tz),
}

impl Zone {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let tz: Tz = name.parse().ok()?;
        Some(
            if matches!(
                tz,
                Tz::UTC
                    | Tz::Etc__UTC
                    | Tz::Etc__UCT
                    | Tz::UCT
                    | Tz::Zulu
                    | Tz::Etc__Zulu
                    | Tz::Universal
                    | Tz::Etc__Universal
            ) {
                Zone::Utc
            } else {
                Zone::Named(tz)
            },
        )
    }
}

/// Every pass crosses one offset change or skips one repeated wall-clock time; 400 years hold fewer
/// than this many.
const MAX_PASSES: usize = 4_000;
/// Offset changes are assumed to be at least this far apart (true of every zone in the database since
/// the 1970s); the search probes the offset at this step.
const PROBE: TimeDelta = TimeDelta::hours(12);

/// The first fire instant strictly after `after`.
pub(crate) fn next_fire(cron: &Cron, zone: Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let from = DateTime::from_timestamp(after.timestamp().checked_add(1)?, 0)?;
    match zone {
        Zone::Utc => cron.next_match(from.naive_utc()).map(|t| t.and_utc()),
        Zone::Named(tz) => next_in(cron, tz, from),
    }
}

fn next_in(cron: &Cron, tz: Tz, mut from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    for _ in 0..MAX_PASSES {
        let offset = offset_at(tz, from);
        let wall = from.naive_utc().checked_add_signed(offset)?;
        let matched = cron.next_match(wall)?;
        let candidate = matched.checked_sub_signed(offset)?.and_utc();
        if let Some(change) = first_offset_change(tz, from, candidate, offset) {
            let new_offset = offset_at(tz, change);
            let gap_end = change.naive_utc().checked_add_signed(new_offset)?;
            if cron.is_fixed_time() && new_offset > offset && matched < gap_end {
                // The match fell into a spring-forward gap: a fixed-time job still runs, right after it.
                return Some(change);
            }
            from = change;
            continue;
        }
        if cron.is_fixed_time() && is_second_occurrence(tz, matched, candidate) {
            from = candidate.checked_add_signed(TimeDelta::seconds(1))?;
            continue;
        }
        return Some(candidate);
    }
    None
}

fn offset_at(tz: Tz, instant: DateTime<Utc>) -> TimeDelta {
    let seconds = tz
        .offset_from_utc_datetime(&instant.naive_utc())
        .fix()
        .local_minus_utc();
    TimeDelta::seconds(i64::from(seconds))
}

/// The earliest instant in `(from, to]` whose offset differs from `offset`, the offset at `from`.
fn first_offset_change(
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    offset: TimeDelta,
) -> Option<DateTime<Utc>> {
    let mut low = from;
    while low < to {
        let high = (low + PROBE).min(to);
        if offset_at(tz, high) != offset {
            return Some(bisect(tz, low, high, offset));
        }
        low = high;
    }
    None
}

/// Narrows `(low, high]`, where `low` has `offset` and `high` does not, to the instant of the change.
fn bisect(
    tz: Tz,
    mut low: DateTime<Utc>,
    mut high: DateTime<Utc>,
    offset: TimeDelta,
) -> DateTime<Utc> {
    while high - low > TimeDelta::seconds(1) {
        let mid = low + (high - low) / 2;
        let mid = DateTime::from_timestamp(mid.timestamp(), 0).unwrap_or(mid);
        if offset_at(tz, mid) == offset {
            low = mid;
        } else {
            high = mid;
        }
    }
    high
}

fn is_second_occurrence(tz: Tz, wall: NaiveDateTime, instant: DateTime<Utc>) -> bool {
    match tz.from_local_datetime(&wall) {
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc) != instant,
        _ => false,
    }
}
