//! The one error type of schedule parsing.

use std::fmt;

/// Why a cron expression, time zone or period was rejected.
///
/// Every message names the problem, the field and the offending token, and quotes the whole expression,
/// so it can be shown to an operator as it is:
///
/// ```
/// use scheduler_core::Schedule;
///
/// let err = "61 * * * *".parse::<Schedule>().unwrap_err();
/// assert_eq!(err.to_string(), "minute field: 61 is out of range 0-59 in '61 * * * *'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The expression is empty or only white space.
    #[error("empty cron expression: expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or 7 with seconds first and a year last")]
    Empty,
    /// The expression has the wrong number of fields.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), 6 (with a leading seconds field) or 7 (seconds first, year last), found {found} in '{expr}'")]
    FieldCount {
        /// How many white-space separated fields were found.
        found: usize,
        /// The expression as written.
        expr: String,
    },
    /// An `@name` shorthand that does not exist (or, like `@reboot`, has no meaning for a schedule).
    #[error("unknown shorthand '{name}' in '{expr}': expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly{hint}")]
    UnknownShorthand {
        /// The shorthand as written, with its `@`.
        name: String,
        /// The expression as written.
        expr: String,
        /// Extra advice for a known but unsupported shorthand.
        hint: &'static str,
    },
    /// One field of the expression is wrong.
    #[error("{field} field: {problem} in '{expr}'")]
    Field {
        /// Which field.
        field: Field,
        /// What is wrong with it.
        problem: FieldProblem,
        /// The expression as written.
        expr: String,
    },
    /// The time zone is not an IANA name known to the bundled time-zone database.
    ///
    /// The message suggests the zone that was probably meant ([`suggest::time_zone`](crate::suggest::time_zone)):
    ///
    /// ```
    /// use scheduler_core::Schedule;
    ///
    /// let err = Schedule::cron_in("0 9 * * *", "Europe/Berln").unwrap_err();
    /// assert_eq!(err.to_string(), "unknown time zone 'Europe/Berln': did you mean 'Europe/Berlin'?");
    /// ```
    #[error("unknown time zone '{0}': {hint}", hint = zone_hint(.0))]
    UnknownTimeZone(String),
    /// A one-shot delay that is negative, not finite, or too long to represent.
    #[error("invalid delay {0}: expected a finite number of seconds, zero or more")]
    InvalidDelay(String),
    /// A fixed period that is zero, negative, not finite, or too long to represent.
    #[error("invalid period {0}: expected a positive, finite number of seconds")]
    InvalidPeriod(String),
}

/// What to say after "unknown time zone": the zone probably meant, or what a zone looks like.
fn zone_hint(written: &str) -> String {
    match crate::suggest::time_zone(written) {
        Some(zone) => format!("did you mean '{zone}'?"),
        None => {
            "expected an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'".to_owned()
        }
    }
}

/// A field of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The optional leading seconds field (0-59).
    Second,
    /// Minutes (0-59).
    Minute,
    /// Hours (0-23).
    Hour,
    /// Day of month (1-31).
    DayOfMonth,
    /// Month (1-12 or JAN-DEC).
    Month,
    /// Day of week (0-7 or SUN-SAT; 0 and 7 are Sunday).
    DayOfWeek,
    /// The optional trailing year field of a 7-field expression (1970-2099).
    Year,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
            Field::Year => "year",
        })
    }
}

/// What is wrong with one field of a cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldProblem {
    /// A number outside the field's range.
    OutOfRange {
        /// The token as written.
        token: String,
        /// The field's smallest value.
        min: u16,
        /// The field's largest value.
        max: u16,
    },
    /// A token that is neither a number nor a name valid in this field.
    NotANumber {
        /// The token as written.
        token: String,
        /// What names the field accepts, if any (e.g. "month names JAN-DEC").
        names: Option<&'static str>,
    },
    /// A range whose start is after its end, such as `5-3`.
    ReversedRange {
        /// The range as written.
        token: String,
    },
    /// A step that is zero or not a number, such as `*/0` or `*/x`.
    BadStep {
        /// The step as written.
        token: String,
    },
    /// An empty element in a list, such as `1,,2` or a trailing comma.
    EmptyElement,
    /// `?` outside the day-of-month and day-of-week fields.
    QuestionMark,
    /// A misuse of the `L`, `W` or `#` extensions, such as `FRI#6`, `1-5W` or `L` in the hour field.
    Extension {
        /// The list element as written.
        token: String,
        /// The rule it breaks, as a phrase that follows the token.
        rule: &'static str,
    },
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::OutOfRange { token, min, max } => {
                write!(f, "{token} is out of range {min}-{max}")
            }
            FieldProblem::NotANumber { token, names: None } => {
                write!(f, "'{token}' is not a number")
            }
            FieldProblem::NotANumber {
                token,
                names: Some(names),
            } => write!(f, "'{token}' is neither a number nor one of the {names}"),
            FieldProblem::ReversedRange { token } => {
                write!(
                    f,
                    "range {token} is reversed: its start must not exceed its end"
                )
            }
            FieldProblem::BadStep { token } => {
                write!(f, "step '{token}' must be a whole number of at least 1")
            }
            FieldProblem::EmptyElement => f.write_str("empty list element"),
            FieldProblem::QuestionMark => {
                f.write_str("'?' is only allowed in the day-of-month and day-of-week fields")
            }
            FieldProblem::Extension { token, rule } => write!(f, "'{token}' {rule}"),
        }
    }
}
