//! Parsing the attribute's arguments: `interval = ...` or `once_after = ...`, `on_start`,
//! `name = "..."`, `tz = "..."`, and the job policies (`timeout`, `retries`, `retry_backoff`,
//! `retry_backoff_max`, `jitter`, `misfire`, `misfire_limit`, `misfire_grace`).
//!
//! Each comma-separated argument is parsed on its own, so that one malformed argument does not hide
//! the mistakes in the others, nor keep the well-formed ones from being checked: every error is
//! collected and reported together.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitBool, LitStr, Token, UnOp};

/// The custom keywords of the attribute, one per argument.
mod kw {
    syn::custom_keyword!(interval);
    syn::custom_keyword!(once_after);
    syn::custom_keyword!(on_start);
    syn::custom_keyword!(name);
    syn::custom_keyword!(tz);
}

/// The arguments the attribute accepts, for error messages.
const VALID: &str = "`interval`, `once_after`, `on_start`, `name`, `tz`, `timeout`, `retries`, \
                     `retry_backoff`, `retry_backoff_max`, `jitter`, `misfire`, `misfire_limit`, \
                     `misfire_grace`";

/// Every argument's name, for suggestions.
const NAMES: [&str; 13] = [
    "interval",
    "once_after",
    "on_start",
    "name",
    "tz",
    "timeout",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "jitter",
    "misfire",
    "misfire_limit",
    "misfire_grace",
];

/// How to write an interval, for error messages.
pub(crate) const INTERVAL_HELP: &str =
    "expected `interval = <seconds>` or `interval = \"<cron expression>\"`";

/// How to write a one-shot delay, for error messages.
const ONCE_AFTER_HELP: &str =
    "expected `once_after = <seconds>`, such as `once_after = 30` or `once_after = 0.5`";

/// An argument whose value is a number of seconds, for error messages.
pub(crate) struct SecondsArgument {
    /// The argument's name.
    pub(crate) name: &'static str,
    /// What its value is called in a sentence.
    noun: &'static str,
    /// How to write it.
    help: &'static str,
    /// Said after "not a string" when the string is no number.
    string_note: &'static str,
}

/// `interval = ...`.
const INTERVAL: SecondsArgument = SecondsArgument {
    name: "interval",
    noun: "interval",
    help: INTERVAL_HELP,
    string_note: "",
};

/// `once_after = ...`.
const ONCE_AFTER: SecondsArgument = SecondsArgument {
    name: "once_after",
    noun: "delay",
    help: ONCE_AFTER_HELP,
    string_note: " (a cron expression goes in `interval`)",
};

/// `timeout = ...`.
const TIMEOUT: SecondsArgument = SecondsArgument {
    name: "timeout",
    noun: "timeout",
    help: "expected `timeout = <seconds>`, such as `timeout = 30` or `timeout = 0.5`",
    string_note: "",
};

/// `retry_backoff = ...`.
const RETRY_BACKOFF: SecondsArgument = SecondsArgument {
    name: "retry_backoff",
    noun: "backoff",
    help: "expected `retry_backoff = <seconds>`, such as `retry_backoff = 1` or \
           `retry_backoff = 0.5`",
    string_note: "",
};

/// `retry_backoff_max = ...`.
const RETRY_BACKOFF_MAX: SecondsArgument = SecondsArgument {
    name: "retry_backoff_max",
    noun: "backoff cap",
    help: "expected `retry_backoff_max = <seconds>`, such as `retry_backoff_max = 60`",
    string_note: "",
};

/// `jitter = ...`.
const JITTER: SecondsArgument = SecondsArgument {
    name: "jitter",
    noun: "jitter",
    help: "expected `jitter = <seconds>`, such as `jitter = 5` or `jitter = 0.5`",
    string_note: "",
};

/// `misfire_grace = ...`.
const MISFIRE_GRACE: SecondsArgument = SecondsArgument {
    name: "misfire_grace",
    noun: "grace period",
    help: "expected `misfire_grace = <seconds>`, such as `misfire_grace = 1` or \
           `misfire_grace = 0.5`",
    string_note: "",
};

/// An argument whose value is a whole number, for error messages.
pub(crate) struct CountArgument {
    /// The argument's name.
    pub(crate) name: &'static str,
    /// What its value is called in a sentence.
    noun: &'static str,
    /// How to write it.
    help: &'static str,
}

/// `retries = ...`.
const RETRIES: CountArgument = CountArgument {
    name: "retries",
    noun: "number of retries",
    help: "expected `retries = <count>`, such as `retries = 3`",
};

/// `misfire_limit = ...`.
const MISFIRE_LIMIT: CountArgument = CountArgument {
    name: "misfire_limit",
    noun: "limit",
    help: "expected `misfire_limit = <count>`, such as `misfire_limit = 10`",
};

/// How to write a misfire policy, for error messages.
pub(crate) const MISFIRE_HELP: &str =
    "expected `misfire = \"skip\"`, `misfire = \"coalesce\"` or `misfire = \"all\"`";

/// The attribute's `interval`, as written.
pub(crate) enum Interval {
    /// `interval = 30`, `interval = 0.5`, or a negative number (rejected later, with the runtime's
    /// message).
    Seconds {
        /// The number of seconds; may be zero, negative or infinite until validated.
        seconds: f64,
        /// The value as written (including a leading `-`), for error spans.
        value: Expr,
    },
    /// `interval = "*/5 * * * *"`.
    Cron(LitStr),
}

/// The attribute's `once_after = <seconds>`, as written.
pub(crate) struct OnceAfter {
    /// The delay in seconds; may be negative or infinite until validated.
    pub(crate) seconds: f64,
    /// The value as written (including a leading `-`), for error spans.
    pub(crate) value: Expr,
}

/// The attribute's `on_start` or `on_start = <bool>`.
#[derive(Clone, Copy)]
pub(crate) struct OnStart {
    /// Whether the service also runs right at start.
    pub(crate) value: bool,
    /// The `on_start` keyword, for error spans.
    pub(crate) keyword: Span,
}

/// A policy argument whose value is a number of seconds, as written.
pub(crate) struct SecondsValue {
    /// The number of seconds; may be zero, negative or infinite until validated.
    pub(crate) seconds: f64,
    /// The value as written (including a leading `-`), for error spans.
    pub(crate) value: Expr,
    /// The argument's keyword, for errors about the argument as a whole.
    pub(crate) keyword: Span,
}

/// A policy argument whose value is a whole number, as written.
pub(crate) struct CountValue {
    /// The number; may be negative or out of range until validated (saturated beyond `i128`).
    pub(crate) count: i128,
    /// The value as written (including a leading `-`), for error spans.
    pub(crate) value: Expr,
    /// The argument's keyword, for errors about the argument as a whole.
    pub(crate) keyword: Span,
}

/// The attribute's `misfire = "<policy>"`, as written.
pub(crate) struct MisfireValue {
    /// The policy's name; may be unknown until validated.
    pub(crate) word: LitStr,
    /// The `misfire` keyword.
    pub(crate) keyword: Span,
}

/// The attribute's job policies, as written; each is checked in `validate`.
#[derive(Default)]
pub(crate) struct PolicyArgs {
    /// `timeout = <seconds>`.
    pub(crate) timeout: Option<SecondsValue>,
    /// `retries = <count>`.
    pub(crate) retries: Option<CountValue>,
    /// `retry_backoff = <seconds>`.
    pub(crate) retry_backoff: Option<SecondsValue>,
    /// `retry_backoff_max = <seconds>`.
    pub(crate) retry_backoff_max: Option<SecondsValue>,
    /// `jitter = <seconds>`.
    pub(crate) jitter: Option<SecondsValue>,
    /// `misfire = "skip" | "coalesce" | "all"`.
    pub(crate) misfire: Option<MisfireValue>,
    /// `misfire_limit = <count>`.
    pub(crate) misfire_limit: Option<CountValue>,
    /// `misfire_grace = <seconds>`.
    pub(crate) misfire_grace: Option<SecondsValue>,
}

/// The attribute's arguments after parsing, before they are checked against each other.
#[derive(Default)]
pub(crate) struct Args {
    /// `interval = ...`; this or `once_after` is required.
    pub(crate) interval: Option<Interval>,
    /// `once_after = <seconds>`; this or `interval` is required.
    pub(crate) once_after: Option<OnceAfter>,
    /// `on_start` or `on_start = <bool>`.
    pub(crate) on_start: Option<OnStart>,
    /// `name = "..."`.
    pub(crate) name: Option<LitStr>,
    /// `tz = "..."`.
    pub(crate) tz: Option<LitStr>,
    /// The job policies.
    pub(crate) policies: PolicyArgs,
    /// Every `interval` and `once_after` keyword, in the order written, even with a malformed
    /// value: the two are alternatives, and the second one of the other kind is reported.
    pub(crate) timing_keywords: Vec<(&'static str, Span)>,
    /// Whether `interval` or `once_after` was written, even with a malformed value, or something
    /// that looks like a misspelled one: then a missing one is not reported on top.
    pub(crate) timing_attempted: bool,
    /// Every malformed, unknown or duplicate argument; the arguments above are the well-formed ones.
    pub(crate) errors: Option<syn::Error>,
}

impl Args {
    /// Parses the attribute's arguments, keeping the well-formed ones and collecting an error for
    /// every malformed, unknown or duplicate argument.
    pub(crate) fn parse(attr: TokenStream) -> Self {
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        for chunk in split_arguments(attr) {
            let result = match chunk {
                Chunk::Argument(tokens) => {
                    (|input: ParseStream<'_>| args.parse_argument(input)).parse2(tokens)
                }
                Chunk::StrayComma(span) => Err(syn::Error::new(
                    span,
                    format!("expected an argument before this `,`: valid arguments are {VALID}"),
                )),
            };
            if let Err(error) = result {
                combine(&mut errors, error);
            }
        }
        args.errors = errors;
        args
    }

    /// Parses one argument, all of `input`, into `self`.
    fn parse_argument(&mut self, input: ParseStream<'_>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::interval) {
            let keyword: kw::interval = input.parse()?;
            self.timing_attempted = true;
            self.timing_keywords.push(("interval", keyword.span));
            let value = parse_value(input, keyword.span, INTERVAL_HELP)?;
            let interval = match parse_seconds(&value, &INTERVAL)? {
                Number::Seconds(seconds) => Interval::Seconds { seconds, value },
                Number::Str(cron) => Interval::Cron(cron),
            };
            set(&mut self.interval, interval, "interval", keyword.span)
        } else if lookahead.peek(kw::once_after) {
            let keyword: kw::once_after = input.parse()?;
            self.timing_attempted = true;
            self.timing_keywords.push(("once_after", keyword.span));
            let value = parse_value(input, keyword.span, ONCE_AFTER_HELP)?;
            let seconds = match parse_seconds(&value, &ONCE_AFTER)? {
                Number::Seconds(seconds) => seconds,
                Number::Str(text) => return Err(seconds_string(&text, &ONCE_AFTER)),
            };
            let once_after = OnceAfter { seconds, value };
            set(&mut self.once_after, once_after, "once_after", keyword.span)
        } else if let Some(policy) = policy_keyword(input) {
            let keyword = Ident::parse_any(input)?;
            self.policies.parse(policy, keyword.span(), input)
        } else if lookahead.peek(kw::on_start) {
            let keyword: kw::on_start = input.parse()?;
            let value = if input.is_empty() {
                true
            } else {
                let help = "expected `on_start` or `on_start = true|false`";
                match parse_value(input, keyword.span, help)? {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(LitBool { value, .. }),
                        ..
                    }) => value,
                    other => return Err(syn::Error::new_spanned(other, help)),
                }
            };
            let on_start = OnStart {
                value,
                keyword: keyword.span,
            };
            set(&mut self.on_start, on_start, "on_start", keyword.span)
        } else if lookahead.peek(kw::name) {
            let keyword: kw::name = input.parse()?;
            let help = "expected `name = \"<service name>\"`";
            let name = string_value(parse_value(input, keyword.span, help)?, help)?;
            set(&mut self.name, name, "name", keyword.span)
        } else if lookahead.peek(kw::tz) {
            let keyword: kw::tz = input.parse()?;
            let help = "expected `tz = \"<IANA time zone>\"`, such as `tz = \"Europe/Berlin\"`";
            let tz = string_value(parse_value(input, keyword.span, help)?, help)?;
            set(&mut self.tz, tz, "tz", keyword.span)
        } else if input.peek(Ident::peek_any) {
            let unknown = Ident::parse_any(input)?;
            let written = unknown.unraw().to_string();
            let guess = guess(&written);
            self.timing_attempted |= matches!(guess, Some("interval" | "once_after"));
            let hint =
                guess.map_or_else(String::new, |valid| format!(" (did you mean `{valid}`?)"));
            Err(syn::Error::new(
                unknown.span(),
                format!("unknown argument `{written}`{hint}: valid arguments are {VALID}"),
            ))
        } else if input.peek(Lit) {
            let lit: Lit = input.parse()?;
            let message = match &lit {
                Lit::Int(_) | Lit::Float(_) | Lit::Str(_) => {
                    self.timing_attempted = true;
                    format!(
                        "expected `interval = {}`: name the argument",
                        quote::ToTokens::to_token_stream(&lit)
                    )
                }
                _ => format!("expected an argument: valid arguments are {VALID}"),
            };
            Err(syn::Error::new(lit.span(), message))
        } else {
            Err(lookahead.error())
        }
    }
}

/// The policy argument that `input` starts with, if it starts with one.
fn policy_keyword(input: ParseStream<'_>) -> Option<&'static str> {
    let (ident, _) = input.cursor().ident()?;
    let ident = ident.to_string();
    NAMES[5..].iter().copied().find(|name| *name == ident)
}

impl PolicyArgs {
    /// Parses `= <value>` of the policy argument `policy` (its keyword already read) into `self`.
    fn parse(&mut self, policy: &str, keyword: Span, input: ParseStream<'_>) -> syn::Result<()> {
        let (slot, argument) = match policy {
            "retries" | "misfire_limit" => {
                let (slot, argument) = if policy == "retries" {
                    (&mut self.retries, &RETRIES)
                } else {
                    (&mut self.misfire_limit, &MISFIRE_LIMIT)
                };
                let value = parse_value(input, keyword, argument.help)?;
                let count = parse_count(&value, argument)?;
                let count = CountValue {
                    count,
                    value,
                    keyword,
                };
                return set(slot, count, argument.name, keyword);
            }
            "misfire" => {
                let value = parse_value(input, keyword, MISFIRE_HELP)?;
                let word = match value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(word),
                        ..
                    }) => word,
                    // `misfire = skip`: the word without its quotes.
                    Expr::Path(path) if path.path.get_ident().is_some() => {
                        let word = quote::ToTokens::to_token_stream(&path);
                        return Err(syn::Error::new_spanned(
                            path,
                            format!("expected `misfire = \"{word}\"`: the policy is a string"),
                        ));
                    }
                    other => return Err(syn::Error::new_spanned(other, MISFIRE_HELP)),
                };
                let misfire = MisfireValue { word, keyword };
                return set(&mut self.misfire, misfire, "misfire", keyword);
            }
            "timeout" => (&mut self.timeout, &TIMEOUT),
            "retry_backoff" => (&mut self.retry_backoff, &RETRY_BACKOFF),
            "retry_backoff_max" => (&mut self.retry_backoff_max, &RETRY_BACKOFF_MAX),
            "jitter" => (&mut self.jitter, &JITTER),
            _ => (&mut self.misfire_grace, &MISFIRE_GRACE),
        };
        let value = parse_value(input, keyword, argument.help)?;
        let seconds = match parse_seconds(&value, argument)? {
            Number::Seconds(seconds) => seconds,
            Number::Str(text) => return Err(seconds_string(&text, argument)),
        };
        let seconds = SecondsValue {
            seconds,
            value,
            keyword,
        };
        set(slot, seconds, argument.name, keyword)
    }
}

/// The whole number that `<argument> = <value>` stands for: an integer literal, possibly negative.
fn parse_count(value: &Expr, argument: &CountArgument) -> syn::Result<i128> {
    let CountArgument { name, noun, help } = argument;
    let (negative, lit) = match value {
        Expr::Lit(ExprLit { lit, .. }) => (false, lit),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            Expr::Lit(ExprLit {
                lit: lit @ (Lit::Int(_) | Lit::Float(_)),
                ..
            }) => (true, lit),
            _ => return Err(count_not_a_literal(value, argument)),
        },
        _ => return Err(count_not_a_literal(value, argument)),
    };
    let int = match lit {
        Lit::Int(int) => int,
        Lit::Float(float) => {
            return Err(syn::Error::new(
                float.span(),
                format!("{help}: the {noun} is a whole number"),
            ))
        }
        Lit::Str(text) => {
            let message = match text.value().trim().parse::<u64>() {
                Ok(count) => format!(
                    "expected `{name} = {count}`: the {noun} is a plain whole number, not a string"
                ),
                Err(_) => format!("{help}: the {noun} is a plain whole number, not a string"),
            };
            return Err(syn::Error::new(text.span(), message));
        }
        _ => return Err(syn::Error::new(lit.span(), *help)),
    };
    if !int.suffix().is_empty() {
        return Err(syn::Error::new(
            int.span(),
            format!(
                "unexpected suffix `{}`: the {noun} is a plain whole number, such as `{name} = 3`",
                int.suffix()
            ),
        ));
    }
    // Beyond `i128`: saturated, and rejected as out of range all the same.
    let count = int.base10_digits().parse::<i128>().unwrap_or(i128::MAX);
    Ok(if negative { -count } else { count })
}

/// The error for `<count argument> = <something other than a literal>`.
fn count_not_a_literal(value: &Expr, argument: &CountArgument) -> syn::Error {
    syn::Error::new_spanned(
        value,
        format!(
            "{}: the {} must be a literal, not an expression or a constant",
            argument.help, argument.noun
        ),
    )
}

/// Stores an argument, rejecting a second occurrence.
fn set<T>(slot: &mut Option<T>, value: T, name: &str, span: Span) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            span,
            format!("duplicate argument `{name}`: each argument may appear once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// Parses `= <expression>` after an argument's keyword; `help` says how the argument is written.
fn parse_value(input: ParseStream<'_>, keyword: Span, help: &str) -> syn::Result<Expr> {
    if input.is_empty() {
        return Err(syn::Error::new(keyword, help));
    }
    let eq: Token![=] = input.parse().map_err(|e| syn::Error::new(e.span(), help))?;
    if input.is_empty() {
        return Err(syn::Error::new(eq.span, help));
    }
    input.parse()
}

/// The value of a number-of-seconds argument (`interval = <value>` or `once_after = <value>`):
/// a number, possibly negative, or a string, left to the caller.
enum Number {
    /// A number of seconds; may be zero, negative or infinite until validated.
    Seconds(f64),
    /// A string literal: a cron expression for `interval`.
    Str(LitStr),
}

/// The number or string that `<argument> = <value>` stands for.
fn parse_seconds(value: &Expr, argument: &SecondsArgument) -> syn::Result<Number> {
    let (negative, lit) = match value {
        Expr::Lit(ExprLit { lit, .. }) => (false, lit),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            Expr::Lit(ExprLit {
                lit: lit @ (Lit::Int(_) | Lit::Float(_)),
                ..
            }) => (true, lit),
            _ => return Err(not_a_literal(value, argument)),
        },
        _ => return Err(not_a_literal(value, argument)),
    };
    let (digits, suffix) = match lit {
        Lit::Str(text) => return Ok(Number::Str(text.clone())),
        Lit::Int(int) => (int.base10_digits(), int.suffix()),
        Lit::Float(float) => (float.base10_digits(), float.suffix()),
        _ => return Err(syn::Error::new(lit.span(), argument.help)),
    };
    if !suffix.is_empty() {
        let SecondsArgument { name, noun, .. } = argument;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "unexpected suffix `{suffix}`: the {noun} is a plain number of seconds, \
                 such as `{name} = 30` or `{name} = 0.5`"
            ),
        ));
    }
    let seconds: f64 = digits
        .parse()
        .map_err(|_| syn::Error::new(lit.span(), argument.help))?;
    Ok(Number::Seconds(if negative { -seconds } else { seconds }))
}

/// The error for `<argument> = <something other than a literal>`.
fn not_a_literal(value: &Expr, argument: &SecondsArgument) -> syn::Error {
    syn::Error::new_spanned(
        value,
        format!(
            "{}: the {} must be a literal, not an expression or a constant",
            argument.help, argument.noun
        ),
    )
}

/// The error for `<argument> = "<text>"` where a number of seconds is expected: suggests the
/// number when the text is one (`"30"`, or `"30s"` and `"5m"` in seconds).
fn seconds_string(text: &LitStr, argument: &SecondsArgument) -> syn::Error {
    let written = text.value();
    let written = written.trim();
    let number = if written
        .parse::<f64>()
        .is_ok_and(|seconds| seconds.is_finite() && seconds >= 0.0)
    {
        Some(written.to_owned())
    } else {
        scheduler_core::suggest::period_secs(written).map(|seconds| seconds.to_string())
    };
    let SecondsArgument {
        name,
        noun,
        help,
        string_note,
    } = argument;
    let message = if let Some(number) = number {
        format!(
            "expected `{name} = {number}`: the {noun} is a plain number of seconds, not a string"
        )
    } else {
        format!("{help}: the {noun} is a plain number of seconds, not a string{string_note}")
    };
    syn::Error::new(text.span(), message)
}

/// The string literal of `name = "..."` or `tz = "..."`.
fn string_value(value: Expr, help: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(other, help)),
    }
}

/// The argument that an unknown one was probably meant to be.
fn guess(written: &str) -> Option<&'static str> {
    match written.to_ascii_lowercase().as_str() {
        "every" | "cron" | "schedule" | "period" | "secs" | "seconds" => Some("interval"),
        "timezone" | "time_zone" | "zone" => Some("tz"),
        "run_on_start" | "immediate" | "immediately" | "run_at_start" => Some("on_start"),
        "once" | "delay" | "after" | "run_once" | "oneshot" | "one_shot" | "once_in"
        | "start_after" | "run_after" | "delay_secs" => Some("once_after"),
        "time_limit" | "timeout_secs" | "max_duration" | "max_runtime" | "deadline" => {
            Some("timeout")
        }
        "retry" | "max_retries" | "retry_count" | "attempts" | "max_attempts" | "retry_times" => {
            Some("retries")
        }
        "backoff" | "retry_delay" | "backoff_base" | "retry_interval" => Some("retry_backoff"),
        "backoff_max" | "max_backoff" | "backoff_cap" | "retry_backoff_cap" | "max_retry_delay" => {
            Some("retry_backoff_max")
        }
        "splay" | "random_delay" | "jitter_secs" | "spread" => Some("jitter"),
        "catch_up" | "catchup" | "misfire_policy" | "on_misfire" | "coalesce" => Some("misfire"),
        "grace" | "grace_time" | "misfire_grace_time" | "grace_period" => Some("misfire_grace"),
        "max_catch_up" | "catch_up_limit" | "misfire_max" => Some("misfire_limit"),
        lower => NAMES.into_iter().find(|valid| {
            valid.len() > 2 && scheduler_core::suggest::edit_distance(lower, valid) <= 2
        }),
    }
}

/// One comma-separated piece of the attribute's arguments.
enum Chunk {
    /// The tokens of one argument.
    Argument(TokenStream),
    /// A `,` with nothing before it.
    StrayComma(Span),
}

/// Splits the arguments at top-level commas; a single trailing comma is allowed.
fn split_arguments(attr: TokenStream) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = TokenStream::new();
    for token in attr {
        match token {
            TokenTree::Punct(punct) if punct.as_char() == ',' => {
                if current.is_empty() {
                    chunks.push(Chunk::StrayComma(punct.span()));
                } else {
                    chunks.push(Chunk::Argument(std::mem::take(&mut current)));
                }
            }
            other => current.extend([other]),
        }
    }
    if !current.is_empty() {
        chunks.push(Chunk::Argument(current));
    }
    chunks
}

/// Adds `error` to the errors collected so far.
pub(crate) fn combine(errors: &mut Option<syn::Error>, error: syn::Error) {
    match errors {
        Some(errors) => errors.combine(error),
        None => *errors = Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(attr: TokenStream) -> Vec<String> {
        Args::parse(attr)
            .errors
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn parses_every_argument() {
        let args = Args::parse(quote!(
            interval = "*/5 * * * *",
            on_start,
            name = "x",
            tz = "UTC",
        ));
        assert!(args.errors.is_none());
        assert!(matches!(args.interval, Some(Interval::Cron(ref c)) if c.value() == "*/5 * * * *"));
        assert!(args.on_start.is_some_and(|on_start| on_start.value));
        assert_eq!(args.name.unwrap().value(), "x");
        assert_eq!(args.tz.unwrap().value(), "UTC");
    }

    #[test]
    fn parses_numbers() {
        for (attr, expected) in [
            (quote!(interval = 30), 30.0),
            (quote!(interval = 0.5), 0.5),
            (quote!(interval = -2), -2.0),
            (quote!(interval = 1e3), 1000.0),
        ] {
            match Args::parse(attr).interval {
                Some(Interval::Seconds { seconds, .. }) => {
                    assert!((seconds - expected).abs() < 1e-9);
                }
                _ => panic!("expected seconds"),
            }
        }
    }

    #[test]
    fn on_start_forms() {
        let parse = |attr| Args::parse(attr).on_start.map(|on_start| on_start.value);
        assert_eq!(parse(quote!(interval = 1, on_start = false)), Some(false));
        assert_eq!(parse(quote!(interval = 1, on_start = true)), Some(true));
        assert_eq!(parse(quote!(interval = 1)), None);
    }

    #[test]
    fn reports_every_mistake() {
        let found = messages(quote!(intervall = 5, name = 5, interval = 1, interval = 2, , tz));
        assert_eq!(found.len(), 5, "{found:?}");
        let args = Args::parse(quote!(intervall = 5, name = 5, interval = 1, interval = 2, , tz));
        assert!(args.timing_attempted && args.interval.is_some() && args.name.is_none());
        assert!(found[0].starts_with("unknown argument `intervall` (did you mean `interval`?)"));
        assert!(found[1].starts_with("expected `name = \"<service name>\"`"));
        assert!(found[2].starts_with("duplicate argument `interval`"));
        assert!(found[3].starts_with("expected an argument before this `,`"));
        assert!(found[4].starts_with("expected `tz = "));
    }

    #[test]
    fn rejects_suffixes_and_expressions() {
        assert!(messages(quote!(interval = 30ms))[0].starts_with("unexpected suffix `ms`"));
        assert!(messages(quote!(interval = 5 * 60))[0].contains("must be a literal"));
        assert!(messages(quote!(30))[0].starts_with("expected `interval = 30`"));
    }

    #[test]
    fn parses_once_after() {
        for (attr, expected) in [
            (quote!(once_after = 30), 30.0),
            (quote!(once_after = 0), 0.0),
            (quote!(once_after = 2.5), 2.5),
            (quote!(once_after = -1), -1.0),
        ] {
            let args = Args::parse(attr);
            assert!(args.errors.is_none() && args.interval.is_none());
            let seconds = args.once_after.expect("once_after").seconds;
            assert!((seconds - expected).abs() < 1e-9, "{seconds}");
        }
        let args = Args::parse(quote!(interval = 5, once_after = 1));
        let keywords: Vec<_> = args.timing_keywords.iter().map(|(name, _)| *name).collect();
        assert_eq!(keywords, ["interval", "once_after"]);
    }

    #[test]
    fn rejects_malformed_once_after() {
        assert_eq!(
            messages(quote!(once_after = "30")),
            ["expected `once_after = 30`: the delay is a plain number of seconds, not a string"]
        );
        assert_eq!(
            messages(quote!(once_after = "2m")),
            ["expected `once_after = 120`: the delay is a plain number of seconds, not a string"]
        );
        assert!(messages(quote!(once_after = "*/5 * * * *"))[0].contains("goes in `interval`"));
        assert!(messages(quote!(once_after = "inf"))[0]
            .starts_with("expected `once_after = <seconds>`"));
        assert!(messages(quote!(once_after = 30s))[0].starts_with(
            "unexpected suffix `s`: the delay is a plain number of seconds, such as `once_after = 30`"
        ));
        assert!(messages(quote!(once_after = 2 * 60))[0].contains("the delay must be a literal"));
        assert!(messages(quote!(once_after))[0].starts_with("expected `once_after = <seconds>`"));
        assert!(
            messages(quote!(once_after = true))[0].starts_with("expected `once_after = <seconds>`")
        );
        assert!(messages(quote!(once_after = 1, once_after = 2))[0]
            .starts_with("duplicate argument `once_after`"));
        let args = Args::parse(quote!(once_after = "30"));
        assert!(args.timing_attempted && args.once_after.is_none());
    }

    #[test]
    fn guesses_once_after() {
        for written in [
            "once",
            "delay",
            "after",
            "onceafter",
            "once_afer",
            "Run_Once",
        ] {
            assert_eq!(guess(written), Some("once_after"), "{written}");
        }
        let found = messages(quote!(delay = 30));
        assert!(found[0].starts_with("unknown argument `delay` (did you mean `once_after`?)"));
        assert!(Args::parse(quote!(delay = 30)).timing_attempted);
    }

    #[test]
    fn guesses_policies() {
        for (written, expected) in [
            ("timout", "timeout"),
            ("time_limit", "timeout"),
            ("max_retries", "retries"),
            ("retry", "retries"),
            ("backoff", "retry_backoff"),
            ("max_backoff", "retry_backoff_max"),
            ("retry_backof_max", "retry_backoff_max"),
            ("jiter", "jitter"),
            ("catch_up", "misfire"),
            ("misfire_grace_time", "misfire_grace"),
            ("misfire_limt", "misfire_limit"),
        ] {
            assert_eq!(guess(written), Some(expected), "{written}");
        }
        let found = messages(quote!(interval = 5, max_retries = 3));
        assert!(
            found[0].starts_with("unknown argument `max_retries` (did you mean `retries`?)"),
            "{found:?}"
        );
        assert!(!Args::parse(quote!(max_retries = 3)).timing_attempted);
    }
}
