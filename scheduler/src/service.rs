//! [`Service`]: a schedule and a job, the unit the manager runs.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::job::{IntoJobResult, Job, JobContext};
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

    pub(crate) fn from_job(schedule: Schedule, job: Job) -> Self {
        Service {
            schedule,
            job,
            on_start: false,
            delivery: Delivery::AtMostOnce,
        }
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
            .field(
                "job",
                &match self.job {
                    Job::Async(_) => "async",
                    Job::Blocking(_) => "blocking",
                },
            )
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
