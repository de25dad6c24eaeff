//! The optional year field of a 7-field expression: 1970-2099, as Quartz and the `cron` crate read it.

use crate::error::FieldProblem;

/// The first year the field accepts.
pub(crate) const FIRST: i32 = 1970;
/// The last year the field accepts.
pub(crate) const LAST: i32 = 2099;
const WORDS: usize = ((LAST - FIRST) as usize) / 64 + 1;

/// A set of years within [`FIRST`]..=[`LAST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Years {
    bits: [u64; WORDS],
}

impl Years {
    fn insert(&mut self, year: i32) {
        let i = (year - FIRST) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    pub(crate) fn contains(&self, year: i32) -> bool {
        if !(FIRST..=LAST).contains(&year) {
            return false;
        }
        let i = (year - FIRST) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// The smallest year in the set at or after `from`.
    pub(crate) fn next_from(&self, from: i32) -> Option<i32> {
        (from.max(FIRST)..=LAST).find(|&y| self.contains(y))
    }

    /// Every year in the set, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        (FIRST..=LAST).filter(|&y| self.contains(y))
    }
}

/// Parses the year field: `*`, `2030`, `2024-2040`, `2024-2040/4`, `2024/4` (= `2024-2099/4`), `*/4`
/// and lists of them. `None` means every year, also those after 2099.
pub(crate) fn parse(text: &str) -> Result<Option<Years>, FieldProblem> {
    if text == "*" {
        return Ok(None);
    }
    let mut years = Years { bits: [0; WORDS] };
    for element in text.split(',') {
        if element.is_empty() {
            return Err(FieldProblem::EmptyElement);
        }
        let (range, step) = match element.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(step)?)),
            None => (element, None),
        };
        let (start, end) = match range {
            "*" => (FIRST, LAST),
            "?" => return Err(FieldProblem::QuestionMark),
            _ => {
                if let Some((a, b)) = range.split_once('-') {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        // Years do not come round again, so unlike the other fields they never wrap.
                        return Err(FieldProblem::ReversedRange {
                            token: range.to_owned(),
                        });
                    }
                    (a, b)
                } else {
                    let a = value(range)?;
                    (a, if step.is_some() { LAST } else { a })
                }
            }
        };
        let mut year = start;
        while year <= end {
            years.insert(year);
            year = year.saturating_add(step.unwrap_or(1));
        }
    }
    Ok(Some(years))
}

fn value(token: &str) -> Result<i32, FieldProblem> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldProblem::NotANumber {
            token: token.to_owned(),
            names: None,
        });
    }
    match token.parse::<i32>() {
        Ok(year) if (FIRST..=LAST).contains(&year) => Ok(year),
        _ => Err(FieldProblem::OutOfRange {
            token: token.to_owned(),
            min: FIRST as u16,
            max: LAST as u16,
        }),
    }
}

fn parse_step(token: &str) -> Result<i32, FieldProblem> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || token.bytes().all(|b| b == b'0')
    {
        return Err(FieldProblem::BadStep {
            token: token.to_owned(),
        });
    }
    // Any step beyond the field's width selects the first year only.
    Ok(token.parse::<i32>().unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn years(text: &str) -> Vec<i32> {
        parse(text).unwrap().unwrap().iter().collect()
    }

    #[test]
    fn lists_ranges_and_steps() {
        assert_eq!(years("2024-2040/4"), [2024, 2028, 2032, 2036, 2040]);
        assert_eq!(years("2030"), [2030]);
        assert_eq!(years("2090/4,1970"), [1970, 2090, 2094, 2098]);
        assert_eq!(years("2095-2099"), [2095, 2096, 2097, 2098, 2099]);
        assert_eq!(years("*/50"), [1970, 2020, 2070]);
        assert_eq!(years("2000/99999999999"), [2000]);
        assert!(parse("*").unwrap().is_none());
        assert_eq!(years("1970-2099").len(), 130);
    }

    #[test]
    fn problems_name_the_token() {
        let problem = |text| parse(text).unwrap_err().to_string();
        assert_eq!(problem("2100"), "2100 is out of range 1970-2099");
        assert_eq!(problem("1969-2000"), "1969 is out of range 1970-2099");
        assert_eq!(
            problem("2040-2024"),
            "range 2040-2024 is reversed: its start must not exceed its end"
        );
        assert_eq!(
            problem("2024/0"),
            "step '0' must be a whole number of at least 1"
        );
        assert_eq!(problem("MMXX"), "'MMXX' is not a number");
        assert_eq!(problem("2024,"), "empty list element");
        assert_eq!(
            problem("?"),
            "'?' is only allowed in the day-of-month and day-of-week fields"
        );
    }
}
