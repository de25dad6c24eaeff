//! The claim rule, once: what a claim of (service, tick) answers, given the service's rows and the
//! time. [`InMemoryCoordinator`](super::InMemoryCoordinator) calls [`decide`];
//! [`PostgresCoordinator`](super::PostgresCoordinator)'s server-side claim function is the same rule
//! written in PL/pgSQL, and the test `claims_follow_the_in_memory_reference` holds the two to the
//! same answers.
//!
//! The rule itself is on [`decide`].

use chrono::{DateTime, Utc};

use super::{ClaimPolicy, Delivery};

/// What [`decide`] needs of one row of the service. `L` is whatever the coordinator measures
/// leases with (a database timestamp, a monotonic instant), compared with [`decide`]'s `now`.
/// Made with [`RowState::new`] (a running row) and [`ended`](RowState::ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowState<'a, L> {
    /// The row's tick.
    pub tick: DateTime<Utc>,
    /// The replica that holds (or held) it.
    pub replica: &'a str,
    /// Whether its run has ended: finished, released, or marked abandoned.
    pub ended: bool,
    /// Whether it ended in failure (`failed`, `panicked`, `timed_out`): what a retry may claim again.
    pub failed: bool,
    /// Until when its lease holds.
    pub lease_until: L,
}

impl<'a, L> RowState<'a, L> {
    /// A row of `tick` held by `replica` whose run is still going, its lease holding until
    /// `lease_until`.
    pub fn new(tick: DateTime<Utc>, replica: &'a str, lease_until: L) -> Self {
        RowState {
            tick,
            replica,
            ended: false,
            failed: false,
            lease_until,
        }
    }

    /// The same row, its run ended: in failure (`failed`), or not.
    #[must_use]
    pub fn ended(mut self, failed: bool) -> Self {
        self.ended = true;
        self.failed = failed;
        self
    }
}

/// What the coordinator must do to answer a claim; see the table on [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Unfinished ticks whose lease ran out, to be marked `abandoned` (at most once).
    pub abandon: Vec<DateTime<Utc>>,
    /// The answer.
    pub verdict: Verdict,
}

/// The answer part of a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The asked tick has a row already: `replica` has (or had) it.
    Taken {
        /// Who holds the row.
        replica: String,
    },
    /// An earlier run of the service holds a live lease.
    Busy {
        /// Who runs it.
        replica: String,
        /// Its tick.
        tick: DateTime<Utc>,
    },
    /// Take over this abandoned tick (at least once): the claimer's replica, attempt + 1, a new
    /// lease, and grant it.
    TakeOver {
        /// The tick taken over.
        tick: DateTime<Utc>,
    },
    /// Insert the asked tick's row (attempt 1) and grant it.
    Insert,
    /// Grant the asked tick again to the replica whose run of it failed, for a retry
    /// ([`Service::retries`](crate::Service::retries)): attempt + 1, a new lease, unfinished again.
    Retry,
}

/// The claim rule, for the replica `claimer` claiming tick `asked` under `policy`. `rows` holds the
/// row of the asked tick if there is one, and every unfinished row of the service (more rows are
/// allowed: ended ones are ignored), **in ascending tick order**; a lease is alive while
/// `lease_until > now`.
///
/// The rule, in the order it is applied:
///
/// | the service's rows | answer |
/// |---|---|
/// | a retry (attempt > 1) asks a tick whose row is its own, ended in failure | `Retry`: granted again |
/// | the asked tick has a row (whatever its state) | `Taken` by that row's replica |
/// | an unfinished row, in tick order, whose lease is alive | `Busy`: skip, it would overlap |
/// | an unfinished row whose lease ran out, at most once | mark it `abandoned`, look at the next |
/// | an unfinished row whose lease ran out, at least once | take it over: attempt + 1, granted |
/// | none of the above | insert the asked tick's row: granted, attempt 1 |
///
/// Rows marked abandoned stay marked whatever the answer (a `Busy` found after them included).
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use scheduler::coordinator::{decide, ClaimPolicy, Delivery, RowState, Verdict};
///
/// let t = |s| Utc.timestamp_opt(s, 0).unwrap();
/// let policy = ClaimPolicy::new(Duration::from_secs(15), Delivery::AtMostOnce);
/// let running = RowState::new(t(10), "a", 25); // its lease holds until "time" 25
/// // At "time" 20 the lease (until 25) is alive: tick 20 would overlap the run of tick 10.
/// let busy = decide("b", t(20), &[running], &20, policy);
/// assert_eq!(busy.verdict, Verdict::Busy { replica: "a".into(), tick: t(10) });
/// // At 30 it ran out: abandoned, and tick 20 is granted.
/// let granted = decide("b", t(20), &[running], &30, policy);
/// assert_eq!((granted.abandon, granted.verdict), (vec![t(10)], Verdict::Insert));
/// ```
pub fn decide<L: PartialOrd>(
    claimer: &str,
    asked: DateTime<Utc>,
    rows: &[RowState<'_, L>],
    now: &L,
    policy: ClaimPolicy,
) -> Decision {
    let mut abandon = Vec::new();
    if let Some(row) = rows.iter().find(|row| row.tick == asked) {
        let retry = policy.attempt > 1 && row.replica == claimer && row.failed;
        return Decision {
            abandon,
            verdict: if retry {
                Verdict::Retry
            } else {
                Verdict::Taken {
                    replica: row.replica.to_owned(),
                }
            },
        };
    }
    for row in rows.iter().filter(|row| !row.ended) {
        if row.lease_until > *now {
            return Decision {
                abandon,
                verdict: Verdict::Busy {
                    replica: row.replica.to_owned(),
                    tick: row.tick,
                },
            };
        }
        match policy.delivery {
            Delivery::AtMostOnce => abandon.push(row.tick),
            Delivery::AtLeastOnce => {
                return Decision {
                    abandon,
                    verdict: Verdict::TakeOver { tick: row.tick },
                }
            }
        }
    }
    Decision {
        abandon,
        verdict: Verdict::Insert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    fn row(tick: i64, replica: &str, ended: bool, lease_until: u32) -> RowState<'_, u32> {
        RowState {
            tick: t(tick),
            replica,
            ended,
            failed: false,
            lease_until,
        }
    }

    fn policy(delivery: Delivery, attempt: u32) -> ClaimPolicy {
        ClaimPolicy {
            attempt,
            ..ClaimPolicy::new(std::time::Duration::from_secs(1), delivery)
        }
    }

    #[test]
    fn every_line_of_the_table() {
        let most = policy(Delivery::AtMostOnce, 1);
        let least = policy(Delivery::AtLeastOnce, 1);
        let decide =
            |asked, rows: &[RowState<'_, u32>], now, policy| decide("a", asked, rows, &now, policy);
        // Taken wins over everything, even an ended row.
        let rows = [row(10, "a", false, 100), row(20, "b", true, 0)];
        assert_eq!(
            decide(t(20), &rows, 50, most).verdict,
            Verdict::Taken {
                replica: "b".into()
            }
        );
        // Expired rows before a live one are abandoned, and the live one answers Busy.
        let rows = [
            row(5, "c", false, 10),
            row(10, "a", false, 100),
            row(15, "c", true, 0),
        ];
        assert_eq!(
            decide(t(20), &rows, 50, most),
            Decision {
                abandon: vec![t(5)],
                verdict: Verdict::Busy {
                    replica: "a".into(),
                    tick: t(10)
                }
            }
        );
        // At least once: the first expired row is taken over.
        let rows = [row(5, "c", false, 10), row(10, "a", false, 20)];
        assert_eq!(
            decide(t(20), &rows, 50, least).verdict,
            Verdict::TakeOver { tick: t(5) }
        );
        // A lease that ends exactly now is over.
        assert_eq!(
            decide(t(20), &[row(10, "a", false, 50)], 50, most),
            Decision {
                abandon: vec![t(10)],
                verdict: Verdict::Insert
            }
        );
        assert_eq!(decide(t(20), &[], 50, least).verdict, Verdict::Insert);
        // A retry claims its own failed tick again; not another's, not one that succeeded, and
        // not as a first attempt.
        let failed = |replica| RowState {
            failed: true,
            ..row(20, replica, true, 0)
        };
        let retry = policy(Delivery::AtMostOnce, 2);
        assert_eq!(
            decide(t(20), &[failed("a")], 50, retry).verdict,
            Verdict::Retry
        );
        let taken = |replica: &str| Verdict::Taken {
            replica: replica.into(),
        };
        assert_eq!(decide(t(20), &[failed("b")], 50, retry).verdict, taken("b"));
        assert_eq!(
            decide(t(20), &[row(20, "a", true, 0)], 50, retry).verdict,
            taken("a")
        );
        assert_eq!(decide(t(20), &[failed("a")], 50, most).verdict, taken("a"));
    }
}
