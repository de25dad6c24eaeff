//! [`AdminBackend`]: everything the admin router and page ask of the runtime, in one trait, and its
//! implementation for [`ServiceManager`].

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::error::AdminError;
use super::view::{split_zone, ReloadView, RunView, ServiceView};
use crate::manager::ServiceManager;
use crate::Schedule;

/// What the admin router needs from a runtime. [`ServiceManager`] implements it; implement it
/// yourself to serve the API over something else (a test double, a proxy to another process).
///
/// Every method that takes a service name returns [`AdminError::UnknownService`] for a name it does
/// not know; a method the backend cannot carry out returns [`AdminError::NotSupported`].
pub trait AdminBackend: Send + Sync + 'static {
    /// Every service, sorted by name.
    fn services(&self) -> Vec<ServiceView>;

    /// One service; `None` for an unknown name.
    fn service(&self, name: &str) -> Option<ServiceView>;

    /// The latest `limit` runs of a service, newest first.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`], or why the history could not be read.
    fn history(
        &self,
        name: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunView>, AdminError>> + Send;

    /// The next `count` fire times of a service, soonest first; empty while it is not scheduled.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`].
    fn upcoming(&self, name: &str, count: usize) -> Result<Vec<DateTime<Utc>>, AdminError>;

    /// A plain-English description of a service's schedule, when the backend has one.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`].
    fn describe(&self, name: &str) -> Result<Option<String>, AdminError>;

    /// Pauses a service: its ticks are skipped until [`resume`](Self::resume).
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::NotSupported`].
    fn pause(&self, name: &str) -> Result<(), AdminError>;

    /// Resumes a paused service.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::NotSupported`].
    fn resume(&self, name: &str) -> Result<(), AdminError>;

    /// Runs a service once now, outside its schedule.
    ///
    /// # Errors
    /// [`AdminError::UnknownService`]; [`AdminError::AlreadyRunning`] while a run is going;
    /// [`AdminError::NotSupported`].
    fn run_now(&self, name: &str) -> Result<(), AdminError>;

    /// Reads the configuration again and applies what changed.
    ///
    /// # Errors
    /// [`AdminError::Rejected`] for a bad configuration (nothing changes then);
    /// [`AdminError::NotSupported`].
    fn reload(&self) -> Result<ReloadView, AdminError>;
}

// LEAD: this block is the whole seam between the admin API and the runtime. Fill in pause, resume,
// run_now (Error::AlreadyRunning maps to AdminError::AlreadyRunning in `From<Error>` once it exists),
// the local run history (and `ServiceView::recent` in `services`), and switch `upcoming`/`describe`
// to `Schedule::upcoming` / `Schedule::describe` when scheduler-core has them.
impl AdminBackend for ServiceManager {
    fn services(&self) -> Vec<ServiceView> {
        ServiceManager::services(self)
            .iter()
            .map(ServiceView::from)
            .collect()
    }

    fn service(&self, name: &str) -> Option<ServiceView> {
        ServiceManager::service(self, name)
            .as_ref()
            .map(ServiceView::from)
    }

    async fn history(&self, name: &str, limit: usize) -> Result<Vec<RunView>, AdminError> {
        known(self, name)?;
        match self.cluster_history(name, limit).await {
            Ok(records) => Ok(records.iter().map(RunView::from).collect()),
            // No local history in the runtime yet: nothing to show without a coordinator.
            Err(crate::Error::NotCoordinated) => Ok(Vec::new()),
            Err(error) => Err(error.into()),
        }
    }

    fn upcoming(&self, name: &str, count: usize) -> Result<Vec<DateTime<Utc>>, AdminError> {
        let status = ServiceManager::service(self, name)
            .ok_or_else(|| AdminError::UnknownService(name.to_owned()))?;
        Ok(status
            .next_fire
            .map(|next| fire_times(&status.schedule, next, count))
            .unwrap_or_default())
    }

    fn describe(&self, name: &str) -> Result<Option<String>, AdminError> {
        known(self, name)?;
        Ok(None)
    }

    fn pause(&self, name: &str) -> Result<(), AdminError> {
        known(self, name)?;
        Err(AdminError::NotSupported { action: "pause" })
    }

    fn resume(&self, name: &str) -> Result<(), AdminError> {
        known(self, name)?;
        Err(AdminError::NotSupported { action: "resume" })
    }

    fn run_now(&self, name: &str) -> Result<(), AdminError> {
        known(self, name)?;
        Err(AdminError::NotSupported { action: "run now" })
    }

    fn reload(&self) -> Result<ReloadView, AdminError> {
        Ok(self.reload_config()?.into())
    }
}

/// `Ok` when `manager` has a service of this name.
fn known(manager: &ServiceManager, name: &str) -> Result<(), AdminError> {
    match manager.service(name) {
        Some(_) => Ok(()),
        None => Err(AdminError::UnknownService(name.to_owned())),
    }
}

/// `count` fire times from `next` on, read from the schedule's text as
/// [`ServiceStatus::schedule`](crate::ServiceStatus::schedule) writes it (until
/// `Schedule::upcoming` exists).
fn fire_times(schedule: &str, next: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    if count == 0 {
        return Vec::new();
    }
    if schedule.starts_with("once ") {
        return vec![next];
    }
    if let Some(period) = schedule
        .strip_prefix("every ")
        .and_then(|rest| rest.strip_suffix('s'))
        .and_then(|secs| secs.parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .and_then(|period| TimeDelta::from_std(period).ok())
    {
        return std::iter::successors(Some(next), |t| t.checked_add_signed(period))
            .take(count)
            .collect();
    }
    let parsed = match split_zone(schedule) {
        (expr, Some(zone)) => Schedule::cron_in(expr, zone),
        (expr, None) => Schedule::cron(expr),
    };
    let Ok(cron) = parsed else {
        return vec![next];
    };
    std::iter::successors(Some(next), |t| cron.next_after(*t))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, h, m, s).unwrap()
    }

    #[test]
    fn fixed_periods_step_from_the_next_fire() {
        assert_eq!(
            fire_times("every 30s", at(10, 0, 0), 3),
            vec![at(10, 0, 0), at(10, 0, 30), at(10, 1, 0)]
        );
        let half = fire_times("every 0.5s", at(10, 0, 0), 3);
        assert_eq!(half[2], at(10, 0, 1));
    }

    #[test]
    fn cron_times_follow_the_expression_in_its_zone() {
        // 2024-01-01 is a Monday; 09:00 in Berlin is 08:00 UTC in winter.
        let monday = Utc.with_ymd_and_hms(2024, 1, 1, 8, 0, 0).unwrap();
        let times = fire_times("0 9 * * MON-FRI (Europe/Berlin)", monday, 6);
        let days: Vec<u32> = times.iter().map(chrono::Datelike::day).collect();
        assert_eq!(days, vec![1, 2, 3, 4, 5, 8]);
        assert!(times.iter().all(|t| chrono::Timelike::hour(t) == 8));
    }

    #[test]
    fn one_shots_fire_once_and_nothing_is_asked_for_nothing() {
        assert_eq!(
            fire_times("once at 2024-01-01T10:00:00+00:00", at(10, 0, 0), 10),
            vec![at(10, 0, 0)]
        );
        assert!(fire_times("every 30s", at(10, 0, 0), 0).is_empty());
    }
}
