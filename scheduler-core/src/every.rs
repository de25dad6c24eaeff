//! Fixed periods: ticks at `anchor + k × period`, unaffected by the wall clock and DST.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::ScheduleError;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Every {
    period: Duration,
    /// `i128` nanoseconds keep every representable instant and period exact.
    period_nanos: i128,
    anchor: Option<DateTime<Utc>>,
}

impl Every {
    pub(crate) fn new(period: Duration) -> Result<Self, ScheduleError> {
        let period_nanos = period.as_nanos() as i128;
        // A tick more than ~292 years away cannot be represented as a `DateTime` offset anyway.
        if period_nanos == 0 || period_nanos > i128::from(i64::MAX) {
            return Err(ScheduleError::InvalidPeriod(format!("{period:?}")));
        }
        Ok(Every {
            period,
            period_nanos,
            anchor: None,
        })
    }

    pub(crate) fn from_secs_f64(seconds: f64) -> Result<Self, ScheduleError> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(ScheduleError::InvalidPeriod(seconds.to_string()));
        }
        let period = Duration::try_from_secs_f64(seconds)
            .map_err(|_| ScheduleError::InvalidPeriod(seconds.to_string()))?;
        Every::new(period).map_err(|_| ScheduleError::InvalidPeriod(seconds.to_string()))
    }

    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    pub(crate) fn anchor(&self) -> Option<DateTime<Utc>> {
        self.anchor
    }

    pub(crate) fn anchored_at(self, anchor: DateTime<Utc>) -> Self {
        Every {
            anchor: Some(anchor),
            ..self
        }
    }

    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after_nanos = nanos(after);
        let next = match self.anchor {
            None => after_nanos + self.period_nanos,
            Some(anchor) => {
                let anchor = nanos(anchor);
                let ticks = (after_nanos - anchor).div_euclid(self.period_nanos) + 1;
                anchor + ticks * self.period_nanos
            }
        };
        let seconds = i64::try_from(next.div_euclid(NANOS_PER_SECOND)).ok()?;
        DateTime::from_timestamp(seconds, next.rem_euclid(NANOS_PER_SECOND) as u32)
    }
}

fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NANOS_PER_SECOND + i128::from(t.timestamp_subsec_nanos())
}
