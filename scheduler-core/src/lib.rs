//! The schedule engine behind [`scheduler`](https://docs.rs/scheduler): exact answers to *when does this
//! fire next?*
//!
//! Most users reach this crate through `scheduler::Schedule`. It is a crate of its own so that the
//! `#[background_service]` macro checks cron strings at compile time with the very parser the runtime
//! uses: what compiles, parses.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use scheduler_core::Schedule;
//!
//! let schedule: Schedule = "0 0 1,15 * MON".parse()?; // the 1st, the 15th, and every Monday
//! let t = Utc.with_ymd_and_hms(2024, 4, 2, 0, 0, 0).unwrap(); // a Tuesday
//! assert_eq!(schedule.next_after(t), Some(Utc.with_ymd_and_hms(2024, 4, 8, 0, 0, 0).unwrap()));
//! # Ok::<(), scheduler_core::ScheduleError>(())
//! ```
//!
//! # Cron semantics
//! Expressions mean what they mean to Vixie cron, the `cron` of most Linux systems, so a line pasted
//! from a crontab, a Kubernetes `CronJob` or crontab.guru behaves the same here.
//!
//! - Five fields, `minute hour day-of-month month day-of-week`; six with a leading `second`; or
//!   seven with a leading `second` and a trailing `year` (see [Extensions](#extensions)).
//! - Lists `1,15`, ranges `1-5`, steps `*/15`, `1-10/3` and `5/10` (= `5-59/10`). A step wider than
//!   its field, like `*/60` for minutes, selects the first value only.
//! - Month names `JAN`-`DEC` and weekday names `SUN`-`SAT`, in any case. `0` and `7` are both Sunday.
//!   `?` is accepted in the two day fields as a synonym of `*`.
//! - `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
//! - **Day of month and day of week**: when both are restricted (neither field starts with `*`), a day
//!   matches when *either* does, so `0 0 1,15 * MON` fires on the 1st, the 15th and every Monday.
//!   When one starts with `*` (including `*/2`), both must match, which means the other one alone.
//!   This is Vixie cron's rule; it departs from the original Python service manager, which required both
//!   fields to match.
//! - An expression that can never match, like `0 0 30 2 *`, parses (cron accepts it) but
//!   [`Schedule::next_after`] returns `None` and [`Schedule::never_fires`] says so.
//!
//! # Extensions
//! Quartz, Spring, croner (behind `tokio-cron-scheduler`) and the `cron` crate accept more than
//! Vixie cron does. These forms are accepted too, with exact definitions:
//!
//! | Field | Form | Meaning |
//! |---|---|---|
//! | day of month | `L` | the last day of the month (the 28th, 29th, 30th or 31st) |
//! | day of month | `L-n`, `n` = 1-30 | `n` days before the last day: `L-3` is the 28th of a 31-day month; nothing in a month too short for it |
//! | day of month | `LW` | the last weekday (Monday to Friday) of the month |
//! | day of month | `nW`, `n` = 1-31 | the weekday nearest to day `n`, without leaving the month: a Saturday moves to the Friday before, a Sunday to the Monday after, except that Saturday the 1st moves to Monday the 3rd and a Sunday that ends the month to the Friday before it; a weekday is itself; nothing in a month without day `n` |
//! | day of week | `wL`, such as `5L` or `FRIL` | the last such weekday of the month |
//! | day of week | `w#k`, `k` = 1-5, such as `5#3` or `FRI#3` | the `k`-th such weekday of the month; nothing in a month without a `k`-th |
//! | any but year | `a-b` with `a` after `b` | a range that wraps past the end of the field: `FRI-SUN` is Fri, Sat, Sun; `22-2` is 22, 23, 0, 1, 2 |
//! | year (7th) | `*`, `2030`, `2024-2040/4`, `2024/4`, lists | years 1970-2099; `*` is every year, also those after 2099 |
//!
//! - `L`, `W` and `#` are list elements like any other (`1,15,L`, `MON#1,FRIL`), letters in any case;
//!   they take no step and no range (`1-5W` is an error). Weekday numbers are cron's, `0`-`7` with
//!   Sunday `0` or `7`, **not** Quartz's `1`-`7` with Sunday `1`: Quartz's `6#3` (third Friday) is `5#3`
//!   or `FRI#3` here, and names mean the same everywhere. `L` alone in day of week (Quartz: Saturday)
//!   is rejected as ambiguous.
//! - **With the day rule**: a field holding `L`, `W` or `#` is restricted (it does not start with `*`),
//!   so the rule above applies unchanged. `0 0 L * FRI` fires on the last day of the month *and* on
//!   every Friday; `0 0 L * 5L` on the last day and on the last Friday; `0 0 * * 5L` and
//!   `0 0 ? * 5#3` on those Fridays only; `0 0 */2 * 5L` on the last Friday when it has an odd date.
//! - **Wrapping ranges** count a step on across the wrap (`22-2/2` is 22, 0, 2). Day of week wraps
//!   after Saturday, counting Sunday once (`SAT-TUE/2` is Sat, Mon); a range starting at `7` starts on
//!   Sunday (`7-2` is Sun-Tue). Day of month wraps after 31 whatever the month's length (`30-2` in
//!   April is the 30th, 1st and 2nd). Hour ranges wrap too, so `0 22-2 * * *` is the night shift.
//!   Vixie cron itself rejects backwards ranges; most libraries read them this way.
//! - **The year field** needs the seconds field: exactly seven fields, seconds first. Years never wrap
//!   (`2040-2024` is an error). When its years run out, [`Schedule::next_after`] returns `None` from
//!   then on (and [`Schedule::upcoming`] ends); [`Schedule::never_fires`] is true only when no year
//!   of the field holds a match at all, as in `0 0 0 29 2 * 2025-2027`.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use scheduler_core::Schedule;
//!
//! let t = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap(); // a Saturday
//! let at = |d, h| Some(Utc.with_ymd_and_hms(2024, 6, d, h, 0, 0).unwrap());
//! assert_eq!("0 0 L * *".parse::<Schedule>()?.next_after(t), at(30, 0));
//! assert_eq!("0 0 LW * *".parse::<Schedule>()?.next_after(t), at(28, 0)); // the 30th is a Sunday
//! assert_eq!("0 0 1W * *".parse::<Schedule>()?.next_after(t), at(3, 0)); // Monday the 3rd
//! assert_eq!("0 0 * * FRI#3".parse::<Schedule>()?.next_after(t), at(21, 0));
//! assert_eq!("0 22-2 * * *".parse::<Schedule>()?.next_after(t), at(1, 1));
//!
//! let leap_days: Schedule = "0 0 12 29 2 * 2024-2040/4".parse()?;
//! assert_eq!(leap_days.upcoming(t).count(), 4); // 2028, 2032, 2036 and 2040; then it ends
//! # Ok::<(), scheduler_core::ScheduleError>(())
//! ```
//!
//! # Reading and printing schedules
//! [`Schedule::describe`] says in plain English when a schedule fires ("At 09:00, Monday through
//! Friday (Europe/Berlin)", "Every 15 minutes"), [`Schedule::upcoming`] lists the fire times, and
//! [`Display`](std::fmt::Display) prints the expression and zone as given, which
//! [`FromStr`](std::str::FromStr) reads back:
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use scheduler_core::Schedule;
//!
//! let report = Schedule::cron_in("0 9 * * MON-FRI", "Europe/Berlin")?;
//! assert_eq!(report.describe(), "At 09:00, Monday through Friday (Europe/Berlin)");
//! assert_eq!(report.to_string(), "0 9 * * MON-FRI (Europe/Berlin)");
//! assert_eq!(report.to_string().parse::<Schedule>()?, report);
//! let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
//! let next_ten: Vec<_> = report.upcoming(t).take(10).collect();
//! assert_eq!(next_ten.len(), 10);
//! # Ok::<(), scheduler_core::ScheduleError>(())
//! ```
//!
//! # Time zones and DST
//! Cron expressions read the wall clock of their zone ([`Schedule::cron_in`]; UTC by default). At DST
//! changes the engine follows `cron(8)`: a job is *fixed-time* when none of its second, minute and
//! hour fields starts with `*`, and *wildcard* otherwise.
//!
//! ```text
//!                    spring forward: 02:00-02:59 missing      fall back: 01:00-01:59 twice
//! fixed-time         fires once, at the end of the gap         fires once, at the first 01:30
//!   `30 2 * * *`       (03:00 EDT)                               (`30 1 * * *`: 01:30 EDT)
//! wildcard           times inside the gap are skipped          fires at every occurrence
//!   `30 * * * *`       (no 02:30; next is 03:30 EDT)             (01:30 EDT and 01:30 EST)
//! ```
//!
//! Fixed periods ([`Schedule::every`]) count real elapsed time and ignore the wall clock entirely.
//!
//! # Suggestions
//! [`suggest`] holds the "did you mean" rules for what people mistype (a zone such as
//! `Europe/Berln`, a period such as `"30s"` where seconds are expected, a name), shared by the
//! attribute and the runtime's configuration so that both suggest the same.

mod cron;
mod error;
mod every;
pub mod policy_rules;
mod schedule;
pub mod suggest;
mod zone;

pub use error::{Field, FieldProblem, ScheduleError};
pub use schedule::Schedule;
