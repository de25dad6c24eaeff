//! Job functions that take more than a [`JobContext`]: the [`Handler`] trait, implemented for
//! functions whose parameters are all [`JobParam`]s ([`JobContext`] and [`State<T>`], in any
//! order), async or blocking.
//!
//! A handler is *bound* once, when its service joins a manager: each `State<T>` parameter is
//! looked up then, and the job keeps the `Arc` it found. A fire only clones those `Arc`s.
//!
//! ```
//! use scheduler::{JobContext, Schedule, Service, State};
//! use std::time::Duration;
//!
//! struct Db;
//! struct Http;
//!
//! async fn sync(ctx: JobContext, db: State<Db>, http: State<Http>) -> Result<(), String> {
//!     let (_db, _http): (&Db, &Http) = (&db, &http);
//!     tracing::info!(service = ctx.name(), "syncing");
//!     Ok(())
//! }
//!
//! fn vacuum(db: State<Db>) {} // a plain fn runs on tokio's blocking pool
//!
//! let every_minute = Schedule::every(Duration::from_secs(60))?;
//! let sync = Service::from_fn(every_minute.clone(), sync);
//! let vacuum = Service::from_fn(every_minute, vacuum);
//! # Ok::<(), scheduler::ScheduleError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::job::{IntoJobResult, Job, JobContext};
use crate::resource::{Resources, State};

mod sealed {
    /// Only this crate's types are job parameters: the binding scheme may change without breaking
    /// anyone.
    #[allow(unreachable_pub)] // public in a private module: the usual way to seal a trait
    pub trait Sealed {}
}

/// A parameter a job function may take: [`JobContext`] (the run's context) or [`State<T>`] (a
/// resource given to [`ServiceManagerBuilder::state`](crate::ServiceManagerBuilder::state)).
///
/// Sealed: only these two implement it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a parameter of a background service",
    label = "a job takes `scheduler::JobContext` and `scheduler::State<T>` parameters only",
    note = "a `State<T>` needs `T: Send + Sync + 'static`: jobs share it across threads"
)]
pub trait JobParam: sealed::Sealed + Send + Sized + 'static {
    /// What binding found: kept by the job, handed out at each fire.
    #[doc(hidden)]
    type Bound: Send + Sync + 'static;

    /// Looks the parameter up in `resources`; on failure pushes the missing type's name.
    #[doc(hidden)]
    fn bind(resources: &Resources, missing: &mut Vec<&'static str>) -> Option<Self::Bound>;

    /// The parameter of one run: an `Arc` clone for a `State`, a clone of the context (two) for
    /// a `JobContext`.
    #[doc(hidden)]
    fn take(bound: &Self::Bound, ctx: &JobContext) -> Self;
}

impl sealed::Sealed for JobContext {}

impl JobParam for JobContext {
    type Bound = ();

    fn bind(_: &Resources, _: &mut Vec<&'static str>) -> Option<()> {
        Some(())
    }

    fn take((): &(), ctx: &JobContext) -> Self {
        ctx.clone()
    }
}

impl<T: Send + Sync + 'static> sealed::Sealed for State<T> {}

impl<T: Send + Sync + 'static> JobParam for State<T> {
    type Bound = State<T>;

    fn bind(resources: &Resources, missing: &mut Vec<&'static str>) -> Option<State<T>> {
        let found = resources.get::<T>();
        if found.is_none() {
            missing.push(std::any::type_name::<T>());
        }
        found
    }

    fn take(bound: &State<T>, _: &JobContext) -> Self {
        bound.clone()
    }
}

/// Checks, on the parameter's own token, that a `#[background_service]` parameter is a
/// [`JobParam`]. Not public API.
#[doc(hidden)]
pub fn assert_job_param<P: JobParam>() {}

/// The marker of [`Handler`]s that are async functions.
#[derive(Debug)]
pub struct Async(());

/// The marker of [`Handler`]s that are plain (blocking) functions.
#[derive(Debug)]
pub struct Blocking(());

/// A function a service can run: async or not, its parameters [`JobParam`]s in any order (up to
/// eight), returning `()` or `Result<(), E>` with `E: Display`. `Marker` tells the kinds apart;
/// the compiler infers it.
///
/// Implemented for every such function and closure; see [`Service::from_fn`](crate::Service::from_fn).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be run as a job",
    label = "expected an async or plain function taking `JobContext` and `State<T>` parameters",
    note = "a job returns `()` or `Result<(), E>` where `E: Display`; the future of an async job must be `Send`"
)]
pub trait Handler<Marker>: Send + Sync + Sized + 'static {
    /// Turns the function into what binds it to a manager's resources.
    #[doc(hidden)]
    fn into_binder(self) -> Binder;
}

/// A function waiting to be given its resources. Not public API.
#[doc(hidden)]
#[derive(Clone)]
pub struct Binder {
    kind: &'static str,
    bind: Arc<BindFn>,
}

type BindFn = dyn Fn(&Resources) -> Result<Job, Vec<&'static str>> + Send + Sync;

impl Binder {
    /// The binder of `handler` (what the `#[background_service]` expansion registers).
    pub fn of<M, H: Handler<M>>(handler: H) -> Binder {
        handler.into_binder()
    }

    /// `"async"` or `"blocking"`.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// The job with every `State` resolved, or the names of the types `resources` lacks (all of
    /// them, in parameter order).
    pub(crate) fn bind(&self, resources: &Resources) -> Result<Job, Vec<&'static str>> {
        (self.bind)(resources)
    }
}

impl fmt::Debug for Binder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binder")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The body of `into_binder`, shared by the async and the blocking impls: resolve each
/// parameter's resource once, at bind time, then build the job with `Job::$make`.
macro_rules! binder {
    ($handler:ident, $kind:literal, $make:ident, $($param:ident),*) => {{
        let handler = Arc::new($handler);
        Binder {
            kind: $kind,
            bind: Arc::new(move |resources: &Resources| {
                let _ = resources;
                #[allow(unused_mut, unused_variables)]
                let mut missing = Vec::new();
                $(#[allow(non_snake_case)] let $param = $param::bind(resources, &mut missing);)*
                #[allow(non_snake_case, unreachable_patterns, clippy::unused_unit)]
                match ($($param,)*) {
                    ($(Some($param),)*) => {
                        let handler = Arc::clone(&handler);
                        Ok(Job::$make(move |ctx: JobContext| {
                            let _ = &ctx;
                            handler($($param::take(&$param, &ctx)),*)
                        }))
                    }
                    _ => Err(missing),
                }
            }),
        }
    }};
}

macro_rules! handlers {
    ($($param:ident),*) => {
        impl<F, Fut, R, $($param,)*> Handler<(Async, $($param,)*)> for F
        where
            F: Fn($($param),*) -> Fut + Send + Sync + 'static,
            // A job may resume on another of tokio's worker threads after any `.await`.
            Fut: Future<Output = R> + Send + 'static,
            R: IntoJobResult,
            $($param: JobParam,)*
        {
            fn into_binder(self) -> Binder {
                binder!(self, "async", from_async, $($param),*)
            }
        }

        impl<F, R, $($param,)*> Handler<(Blocking, $($param,)*)> for F
        where
            F: Fn($($param),*) -> R + Send + Sync + 'static,
            R: IntoJobResult,
            $($param: JobParam,)*
        {
            fn into_binder(self) -> Binder {
                binder!(self, "blocking", from_blocking, $($param),*)
            }
        }
    };
}

handlers!();
handlers!(P1);
handlers!(P1, P2);
handlers!(P1, P2, P3);
handlers!(P1, P2, P3, P4);
handlers!(P1, P2, P3, P4, P5);
handlers!(P1, P2, P3, P4, P5, P6);
handlers!(P1, P2, P3, P4, P5, P6, P7);
handlers!(P1, P2, P3, P4, P5, P6, P7, P8);
