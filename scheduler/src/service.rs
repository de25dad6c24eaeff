//! [`Service`]: a schedule and a job, the unit the manager runs.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::handler::{Binder, Handler};
use crate::job::{IntoJobResult, Job, JobContext, JobKind};
use crate::policy::{Misfire, Policies};
use crate::resource::Resources;
use crate::Schedule;

/// A schedule and the job it fires, for services built at run time.
///
/// Services declared with `#[background_service]` become the same thing; this is the way to add them
/// from configuration, a plugin, or a test.
///
/// ```
/// use scheduler::{Schedule, Service};
/// use std::time::Duration;
///
/// let heartbeat = Service::new(Schedule::every(Duration::from_secs(10))?, |ctx| async move {
///     tracing::info!(service = ctx.name(), "alive");
/// })
/// .on_start(true);
///
/// let vacuum = Service::blocking("0 3 * * *".parse()?, |_ctx| -> Result<(), std::io::Error> {
///     // blocking file-system work runs on tokio's blocking pool
///     Ok(())
/// });
/// # Ok::<(), scheduler::ScheduleError>(())
/// ```
#[derive(Clone)]
pub struct Service {
    pub(crate) schedule: Schedule,
    pub(crate) job: Job,
    pub(crate) on_start: bool,
    pub(crate) delivery: Delivery,
    pub(crate) policies: Option<Box<Policies>>,
    /// The configuration's `paused = true`: the manager pauses the service whenever it schedules it
    /// afresh (at start, and when a reload re-registers or enables it).
    pub(crate) start_paused: bool,
}

impl Service {
    /// A service whose job is an async function or closure returning `()` or `Result<(), E: Display>`.
    pub fn new<F, Fut, R>(schedule: Schedule, job: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoJobResult,
    {
        Service::from_job(schedule, Job::from_async(job))
    }

    /// A one-shot service: runs once, `delay` after it is started, then shows as
    /// [`ServiceState::Finished`](crate::ServiceState::Finished) with its outcome. Stopping it before
    /// then cancels it.
    ///
    /// ```
    /// # use scheduler::Service;
    /// # use std::time::Duration;
    /// let migrate = Service::once_after(Duration::from_secs(30), |_ctx| async {
    ///     // e.g. a data migration that should wait until the app has settled
    /// });
    /// ```
    pub fn once_after<F, Fut, R>(delay: Duration, job: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoJobResult,
    {
        let schedule = Schedule::once_after(delay).unwrap_or_else(|_| {
            // Beyond ~292 years: a tick that can never come, like a cron schedule that never fires.
            Schedule::once_at(DateTime::<Utc>::MAX_UTC)
        });
        Service::new(schedule, job)
    }

    /// A one-shot service that runs once at `at`. An instant already past when the service starts
    /// never fires (the service shows as finished, without a run).
    pub fn once_at<F, Fut, R>(at: DateTime<Utc>, job: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoJobResult,
    {
        Service::new(Schedule::once_at(at), job)
    }

    /// A service whose job is blocking code, run on tokio's blocking thread pool.
    ///
    /// A blocking job cannot be killed: [`StopMode::Abort`](crate::StopMode::Abort) cancels its
    /// [`JobContext`] and stops waiting for it, and the job should return when it sees that. Until it
    /// does, the service is not run again, so runs still never overlap.
    pub fn blocking<F, R>(schedule: Schedule, job: F) -> Self
    where
        F: Fn(JobContext) -> R + Send + Sync + 'static,
        R: IntoJobResult,
    {
        Service::from_job(schedule, Job::from_blocking(job))
    }

    /// A service whose job is a function taking [`State<T>`](crate::State) resources next to (or
    /// instead of) its [`JobContext`], in any order: async or not (a plain `fn` runs on tokio's
    /// blocking pool), returning `()` or `Result<(), E: Display>`.
    ///
    /// The resources come from the manager it is added to
    /// ([`ServiceManagerBuilder::state`](crate::ServiceManagerBuilder::state)), looked up once, when
    /// it is added; [`ServiceManager::try_add_service`](crate::ServiceManager::try_add_service)
    /// then fails, naming every type that is missing.
    ///
    /// ```
    /// use scheduler::{JobContext, Schedule, Service, ServiceManager, State};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::time::Duration;
    ///
    /// #[derive(Default)]
    /// struct Stats {
    ///     runs: AtomicU64,
    /// }
    ///
    /// async fn count(ctx: JobContext, stats: State<Stats>) {
    ///     stats.runs.fetch_add(1, Ordering::Relaxed);
    ///     let _ = ctx.tick();
    /// }
    ///
    /// let manager = ServiceManager::builder().state(Stats::default()).build()?;
    /// let every_second = Schedule::every(Duration::from_secs(1))?;
    /// manager.try_add_service("count", Service::from_fn(every_second.clone(), count))?;
    /// // Closures work too; name the parameter types.
    /// manager.try_add_service(
    ///     "report",
    ///     Service::from_fn(every_second, |stats: State<Stats>| {
    ///         println!("{} runs", stats.runs.load(Ordering::Relaxed));
    ///     }),
    /// )?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fn<M, H: Handler<M>>(schedule: Schedule, handler: H) -> Self {
        Service::from_job(schedule, Job::new(JobKind::Unbound(Binder::of(handler))))
    }

    /// Resolves the job's `State` parameters from `resources` (nothing to do for a job without
    /// any).
    ///
    /// # Errors
    /// The names of every type `resources` lacks; the service is left as it was.
    pub(crate) fn bind(&mut self, resources: &Resources) -> Result<(), Vec<&'static str>> {
        self.job = self.job.bind(resources)?;
        Ok(())
    }

    pub(crate) fn from_job(schedule: Schedule, job: Job) -> Self {
        Service {
            schedule,
            job,
            on_start: false,
            delivery: Delivery::AtMostOnce,
            policies: None,
            start_paused: false,
        }
    }

    fn policies_mut(&mut self) -> &mut Policies {
        self.policies.get_or_insert_with(Box::default)
    }

    /// A time limit per run. A run that exceeds it is cancelled like an abort: its
    /// [`JobContext`] is signalled, it has the manager's
    /// [`abort_grace`](crate::ServiceManagerBuilder::abort_grace) to return, and then it is dropped
    /// (a blocking job keeps its worker until its thread returns). Its outcome is
    /// [`Outcome::TimedOut`](crate::Outcome::TimedOut), a failure: it reaches the failure hook, may
    /// be retried, and the schedule goes on. A zero limit means none.
    ///
    /// ```
    /// # use scheduler::{Schedule, Service};
    /// # use std::time::Duration;
    /// let sync = Service::new(Schedule::every(Duration::from_secs(60))?, |_ctx| async {})
    ///     .timeout(Duration::from_secs(30))
    ///     .retries(3);
    /// # Ok::<(), scheduler::ScheduleError>(())
    /// ```
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.policies_mut().timeout = (!limit.is_zero()).then_some(limit);
        self
    }

    /// Retries a failed run (an `Err`, a panic or a timeout) up to `retries` more times, as further
    /// attempts of the *same tick* ([`JobContext::attempt`] counts them), after an exponential
    /// backoff ([`retry_backoff`](Self::retry_backoff)). Attempts never overlap another run of the
    /// service. A retry that would come at or after the next tick is dropped, and counted in
    /// [`ServiceStatus::retries_dropped`](crate::ServiceStatus::retries_dropped): the next tick
    /// wins. No retries by default.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.policies_mut().retries = retries;
        self
    }

    /// The backoff between attempts: `base × 2^(k-1)` before retry *k*, at most `cap`, then a
    /// random part of it taken off (between half and all of it stays), counted from the end of
    /// the failed attempt. 1 s and 60 s by default.
    #[must_use]
    pub fn retry_backoff(mut self, base: Duration, cap: Duration) -> Self {
        let policies = self.policies_mut();
        policies.backoff_base = Some(base);
        policies.backoff_cap = Some(cap.max(base));
        self
    }

    /// Starts each run a random delay in `[0, jitter)` after its tick, so that many services (or
    /// replicas) due at once do not all start at once. The tick itself stays on the schedule's
    /// grid ([`JobContext::tick`] is the tick). The delays are drawn from the service's name, the
    /// tick and [`jitter_seed`](Self::jitter_seed), so they are reproducible.
    #[must_use]
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.policies_mut().jitter = (!jitter.is_zero()).then_some(jitter);
        self
    }

    /// The seed of the jitter and backoff delays (0 by default).
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.policies_mut().seed = seed;
        self
    }

    /// What to do with ticks that could not start on time (see [`Misfire`]); without it,
    /// [`Misfire::Coalesce`] for ticks missed while the manager runs, and no catch-up of ticks missed
    /// while the process was down. Set explicitly to `Coalesce` or `All`, it also asks for catch-up
    /// after a restart, where the manager remembers the last tick (a coordinator's history, or the
    /// manager's [state file](crate::ServiceManagerBuilder::state_file)).
    ///
    /// ```
    /// # use scheduler::{Misfire, Schedule, Service};
    /// # use std::time::Duration;
    /// // Hourly aggregation: every missed hour matters, but at most a day of them.
    /// let aggregate = Service::new("0 * * * *".parse::<Schedule>()?, |ctx| async move {
    ///     let _hour = ctx.tick(); // the hour this run is for, also in a catch-up
    /// })
    /// .misfire(Misfire::All { limit: 24 })
    /// .misfire_grace(Duration::from_secs(30));
    /// # Ok::<(), scheduler::ScheduleError>(())
    /// ```
    ///
    /// A service with [`on_start`](Self::on_start) does not catch up after a restart: its start
    /// run already runs at once.
    #[must_use]
    pub fn misfire(mut self, misfire: Misfire) -> Self {
        self.policies_mut().misfire = Some(misfire);
        self
    }

    /// How late a run may start after its tick before the tick counts as misfired
    /// ([`Misfire`]); 1 s by default.
    #[must_use]
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.policies_mut().misfire_grace = Some(grace);
        self
    }

    pub(crate) fn policies(&self) -> Option<&Policies> {
        self.policies.as_deref()
    }

    /// Also run once as soon as the service is started, before its first tick. Off by default.
    #[must_use]
    pub fn on_start(mut self, on_start: bool) -> Self {
        self.on_start = on_start;
        self
    }

    /// With a [`Coordinator`](crate::Coordinator): whether a tick whose runner died is run again by
    /// another replica ([`Delivery::AtLeastOnce`]) or not ([`Delivery::AtMostOnce`], the default).
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// When the service fires.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Whether it runs once at start, too.
    pub fn runs_on_start(&self) -> bool {
        self.on_start
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("schedule", &self.schedule)
            .field("on_start", &self.on_start)
            .field("delivery", &self.delivery)
            .field("policies", &self.policies)
            .field("start_paused", &self.start_paused)
            .field("job", &self.job.kind_name())
            .finish()
    }
}

/// What happens to a tick whose runner died (its lease ran out before it finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// The tick is not run again: a tick runs at most once. The default.
    #[default]
    AtMostOnce,
    /// The next replica to claim a tick of the service first takes over the abandoned tick and runs
    /// it: a tick runs at least once (twice, if the "dead" runner was only cut off and did finish).
    AtLeastOnce,
}
