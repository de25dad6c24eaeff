//! What a service runs: async or blocking jobs, their results, and the context they may take.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cancel::CancelToken;
use crate::handler::Binder;
use crate::resource::Resources;
use crate::status::Trigger;

/// A boxed job future, as the registry stores it.
pub type BoxJobFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// What a job function may return: `()` or `Result<(), E>` where `E: Display`.
///
/// An `Err` is a failed run: it is logged, counted and passed to the failure hook, and the schedule
/// goes on. The error text is the alternate `Display` (`{:#}`), which for `anyhow::Error` includes
/// the chain of causes.
#[diagnostic::on_unimplemented(
    message = "a background service must return `()` or `Result<(), E>` where `E: Display`, not `{Self}`",
    label = "this return type cannot report success or failure"
)]
pub trait IntoJobResult {
    /// Converts the job's return value into success or an error message.
    ///
    /// # Errors
    /// The job's error, rendered as text.
    fn into_job_result(self) -> Result<(), String>;
}

impl IntoJobResult for () {
    fn into_job_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> IntoJobResult for Result<(), E> {
    fn into_job_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:#}"))
    }
}

/// The outcome of a run that met an unbound job (which the manager never schedules).
pub(crate) const UNBOUND: &str = "the job's State parameters were never bound to a manager";

type AsyncJobFn = dyn Fn(JobContext) -> BoxJobFuture + Send + Sync;
type BlockingJobFn = dyn Fn(JobContext) -> Result<(), String> + Send + Sync;

/// A job: a future run on the tokio runtime, or a closure run on tokio's blocking thread pool.
///
/// One pointer: every service holds one, and an idle service's size counts (see
/// `state::tests::an_idle_service_stays_small`).
#[derive(Clone)]
pub(crate) struct Job(Arc<JobKind>);

/// What kind of function a job is.
pub(crate) enum JobKind {
    Async(Box<AsyncJobFn>),
    Blocking(Box<BlockingJobFn>),
    /// A [`Handler`](crate::handler::Handler) that takes `State` parameters, before it joined a
    /// manager. The manager binds it ([`Job::bind`]) before it can be scheduled, so no run ever
    /// meets one (a worker that did would fail the run, not panic).
    Unbound(Binder),
}

impl Job {
    pub(crate) fn new(kind: JobKind) -> Self {
        Job(Arc::new(kind))
    }

    pub(crate) fn kind(&self) -> &JobKind {
        &self.0
    }

    /// Runs a blocking job on the calling thread (an async one cannot run there: an error).
    pub(crate) fn run_blocking(&self, ctx: JobContext) -> Result<(), String> {
        match &*self.0 {
            JobKind::Blocking(job) => job(ctx),
            JobKind::Async(_) => Err("an async job cannot run on the blocking pool".to_owned()),
            JobKind::Unbound(_) => Err(UNBOUND.to_owned()),
        }
    }

    /// This job with its `State` parameters resolved from `resources`; a job without any is
    /// returned as it is (one `Arc` clone).
    ///
    /// # Errors
    /// The names of every type `resources` lacks.
    pub(crate) fn bind(&self, resources: &Resources) -> Result<Job, Vec<&'static str>> {
        match &*self.0 {
            JobKind::Unbound(binder) => binder.bind(resources),
            JobKind::Async(_) | JobKind::Blocking(_) => Ok(self.clone()),
        }
    }

    /// `"async"`, `"blocking"`, for `Debug`.
    pub(crate) fn kind_name(&self) -> &'static str {
        match &*self.0 {
            JobKind::Async(_) => "async",
            JobKind::Blocking(_) => "blocking",
            JobKind::Unbound(binder) => binder.kind(),
        }
    }

    pub(crate) fn from_async<F, Fut, R>(job: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoJobResult,
    {
        Job::new(JobKind::Async(Box::new(move |ctx| {
            let run = job(ctx);
            Box::pin(async move { run.await.into_job_result() })
        })))
    }

    pub(crate) fn from_blocking<F, R>(job: F) -> Self
    where
        F: Fn(JobContext) -> R + Send + Sync + 'static,
        R: IntoJobResult,
    {
        Job::new(JobKind::Blocking(Box::new(move |ctx| {
            job(ctx).into_job_result()
        })))
    }
}

/// What a running job knows about its run: which service, which tick, why it runs, and whether it
/// should stop.
///
/// A job function may take it as its only argument:
///
/// ```
/// use scheduler::JobContext;
///
/// async fn sync_accounts(ctx: JobContext) -> Result<(), String> {
///     for batch in 0..100 {
///         if ctx.is_cancelled() {
///             tracing::info!(service = ctx.name(), batch, "stopping early");
///             return Ok(());
///         }
///         // ... one batch of work ...
///     }
///     Ok(())
/// }
/// ```
///
/// It carries only what the run needs: cloning it, or keeping it after the run, holds no part of the
/// manager alive.
#[derive(Clone)]
pub struct JobContext {
    name: Arc<str>,
    tick: DateTime<Utc>,
    trigger: Trigger,
    attempt: u32,
    cancel: CancelToken,
}

impl JobContext {
    pub(crate) fn new(
        name: Arc<str>,
        tick: DateTime<Utc>,
        trigger: Trigger,
        attempt: u32,
        cancel: CancelToken,
    ) -> Self {
        JobContext {
            name,
            tick,
            trigger,
            attempt,
            cancel,
        }
    }

    /// 1 for a tick's first run, 2 and more for its [retries](crate::Service::retries).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scheduled instant this run belongs to (not when it actually started). For a run started
    /// by [`ServiceManager::run_now`](crate::ServiceManager::run_now) or `on_start`, the instant it
    /// was asked for.
    pub fn tick(&self) -> DateTime<Utc> {
        self.tick
    }

    /// Why this run happens: its schedule, the manager's start, or an operator's "run now".
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// Whether the manager asked this run to stop ([`StopMode::Abort`](crate::StopMode::Abort), or a
    /// stop deadline that is running out). The run then has a grace period
    /// ([`abort_grace`](crate::ServiceManagerBuilder::abort_grace)) to return before an async job is
    /// dropped; blocking jobs cannot be dropped, so they should check this.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the manager asks this run to stop; for use in `tokio::select!`.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("name", &self.name())
            .field("tick", &self.tick)
            .field("trigger", &self.trigger)
            .field("attempt", &self.attempt)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}
