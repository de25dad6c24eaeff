//! The object form: `#[background_service(...)]` on an `impl` block whose `job(&self, ..)` method
//! runs each tick. The object is the application's to build (it has fields: a client, settings),
//! so it is given to the manager as state, `.state(MyService { .. })`, and the registration is an
//! ordinary `State` handler: one execution path for both forms.
//!
//! ```text
//!  #[background_service(interval = 60)]        registers, beside the block:
//!  impl Poller {                               |this: State<Poller>, ctx: JobContext| async move {
//!      async fn job(&self, ctx: JobContext)        this.job(ctx).await
//!  }                                           }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, ReturnType, Type};

use crate::args::combine;
use crate::expand::registration;
use crate::validate::{self, Settings};

/// A checked `impl` block: its type and its `job` method.
pub(crate) struct Object {
    self_ty: Type,
    /// The type's name, for the default service name.
    type_name: String,
    is_async: bool,
    takes_context: bool,
    result_span: Span,
}

impl Object {
    /// Checks the block: no generics, not a trait impl, one `job` method taking `&self` and at most
    /// a `JobContext`.
    pub(crate) fn parse(block: &ItemImpl) -> syn::Result<Object> {
        let mut errors = None;
        if let Some((_, path, _)) = &block.trait_ {
            combine(
                &mut errors,
                syn::Error::new_spanned(
                    path,
                    "`#[background_service]` goes on the type's own `impl` block, not on a trait \
                     impl",
                ),
            );
        }
        if !block.generics.params.is_empty() {
            combine(
                &mut errors,
                syn::Error::new_spanned(
                    &block.generics,
                    "a background service cannot be generic: the scheduler has no way to choose \
                     its type, lifetime or const parameters",
                ),
            );
        }
        let jobs: Vec<&ImplItemFn> = block
            .items
            .iter()
            .filter_map(|item| match item {
                ImplItem::Fn(method) if method.sig.ident == "job" => Some(method),
                _ => None,
            })
            .collect();
        let Some(job) = jobs.first() else {
            combine(
                &mut errors,
                syn::Error::new_spanned(
                    &block.self_ty,
                    "this `impl` block has no `job` method: add \
                     `async fn job(&self, ctx: JobContext) -> anyhow::Result<()>`, which runs at \
                     each tick",
                ),
            );
            return Err(errors.unwrap_or_else(|| syn::Error::new(Span::call_site(), "")));
        };
        if let Err(error) = check_receiver(job) {
            combine(&mut errors, error);
        }
        // The rest of the signature is checked as a function's is, without the receiver.
        let mut rest = job.sig.clone();
        rest.inputs = rest
            .inputs
            .into_iter()
            .filter(|input| matches!(input, FnArg::Typed(_)))
            .collect();
        let callable = validate::signature(&rest);
        let callable = match callable {
            Ok(callable) if !callable.state_types.is_empty() => {
                combine(
                    &mut errors,
                    syn::Error::new_spanned(
                        &callable.state_types[0],
                        "`job` takes `&self` and at most a `JobContext`: keep what it needs in \
                         the object's fields",
                    ),
                );
                None
            }
            Ok(callable) => Some(callable),
            Err(error) => {
                combine(&mut errors, error);
                None
            }
        };
        match (errors, callable) {
            (None, Some(callable)) => Ok(Object {
                self_ty: (*block.self_ty).clone(),
                type_name: type_name(&block.self_ty),
                is_async: callable.is_async,
                takes_context: callable.takes_context,
                result_span: match &job.sig.output {
                    ReturnType::Type(_, ty) => ty.span(),
                    ReturnType::Default => job.sig.ident.span(),
                },
            }),
            (Some(errors), _) => Err(errors),
            (None, None) => Err(syn::Error::new(Span::call_site(), "unreachable")),
        }
    }

    /// The block, as written, followed by the registration of a `State<Self>` handler.
    pub(crate) fn generate(&self, item: &TokenStream, settings: &Settings) -> TokenStream {
        let self_ty = &self.self_ty;
        let this = syn::Ident::new("this", Span::mixed_site());
        let ctx = syn::Ident::new("ctx", Span::mixed_site());
        let args = if self.takes_context {
            quote!(#ctx)
        } else {
            quote!()
        };
        let call = if self.is_async {
            quote_spanned! {self.result_span=> async move { #this.job(#args).await } }
        } else {
            quote_spanned! {self.result_span=> #this.job(#args) }
        };
        let wrapper = quote! {
            fn __scheduler_job() -> ::scheduler::__private::Binder {
                ::scheduler::__private::Binder::of(
                    |#this: ::scheduler::State<#self_ty>, #ctx: ::scheduler::JobContext| {
                        let _ = &#ctx;
                        #call
                    },
                )
            }
        };
        let job = quote!(::scheduler::__private::RegisteredJob::Handler(
            __scheduler_job
        ));
        let registration = registration(settings, &self.type_name, &wrapper, &job);
        quote! {
            #item

            #registration
        }
    }
}

/// `job` takes `&self`: the object is shared, never moved or borrowed mutably.
fn check_receiver(job: &ImplItemFn) -> syn::Result<()> {
    let receiver = job.sig.inputs.first().and_then(|input| match input {
        FnArg::Receiver(receiver) => Some(receiver),
        FnArg::Typed(_) => None,
    });
    match receiver {
        Some(receiver) if receiver.reference.is_some() && receiver.mutability.is_none() => Ok(()),
        Some(receiver) => Err(syn::Error::new_spanned(
            receiver,
            "`job` takes `&self`: the object is shared by every run (use a `Mutex` or atomics \
             inside for what a run changes)",
        )),
        None => Err(syn::Error::new_spanned(
            &job.sig.ident,
            "`job` takes `&self`: write `fn job(&self, ctx: JobContext)`",
        )),
    }
}

/// The last segment of a type's path (`Poller` for `crate::jobs::Poller`), else the type as written.
fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| ty.to_token_stream().to_string(), |s| s.ident.to_string()),
        _ => ty.to_token_stream().to_string(),
    }
}
