//! The `#[background_service]` attribute of [`scheduler`](https://docs.rs/scheduler).
//!
//! Use it through `scheduler::background_service`; this crate is an implementation detail, and the
//! code it generates names only `::scheduler` paths. The runnable examples are in the `scheduler`
//! documentation.
//!
//! ```text
//! use scheduler::{background_service, JobContext};
//!
//! #[background_service(interval = 30)]                         // every 30 s (fractions allowed: 0.5)
//! async fn refresh_cache() -> anyhow::Result<()> { Ok(()) }
//!
//! #[background_service(interval = "*/5 * * * *", on_start)]    // cron; also once right at start
//! fn compact_files() { }                                       // sync fns run on a blocking thread
//!
//! #[background_service(interval = "0 9 * * MON-FRI", tz = "Europe/Berlin", name = "daily-report")]
//! async fn report(ctx: JobContext) { }                         // optional context argument
//!
//! #[background_service(interval = 60)]                         // the app's resources, by type
//! async fn sync(ctx: JobContext, db: State<PgPool>) -> anyhow::Result<()> { Ok(()) }
//!
//! #[background_service(once_after = 30)]                       // once, 30 s after start (0: at start)
//! async fn migrate() -> anyhow::Result<()> { Ok(()) }
//!
//! #[background_service(interval = 60, timeout = 30, retries = 3, jitter = 5, misfire = "skip")]
//! async fn sync() -> anyhow::Result<()> { Ok(()) }             // job policies
//! ```
//!
//! # Compile-time checks
//! Everything the attribute can see is checked while compiling, with the error on the offending
//! token: cron expressions and time zones go through `scheduler_core`, the parser the runtime uses,
//! so what compiles also parses at run time; periods and delays likewise go through
//! `Schedule::every_secs` and `Schedule::once_after_secs`. Expressions that can never fire
//! (`0 0 30 2 *`), non-positive intervals, negative or infinite delays, `interval` together with
//! `once_after`, `tz` without a cron interval, `on_start` with `once_after`, policies out of range
//! or without the argument they shape (`misfire_limit` without `misfire = "all"`, `retry_backoff`
//! without `retries`, a backoff cap below its base), `jitter` and the misfire policies on a
//! one-shot service, unknown or duplicate arguments, and signatures the scheduler cannot call (generic,
//! `unsafe`, methods, parameters other than `JobContext` and `State<T>`, two `JobContext`s, more
//! than 8 parameters) are rejected. The return type is checked by the `IntoJobResult` trait: `()` or
//! `Result<(), E>` where `E: Display`.
//!
//! On an error the function is still emitted unchanged, so that the only error is the attribute's.

mod args;
mod expand;
mod object;
mod policies;
mod validate;

use proc_macro::TokenStream;

/// Registers a function as a background service of `scheduler`.
///
/// Arguments (exactly one of `interval` and `once_after` is required):
/// - `interval`: run repeatedly, every so many seconds, as an integer or float literal greater than
///   zero, or on a cron expression string such as `"*/5 * * * *"`.
/// - `once_after`: run once, this many seconds after the manager starts, as an integer or float
///   literal; `0` runs it right at start.
/// - `on_start`: also run once right at start, with an `interval`; a bare flag or
///   `on_start = true|false`.
/// - `name`: the service's name, a non-empty string; defaults to the function's module path and name.
/// - `tz`: the IANA time zone of a cron interval, such as `"Europe/Berlin"`; UTC by default.
///
/// Job policies (all optional; numbers of seconds may have fractions):
/// - `timeout = 30`: cancel a run after 30 s (greater than zero).
/// - `retries = 3`: retry a failed run up to 3 times, as attempts of the same tick.
/// - `retry_backoff = 1`, `retry_backoff_max = 60`: the backoff before the first retry, doubled for
///   each further one up to the cap (1 s and 60 s by default); only with `retries`.
/// - `jitter = 5`: start each run a random delay in `[0, 5)` s after its tick (greater than zero).
/// - `misfire = "skip" | "coalesce" | "all"`: what to do with ticks that could not start on time;
///   `misfire_limit = 10` bounds `"all"` (10 by default); `misfire_grace = 1`: how late a run may
///   start before its tick counts as misfired (greater than zero).
///
/// `timeout`, `retries` and the backoff apply to `once_after` services too; `jitter` and the
/// misfire arguments do not (one run has no grid to spread around, and runs however late it comes).
///
/// The function may be `async` or not (a plain `fn` runs on tokio's blocking thread pool), takes
/// at most one `scheduler::JobContext` and any number (up to 8 parameters in all) of
/// `scheduler::State<T>` resources, in any order, and returns `()` or `Result<(), E>` where
/// `E: Display`. Each `State<T>` is given to the manager with `ServiceManager::builder().state(value)`;
/// a type nobody gave is an error from `build()` naming the service and the type.
/// It stays callable as a normal function.
///
/// On an `impl` block (the object form), the block's `job(&self)` or `job(&self, ctx: JobContext)`
/// method runs at each tick, on the object given to `ServiceManager::builder().state(object)`; the
/// default name is the module path and the type's name. A trait impl, a generic block, a missing
/// `job`, or a `job` taking `&mut self`, `self` or `State` parameters is an error.
///
/// The future of an `async fn` must be `Send`: tokio's worker threads take turns running jobs, so a job
/// may resume on another thread after any `.await`. Do not hold an `Rc`, a `RefCell` borrow or a
/// `std::sync::MutexGuard` across an `.await` (drop it first, or use `Arc` and `tokio::sync::Mutex`);
/// the compiler's error points at the value and the `.await`.
///
/// ```text
/// #[scheduler::background_service(interval = "0 3 * * *", tz = "Europe/Berlin", on_start)]
/// async fn nightly_cleanup(ctx: scheduler::JobContext) -> anyhow::Result<()> { Ok(()) }
///
/// #[scheduler::background_service(once_after = 0.5, name = "warm-up")]
/// async fn warm_up() { }
/// ```
#[proc_macro_attribute]
pub fn background_service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::background_service(attr.into(), &item) {
        Ok(expanded) => expanded.into(),
        Err(errors) => {
            let mut output = item;
            output.extend(errors.into_compile_error());
            output.into()
        }
    }
}
