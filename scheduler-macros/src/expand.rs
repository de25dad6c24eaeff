//! Generating the code: the user's function unchanged, and beside it a wrapper registered with
//! `inventory`, all through `::scheduler::__private`.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Item, ItemFn, ReturnType};

use crate::args::{combine, Args};
use crate::policies::{Misfire, Policies};
use crate::validate::{self, Callable, Settings, Timing};

/// Expands `#[background_service(attr)] item`, or returns every error found in the arguments and
/// the signature.
pub(crate) fn background_service(
    attr: TokenStream,
    item: &TokenStream,
) -> syn::Result<TokenStream> {
    let mut errors = None;
    let settings = match validate::arguments(Args::parse(attr)) {
        Ok(settings) => Some(settings),
        Err(error) => {
            combine(&mut errors, error);
            None
        }
    };
    let function = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => Some(function),
        Ok(Item::Impl(block)) => {
            return match (crate::object::Object::parse(&block), errors, settings) {
                (Ok(object), None, Some(settings)) => Ok(object.generate(item, &settings)),
                (Err(error), mut errors, _) => {
                    combine(&mut errors, error.clone());
                    Err(errors.unwrap_or(error))
                }
                (Ok(_), Some(errors), _) => Err(errors),
                (Ok(_), None, None) => unreachable!("no settings without an error"),
            };
        }
        Ok(_) => {
            combine(
                &mut errors,
                syn::Error::new(
                    Span::call_site(),
                    "`#[background_service]` applies to functions, such as \
                     `async fn refresh_cache() -> anyhow::Result<()>`, and to `impl` blocks with \
                     a `job(&self, ..)` method",
                ),
            );
            None
        }
        Err(error) => {
            combine(&mut errors, error);
            None
        }
    };
    let callable = match function
        .as_ref()
        .map(|function| validate::signature(&function.sig))
    {
        Some(Ok(callable)) => Some(callable),
        Some(Err(error)) => {
            combine(&mut errors, error);
            None
        }
        None => None,
    };
    match (errors, settings, function, callable) {
        (None, Some(settings), Some(function), Some(callable)) => {
            Ok(generate(item, &function, &settings, &callable))
        }
        (Some(errors), ..) => Err(errors),
        (None, ..) => unreachable!("a missing part without an error"),
    }
}

/// The user's function, as written, followed by its registration.
fn generate(
    item: &TokenStream,
    function: &ItemFn,
    settings: &Settings,
    callable: &Callable,
) -> TokenStream {
    let (wrapper, job) = wrapper(function, callable);
    // A `#[cfg]` below the attribute removes the function; the registration must go with it.
    let cfgs: Vec<_> = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .collect();
    let fn_name = function.sig.ident.unraw().to_string();
    let registration = registration(settings, &fn_name, &wrapper, &job);
    // The scheduler hands each `State` over by value, so clippy's advice to borrow it (given for
    // plain fns only) cannot be followed.
    let allow = (!callable.state_types.is_empty() && !callable.is_async)
        .then(|| quote!(#[allow(clippy::needless_pass_by_value)]));
    quote! {
        #allow
        #item

        #(#cfgs)*
        #registration
    }
}

/// The registration of a service: `wrapper` (items the job needs) and the `RegisteredJob` `job`,
/// under the attribute's name or `default_name` after the module path.
pub(crate) fn registration(
    settings: &Settings,
    default_name: &str,
    wrapper: &TokenStream,
    job: &TokenStream,
) -> TokenStream {
    let name = settings.name.as_ref().map_or_else(
        || quote!(::core::concat!(::core::module_path!(), "::", #default_name)),
        |name| quote!(#name),
    );
    let timing = match &settings.timing {
        Timing::Cron(expr) => quote!(::scheduler::__private::RegisteredTiming::Cron(#expr)),
        Timing::Seconds(seconds) => {
            let seconds = Literal::f64_suffixed(*seconds);
            quote!(::scheduler::__private::RegisteredTiming::Seconds(#seconds))
        }
        Timing::OnceAfter(seconds) => {
            let seconds = Literal::f64_suffixed(*seconds);
            quote!(::scheduler::__private::RegisteredTiming::OnceAfter(#seconds))
        }
    };
    let time_zone = settings.tz.as_ref().map_or_else(
        || quote!(::core::option::Option::None),
        |tz| quote!(::core::option::Option::Some(#tz)),
    );
    let on_start = settings.on_start;
    let policies = policies(&settings.policies);
    quote! {
        const _: () = {
            #wrapper

            ::scheduler::__private::inventory::submit! {
                ::scheduler::__private::Registration {
                    name: #name,
                    timing: #timing,
                    time_zone: #time_zone,
                    on_start: #on_start,
                    policies: #policies,
                    job: #job,
                    file: ::core::file!(),
                    line: ::core::line!(),
                }
            }
        };
    }
}

/// The wrapper the registration calls, and the `RegisteredJob` naming it: for a function with
/// `State` parameters, a binder made by the runtime's `Handler`; otherwise a direct call, async or
/// blocking.
fn wrapper(function: &ItemFn, callable: &Callable) -> (TokenStream, TokenStream) {
    let ident = &function.sig.ident;
    // Mixed-site hygiene keeps the parameter apart from the user's names (even a function `ctx`).
    let (param, args) = if callable.takes_context {
        let ctx = Ident::new("ctx", Span::mixed_site());
        (quote!(#ctx), quote!(#ctx))
    } else {
        (
            Ident::new("_ctx", Span::mixed_site()).into_token_stream(),
            quote!(),
        )
    };
    // Type errors about the returned value (`IntoJobResult`) point at the return type.
    let result_span = match &function.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let mut callee = ident.clone();
    callee.set_span(result_span);
    if !callable.state_types.is_empty() {
        // Resources are bound when the manager is built, through the runtime's `Handler`; each
        // parameter's type is checked on its own token first, so a type that is no job parameter
        // (say, axum's `State`) is reported there.
        let checks = callable.state_types.iter().map(|ty| {
            quote_spanned! {ty.span()=>
                ::scheduler::__private::assert_job_param::<#ty>();
            }
        });
        (
            quote! {
                fn __scheduler_job() -> ::scheduler::__private::Binder {
                    #(#checks)*
                    ::scheduler::__private::Binder::of(#callee)
                }
            },
            quote!(::scheduler::__private::RegisteredJob::Handler(
                __scheduler_job
            )),
        )
    } else if callable.is_async {
        let run = quote_spanned! {result_span=>
            ::scheduler::__private::IntoJobResult::into_job_result(#callee(#args).await)
        };
        // A future that is not `Send` is reported at the function's `async`, and the compiler then
        // quotes the bound of `job_future`, which says why a job must be `Send`.
        let async_span = function
            .sig
            .asyncness
            .map_or(ident.span(), |token| token.span);
        let boxed = quote_spanned! {async_span=>
            ::scheduler::__private::job_future(async move { #run })
        };
        (
            quote! {
                fn __scheduler_job(#param: ::scheduler::JobContext) -> ::scheduler::__private::BoxJobFuture {
                    #boxed
                }
            },
            quote!(::scheduler::__private::RegisteredJob::Async(
                __scheduler_job
            )),
        )
    } else {
        let run = quote_spanned! {result_span=>
            ::scheduler::__private::IntoJobResult::into_job_result(#callee(#args))
        };
        (
            quote! {
                fn __scheduler_job(#param: ::scheduler::JobContext) -> ::core::result::Result<(), ::std::string::String> {
                    #run
                }
            },
            quote!(::scheduler::__private::RegisteredJob::Blocking(
                __scheduler_job
            )),
        )
    }
}

/// The registration's `RegisteredPolicies`, with every duration computed here, so that nothing is
/// converted (or can fail) at run time.
fn policies(policies: &Policies) -> TokenStream {
    let duration = |duration: Option<std::time::Duration>| {
        duration.map_or_else(
            || quote!(::core::option::Option::None),
            |duration| {
                let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
                quote!(::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)))
            },
        )
    };
    let timeout = duration(policies.timeout);
    let retries = policies.retries;
    let retry_backoff = duration(policies.retry_backoff);
    let retry_backoff_max = duration(policies.retry_backoff_max);
    let jitter = duration(policies.jitter);
    let misfire = match policies.misfire {
        None => quote!(::core::option::Option::None),
        Some(Misfire::Skip) => quote!(::core::option::Option::Some(::scheduler::Misfire::Skip)),
        Some(Misfire::Coalesce) => {
            quote!(::core::option::Option::Some(::scheduler::Misfire::Coalesce))
        }
        Some(Misfire::All(limit)) => {
            let limit = limit.map_or_else(
                || quote!(::scheduler::Misfire::DEFAULT_LIMIT),
                |limit| quote!(#limit),
            );
            quote!(::core::option::Option::Some(::scheduler::Misfire::All { limit: #limit }))
        }
    };
    let misfire_grace = duration(policies.misfire_grace);
    quote! {
        ::scheduler::__private::RegisteredPolicies {
            timeout: #timeout,
            retries: #retries,
            retry_backoff: #retry_backoff,
            retry_backoff_max: #retry_backoff_max,
            jitter: #jitter,
            misfire: #misfire,
            misfire_grace: #misfire_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(attr: TokenStream, item: &TokenStream) -> String {
        background_service(attr, item).unwrap().to_string()
    }

    #[test]
    fn async_with_context() {
        let out = expand(
            quote!(
                interval = "0 9 * * MON-FRI",
                tz = "Europe/Berlin",
                name = "daily-report"
            ),
            &quote!(
                async fn report(ctx: JobContext) {}
            ),
        );
        assert!(
            out.starts_with("async fn report (ctx : JobContext) { }"),
            "{out}"
        );
        assert!(
            out.contains("RegisteredJob :: Async (__scheduler_job)"),
            "{out}"
        );
        assert!(out.contains("report (ctx) . await"), "{out}");
        assert!(out.contains("Option :: Some (\"Europe/Berlin\")"), "{out}");
        assert!(out.contains("name : \"daily-report\""), "{out}");
        assert!(
            out.contains("timeout : :: core :: option :: Option :: None , retries : 0u32"),
            "{out}"
        );
    }

    #[test]
    fn policies_are_computed_durations() {
        let out = expand(
            quote!(
                interval = 60,
                timeout = 2.5,
                retries = 3,
                retry_backoff = 1,
                jitter = 0.25,
                misfire = "all"
            ),
            &quote!(
                async fn sync() {}
            ),
        );
        for expected in [
            "timeout : :: core :: option :: Option :: Some (:: core :: time :: Duration :: new (2u64 , 500000000u32))",
            "retries : 3u32",
            "retry_backoff : :: core :: option :: Option :: Some (:: core :: time :: Duration :: new (1u64 , 0u32))",
            "retry_backoff_max : :: core :: option :: Option :: None",
            "Duration :: new (0u64 , 250000000u32)",
            "misfire : :: core :: option :: Option :: Some (:: scheduler :: Misfire :: All { limit : :: scheduler :: Misfire :: DEFAULT_LIMIT })",
        ] {
            assert!(out.contains(expected), "{expected}\n{out}");
        }
        let out = expand(
            quote!(interval = 60, misfire = "all", misfire_limit = 4),
            &quote!(
                async fn sync() {}
            ),
        );
        assert!(out.contains("Misfire :: All { limit : 4u32 }"), "{out}");
    }

    #[test]
    fn sync_without_context() {
        let out = expand(
            quote!(interval = 0.5, on_start),
            &quote!(
                #[cfg(unix)]
                fn r#compact() {}
            ),
        );
        assert!(
            out.contains("RegisteredJob :: Blocking (__scheduler_job)"),
            "{out}"
        );
        assert!(
            out.contains("fn __scheduler_job (_ctx : :: scheduler :: JobContext)"),
            "{out}"
        );
        assert!(out.contains("Seconds (0.5f64)"), "{out}");
        assert!(out.contains("on_start : true"), "{out}");
        assert!(out.contains("\"::\" , \"compact\""), "{out}");
        assert!(out.contains("# [cfg (unix)] const _"), "{out}");
    }

    #[test]
    fn one_shot() {
        let out = expand(
            quote!(once_after = 30, name = "migrate"),
            &quote!(
                async fn migrate() -> anyhow::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains(
                "timing : :: scheduler :: __private :: RegisteredTiming :: OnceAfter (30f64)"
            ),
            "{out}"
        );
        assert!(
            out.contains("time_zone : :: core :: option :: Option :: None"),
            "{out}"
        );
        assert!(out.contains("on_start : false"), "{out}");
        let out = expand(
            quote!(once_after = 0),
            &quote!(
                fn now() {}
            ),
        );
        assert!(out.contains("OnceAfter (0f64)"), "{out}");
        assert!(out.contains("RegisteredJob :: Blocking"), "{out}");
    }

    #[test]
    fn state_parameters_go_through_the_handler() {
        let out = expand(
            quote!(interval = 60),
            &quote!(
                async fn sync(ctx: JobContext, db: State<Db>) {}
            ),
        );
        assert!(
            out.contains("RegisteredJob :: Handler (__scheduler_job)"),
            "{out}"
        );
        assert!(
            out.contains("assert_job_param :: < State < Db > > ()"),
            "{out}"
        );
        assert!(out.contains("Binder :: of (sync)"), "{out}");
    }

    #[test]
    fn rejects_other_items() {
        let error = background_service(
            quote!(interval = 1),
            &quote!(
                struct S;
            ),
        )
        .unwrap_err();
        assert!(error.to_string().contains("applies to functions, such as"));
    }
}
