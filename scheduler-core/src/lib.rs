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
//! - Five fields, `minute hour day-of-month month day-of-week`, or six with a leading `second`.
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
mod schedule;
pub mod suggest;
mod zone;

pub use error::{Field, FieldProblem, ScheduleError};
pub use schedule::Schedule;
