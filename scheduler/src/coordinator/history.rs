//! Paging through a service's run history: [`HistoryQuery`] (how many runs, from where, which
//! outcomes) and the [`HistoryCursor`] that marks where a page ended.
//!
//! The order is fixed, newest first, by `(tick, attempt, started)`: a tick's retries come above its
//! first attempt, and two runs never compare equal unless they are the same run. A page is the
//! first `limit` runs strictly after the cursor in that order, so runs recorded while an operator
//! pages (new ticks sort first) neither repeat nor hide older ones:
//!
//! ```text
//! newest ── page 1 ──┤cursor 1├── page 2 ──┤cursor 2├── ... ── oldest kept
//!        ▲ new runs land here, never between pages
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::RunRecord;

/// The outcomes a history can be filtered by, as coordinators store them (`running` is a run
/// without an outcome yet).
pub const OUTCOME_NAMES: [&str; 8] = [
    "ok",
    "failed",
    "panicked",
    "timed_out",
    "aborted",
    "abandoned",
    "skipped",
    "running",
];

/// Where a page of history ended: the position of its last (oldest) run. Written and read as
/// text (`<tick ns>.<attempt>.<started ns>`), so that it fits in a URL; treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryCursor {
    /// The run's tick.
    pub tick: DateTime<Utc>,
    /// Its attempt.
    pub attempt: u32,
    /// When it started.
    pub started: DateTime<Utc>,
}

impl HistoryCursor {
    /// The position of `run`.
    pub fn of(run: &RunRecord) -> Self {
        HistoryCursor {
            tick: run.tick,
            attempt: run.attempt,
            started: run.started,
        }
    }
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nanoseconds overflow past 2262; such a time is written in microseconds, marked `u`.
        let stamp = |t: DateTime<Utc>| {
            t.timestamp_nanos_opt()
                .map_or_else(|| format!("{}u", t.timestamp_micros()), |n| n.to_string())
        };
        write!(
            f,
            "{}.{}.{}",
            stamp(self.tick),
            self.attempt,
            stamp(self.started)
        )
    }
}

/// A cursor that is not one this crate wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCursor(String);

impl fmt::Display for BadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a history cursor (use the `next` of a history answer)",
            self.0
        )
    }
}

impl std::error::Error for BadCursor {}

impl FromStr for HistoryCursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(text.chars().take(80).collect());
        let stamp = |part: &str| -> Option<DateTime<Utc>> {
            match part.strip_suffix('u') {
                Some(micros) => DateTime::from_timestamp_micros(micros.parse().ok()?),
                None => Some(DateTime::from_timestamp_nanos(part.parse().ok()?)),
            }
        };
        let mut parts = text.split('.');
        let (Some(tick), Some(attempt), Some(started), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(HistoryCursor {
            tick: stamp(tick).ok_or_else(bad)?,
            attempt: attempt.parse().map_err(|_| bad())?,
            started: stamp(started).ok_or_else(bad)?,
        })
    }
}

/// Which runs of a history to read: at most `limit`, newest first, older than `before` when set,
/// and only those whose outcome is one of `outcomes` when that is not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// How many runs, at most.
    pub limit: usize,
    /// Only runs older than this position (the `next` cursor of the previous page).
    pub before: Option<HistoryCursor>,
    /// Only runs with one of these outcomes ([`OUTCOME_NAMES`]); every run when empty.
    pub outcomes: Vec<String>,
}

impl HistoryQuery {
    /// The newest `limit` runs, whatever their outcome.
    pub fn latest(limit: usize) -> Self {
        HistoryQuery {
            limit,
            before: None,
            outcomes: Vec::new(),
        }
    }

    /// Only runs older than `cursor`.
    #[must_use]
    pub fn before(mut self, cursor: HistoryCursor) -> Self {
        self.before = Some(cursor);
        self
    }

    /// Only runs with one of these outcomes ([`OUTCOME_NAMES`]).
    #[must_use]
    pub fn outcomes<S: Into<String>>(mut self, outcomes: impl IntoIterator<Item = S>) -> Self {
        self.outcomes = outcomes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `run` belongs in the answer (its place aside from the limit).
    pub fn admits(&self, run: &RunRecord) -> bool {
        let outcome = run.outcome.as_deref().unwrap_or("running");
        self.before
            .is_none_or(|before| HistoryCursor::of(run) < before)
            && (self.outcomes.is_empty() || self.outcomes.iter().any(|o| o == outcome))
    }

    /// The page of `runs` (in any order) this query asks for, newest first: for a coordinator
    /// that keeps its history in memory.
    pub fn page(&self, runs: impl IntoIterator<Item = RunRecord>) -> Vec<RunRecord> {
        let mut kept: Vec<RunRecord> = runs.into_iter().filter(|run| self.admits(run)).collect();
        kept.sort_by_key(|run| std::cmp::Reverse(HistoryCursor::of(run)));
        kept.truncate(self.limit);
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn run(tick: i64, attempt: u32, outcome: Option<&str>) -> RunRecord {
        RunRecord::new(
            "s".into(),
            at(tick),
            "r".into(),
            attempt,
            at(tick + i64::from(attempt)),
            None,
            outcome.map(str::to_owned),
            None,
        )
    }

    #[test]
    fn cursors_round_trip_as_text_and_refuse_anything_else() {
        let cursor = HistoryCursor::of(&run(60, 2, Some("ok")));
        assert_eq!(cursor.to_string().parse::<HistoryCursor>(), Ok(cursor));
        let far = HistoryCursor {
            tick: Utc.with_ymd_and_hms(9000, 1, 1, 0, 0, 0).unwrap(),
            attempt: 1,
            started: at(0),
        };
        assert_eq!(far.to_string().parse::<HistoryCursor>(), Ok(far));
        for bad in [
            "",
            "1.2",
            "1.2.3.4",
            "x.1.2",
            "1.-1.2",
            "1.1.99999999999999999999",
        ] {
            assert!(bad.parse::<HistoryCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let runs = vec![
            run(0, 1, Some("failed")),
            run(0, 2, Some("ok")),
            run(60, 1, Some("timed_out")),
            run(120, 1, None),
        ];
        let first = HistoryQuery::latest(2).page(runs.clone());
        assert_eq!(
            first
                .iter()
                .map(|r| (r.tick, r.attempt))
                .collect::<Vec<_>>(),
            [(at(120), 1), (at(60), 1)]
        );
        let next = HistoryCursor::of(first.last().unwrap());
        let second = HistoryQuery::latest(2).before(next).page(runs.clone());
        assert_eq!(
            second
                .iter()
                .map(|r| (r.tick, r.attempt))
                .collect::<Vec<_>>(),
            [(at(0), 2), (at(0), 1)]
        );
        let failures = HistoryQuery::latest(10)
            .outcomes(["failed", "timed_out"])
            .page(runs.clone());
        assert_eq!(failures.len(), 2);
        let running = HistoryQuery::latest(10).outcomes(["running"]).page(runs);
        assert_eq!(running[0].tick, at(120));
    }
}
