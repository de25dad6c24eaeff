//! Parsing one field of a cron expression into a bit set of the values it allows.

use crate::error::{Field, FieldProblem};

/// What one field accepts: its numeric range and the names that stand for numbers.
pub(crate) struct FieldSpec {
    pub(crate) field: Field,
    pub(crate) min: u8,
    pub(crate) max: u8,
    /// Names, case-insensitive, each standing for `name_base + index`.
    names: &'static [&'static str],
    name_base: u8,
    names_doc: Option<&'static str>,
}

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

pub(crate) const SECOND: FieldSpec = FieldSpec::numeric(Field::Second, 0, 59);
pub(crate) const MINUTE: FieldSpec = FieldSpec::numeric(Field::Minute, 0, 59);
pub(crate) const HOUR: FieldSpec = FieldSpec::numeric(Field::Hour, 0, 23);
pub(crate) const DAY_OF_MONTH: FieldSpec = FieldSpec::numeric(Field::DayOfMonth, 1, 31);
pub(crate) const MONTH: FieldSpec = FieldSpec {
    field: Field::Month,
    min: 1,
    max: 12,
    names: MONTH_NAMES,
    name_base: 1,
    names_doc: Some("month names JAN-DEC"),
};
/// Day of week accepts 0-7 where both 0 and 7 are Sunday; the parser folds 7 into 0.
pub(crate) const DAY_OF_WEEK: FieldSpec = FieldSpec {
    field: Field::DayOfWeek,
    min: 0,
    max: 7,
    names: WEEKDAY_NAMES,
    name_base: 0,
    names_doc: Some("weekday names SUN-SAT"),
};

impl FieldSpec {
    const fn numeric(field: Field, min: u8, max: u8) -> Self {
        FieldSpec {
            field,
            min,
            max,
            names: &[],
            name_base: 0,
            names_doc: None,
        }
    }

    /// The bit set with every value of the field.
    pub(crate) fn full(&self) -> u64 {
        span(self.min, self.max, 1)
    }

    /// The largest value before a wrapping range starts again at `min`: Saturday (6) for day of week,
    /// whose 7 is Sunday again, and `max` elsewhere.
    fn cycle_max(&self) -> u8 {
        if self.field == Field::DayOfWeek {
            6
        } else {
            self.max
        }
    }

    /// A number or name of this field.
    pub(crate) fn value(&self, token: &str) -> Result<u8, FieldProblem> {
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            return match token.parse::<u64>() {
                Ok(v) if v >= u64::from(self.min) && v <= u64::from(self.max) => Ok(v as u8),
                _ => Err(FieldProblem::OutOfRange {
                    token: token.to_owned(),
                    min: self.min.into(),
                    max: self.max.into(),
                }),
            };
        }
        self.names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(token))
            .map(|i| self.name_base + i as u8)
            .ok_or_else(|| FieldProblem::NotANumber {
                token: token.to_owned(),
                names: self.names_doc,
            })
    }
}

/// A parsed field: the allowed values as bits, and whether the text started with `*` (or was `?`),
/// which Vixie cron uses both for the day-of-month/day-of-week rule and to tell wildcard jobs from
/// fixed-time ones across DST changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedField {
    pub(crate) bits: u64,
    pub(crate) starts_with_star: bool,
}

/// Parses a field such as `*/15`, `1-10/3,30`, `MON-FRI`, `22-2` or `5/10`.
pub(crate) fn parse(spec: &FieldSpec, text: &str) -> Result<ParsedField, FieldProblem> {
    parse_with(spec, text, |_| Ok(false))
}

/// [`parse`], except that `special` sees each list element first and returns `Ok(true)` when it took
/// the element (an extension such as `L` or `FRI#3`) so that it adds no bits.
pub(crate) fn parse_with(
    spec: &FieldSpec,
    text: &str,
    mut special: impl FnMut(&str) -> Result<bool, FieldProblem>,
) -> Result<ParsedField, FieldProblem> {
    let mut bits = 0u64;
    for element in text.split(',') {
        if element.is_empty() {
            return Err(FieldProblem::EmptyElement);
        }
        if !special(element)? {
            bits |= parse_element(spec, element).map_err(|problem| misplaced(element, problem))?;
        }
    }
    if spec.field == Field::DayOfWeek && bits & (1 << 7) != 0 {
        bits = (bits & !(1 << 7)) | 1;
    }
    Ok(ParsedField {
        bits,
        starts_with_star: text.starts_with(['*', '?']),
    })
}

fn parse_element(spec: &FieldSpec, element: &str) -> Result<u64, FieldProblem> {
    if element.is_empty() {
        return Err(FieldProblem::EmptyElement);
    }
    let (range, step) = match element.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(step)?)),
        None => (element, None),
    };
    let (start, end) = match range {
        "*" => (spec.min, spec.max),
        "?" if matches!(spec.field, Field::DayOfMonth | Field::DayOfWeek) => (spec.min, spec.max),
        "?" => return Err(FieldProblem::QuestionMark),
        _ => {
            if let Some((a, b)) = range.split_once('-') {
                let (mut a, b) = (spec.value(a)?, spec.value(b)?);
                if spec.field == Field::DayOfWeek && a == 7 && b < 7 {
                    a = 0; // `SUN-TUE` with Sunday written 7
                }
                if a > b {
                    return Ok(wrapped_span(spec, a, b, step.unwrap_or(1)));
                }
                (a, b)
            } else {
                // `N/S` means `N-max/S`, as most crontab implementations read it; plain `N` is N alone.
                let a = spec.value(range)?;
                (a, if step.is_some() { spec.max } else { a })
            }
        }
    };
    Ok(span(start, end, step.unwrap_or(1)))
}

fn parse_step(token: &str) -> Result<u8, FieldProblem> {
    let bad = || FieldProblem::BadStep {
        token: token.to_owned(),
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match token.parse::<u64>() {
        Ok(0) => Err(bad()),
        // A step wider than any field selects only the first value; saturating keeps that meaning.
        Ok(step) => Ok(step.min(64) as u8),
        Err(_) => Ok(64),
    }
}

/// An element that is not a value here but looks like an extension gets a problem that says where
/// extensions belong; any other problem is returned as it is.
fn misplaced(element: &str, problem: FieldProblem) -> FieldProblem {
    let upper = element.to_ascii_uppercase();
    let looks_extended =
        upper.contains('#') || upper.starts_with('L') || upper.ends_with(['L', 'W']);
    match problem {
        FieldProblem::NotANumber { .. } if looks_extended => FieldProblem::Extension {
            token: element.to_owned(),
            rule: "is not allowed here: L and W belong in the day-of-month field, L and # in the \
                   day-of-week field",
        },
        problem => problem,
    }
}

/// A range whose start is after its end wraps past the field's largest value: `22-2` in hours is
/// 22, 23, 0, 1, 2, and a step counts on across the wrap (`22-2/2` is 22, 0, 2).
fn wrapped_span(spec: &FieldSpec, start: u8, end: u8, step: u8) -> u64 {
    let top = spec.cycle_max();
    let len = u32::from(top - spec.min) + 1;
    let count = u32::from(top - start) + 1 + u32::from(end - spec.min) + 1;
    (0..count)
        .step_by(usize::from(step))
        .map(|i| spec.min + ((u32::from(start - spec.min) + i) % len) as u8)
        .fold(0, |bits, v| bits | 1 << v)
}

/// Bits `start, start + step, …` up to `end` inclusive.
fn span(start: u8, end: u8, step: u8) -> u64 {
    (start..=end)
        .step_by(usize::from(step))
        .fold(0, |bits, v| bits | 1 << v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(spec: &FieldSpec, text: &str) -> Vec<u8> {
        let parsed = parse(spec, text).unwrap();
        (0..64).filter(|v| parsed.bits & (1 << v) != 0).collect()
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(bits(&MINUTE, "*/15"), [0, 15, 30, 45]);
        assert_eq!(bits(&MINUTE, "1-10/3"), [1, 4, 7, 10]);
        assert_eq!(bits(&MINUTE, "5/20"), [5, 25, 45]);
        assert_eq!(bits(&MINUTE, "7"), [7]);
        assert_eq!(bits(&MINUTE, "3-3"), [3]);
        assert_eq!(bits(&MINUTE, "*/60"), [0]);
        assert_eq!(bits(&HOUR, "*/99999999999999999999"), [0]);
        assert_eq!(bits(&HOUR, "1,2,20-23/2"), [1, 2, 20, 22]);
    }

    #[test]
    fn names_are_case_insensitive_and_seven_is_sunday() {
        assert_eq!(bits(&MONTH, "jan,Jul,DEC"), [1, 7, 12]);
        assert_eq!(bits(&MONTH, "feb-APR"), [2, 3, 4]);
        assert_eq!(bits(&DAY_OF_WEEK, "mon-FRI"), [1, 2, 3, 4, 5]);
        assert_eq!(bits(&DAY_OF_WEEK, "7"), [0]);
        assert_eq!(bits(&DAY_OF_WEEK, "5-7"), [0, 5, 6]);
        assert_eq!(bits(&DAY_OF_WEEK, "sun"), [0]);
    }

    #[test]
    fn ranges_wrap_past_the_end_of_the_field() {
        assert_eq!(bits(&HOUR, "22-2"), [0, 1, 2, 22, 23]);
        assert_eq!(bits(&HOUR, "22-2/2"), [0, 2, 22]);
        assert_eq!(bits(&HOUR, "23-0"), [0, 23]);
        assert_eq!(bits(&MINUTE, "50-10/5"), [0, 5, 10, 50, 55]);
        assert_eq!(bits(&DAY_OF_MONTH, "30-2"), [1, 2, 30, 31]);
        assert_eq!(bits(&MONTH, "NOV-FEB"), [1, 2, 11, 12]);
        assert_eq!(bits(&DAY_OF_WEEK, "FRI-SUN"), [0, 5, 6]);
        assert_eq!(bits(&DAY_OF_WEEK, "fri-mon"), [0, 1, 5, 6]);
        // The week wraps after Saturday, so Sunday counts once in a step.
        assert_eq!(bits(&DAY_OF_WEEK, "SAT-TUE/2"), [1, 6]);
        assert_eq!(bits(&DAY_OF_WEEK, "5-1/2"), [0, 5]);
        // 7 is Sunday at either end.
        assert_eq!(bits(&DAY_OF_WEEK, "7-2"), [0, 1, 2]);
        assert_eq!(bits(&DAY_OF_WEEK, "5-7"), [0, 5, 6]);
        assert_eq!(bits(&DAY_OF_WEEK, "7-7"), [0]);
    }

    #[test]
    fn extensions_outside_the_day_fields_say_where_they_belong() {
        let problem = |spec, text| parse(spec, text).unwrap_err().to_string();
        let rule = "is not allowed here: L and W belong in the day-of-month field, L and # in the \
                    day-of-week field";
        assert_eq!(problem(&HOUR, "L"), format!("'L' {rule}"));
        assert_eq!(problem(&MINUTE, "1,5#2"), format!("'5#2' {rule}"));
        assert_eq!(problem(&MONTH, "15W"), format!("'15W' {rule}"));
        // A month name ending in L is still a month.
        assert_eq!(bits(&MONTH, "JUL,apr"), [4, 7]);
    }

    #[test]
    fn star_prefix_is_recorded() {
        assert!(parse(&DAY_OF_MONTH, "*/2").unwrap().starts_with_star);
        assert!(parse(&DAY_OF_MONTH, "?").unwrap().starts_with_star);
        assert!(!parse(&DAY_OF_MONTH, "1-31").unwrap().starts_with_star);
    }

    #[test]
    fn problems_name_the_token() {
        let problem = |spec, text| parse(spec, text).unwrap_err().to_string();
        assert_eq!(problem(&MINUTE, "61"), "61 is out of range 0-59");
        assert_eq!(problem(&DAY_OF_MONTH, "0"), "0 is out of range 1-31");
        assert_eq!(problem(&HOUR, "x"), "'x' is not a number");
        assert_eq!(
            problem(&MONTH, "FOO"),
            "'FOO' is neither a number nor one of the month names JAN-DEC"
        );
        assert_eq!(
            problem(&DAY_OF_WEEK, "JAN"),
            "'JAN' is neither a number nor one of the weekday names SUN-SAT"
        );
        assert_eq!(
            problem(&MINUTE, "*/0"),
            "step '0' must be a whole number of at least 1"
        );
        assert_eq!(
            problem(&MINUTE, "*/"),
            "step '' must be a whole number of at least 1"
        );
        assert_eq!(problem(&MINUTE, "1,,2"), "empty list element");
        assert_eq!(
            problem(&MINUTE, "?"),
            "'?' is only allowed in the day-of-month and day-of-week fields"
        );
        assert_eq!(problem(&MINUTE, "-5"), "'' is not a number");
    }
}
