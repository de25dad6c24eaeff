//! Services declared with `#[background_service]`, collected from every linked crate by `inventory`.

use crate::error::Error;
use crate::job::{BoxJobFuture, Job, JobContext, JobKind};
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

/// The generated wrapper around the user's function. Not public API.
#[doc(hidden)]
pub enum RegisteredJob {
    /// An `async fn`.
    Async(fn(JobContext) -> BoxJobFuture),
    /// A plain `fn`, run on the blocking pool.
    Blocking(fn(JobContext) -> Result<(), String>),
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
        };
        Ok(Service::from_job(schedule, job).on_start(self.on_start))
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
