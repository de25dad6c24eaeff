//! Services declared with `#[background_service]`, collected from every linked crate by `inventory`.

use std::time::Duration;

use crate::error::Error;
use crate::handler::Binder;
use crate::job::{BoxJobFuture, Job, JobContext, JobKind};
use crate::policy::{Misfire, Policies};
use crate::service::Service;
use crate::Schedule;

/// One `#[background_service]`, as the macro submits it. Not public API.
#[doc(hidden)]
pub struct Registration {
    /// The service's name: the attribute's `name`, or the function's module path and name.
    pub name: &'static str,
    /// When it runs.
    pub timing: RegisteredTiming,
    /// The attribute's `tz`, for cron intervals.
    pub time_zone: Option<&'static str>,
    /// The attribute's `on_start`.
    pub on_start: bool,
    /// The attribute's job policies.
    pub policies: RegisteredPolicies,
    /// The generated wrapper around the user's function.
    pub job: RegisteredJob,
    /// Where the attribute stands, for error messages.
    pub file: &'static str,
    /// Where the attribute stands, for error messages.
    pub line: u32,
}

/// The attribute's `interval`. Not public API.
#[doc(hidden)]
#[non_exhaustive]
pub enum RegisteredTiming {
    /// `interval = "<cron>"`.
    Cron(&'static str),
    /// `interval = <seconds>`.
    Seconds(f64),
    /// `once_after = <seconds>`.
    OnceAfter(f64),
}

/// The attribute's job policies, checked by the macro (durations are computed at compile time, so
/// nothing is converted, or can fail, at run time). Not public API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegisteredPolicies {
    /// `timeout = <seconds>`, greater than zero.
    pub timeout: Option<Duration>,
    /// `retries = <n>`; 0 when absent.
    pub retries: u32,
    /// `retry_backoff = <seconds>`.
    pub retry_backoff: Option<Duration>,
    /// `retry_backoff_max = <seconds>`, at least the backoff.
    pub retry_backoff_max: Option<Duration>,
    /// `jitter = <seconds>`, greater than zero.
    pub jitter: Option<Duration>,
    /// `misfire = "skip" | "coalesce" | "all"` with `misfire_limit`.
    pub misfire: Option<Misfire>,
    /// `misfire_grace = <seconds>`, greater than zero.
    pub misfire_grace: Option<Duration>,
}

impl RegisteredPolicies {
    /// The policies of a service; `None` when the attribute sets none, so such a service pays
    /// nothing for them.
    fn to_policies(self) -> Option<Box<Policies>> {
        let policies = Policies {
            timeout: self.timeout,
            retries: self.retries,
            backoff_base: self.retry_backoff,
            backoff_cap: self.retry_backoff_max,
            jitter: self.jitter,
            misfire: self.misfire,
            misfire_grace: self.misfire_grace,
            ..Policies::default()
        };
        (policies != Policies::default()).then(|| Box::new(policies))
    }
}

/// The generated wrapper around the user's function. Not public API.
#[doc(hidden)]
pub enum RegisteredJob {
    /// An `async fn`.
    Async(fn(JobContext) -> BoxJobFuture),
    /// A plain `fn`, run on the blocking pool.
    Blocking(fn(JobContext) -> Result<(), String>),
    /// A function with `State` parameters (async or not), bound when the manager is built.
    Handler(fn() -> Binder),
}

inventory::collect!(Registration);

impl Registration {
    fn to_service(&self) -> Result<Service, Error> {
        let schedule = match (&self.timing, self.time_zone) {
            (RegisteredTiming::Cron(expr), None) => Schedule::cron(expr),
            (RegisteredTiming::Cron(expr), Some(tz)) => Schedule::cron_in(expr, tz),
            (RegisteredTiming::Seconds(seconds), _) => Schedule::every_secs(*seconds),
            (RegisteredTiming::OnceAfter(seconds), _) => Schedule::once_after_secs(*seconds),
        }
        .map_err(|source| Error::InvalidSchedule {
            name: self.name.to_owned(),
            source,
        })?;
        let job = match self.job {
            RegisteredJob::Async(f) => Job::new(JobKind::Async(Box::new(f))),
            RegisteredJob::Blocking(f) => Job::new(JobKind::Blocking(Box::new(f))),
            RegisteredJob::Handler(binder) => Job::new(JobKind::Unbound(binder())),
        };
        let mut service = Service::from_job(schedule, job).on_start(self.on_start);
        service.policies = self.policies.to_policies();
        Ok(service)
    }

    fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Every registered service, sorted by name.
///
/// # Errors
/// [`Error::DuplicateService`] when two registrations share a name.
pub(crate) fn registered_services() -> Result<Vec<(String, Service)>, Error> {
    let mut registrations: Vec<&Registration> = inventory::iter::<Registration>().collect();
    registrations.sort_by(|a, b| a.name.cmp(b.name));
    if let Some(pair) = registrations.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::DuplicateService {
            name: pair[0].name.to_owned(),
            first: pair[0].location(),
            second: pair[1].location(),
        });
    }
    registrations
        .into_iter()
        .map(|r| Ok((r.name.to_owned(), r.to_service()?)))
        .collect()
}
