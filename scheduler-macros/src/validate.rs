//! Checking the arguments against each other and against `scheduler_core`, and the function's
//! signature against what the generated wrapper can call.

use proc_macro2::Span;
use quote::ToTokens;
use scheduler_core::{suggest, Schedule, ScheduleError};
use syn::punctuated::Punctuated;
use syn::{FnArg, LitStr, Signature, Type};

use crate::args::{combine, Args, Interval, OnStart, OnceAfter, INTERVAL_HELP};
use crate::policies::{self, Policies};

/// When the service runs, checked with the runtime's own parser.
pub(crate) enum Timing {
    /// A cron expression that parses and can fire.
    Cron(LitStr),
    /// A positive, finite number of seconds.
    Seconds(f64),
    /// Once, this many seconds (zero or more, finite) after the manager starts.
    OnceAfter(f64),
}

/// The checked arguments of the attribute.
pub(crate) struct Settings {
    /// When the service runs.
    pub(crate) timing: Timing,
    /// The IANA time zone of a cron interval.
    pub(crate) tz: Option<LitStr>,
    /// The service's name; `None` for the function's path.
    pub(crate) name: Option<LitStr>,
    /// Whether the service also runs once right at start; always `false` for `once_after`.
    pub(crate) on_start: bool,
    /// The job policies.
    pub(crate) policies: Policies,
}

/// How the generated wrapper calls the function.
pub(crate) struct Callable {
    /// Whether the function takes a `JobContext`.
    pub(crate) takes_context: bool,
    /// The `State<T>` parameters' types, in order; none: the function is called directly.
    pub(crate) state_types: Vec<Type>,
    /// Whether it is an `async fn`.
    pub(crate) is_async: bool,
}

/// Checks the arguments: a valid interval or one-shot delay (not both), a known time zone that fits
/// the interval, `on_start` only with an interval, a non-empty name, and the job policies (see
/// [`policies`]). Every problem is reported, spanned on its token.
///
/// The errors found while parsing come first; the well-formed arguments are checked all the same.
pub(crate) fn arguments(mut args: Args) -> syn::Result<Settings> {
    let mut errors = args.errors.take();
    // A service is a one-shot when every timing keyword says so (a conflict is reported below).
    let one_shot = !args.timing_keywords.is_empty()
        && args
            .timing_keywords
            .iter()
            .all(|(name, _)| *name == "once_after");
    let policy_args = std::mem::take(&mut args.policies);
    let mut tz_is_valid = true;
    if let Some(tz) = &args.tz {
        // The zone is checked on its own, so that its error points at the zone and does not hide a
        // mistake in the expression.
        if let Err(error @ ScheduleError::UnknownTimeZone(_)) =
            Schedule::cron_in("* * * * *", &tz.value())
        {
            tz_is_valid = false;
            combine(&mut errors, syn::Error::new(tz.span(), error));
        }
    }
    if let Some(name) = &args.name {
        if name.value().trim().is_empty() {
            combine(
                &mut errors,
                syn::Error::new(
                    name.span(),
                    "`name` must not be empty: give a name such as `name = \"daily-report\"`, \
                     or remove it to name the service after the function",
                ),
            );
        }
    }
    let timing = if let Some(error) = conflicting_timing(&args.timing_keywords) {
        // Which of the two was meant is unknown: neither is checked further.
        combine(&mut errors, error);
        None
    } else if let Some(interval) = args.interval {
        interval_timing(interval, args.tz.as_ref(), tz_is_valid, &mut errors)
    } else if let Some(once_after) = args.once_after {
        Some(once_after_timing(
            once_after,
            args.tz.as_ref(),
            args.on_start,
            &mut errors,
        ))
    } else {
        // A malformed or misspelled `interval` or `once_after` was reported while parsing.
        if !args.timing_attempted {
            combine(
                &mut errors,
                syn::Error::new(
                    Span::call_site(),
                    format!(
                        "missing argument `interval` or `once_after`: {INTERVAL_HELP} to run \
                         the service repeatedly, or `once_after = <seconds>` to run it once"
                    ),
                ),
            );
        }
        None
    };
    let policies = policies::check(policy_args, one_shot, &mut errors);
    match (errors, timing) {
        (Some(errors), _) => Err(errors),
        (None, Some(timing)) => Ok(Settings {
            timing,
            tz: args.tz,
            name: args.name,
            on_start: args.on_start.is_some_and(|on_start| on_start.value),
            policies,
        }),
        (None, None) => unreachable!("an interval that is neither valid nor reported"),
    }
}

/// The error for the first `interval` or `once_after` that follows one of the other kind.
fn conflicting_timing(keywords: &[(&'static str, Span)]) -> Option<syn::Error> {
    let (first, _) = keywords.first()?;
    let (_, second) = keywords.iter().find(|(name, _)| name != first)?;
    Some(syn::Error::new(
        *second,
        "`interval` and `once_after` are alternatives: a service either repeats or runs once",
    ))
}

/// Checks `interval = ...`: a cron expression as the runtime parses it, or a valid period without
/// `tz`.
fn interval_timing(
    interval: Interval,
    tz: Option<&LitStr>,
    tz_is_valid: bool,
    errors: &mut Option<syn::Error>,
) -> Option<Timing> {
    match interval {
        Interval::Cron(expr) => match cron(&expr, tz, tz_is_valid) {
            Ok(()) => Some(Timing::Cron(expr)),
            Err(error) => {
                combine(errors, error);
                None
            }
        },
        Interval::Seconds { seconds, value } => {
            if let Err(error) = Schedule::every_secs(seconds) {
                combine(errors, syn::Error::new_spanned(value, error));
            }
            reject_tz(tz, &format!("an interval of {seconds} seconds"), errors);
            Some(Timing::Seconds(seconds))
        }
    }
}

/// A `tz` next to a timing that does not read the wall clock (`what`, e.g. "an interval of 30
/// seconds") is a mistake: point at it.
fn reject_tz(tz: Option<&LitStr>, what: &str, errors: &mut Option<syn::Error>) {
    if let Some(tz) = tz {
        combine(
            errors,
            syn::Error::new(
                tz.span(),
                format!(
                    "`tz` applies only to a cron interval: {what} runs the same in every time \
                     zone; remove `tz`"
                ),
            ),
        );
    }
}

/// Checks `once_after = <seconds>` with the runtime's `Schedule::once_after_secs`, and that neither
/// `tz` nor `on_start` comes with it.
fn once_after_timing(
    once_after: OnceAfter,
    tz: Option<&LitStr>,
    on_start: Option<OnStart>,
    errors: &mut Option<syn::Error>,
) -> Timing {
    let OnceAfter { seconds, value } = once_after;
    if let Err(error) = Schedule::once_after_secs(seconds) {
        combine(errors, syn::Error::new_spanned(value, error));
    }
    reject_tz(
        tz,
        &format!("a service run once {seconds} seconds after start"),
        errors,
    );
    if let Some(on_start) = on_start {
        combine(
            errors,
            syn::Error::new(
                on_start.keyword,
                "`on_start` does not apply to `once_after`: a one-shot service runs once; use \
                 `once_after = 0` to run it right at start",
            ),
        );
    }
    // `-0.0` passes the check above; the generated literal is `0f64` all the same.
    Timing::OnceAfter(seconds.abs())
}

/// Checks a cron expression as the runtime will parse it: `Schedule::cron`, or `Schedule::cron_in`
/// when `tz` is given and `tz_is_valid`.
fn cron(expr: &LitStr, tz: Option<&LitStr>, tz_is_valid: bool) -> syn::Result<()> {
    let text = expr.value();
    let parsed = match tz {
        Some(tz) if tz_is_valid => Schedule::cron_in(&text, &tz.value()),
        _ => Schedule::cron(&text),
    };
    let schedule = parsed.map_err(|error| {
        let message = match error {
            ScheduleError::Empty => error.to_string(),
            error => format!("invalid cron expression: {error}"),
        };
        // `interval = "30s"`: a period written as text, which is no cron expression either.
        let message = match suggest::period_secs(&text) {
            Some(seconds) => format!(
                "{message}; for a period of {seconds} seconds, write `interval = {seconds}` (a \
                 plain number of seconds, without quotes)"
            ),
            None => message,
        };
        syn::Error::new(expr.span(), message)
    })?;
    if schedule.never_fires() {
        // A 7-field expression ends in a year field, which can rule out the remaining dates too.
        let fields = if text.split_whitespace().count() == 7 {
            "day-of-month, month, day-of-week and year fields"
        } else {
            "day-of-month, month and day-of-week fields"
        };
        return Err(syn::Error::new(
            expr.span(),
            format!(
                "cron expression '{}' never fires: no date matches its {fields}",
                text.trim()
            ),
        ));
    }
    Ok(())
}

/// Checks that the generated wrapper can call the function: not `unsafe`, not generic, not
/// variadic, no `self`, and no argument or one `JobContext`.
pub(crate) fn signature(sig: &Signature) -> syn::Result<Callable> {
    if let Some(variadic) = &sig.variadic {
        // The one error for a C-variadic function: its `unsafe` and its arguments follow from it.
        return Err(syn::Error::new_spanned(
            variadic,
            "a background service cannot be variadic: it takes `JobContext` and `State<T>` parameters only",
        ));
    }
    let mut errors = None;
    if let Some(unsafety) = &sig.unsafety {
        combine(
            &mut errors,
            syn::Error::new(
                unsafety.span,
                "a background service cannot be an `unsafe fn`: the scheduler cannot uphold its \
                 safety contract; make it safe and use an `unsafe` block inside",
            ),
        );
    }
    if !sig.generics.params.is_empty() {
        combine(
            &mut errors,
            syn::Error::new_spanned(
                &sig.generics,
                "a background service cannot be generic: the scheduler has no way to choose its \
                 type, lifetime or const parameters",
            ),
        );
    }
    let mut takes_context = false;
    let mut state_types = Vec::new();
    let typed = sig
        .inputs
        .iter()
        .filter(|input| matches!(input, FnArg::Typed(_)))
        .count();
    if typed > MAX_PARAMETERS {
        combine(&mut errors, too_many_parameters(&sig.inputs, typed));
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => combine(
                &mut errors,
                syn::Error::new_spanned(
                    receiver,
                    "a background service cannot take `self`: make it a free function \
                     (outside any `impl` block)",
                ),
            ),
            FnArg::Typed(arg) => match parameter(&arg.ty) {
                Ok(Parameter::Context) if takes_context => combine(
                    &mut errors,
                    syn::Error::new_spanned(
                        &arg.ty,
                        "a background service takes at most one `JobContext`: remove this one \
                         (clone the first if you need two)",
                    ),
                ),
                Ok(Parameter::Context) => takes_context = true,
                Ok(Parameter::State(ty)) => state_types.push(*ty),
                Err(error) => combine(&mut errors, error),
            },
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(Callable {
            takes_context,
            state_types,
            is_async: sig.asyncness.is_some(),
        }),
    }
}

/// At most this many parameters: the runtime's `Handler` is implemented up to this arity.
const MAX_PARAMETERS: usize = 8;

/// What a parameter of the function receives.
enum Parameter {
    /// The run's `JobContext`.
    Context,
    /// A resource: the whole `State<T>` type, as written.
    State(Box<Type>),
}

/// Classifies a parameter by its type: `JobContext` or `State<T>` (by any path), or a spanned
/// error saying what to write instead.
fn parameter(ty: &Type) -> syn::Result<Parameter> {
    match ty {
        Type::Group(group) => parameter(&group.elem),
        Type::Paren(paren) => parameter(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last();
            match last {
                Some(last) if last.ident == "JobContext" && last.arguments.is_none() => {
                    Ok(Parameter::Context)
                }
                Some(last) if last.ident == "State" => match &last.arguments {
                    syn::PathArguments::AngleBracketed(args)
                        if args.args.len() == 1
                            && matches!(args.args.first(), Some(syn::GenericArgument::Type(_))) =>
                    {
                        Ok(Parameter::State(Box::new(ty.clone())))
                    }
                    _ => Err(syn::Error::new_spanned(
                        ty,
                        "`State` takes the type of the resource, such as `State<PgPool>`",
                    )),
                },
                _ => Err(wrong_argument(ty)),
            }
        }
        Type::Reference(reference) => Err(match parameter(&reference.elem) {
            Ok(Parameter::Context) => syn::Error::new_spanned(
                ty,
                "expected `JobContext`, not a reference: a background service takes its \
                 context by value (it is cheap to clone)",
            ),
            Ok(Parameter::State(_)) => syn::Error::new_spanned(
                ty,
                "expected `State<..>`, not a reference: a background service takes its state by \
                 value (it is an `Arc`, cheap to clone)",
            ),
            Err(_) => wrong_argument(ty),
        }),
        _ => Err(wrong_argument(ty)),
    }
}

/// The error for a parameter that is neither a `JobContext` nor a `State<T>`.
fn wrong_argument(ty: &Type) -> syn::Error {
    let shown = ty.to_token_stream().to_string();
    syn::Error::new_spanned(
        ty,
        format!(
            "a background service cannot be given `{shown}`: it takes `JobContext` and \
             `State<T>` parameters; give the value to `ServiceManager::builder().state(value)` \
             and take `State<{shown}>`"
        ),
    )
}

/// The error for the parameters beyond [`MAX_PARAMETERS`].
fn too_many_parameters(inputs: &Punctuated<FnArg, syn::Token![,]>, typed: usize) -> syn::Error {
    let extra: proc_macro2::TokenStream = inputs
        .iter()
        .skip(MAX_PARAMETERS)
        .flat_map(ToTokens::into_token_stream)
        .collect();
    syn::Error::new_spanned(
        extra,
        format!(
            "a background service takes at most {MAX_PARAMETERS} parameters, found {typed}: \
             group resources into one struct and take `State<ThatStruct>`"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn arg_errors(attr: proc_macro2::TokenStream) -> Vec<String> {
        match arguments(Args::parse(attr)) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn sig_errors(item: proc_macro2::TokenStream) -> Vec<String> {
        let item: syn::ItemFn = syn::parse2(item).unwrap();
        match signature(&item.sig) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_valid_arguments() {
        assert!(arg_errors(quote!(interval = 30)).is_empty());
        assert!(arg_errors(quote!(interval = "0 9 * * MON-FRI", tz = "Europe/Berlin")).is_empty());
    }

    #[test]
    fn uses_the_runtime_messages() {
        assert_eq!(
            arg_errors(quote!(interval = "61 * * * *")),
            ["invalid cron expression: minute field: 61 is out of range 0-59 in '61 * * * *'"]
        );
        assert!(arg_errors(quote!(interval = "0 0 30 2 *"))[0].contains("never fires"));
        assert!(arg_errors(quote!(interval = 0))[0].starts_with("invalid period 0"));
        assert!(arg_errors(quote!(interval = -1.5))[0].starts_with("invalid period -1.5"));
    }

    #[test]
    fn hints_at_a_number_for_a_period_in_a_string() {
        for (attr, fix) in [
            (quote!(interval = "30s"), "interval = 30"),
            (quote!(interval = "30"), "interval = 30"),
            (quote!(interval = "5 min"), "interval = 300"),
            (quote!(interval = "500ms"), "interval = 0.5"),
        ] {
            let found = arg_errors(attr);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].starts_with("invalid cron expression: expected 5 fields"));
            assert!(
                found[0].ends_with(&format!(
                    "write `{fix}` (a plain number of seconds, without quotes)"
                )),
                "{found:?}"
            );
        }
        assert!(!arg_errors(quote!(interval = "61 * * * *"))[0].contains("write `interval"));
        assert!(!arg_errors(quote!(interval = "0s"))[0].contains("write `interval"));
    }

    #[test]
    fn reports_zone_and_expression_together() {
        let found = arg_errors(quote!(
            interval = "61 * * * *",
            tz = "Mars/Olympus",
            name = ""
        ));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("unknown time zone 'Mars/Olympus'"));
        assert!(found[1].starts_with("`name` must not be empty"));
        assert!(found[2].starts_with("invalid cron expression"));
    }

    #[test]
    fn rejects_tz_with_seconds_and_missing_interval() {
        assert!(arg_errors(quote!(interval = 5, tz = "UTC"))[0].starts_with("`tz` applies only"));
        assert!(arg_errors(quote!(on_start))[0]
            .starts_with("missing argument `interval` or `once_after`"));
        assert_eq!(arg_errors(quote!(delay = 5)).len(), 1);
        assert_eq!(arg_errors(quote!(every = 5)).len(), 1);
        assert_eq!(arg_errors(quote!("* * * * *")).len(), 1);
        assert_eq!(arg_errors(quote!(nme = "x")).len(), 2);
    }

    #[test]
    fn checks_once_after() {
        for attr in [
            quote!(once_after = 30),
            quote!(once_after = 0),
            quote!(once_after = 0.25, name = "warm-up"),
            quote!(once_after = -0.0),
        ] {
            match arguments(Args::parse(attr)) {
                Ok(Settings {
                    timing: Timing::OnceAfter(seconds),
                    on_start: false,
                    tz: None,
                    ..
                }) => assert!(seconds >= 0.0 && seconds.is_sign_positive()),
                _ => panic!("expected a one-shot timing"),
            }
        }
        assert_eq!(
            arg_errors(quote!(once_after = -5)),
            ["invalid delay -5: expected a finite number of seconds, zero or more"]
        );
        assert!(arg_errors(quote!(once_after = 1e999))[0].starts_with("invalid delay inf"));
        assert!(arg_errors(quote!(once_after = 5, tz = "UTC"))[0].starts_with("`tz` applies only"));
        for attr in [
            quote!(once_after = 5, on_start),
            quote!(on_start = false, once_after = 5),
        ] {
            assert_eq!(
                arg_errors(attr),
                [
                    "`on_start` does not apply to `once_after`: a one-shot service runs once; use \
                  `once_after = 0` to run it right at start"
                ]
            );
        }
    }

    #[test]
    fn rejects_interval_and_once_after_together() {
        let conflict =
            "`interval` and `once_after` are alternatives: a service either repeats or runs once";
        for attr in [
            quote!(interval = 5, once_after = 1),
            quote!(once_after = 1, interval = "* * * * *", tz = "UTC", on_start),
            quote!(interval = 5, once_after = "x"),
        ] {
            let found = arg_errors(attr);
            assert_eq!(
                found.last().map(String::as_str),
                Some(conflict),
                "{found:?}"
            );
        }
        assert_eq!(arg_errors(quote!(interval = 5, once_after = 1)).len(), 1);
        assert_eq!(
            arg_errors(quote!(
                once_after = 1,
                interval = "* * * * *",
                tz = "UTC",
                on_start
            ))
            .len(),
            1
        );
    }

    #[test]
    fn checks_signatures() {
        assert!(sig_errors(quote!(
            async fn f() {}
        ))
        .is_empty());
        assert!(sig_errors(quote!(
            fn f(_: scheduler::JobContext) {}
        ))
        .is_empty());
        assert!(sig_errors(quote!(
            fn f<T>() {}
        ))[0]
            .contains("cannot be generic"));
        assert!(sig_errors(quote!(
            unsafe fn f() {}
        ))[0]
            .contains("`unsafe fn`"));
        assert!(sig_errors(quote!(
            fn f(&self) {}
        ))[0]
            .contains("cannot take `self`"));
        assert!(sig_errors(quote!(
            fn f(x: u32) {}
        ))[0]
            .starts_with("a background service cannot be given `u32`"));
        assert!(sig_errors(quote!(
            async fn f(db: State<Db>, ctx: scheduler::JobContext, h: scheduler::State<Http>) {}
        ))
        .is_empty());
        assert!(sig_errors(quote!(
            fn f(db: &State<Db>) {}
        ))[0]
            .contains("not a reference"));
        assert!(sig_errors(quote!(
            fn f(db: State) {}
        ))[0]
            .contains("`State<PgPool>`"));
        assert!(sig_errors(quote!(
            fn f(a: JobContext, b: JobContext) {}
        ))[0]
            .contains("at most one `JobContext`"));
        assert_eq!(
            sig_errors(quote!(
                fn f(
                    a: State<A>,
                    b: State<B>,
                    c: State<C>,
                    d: State<D>,
                    e: State<E>,
                    f: State<F>,
                    g: State<G>,
                    h: State<H>,
                    i: State<I>,
                ) {
                }
            )),
            [
                "a background service takes at most 8 parameters, found 9: group resources into \
              one struct and take `State<ThatStruct>`"
            ]
        );
        assert!(sig_errors(quote!(
            fn f(x: &JobContext) {}
        ))[0]
            .contains("not a reference"));
        assert_eq!(
            sig_errors(quote!(
                fn f(x: JobContext, y: u8, z: &str) {}
            ))
            .len(),
            2,
            "one error per parameter it cannot extract"
        );
        assert_eq!(
            sig_errors(quote!(
                unsafe extern "C" fn f(x: u32, ...) {}
            )),
            ["a background service cannot be variadic: it takes `JobContext` and `State<T>` parameters only"]
        );
    }
}
